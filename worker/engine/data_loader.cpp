#include "worker/engine/data_loader.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "common/file_util.h"

namespace lema::engine {

namespace {
Result<std::vector<int32_t>> int_array(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_array()) return Status::invalid_argument(where + ": '" + key + "' must be an array of integers");
  std::vector<int32_t> out;
  for (const auto& v : j[key]) {
    if (!v.is_number_integer()) return Status::invalid_argument(where + ": '" + key + "' holds a non-integer");
    const int64_t x = v.get<int64_t>();
    if (x < -100 || x > INT32_MAX) return Status::invalid_argument(where + ": '" + key + "' value out of range");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}
}  // namespace

Result<std::vector<TrainingExample>> read_training_jsonl(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<TrainingExample> out;
  size_t start = 0;
  int64_t line_no = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Status::invalid_argument(where + ": not a JSON object");
    if (!j.contains("input_ids")) {
      if (j.contains("question") || j.contains("messages")) {
        return Status::unsupported(where + ": text examples need the dataset module's tokenization "
                                           "(common/dataset.h); give pre-tokenized {\"input_ids\",\"labels\"} lines");
      }
      return Status::invalid_argument(where + ": no 'input_ids'");
    }
    TrainingExample ex;
    LEMA_ASSIGN_OR_RETURN(ex.input_ids, int_array(j, "input_ids", where));
    if (j.contains("labels")) {
      LEMA_ASSIGN_OR_RETURN(ex.labels, int_array(j, "labels", where));
    } else {
      ex.labels = ex.input_ids;
    }
    if (ex.input_ids.empty()) return Status::invalid_argument(where + ": empty 'input_ids'");
    if (ex.labels.size() != ex.input_ids.size()) {
      return Status::invalid_argument(where + ": 'labels' has " + std::to_string(ex.labels.size()) +
                                      " entries, 'input_ids' " + std::to_string(ex.input_ids.size()));
    }
    for (int32_t id : ex.input_ids) {
      if (id < 0) return Status::invalid_argument(where + ": negative token id in 'input_ids'");
    }
    out.push_back(std::move(ex));
  }
  if (out.empty()) return Status::invalid_argument(path + ": no examples");
  return out;
}

Status write_training_jsonl(const std::string& path, const std::vector<TrainingExample>& examples) {
  std::string text;
  for (const auto& ex : examples) {
    nlohmann::json j;
    j["input_ids"] = ex.input_ids;
    j["labels"] = ex.labels;
    text += j.dump() + "\n";
  }
  return write_file_atomic(path, text);
}

DataLoader::DataLoader(std::vector<TrainingExample> examples, uint64_t seed, int64_t batch, int64_t micro_batch,
                       int64_t seq_len, int32_t pad_id)
    : examples_(std::move(examples)), seed_(seed), batch_(batch), micro_batch_(micro_batch), seq_len_(seq_len),
      pad_id_(pad_id) {
  LEMA_CHECK(!examples_.empty() && batch_ >= 1 && micro_batch_ >= 1 && micro_batch_ <= batch_);
  shuffle_epoch();
}

void DataLoader::shuffle_epoch() {
  // Fisher-Yates driven by splitmix64 of (seed, epoch, i): the same order on
  // every platform and standard library.
  order_.resize(examples_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
  const uint64_t epoch_seed = mix_seed(seed_, 0x5eed0000ULL + static_cast<uint64_t>(cursor_.epoch));
  for (size_t i = order_.size(); i > 1; --i) {
    const uint64_t r = mix_seed(epoch_seed, i) % i;
    std::swap(order_[i - 1], order_[r]);
  }
}

void DataLoader::set_cursor(const DataCursor& cursor) {
  cursor_ = cursor;
  shuffle_epoch();
}

std::vector<MicroBatch> DataLoader::next_step() {
  std::vector<int64_t> picked;
  while (static_cast<int64_t>(picked.size()) < batch_) {
    if (cursor_.position >= size()) {
      ++cursor_.epoch;
      cursor_.position = 0;
      shuffle_epoch();
    }
    picked.push_back(order_[cursor_.position++]);
  }
  std::vector<MicroBatch> out;
  for (int64_t i = 0; i < batch_; i += micro_batch_) {
    const int64_t n = std::min(micro_batch_, batch_ - i);
    out.push_back(collate(std::vector<int64_t>(picked.begin() + i, picked.begin() + i + n)));
  }
  return out;
}

MicroBatch DataLoader::collate(const std::vector<int64_t>& indices) const {
  int64_t t = 1;
  for (int64_t i : indices) t = std::max<int64_t>(t, std::min<int64_t>(seq_len_, examples_[i].input_ids.size()));
  const int64_t b = static_cast<int64_t>(indices.size());
  at::Tensor ids = at::full({b, t}, pad_id_, at::TensorOptions().dtype(at::kLong));
  at::Tensor labels = at::full({b, t}, -100, at::TensorOptions().dtype(at::kLong));
  auto ids_a = ids.accessor<int64_t, 2>();
  auto labels_a = labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const TrainingExample& ex = examples_[indices[r]];
    const int64_t n = std::min<int64_t>(t, ex.input_ids.size());
    for (int64_t k = 0; k < n; ++k) {
      ids_a[r][k] = ex.input_ids[k];
      labels_a[r][k] = ex.labels[k];
    }
  }
  return {ids, labels};
}

}  // namespace lema::engine
