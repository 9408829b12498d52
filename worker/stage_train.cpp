// The train stage: engine::run_training, the code of `lema train`, on the
// dataset stage's <work_dir>/data/train.jsonl (text examples tokenized with
// the job's tokenizer, or pre-tokenized lines), with an observer that streams
// PROGRESS and CHECKPOINT, stops on CANCEL within one step, and on SIGTERM
// checkpoints before it stops.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/trainer.h"
#include "worker/checkpoint_digest.h"
#include "worker/stage_options.h"
#include "worker/stage_runner.h"

namespace lema::worker {

namespace {

class StageObserver : public engine::TrainObserver {
 public:
  StageObserver(StageReporter& reporter, const std::atomic<bool>* stop, int64_t total_steps)
      : reporter_(reporter), stop_(stop), total_steps_(total_steps) {}

  Status on_step(const engine::StepReport& r) override {
    nlohmann::json m = {{"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                        {"tokens_per_s", r.tokens_per_s}, {"memory_bytes", r.memory_bytes}};
    reporter_.progress(r.step, total_steps_, m.dump());
    if (reporter_.cancel_requested()) {
      cancelled_ = true;
      return Status::cancelled(str_printf("cancelled at step %lld", static_cast<long long>(r.step)));
    }
    if (stop_ && stop_->load()) {
      stopped_ = true;
      return Status::cancelled(str_printf("worker stopping at step %lld", static_cast<long long>(r.step)));
    }
    return Status();
  }
  // SIGTERM: write a checkpoint of the step just done before stopping.
  bool checkpoint_before_stop() const override { return stopped_; }
  // Self-fencing: no write while the lease cannot be shown to be ours.
  Status before_write() override {
    Status s = reporter_.wait_for_lease(stop_);
    if (!s.ok() && !(stop_ && stop_->load())) cancelled_ = true;
    return s;
  }

  Status on_checkpoint(int64_t step, const std::string& dir) override {
    // Every file of the checkpoint: a resume verifies them all.
    Result<std::string> digest = checkpoint_digest(dir);
    if (!digest.ok()) return digest.status().with_context("checkpoint digest");
    reporter_.checkpoint(step, dir, digest.value());
    return Status();
  }

  bool cancelled() const { return cancelled_; }
  bool stopped() const { return stopped_; }

 private:
  StageReporter& reporter_;
  const std::atomic<bool>* stop_;
  int64_t total_steps_;
  bool cancelled_ = false;
  bool stopped_ = false;
};

// The newest intact checkpoint of those the scheduler recorded (newest
// first), or "" to start over. A broken one (missing, unfinished, or not the
// recorded digest) is named in the job's events and, when present, renamed
// aside (step-N.broken-aA): never deleted, and out of the way of the run's
// own step-N, which save_checkpoint would otherwise replace.
std::string choose_resume(const StageAssignment& a, StageReporter& reporter) {
  std::vector<ResumeCandidate> candidates = a.resume_candidates;
  if (candidates.empty() && !a.resume_checkpoint.empty()) candidates.push_back({a.resume_checkpoint, "", 0});
  for (size_t i = 0; i < candidates.size(); ++i) {
    const ResumeCandidate& c = candidates[i];
    Status ok = verify_checkpoint(c.path, c.sha256);
    if (ok.ok()) {
      if (i > 0) reporter.log("warn", "falling back to " + c.path + ", the newest intact checkpoint");
      return c.path;
    }
    std::string line = "checkpoint broken: " + ok.message();
    if (path_exists(c.path)) {
      const std::string aside = c.path + ".broken-a" + std::to_string(a.attempt);
      if (std::rename(c.path.c_str(), aside.c_str()) == 0) line += "; kept as " + aside;
      else line += "; could not move it aside: " + std::string(std::strerror(errno));
    }
    reporter.log("warn", line);
  }
  if (!candidates.empty()) reporter.log("warn", "no intact checkpoint: training starts over");
  return "";
}

int64_t count_lines(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text.ok()) return 0;
  int64_t n = 0;
  for (char c : text.value()) n += c == '\n';
  return n;
}

}  // namespace

StageOutcome run_train_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                             StageReporter& reporter) {
  Result<JobSpec> spec = assignment_spec(a);
  if (!spec.ok()) return {spec.status(), "{}", false};
  engine::TrainOptions o = train_options(spec.value(), work_dir, env);
  o.resume = choose_resume(a, reporter);
  o.attempt = a.attempt;
  o.stage_id = a.stage_id;
  const int64_t total = o.steps > 0 ? o.steps
                                    : static_cast<int64_t>(std::ceil(o.epochs * count_lines(o.data) /
                                                                     std::max<int64_t>(1, o.batch)));
  if (!o.resume.empty()) reporter.log("info", "resuming from " + o.resume);
  StageObserver observer(reporter, env.stop, total);
  Status s = engine::run_training(o, &observer);
  if (observer.stopped()) return {Status::cancelled(s.message()), "{}", true, true};
  if (observer.cancelled()) return {s, "{}", false};
  if (!s.ok()) return {s, "{}", is_retryable(s)};
  nlohmann::json result = {{"adapter", job_adapter_dir(work_dir)}, {"steps", total}};
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
