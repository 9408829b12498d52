// Evaluation of a base model and base + LoRA adapter on an eval JSONL
// (`lema eval`, the worker's eval stage). For each model:
//   - eval loss: mean token cross-entropy over the reply tokens (and EOS) of
//     every example, with the labels training uses (tokenize_example in
//     common/data/training_example.h) and the training loss head (head_loss in
//     llama_model.h, chunked); perplexity = exp(loss);
//   - format adherence: the first `questions` examples' prompts (the exact
//     training prompt: [BOS] + the chat template up to "<|assistant|>\n")
//     are answered greedily (Generator, KV cache, stop at [/LEMA_REPLY] or
//     EOS, at most max_new_tokens) and checked with the strict validator
//     (validate_reply in common/text/chat_format.h): valid / total, failures by
//     reason and adherence by category.
// run_eval does both for the base, then for "tuned" (base + adapter) when
// an adapter is given, and writes report.json / report.md (common/data/eval_report.h)
// plus loss_curve.svg from a training run's metrics.jsonl. docs/EVAL.md.
//
// Plain functions; one call at a time per LayerSource / LoraAdapter.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/data/dataset.h"
#include "common/data/eval_report.h"
#include "common/base/status.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"
#include "engine/layer_source.h"
#include "engine/lora.h"

namespace lema::engine {

struct EvalOptions {
  std::string model;       // HF model directory or layer file
  std::string adapter;     // PEFT adapter directory; "": evaluate the base only
  std::string data;        // eval JSONL (dataset schema, common/data/dataset.h)
  std::string out;         // report directory; "": write no files
  std::string tokenizer;   // tokenizer file or directory; "": the model's directory (or the layer file's)
  // A chat template file (.jinja or tokenizer_config.json) overriding the
  // tokenizer directory's; "": that directory's template, or lema's chat
  // format when it has none (said in the log).
  std::string chat_template;
  std::string metrics;     // a training run's metrics.jsonl; "": no loss curve
  int64_t questions = 20;  // format adherence on the first N examples (0: none)
  int64_t max_new_tokens = 128;  // longest generated reply
  int64_t seq_len = 512;         // the loss sees examples cut to this, as training does
  int64_t batch = 8;             // sequences per loss forward, prompts per generate call
  int64_t loss_chunk_tokens = 1024;
  // Budgets as `lema train --vram/--ram` has them (0: none): the base, a
  // layer file then, streams through the device forward-only, and the batch
  // shrinks when its KV cache would not fit (memory_planner.h).
  uint64_t vram_budget = 0;
  uint64_t ram_budget = 0;
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string dtype = "auto";  // auto (float32 on cpu, bfloat16 on cuda) | fp32 | bf16 | fp16 | fp64
  int64_t threads = 0;         // CPU intra-op threads; 0: all cores (or OMP_NUM_THREADS)
  bool show_progress = true;   // progress bars on stderr
  // Called after every batch: phase ("loss" or "generate"), model name,
  // units done and total. A non-OK status stops the evaluation with it
  // (cancellation from the worker). May be empty.
  std::function<Status(const std::string& phase, const std::string& model, int64_t done, int64_t total)>
      on_progress;
};

// Checks ranges; errors name the option.
Status validate_eval_options(const EvalOptions& options);

// Reads the eval JSONL strictly: a missing file, an empty file or any bad
// line is an error naming the file (and the line).
Result<std::vector<Example>> read_eval_examples(const std::string& path);

// Evaluates one model: `source` with `adapter` (null: the base), result
// named `name`. With `chat_template` the loss labels and the prompts are
// the template's (as training has them), else lema's chat format. Uses options' questions, max_new_tokens, seq_len, batch,
// loss_chunk_tokens, show_progress and on_progress; ignores the paths.
// Errors: a token id outside the model's vocabulary, no example with a
// reply token left after seq_len.
Result<EvalModelResult> evaluate_model(const EvalOptions& options, LayerSource& source,
                                       const LoraAdapter* adapter, const Tokenizer& tokenizer,
                                       const std::vector<Example>& examples, const std::string& name,
                                       const ChatTemplate* chat_template = nullptr);

// The whole evaluation as options say: loads the model, tokenizer, data and
// adapter (an adapter for another model shape is refused, naming the
// tensor), evaluates "base" then "tuned", and when options.out is set writes
// report.json, report.md and (with options.metrics) loss_curve.svg there.
Result<EvalReport> run_eval(const EvalOptions& options);

}  // namespace lema::engine
