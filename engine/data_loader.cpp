#include "engine/data_loader.h"

#include <nlohmann/json.hpp>

#include "common/data/dataset.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"

namespace lema::engine {

namespace {
Result<std::vector<int32_t>> int_array(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_array()) {
    return Status::invalid_argument(std::string("'") + key + "' must be an array of integers");
  }
  std::vector<int32_t> out;
  for (const auto& v : j[key]) {
    if (!v.is_number_integer()) return Status::invalid_argument(std::string("'") + key + "' holds a non-integer");
    const int64_t x = v.get<int64_t>();
    if (x < kIgnoreLabel || x > INT32_MAX) return Status::invalid_argument(std::string("'") + key + "' value out of range");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

}  // namespace

bool is_pretokenized(const std::string& text) {
  const size_t end = text.find('\n');
  const nlohmann::json j = nlohmann::json::parse(text.substr(0, end), nullptr, false);
  return !j.is_discarded() && j.is_object() && j.contains("input_ids");
}

Result<std::vector<TokenizedExample>> read_tokenized_jsonl(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<TokenizedExample> out;
  // for_each_line prefixes each error with path:line.
  LEMA_RETURN_IF_ERROR(for_each_line(text, path, [&](int64_t, std::string_view line) -> Status {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return Status();
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Status::invalid_argument("not a JSON object");
    if (!j.contains("input_ids")) return Status::invalid_argument("no 'input_ids' (the file's first line is pre-tokenized)");
    TokenizedExample ex;
    LEMA_ASSIGN_OR_RETURN(ex.input_ids, int_array(j, "input_ids"));
    if (j.contains("labels")) {
      LEMA_ASSIGN_OR_RETURN(ex.labels, int_array(j, "labels"));
    } else {
      ex.labels = ex.input_ids;
    }
    if (ex.input_ids.empty()) return Status::invalid_argument("empty 'input_ids'");
    if (ex.labels.size() != ex.input_ids.size()) {
      return Status::invalid_argument("'labels' has " + std::to_string(ex.labels.size()) + " entries, 'input_ids' " +
                                      std::to_string(ex.input_ids.size()));
    }
    for (int32_t id : ex.input_ids) {
      if (id < 0) return Status::invalid_argument("negative token id in 'input_ids'");
    }
    out.push_back(std::move(ex));
    return Status();
  }));
  if (out.empty()) return Status::invalid_argument(path + ": no examples");
  return out;
}

Status write_tokenized_jsonl(const std::string& path, const std::vector<TokenizedExample>& examples) {
  std::string text;
  for (const auto& ex : examples) {
    nlohmann::json j;
    j["input_ids"] = ex.input_ids;
    j["labels"] = ex.labels;
    text += j.dump() + "\n";
  }
  return write_file_atomic(path, text);
}

Result<std::vector<TokenizedExample>> load_training_data(const std::string& path, const std::string& tokenizer_path,
                                                         int64_t seq_len, const TrainDataOptions& options,
                                                         std::string* summary) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<TokenizedExample> examples;
  if (options.format == DataFormat::kTokenized || (options.format == DataFormat::kAuto && is_pretokenized(text))) {
    LEMA_ASSIGN_OR_RETURN(examples, read_tokenized_jsonl(path));
    int64_t truncated = 0;
    for (auto& ex : examples) {
      if (static_cast<int64_t>(ex.input_ids.size()) > seq_len) {
        ex.input_ids.resize(seq_len);
        ex.labels.resize(seq_len);
        ex.truncated = true;
        ++truncated;
      }
    }
    if (summary) *summary = str_printf("%zu pre-tokenized examples (%lld cut to seq_len)", examples.size(), static_cast<long long>(truncated));
    return examples;
  }
  ImportOptions import_options;
  import_options.strict = !options.skip_bad;  // training skips a line only when asked
  import_options.format = options.format;
  LEMA_ASSIGN_OR_RETURN(ImportResult imported, import_jsonl_text(text, path, import_options));
  if (imported.examples.empty())
    return Status::invalid_argument(path + ": no usable example (" + std::to_string(imported.bad_lines.size()) +
                                    " bad record(s), format " + data_format_name(imported.format) + ")");
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::load(tokenizer_path));
  LEMA_ASSIGN_OR_RETURN(std::optional<ChatTemplate> chat_template, ChatTemplate::find(tokenizer_path));
  TokenizeStats stats;
  Result<std::vector<TokenizedExample>> tokenized = tokenize_dataset(
      *tokenizer, chat_template ? &*chat_template : nullptr, imported.examples, static_cast<int32_t>(seq_len), &stats);
  if (!tokenized.ok()) return tokenized.status().with_context(path);
  examples = std::move(tokenized).value();
  if (examples.empty()) return Status::invalid_argument(path + ": every example's prompt fills seq_len; raise --seq-len");
  if (summary) {
    std::string bad;
    for (const auto& [reason, n] : imported.bad_by_reason)
      bad += str_printf("%s%s %lld", bad.empty() ? "" : ", ", reason.c_str(), static_cast<long long>(n));
    *summary = str_printf(
        "%lld examples (format %s, %s), %lld tokens (%lld with loss), %lld cut to seq_len, %lld dropped (prompt fills "
        "seq_len), %lld duplicates removed, %zu bad record(s) skipped%s%s%s",
        static_cast<long long>(stats.examples), data_format_name(imported.format),
        chat_template ? ("chat template " + chat_template->jinja_template().name()).c_str()
                      : "no chat template: lema's chat format",
        static_cast<long long>(stats.tokens), static_cast<long long>(stats.label_tokens),
        static_cast<long long>(stats.truncated), static_cast<long long>(stats.dropped_no_labels),
        static_cast<long long>(imported.duplicates), imported.bad_lines.size(), bad.empty() ? "" : " (",
        bad.c_str(), bad.empty() ? "" : ")");
    if (stats.last_turn_only > 0)
      *summary += str_printf(", %lld conversation(s) trained on their last turn only (the template rewrites history)",
                             static_cast<long long>(stats.last_turn_only));
  }
  return examples;
}

DataLoader::DataLoader(std::vector<TokenizedExample> examples, uint64_t seed, int64_t batch, int64_t micro_batch,
                       int64_t seq_len, int32_t pad_id, bool pack)
    : micro_batch_(micro_batch), packed_(pack) {
  LEMA_CHECK(!examples.empty() && batch >= 1 && micro_batch >= 1 && micro_batch <= batch);
  if (pack) examples = pack_examples(examples, static_cast<int32_t>(seq_len), &pack_stats_);
  BatcherOptions options;
  options.batch_size = static_cast<int32_t>(batch);
  options.seq_len = static_cast<int32_t>(seq_len);
  options.seed = seed;
  options.shuffle = true;
  options.pad_id = pad_id;
  batcher_ = std::make_unique<Batcher>(std::move(examples), options);
}

std::vector<MicroBatch> DataLoader::next_step() {
  const Batch b = batcher_->next();
  const auto opts = at::TensorOptions().dtype(at::kInt);
  // The Batch vectors are [B, T] row-major int32; the batch is consumed here.
  const at::Tensor ids = at::from_blob(const_cast<int32_t*>(b.input_ids.data()), {b.batch_size, b.seq_len}, opts).to(at::kLong);
  const at::Tensor labels = at::from_blob(const_cast<int32_t*>(b.labels.data()), {b.batch_size, b.seq_len}, opts).to(at::kLong);
  const at::Tensor mask = at::from_blob(const_cast<int32_t*>(b.attention_mask.data()), {b.batch_size, b.seq_len}, opts);
  at::Tensor segments, positions;
  if (packed_) {
    segments = at::from_blob(const_cast<int32_t*>(b.segment_ids.data()), {b.batch_size, b.seq_len}, opts).to(at::kLong);
    positions = at::from_blob(const_cast<int32_t*>(b.position_ids.data()), {b.batch_size, b.seq_len}, opts).to(at::kLong);
  }
  std::vector<MicroBatch> out;
  for (int64_t i = 0; i < b.batch_size; i += micro_batch_) {
    const int64_t n = std::min<int64_t>(micro_batch_, b.batch_size - i);
    // Each micro-batch is only as long as its longest row.
    const int64_t t = std::max<int64_t>(1, mask.narrow(0, i, n).sum(1).max().item<int64_t>());
    auto cut = [&](const at::Tensor& x) { return x.narrow(0, i, n).narrow(1, 0, t).contiguous(); };
    MicroBatch mb{cut(ids), cut(labels), {}, {}};
    if (packed_) {
      mb.segment_ids = cut(segments);
      mb.position_ids = cut(positions);
    }
    out.push_back(std::move(mb));
  }
  return out;
}

}  // namespace lema::engine
