// `lema eval --model MODEL [--adapter DIR] --data eval.jsonl --out DIR`:
// eval loss, perplexity and format adherence of the base model and, with
// --adapter, of base + adapter ("tuned"), side by side
// (engine/evaluator.h). Writes DIR/report.json, DIR/report.md (and
// DIR/loss_curve.svg with --metrics) and prints the summary table.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/data/eval_report.h"
#include "engine/evaluator.h"

namespace {

lema::Status run_eval_command(const lema::engine::EvalOptions& o) {
  LEMA_ASSIGN_OR_RETURN(lema::EvalReport report, lema::engine::run_eval(o));
  const std::string md = lema::eval_report_summary_markdown(report);
  std::fwrite(md.data(), 1, md.size(), stdout);
  if (!o.out.empty()) std::printf("\nreport: %s/report.md, %s/report.json\n", o.out.c_str(), o.out.c_str());
  std::fflush(stdout);
  return lema::Status();
}

void setup_eval(CLI::App& app) {
  auto o = std::make_shared<lema::engine::EvalOptions>();
  CLI::App* cmd =
      app.add_subcommand("eval", "Eval loss, perplexity and format adherence: base vs base + adapter");
  cmd->add_option("--model", o->model, "HF model directory or layer file")->required();
  cmd->add_option("--adapter", o->adapter, "PEFT adapter directory (adds the \"tuned\" column)");
  cmd->add_option("--data", o->data, "eval data (any format of docs/DATASET.md)")->required();
  cmd->add_option("--out", o->out, "report directory (report.json, report.md, loss_curve.svg)")->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer file or directory (default: the model's directory)");
  cmd->add_option("--template", o->chat_template,
                  "chat template file (.jinja or tokenizer_config.json) instead of the model's own");
  cmd->add_option("--questions", o->questions, "format adherence on the first N examples")
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "longest generated reply")->capture_default_str();
  cmd->add_option("--metrics", o->metrics, "a training run's metrics.jsonl: draws loss_curve.svg");
  cmd->add_option("--seq-len", o->seq_len, "examples are cut to this for the loss, as in training")
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per forward pass and prompts per generate call")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "auto | fp32 | bf16 | fp16")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  lema::cli::add_bytes_option(cmd, "--vram", o->vram_budget,
                              "device memory budget, e.g. 4GiB: stream the base (a layer file) within it, forward only");
  lema::cli::add_bytes_option(cmd, "--ram", o->ram_budget, "host memory budget for the streamed weights, e.g. 8GiB");
  cmd->callback([o] { lema::cli::finish(run_eval_command(*o)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_eval);
