// The train stage: engine::run_training, the code of `lema train`, on the
// dataset stage's <work_dir>/data/train.jsonl (text examples tokenized with
// the job's tokenizer, or pre-tokenized lines), with an observer that streams
// PROGRESS and CHECKPOINT, stops on CANCEL within one step, and on SIGTERM
// checkpoints before it stops.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/sha256.h"
#include "engine/trainer.h"
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

  Status on_checkpoint(int64_t step, const std::string& dir) override {
    // The digest covers the file that resuming trusts most: the LoRA weights.
    Result<std::string> bytes = read_file(path_join(dir, "adapter_model.safetensors"));
    std::string digest = bytes.ok() ? sha256_hex(bytes.value()) : std::string();
    reporter_.checkpoint(step, dir, digest);
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
  o.resume = a.resume_checkpoint;
  if (!o.resume.empty() && !path_exists(o.resume)) {
    // The checkpoint the scheduler recorded is not visible here: the shared
    // directory is missing on this machine; another worker may see it.
    return {Status::not_found("checkpoint " + o.resume + " named in ASSIGN is not visible on this worker"), "{}",
            true};
  }
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
