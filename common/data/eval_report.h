// The evaluation report: base vs tuned (or any list of models) on one eval
// set. `lema eval` (engine side) fills EvalModelResult; this file turns it
// into report.json, report.md and a loss-curve SVG. No LibTorch.
//
// Plain data and free functions; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

struct EvalSample {
  std::string question;
  std::string category;
  std::string output;  // the generated reply text
  std::string reason;  // reply_error_name(): "ok" or the failure
};

struct CategoryScore {
  int64_t valid = 0;
  int64_t total = 0;
};

struct EvalModelResult {
  std::string name;           // "base", "tuned"
  std::string adapter;        // adapter dir, "" for the base
  double eval_loss = 0;       // mean token cross-entropy on reply tokens (nats)
  int64_t eval_tokens = 0;    // tokens the loss averaged over
  int64_t valid = 0;          // replies the strict validator accepts
  int64_t total = 0;          // replies generated
  std::map<std::string, int64_t> failures_by_reason;  // reply_error_name -> count
  std::map<std::string, CategoryScore> by_category;
  std::vector<EvalSample> samples;  // a few outputs to show

  double perplexity() const;  // exp(eval_loss)
  double adherence() const;   // valid / total, 0 when total == 0
};

struct EvalReport {
  std::string data_path;  // eval.jsonl
  std::string model;      // base model path
  std::vector<EvalModelResult> models;  // usually base then tuned
  int max_samples_in_md = 5;            // example outputs per model in report.md
  std::string loss_curve;               // SVG file name next to report.md ("" = none)
};

std::string eval_report_json(const EvalReport& report);
// A Markdown page: a table with one column per model (loss, perplexity,
// adherence), failures by reason, adherence by category, sample outputs.
std::string eval_report_markdown(const EvalReport& report);
// The part of eval_report_markdown before the sample outputs: the model
// table, failures by reason, adherence by category (what `lema eval` prints).
std::string eval_report_summary_markdown(const EvalReport& report);
// Writes DIR/report.json and DIR/report.md (atomic; creates DIR).
Status write_eval_report(const EvalReport& report, const std::string& dir);

struct MetricPoint {
  int64_t step = 0;
  double loss = 0;
};
// Reads a run's metrics.jsonl: one JSON object a line; lines with numeric
// "step" and "loss" become points (other lines, e.g. eval or lr-only
// records, are skipped). Bad JSON fails with file:line.
Result<std::vector<MetricPoint>> read_metrics_jsonl(const std::string& path);
// A self-contained SVG line chart of loss against step, with axes, ticks
// and the title. REQUIRES nothing: an empty list gives a chart saying so.
std::string render_loss_svg(const std::vector<MetricPoint>& points, const std::string& title);

}  // namespace lema
