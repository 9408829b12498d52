// The eval stage: engine::run_eval, the code of `lema eval` (docs/EVAL.md),
// base model.path (+ model.tokenizer) vs base + the train stage's adapter
// (<work_dir>/train/adapter) on the dataset stage's <work_dir>/data/eval.jsonl,
// with eval.questions, eval.max_new_tokens, train.seq_len, train.device,
// train.dtype and the budgets train.vram / train.ram. Output:
// <work_dir>/eval/{report.json, report.md, loss_curve.svg} (the curve from
// the train stage's metrics.jsonl). Reports
// PROGRESS as permille of the whole evaluation (loss and generation, base
// then tuned), stops on CANCEL or SIGTERM between two batches. DONE's result
// holds each model's eval loss and adherence and a one-line summary.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/data/eval_report.h"
#include "common/base/attempt_publish.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/evaluator.h"
#include "worker/stage_options.h"
#include "worker/stage_runner.h"

namespace lema::worker {

namespace {

nlohmann::json model_result(const EvalModelResult& m) {
  return {{"eval_loss", m.eval_loss}, {"perplexity", m.perplexity()}, {"eval_tokens", m.eval_tokens},
          {"adherence", m.adherence()}, {"valid", m.valid}, {"total", m.total}};
}

// "adherence base 2/20 (10%) -> tuned 18/20 (90%); eval loss 2.3101 -> 1.0512"
std::string summary_line(const EvalReport& report) {
  std::string adherence = "adherence", loss = "eval loss";
  for (size_t i = 0; i < report.models.size(); ++i) {
    const EvalModelResult& m = report.models[i];
    const char* sep = i == 0 ? " " : " -> ";
    adherence += str_printf("%s%s %lld/%lld (%.0f%%)", sep, m.name.c_str(), static_cast<long long>(m.valid),
                            static_cast<long long>(m.total), 100.0 * m.adherence());
    loss += str_printf("%s%.4f", sep, m.eval_loss);
  }
  return adherence + "; " + loss;
}

}  // namespace

StageOutcome run_eval_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                            StageReporter& reporter) {
  Result<JobSpec> spec = assignment_spec(a);
  if (!spec.ok()) return {spec.status(), "{}", false};
  engine::EvalOptions o = eval_options(spec.value(), work_dir, env);

  if (!path_exists(o.data)) {
    if (path_exists(path_join(job_data_dir(work_dir), "train.jsonl"))) {
      // The dataset stage copies a pre-tokenized data.jsonl as train.jsonl
      // only: there are no questions to ask.
      return {Status::invalid_argument("the dataset stage wrote no eval.jsonl (data.jsonl is pre-tokenized: no text "
                                       "to evaluate on); set eval.enabled = false in the job spec"),
              "{}", false};
    }
    return {Status::not_found("eval data " + o.data + " (the dataset stage's output) is not visible on this worker"),
            "{}", true};
  }
  Result<std::string> eval_text = read_file(o.data);
  if (eval_text.ok() && eval_text->find_first_not_of(" \t\r\n") == std::string::npos) {
    return {Status::invalid_argument("the dataset stage wrote an empty " + o.data +
                                     " (too few examples for data.eval_fraction); raise data.eval_fraction or "
                                     "data.examples, or set eval.enabled = false"),
            "{}", false};
  }
  if (!path_exists(path_join(o.adapter, "adapter_model.safetensors"))) {
    // The train stage succeeded, so its adapter exists somewhere: the shared
    // directory is missing on this machine; another worker may see it.
    return {Status::not_found("adapter " + o.adapter + " (the train stage's output) is not visible on this worker"),
            "{}", true};
  }
  if (!path_exists(o.metrics)) {
    reporter.log("warn", "no " + o.metrics + ": the report has no loss curve");
    o.metrics.clear();
  }

  // Four phases (loss and generation for base, then tuned); with no
  // questions there is no generation phase.
  const int64_t phases_per_model = o.questions > 0 ? 2 : 1;
  const int64_t phases = 2 * phases_per_model;
  bool cancelled = false, stopped = false;
  int64_t last_permille = 0;
  std::string last_phase;
  o.on_progress = [&](const std::string& phase, const std::string& model, int64_t done, int64_t total) -> Status {
    const std::string name = model + " " + phase;
    if (name != last_phase) {
      reporter.log("info", str_printf("eval %s: %lld %s", name.c_str(), static_cast<long long>(total),
                                      phase == "loss" ? "examples" : "replies"));
      last_phase = name;
    }
    const int64_t index = (model == "base" ? 0 : phases_per_model) + (phase == "generate" ? 1 : 0);
    const double fraction = (index + static_cast<double>(done) / std::max<int64_t>(1, total)) / phases;
    const int64_t permille = std::min<int64_t>(1000, static_cast<int64_t>(fraction * 1000));
    if (permille != last_permille) {
      reporter.progress(permille, 1000, "{}");
      last_permille = permille;
    }
    if (reporter.cancel_requested()) {
      cancelled = true;
      return Status::cancelled("eval cancelled");
    }
    if (env.stop && env.stop->load()) {
      stopped = true;
      return Status::cancelled("worker stopping during the eval");
    }
    return Status();
  };
  reporter.log("info", str_printf("evaluating %s and %s + %s on %s: %lld questions, at most %lld new tokens, "
                                  "seq_len %lld, on %s -> %s",
                                  o.model.c_str(), o.model.c_str(), o.adapter.c_str(), o.data.c_str(),
                                  static_cast<long long>(o.questions), static_cast<long long>(o.max_new_tokens),
                                  static_cast<long long>(o.seq_len), o.device.c_str(), o.out.c_str()));
  reporter.progress(0, 1000, "{}");
  Result<AttemptFence> fence = AttemptFence::claim(work_dir, a.kind, a.attempt);
  if (!fence.ok()) return {fence.status(), "{}", false};
  // The report is written under the attempt's temp name, published whole.
  const std::string final_dir = o.out;
  o.out = fence->temp_path(final_dir);
  if (Status s = remove_all(o.out); !s.ok()) return {s, "{}", true};
  Result<EvalReport> report = engine::run_eval(o);
  if (report.ok()) {
    if (std::optional<StageOutcome> fenced = fenced_outcome(reporter, env)) {
      (void)remove_all(o.out);
      return *fenced;
    }
    if (Status s = fence->publish_dir(o.out, final_dir); !s.ok()) return {s, "{}", is_retryable(s)};
  } else {
    (void)remove_all(o.out);  // a partial report is no output
  }
  o.out = final_dir;
  // An evaluation stopped early has written nothing; run again from the start.
  if (stopped) return {report.status(), "{}", true, true};
  if (cancelled) return {report.status(), "{}", false};
  if (!report.ok()) return {report.status(), "{}", is_retryable(report.status())};

  const std::string summary = summary_line(report.value());
  reporter.log("info", summary);
  nlohmann::json result = {{"dir", o.out},
                           {"report", path_join(o.out, "report.json")},
                           {"questions", o.questions},
                           {"summary", summary}};
  if (!report->loss_curve.empty()) result["loss_curve"] = path_join(o.out, report->loss_curve);
  for (const EvalModelResult& m : report->models) result[m.name] = model_result(m);
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
