#include "engine/evaluator.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <memory>
#include <thread>

#include "common/text/chat_format.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/data/training_example.h"
#include "engine/generator.h"
#include "engine/layer_store.h"
#include "engine/llama_model.h"
#include "engine/memory_planner.h"
#include "engine/model_loader.h"
#include "engine/peft_adapter.h"
#include "engine/train_step.h"
#include "engine/torch_types.h"

namespace lema::engine {

namespace {

constexpr const char* kNoCategory = "(none)";  // as compute_stats names it
constexpr const char* kLossCurveFile = "loss_curve.svg";

// The question shown in the report: the question, or for the messages
// schema the last user message.
std::string display_question(const Example& e) {
  if (!e.is_chat()) return e.question;
  for (auto it = e.messages.rbegin(); it != e.messages.rend(); ++it) {
    if (it->role == "user") return it->content;
  }
  return example_question_key(e);
}

// Reports progress to the bar and the caller's callback.
class EvalProgress {
 public:
  EvalProgress(const EvalOptions& o, const std::string& phase, const std::string& model, int64_t total,
               const char* unit)
      : o_(o), phase_(phase), model_(model), total_(total) {
    if (o.show_progress)
      bar_ = std::make_unique<Progress>(phase + " " + model, static_cast<uint64_t>(total), unit);
  }
  Status update(int64_t done, const std::string& suffix) {
    if (bar_) bar_->update(static_cast<uint64_t>(done), suffix);
    return o_.on_progress ? o_.on_progress(phase_, model_, done, total_) : Status();
  }
  void finish() {
    if (bar_) bar_->finish();
  }

 private:
  const EvalOptions& o_;
  std::string phase_, model_;
  int64_t total_;
  std::unique_ptr<Progress> bar_;
};

// Sum of the token cross-entropies over every label of `examples`, `batch`
// right-padded rows per forward pass, every layer without autograd.
Status accumulate_reply_loss(const EvalOptions& o, LayerSource& source, const LoraAdapter* adapter,
                             const std::vector<TokenizedExample>& examples, const std::string& name,
                             EvalModelResult* result) {
  const ModelConfig& config = source.config();
  const at::ScalarType dtype = source.dtype();
  const at::Device device = source.device();
  const int64_t pad_id = config.pad_token_id >= 0 ? config.pad_token_id : 0;
  const auto n = static_cast<int64_t>(examples.size());
  EvalProgress progress(o, "loss", name, n, "examples");
  at::NoGradGuard no_grad;
  double loss_sum = 0.0;
  int64_t tokens = 0;
  for (int64_t start = 0; start < n; start += o.batch) {
    const int64_t rows = std::min(o.batch, n - start);
    int64_t t = 1;
    for (int64_t r = 0; r < rows; ++r)
      t = std::max<int64_t>(t, static_cast<int64_t>(examples[start + r].input_ids.size()));
    at::Tensor ids = at::full({rows, t}, pad_id, at::TensorOptions().dtype(at::kLong));  // [B, T]
    at::Tensor labels =
        at::full({rows, t}, static_cast<int64_t>(kIgnoreLabel), at::TensorOptions().dtype(at::kLong));
    for (int64_t r = 0; r < rows; ++r) {
      const TokenizedExample& ex = examples[start + r];
      const auto len = static_cast<int64_t>(ex.input_ids.size());
      const at::Tensor row_ids =
          at::tensor(std::vector<int64_t>(ex.input_ids.begin(), ex.input_ids.end()), at::kLong);
      const at::Tensor row_labels =
          at::tensor(std::vector<int64_t>(ex.labels.begin(), ex.labels.end()), at::kLong);
      ids[r].narrow(0, 0, len).copy_(row_ids);
      labels[r].narrow(0, 0, len).copy_(row_labels);
    }
    LayerContext ctx = make_layer_context(config, t, dtype, device);
    at::Tensor x = embed_tokens(ids.to(device), source.head(), config);  // [B, T, H]
    for (int64_t layer = 0; layer < config.n_layers; ++layer) {
      LEMA_ASSIGN_OR_RETURN(LayerWeights w, source.acquire(layer));
      ctx.layer = layer;
      if (layer + 1 < config.n_layers) source.prefetch(layer + 1);
      const LayerLora lora =
          adapter != nullptr ? adapter->layer(layer, dtype, /*dropout=*/false) : LayerLora{};
      x = decoder_layer_forward(x, w, lora, ctx);
      source.release(layer);
    }
    const HeadLossResult h = head_loss(x, labels, source.head(), config, o.loss_chunk_tokens);
    loss_sum += h.loss_sum;
    tokens += h.n_valid;
    LEMA_RETURN_IF_ERROR(
        progress.update(start + rows, str_printf("loss %.4f", loss_sum / std::max<int64_t>(tokens, 1))));
  }
  progress.finish();
  if (tokens == 0) return Status::invalid_argument("eval data: no reply token to compute a loss on");
  result->eval_loss = loss_sum / static_cast<double>(tokens);
  result->eval_tokens = tokens;
  return Status();
}

// The prompt a served model sees: with the template, the conversation
// without its last (assistant) message and with the generation prompt, as
// transformers renders it; else the training prompt exactly: the tokens
// before the first label.
Result<std::vector<int32_t>> training_prompt(const Tokenizer& tokenizer, const ChatTemplate* chat_template,
                                             const Example& example) {
  if (chat_template && !example.is_raw()) {
    nlohmann::ordered_json messages = example_template_messages(example);
    messages.erase(messages.size() - 1);
    ChatRenderOptions options;
    options.add_generation_prompt = true;
    LEMA_ASSIGN_OR_RETURN(std::string text, chat_template->render(messages, options));
    return tokenizer.encode(text, /*add_special=*/false);
  }
  const TokenizedExample t = tokenize_example(tokenizer, example, INT32_MAX);
  const auto first_label = std::find_if(t.labels.begin(), t.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
  return std::vector<int32_t>(t.input_ids.begin(), t.input_ids.begin() + (first_label - t.labels.begin()));
}

// Greedy replies to the first options.questions prompts, checked by the
// strict validator.
Status measure_adherence(const EvalOptions& o, LayerSource& source, const LoraAdapter* adapter,
                         const Tokenizer& tokenizer, const ChatTemplate* chat_template,
                         const std::vector<Example>& examples, const std::string& name, EvalModelResult* result) {
  const int64_t n = std::min<int64_t>(o.questions, static_cast<int64_t>(examples.size()));
  if (n <= 0) return Status();
  Generator generator(source, adapter, &tokenizer);
  GenerateOptions gen;
  gen.max_new_tokens = o.max_new_tokens;
  gen.stop_strings = {kReplyCloseTag};  // EOS: the tokenizer's (eos_ids left empty)
  EvalProgress progress(o, "generate", name, n, "replies");
  for (int64_t start = 0; start < n; start += o.batch) {
    const int64_t rows = std::min(o.batch, n - start);
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t r = 0; r < rows; ++r) {
      LEMA_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, training_prompt(tokenizer, chat_template, examples[start + r]));
      prompts.push_back(std::move(prompt));
    }
    LEMA_ASSIGN_OR_RETURN(std::vector<Generation> outs, generator.generate(prompts, gen));
    for (int64_t r = 0; r < rows; ++r) {
      const Example& e = examples[start + r];
      const ReplyCheck check = validate_reply(outs[r].text);
      const std::string reason = reply_error_name(check.error);
      CategoryScore& cat = result->by_category[e.category.empty() ? kNoCategory : e.category];
      ++cat.total;
      ++result->total;
      if (check.ok()) {
        ++cat.valid;
        ++result->valid;
      } else {
        ++result->failures_by_reason[reason];
      }
      result->samples.push_back({display_question(e), e.category, outs[r].text, reason});
    }
    LEMA_RETURN_IF_ERROR(
        progress.update(start + rows, str_printf("%lld/%lld valid", static_cast<long long>(result->valid),
                                                 static_cast<long long>(result->total))));
  }
  progress.finish();
  return Status();
}

Status check_vocab(const std::vector<TokenizedExample>& examples, const ModelConfig& config,
                   const std::string& data) {
  for (size_t i = 0; i < examples.size(); ++i) {
    for (int32_t id : examples[i].input_ids) {
      if (id >= config.vocab_size) {
        return Status::invalid_argument(data + ": example " + std::to_string(i + 1) + " holds token id " +
                                        std::to_string(id) + ", the model's vocabulary has " +
                                        std::to_string(config.vocab_size) +
                                        " (tokenizer for another model?)");
      }
    }
  }
  return Status();
}

// What the evaluation asks of memory: the KV cache holds the longest prompt
// asked plus max_new_tokens; a loss forward sees at most seq_len tokens.
Result<InferenceRequest> inference_request(const EvalOptions& o, const Tokenizer& tokenizer,
                                           const ChatTemplate* chat_template, const std::vector<Example>& examples) {
  InferenceRequest req;
  req.batch = o.batch;
  req.vram_budget = o.vram_budget;
  req.ram_budget = o.ram_budget;
  if (req.vram_budget == 0 && req.ram_budget == 0) return req;  // nothing to plan
  int64_t longest_prompt = 0;
  for (int64_t i = 0; i < std::min<int64_t>(o.questions, static_cast<int64_t>(examples.size())); ++i) {
    LEMA_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, training_prompt(tokenizer, chat_template, examples[i]));
    longest_prompt = std::max<int64_t>(longest_prompt, static_cast<int64_t>(prompt.size()));
  }
  req.kv_tokens = longest_prompt > 0 ? longest_prompt + o.max_new_tokens : 0;
  req.forward_tokens = o.seq_len;
  req.loss_chunk_tokens = o.loss_chunk_tokens;
  return req;
}

}  // namespace

Status validate_eval_options(const EvalOptions& o) {
  if (o.model.empty()) return Status::invalid_argument("--model is required");
  if (o.data.empty()) return Status::invalid_argument("--data is required");
  if (o.questions < 0) return Status::invalid_argument("questions must be >= 0");
  if (o.max_new_tokens < 1) return Status::invalid_argument("max_new_tokens must be >= 1");
  if (o.seq_len < 2) return Status::invalid_argument("seq_len must be >= 2");
  if (o.batch < 1) return Status::invalid_argument("batch must be >= 1");
  if (o.loss_chunk_tokens < 1) return Status::invalid_argument("loss_chunk_tokens must be >= 1");
  if (o.dtype != "auto") LEMA_RETURN_IF_ERROR(parse_dtype(o.dtype).status());
  return Status();
}

Result<std::vector<Example>> read_eval_examples(const std::string& path) {
  if (!path_exists(path)) return Status::not_found(path + ": no such eval data file");
  ImportOptions options;
  options.strict = true;  // an eval set with a bad line is a broken eval set
  LEMA_ASSIGN_OR_RETURN(ImportResult imported, import_jsonl(path, options));
  if (imported.examples.empty()) return Status::invalid_argument(path + ": no examples");
  return std::move(imported.examples);
}

Result<EvalModelResult> evaluate_model(const EvalOptions& options, LayerSource& source,
                                       const LoraAdapter* adapter, const Tokenizer& tokenizer,
                                       const std::vector<Example>& examples, const std::string& name,
                                       const ChatTemplate* chat_template) {
  EvalModelResult result;
  result.name = name;
  try {
    TokenizeStats stats;
    LEMA_ASSIGN_OR_RETURN(
        const std::vector<TokenizedExample> tokenized,
        tokenize_dataset(tokenizer, chat_template, examples,
                         static_cast<int32_t>(std::min<int64_t>(options.seq_len, INT32_MAX)), &stats));
    if (tokenized.empty())
      return Status::invalid_argument("eval data: every example's prompt fills seq_len; raise seq_len");
    LEMA_RETURN_IF_ERROR(
        check_vocab(tokenized, source.config(), options.data.empty() ? "eval data" : options.data));
    if (stats.truncated > 0) {
      log_warn("eval %s: %lld of %lld examples cut to seq_len %lld for the loss", name.c_str(),
               static_cast<long long>(stats.truncated), static_cast<long long>(stats.examples),
               static_cast<long long>(options.seq_len));
    }
    LEMA_RETURN_IF_ERROR(accumulate_reply_loss(options, source, adapter, tokenized, name, &result));
    LEMA_RETURN_IF_ERROR(measure_adherence(options, source, adapter, tokenizer, chat_template, examples, name, &result));
  } catch (const std::exception& e) {
    return status_from_exception(e, "evaluating " + name);
  }
  return result;
}

Result<EvalReport> run_eval(const EvalOptions& o) {
  LEMA_RETURN_IF_ERROR(validate_eval_options(o));
  try {
    if (o.threads > 0)
      at::set_num_threads(static_cast<int>(o.threads));
    else if (!std::getenv("OMP_NUM_THREADS"))
      at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    LEMA_ASSIGN_OR_RETURN(const at::Device device, parse_device(o.device));
    at::ScalarType dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
    if (o.dtype != "auto") {
      LEMA_ASSIGN_OR_RETURN(dtype, parse_dtype(o.dtype));
    }

    // Cheap checks first: data, tokenizer, metrics, then the model and adapter.
    LEMA_ASSIGN_OR_RETURN(const std::vector<Example> examples, read_eval_examples(o.data));
    const std::string tokenizer_path = !o.tokenizer.empty()    ? o.tokenizer
                                       : is_directory(o.model) ? o.model
                                                               : path_dirname(o.model);
    Result<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(tokenizer_path);
    if (!tokenizer.ok()) {
      return tokenizer.status().with_context("no tokenizer for model " + o.model +
                                             (o.tokenizer.empty() ? " (give --tokenizer)" : ""));
    }
    LEMA_ASSIGN_OR_RETURN(const std::optional<ChatTemplate> chat_template,
                          ChatTemplate::select(o.chat_template, tokenizer_path));
    const ChatTemplate* tmpl = chat_template ? &*chat_template : nullptr;
    if (tmpl)
      log_info("eval: chat template %s", tmpl->jinja_template().name().c_str());
    else
      log_info("eval: %s has no chat template: lema's chat format (give --template FILE to use one)",
               tokenizer_path.c_str());
    std::vector<MetricPoint> points;
    if (!o.metrics.empty()) {
      LEMA_ASSIGN_OR_RETURN(points, read_metrics_jsonl(o.metrics));
    }
    EvalOptions eo = o;  // the batch may come from the memory plan
    LEMA_ASSIGN_OR_RETURN(const InferenceRequest request, inference_request(o, **tokenizer, tmpl, examples));
    LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerSource> source,
                          open_inference_source(o.model, o.adapter, request, dtype, device, &eo.batch));
    std::unique_ptr<LoraAdapter> adapter;
    if (!o.adapter.empty()) {
      const at::ScalarType master = dtype == at::kDouble ? at::kDouble : at::kFloat;
      Result<std::unique_ptr<LoraAdapter>> loaded =
          load_peft_adapter(o.adapter, source->config(), master, device);
      if (!loaded.ok()) {
        return loaded.status().with_context("adapter " + o.adapter + " for model " + o.model);
      }
      adapter = std::move(loaded.value());
    }
    const ModelConfig& config = source->config();
    log_info("eval: model %s (%lld layers, hidden %lld, vocab %lld), %s on %s", o.model.c_str(),
             static_cast<long long>(config.n_layers), static_cast<long long>(config.hidden_size),
             static_cast<long long>(config.vocab_size), dtype_name(dtype), device.str().c_str());
    log_info(
        "eval: data %s: %zu examples; adherence on the first %lld, at most %lld new tokens; seq_len %lld, "
        "batch %lld%s%s",
        o.data.c_str(), examples.size(),
        static_cast<long long>(std::min<int64_t>(o.questions, examples.size())),
        static_cast<long long>(o.max_new_tokens), static_cast<long long>(o.seq_len),
        static_cast<long long>(eo.batch), o.adapter.empty() ? "" : "; adapter ", o.adapter.c_str());

    EvalReport report;
    report.data_path = o.data;
    report.model = o.model;
    struct Entry {
      const char* name;
      const LoraAdapter* adapter;
    };
    std::vector<Entry> entries = {{"base", nullptr}};
    if (adapter) entries.push_back({"tuned", adapter.get()});
    for (const Entry& entry : entries) {
      const auto start = std::chrono::steady_clock::now();
      LEMA_ASSIGN_OR_RETURN(EvalModelResult r,
                            evaluate_model(eo, *source, entry.adapter, **tokenizer, examples, entry.name, tmpl));
      if (entry.adapter != nullptr) r.adapter = o.adapter;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      log_info("eval %s: loss %.4f (%lld tokens), perplexity %.3f, adherence %lld/%lld, %.1f s", entry.name,
               r.eval_loss, static_cast<long long>(r.eval_tokens), r.perplexity(),
               static_cast<long long>(r.valid), static_cast<long long>(r.total), seconds);
      report.models.push_back(std::move(r));
    }
    log_info("eval: peak %s %s", device.is_cuda() ? "device memory (allocator)" : "host RSS",
             format_bytes(peak_device_memory(device)).c_str());
    if (!o.metrics.empty()) report.loss_curve = kLossCurveFile;
    if (!o.out.empty()) {
      LEMA_RETURN_IF_ERROR(make_dirs(o.out));
      if (!o.metrics.empty()) {
        LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(o.out, kLossCurveFile),
                                               render_loss_svg(points, "training loss (" + o.metrics + ")")));
      }
      LEMA_RETURN_IF_ERROR(write_eval_report(report, o.out));
    }
    return report;
  } catch (const std::exception& e) {
    return status_from_exception(e, "eval");
  }
}

}  // namespace lema::engine
