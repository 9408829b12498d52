// Stage runners: what a worker does with an ASSIGN. Each kind of stage calls
// the same library code as its standalone command (`lema dataset build`,
// `lema train`, `lema eval`, `lema merge`), so a job run through the
// scheduler and a run by hand give the same bytes.
//
// Job directory layout (docs/WORKER.md): <work_dir>/data/{train,eval}.jsonl,
// <work_dir>/train/{checkpoints/step-N,adapter,metrics.jsonl},
// <work_dir>/eval/{report.json,report.md,loss_curve.svg},
// <work_dir>/merged/ (HF directory). A stage finds its upstream's output
// with the job_*_dir functions below.
//
// Thread-safety: run_stage runs on the caller's thread; the reporter must be
// thread-safe (the session is).
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "worker/worker_session.h"

namespace lema::worker {

// Where a runner sends its reports; implemented by the worker over its session.
class StageReporter {
 public:
  virtual ~StageReporter() = default;
  virtual void progress(int64_t step, int64_t total_steps, const std::string& metrics_json) = 0;
  virtual void log(const std::string& level, const std::string& line) = 0;
  virtual void checkpoint(int64_t step, const std::string& path, const std::string& sha256) = 0;
  // CANCEL from the scheduler (or the stage was fenced): stop within a step.
  virtual bool cancel_requested() const = 0;
  // Before each write of a stage: blocks while this worker cannot show that
  // it holds the lease; non-OK means stop without writing
  // (WorkerSession::wait_for_lease). `stop`: SIGTERM.
  virtual Status wait_for_lease(const std::atomic<bool>* stop) { return Status(); }
};

struct StageEnv {
  std::string device = "cpu";    // "cpu" or "cuda:N"
  std::string base_dir;          // a relative work_dir is resolved against it
  // --allow-path roots: where absolute paths of a spec may point
  // (confine_assignment; docs/SECURITY.md).
  std::vector<std::string> allowed_roots;
  int64_t threads = 0;           // CPU threads for training; 0: all cores
  // SIGTERM/Ctrl-C: the train runner checkpoints, then the stage returns kCancelled.
  const std::atomic<bool>* stop = nullptr;
};

struct StageOutcome {
  Status status;
  std::string result_json = "{}";  // DONE's result
  bool retryable = true;           // for FAILED
  bool stopped = false;            // ended by `stop` (not a failure of the stage)
  // The stage's process died without a result (signal, exit, garbled
  // frame: stage_process.h); the scheduler counts these against
  // [retry] max_crashes.
  bool crashed = false;
};

StageOutcome run_stage(const StageAssignment& assignment, const StageEnv& env, StageReporter& reporter);

// The assignment as the scheduler sent it, confined to this worker's roots:
// work_dir inside env.base_dir (relative) or an allowed root (absolute), the
// same for model.path, model.tokenizer and data.jsonl, all after symlinks;
// the result carries the resolved paths. kInvalidArgument says which path
// and why. The worker loop calls it on every ASSIGN, before run_stage.
Result<StageAssignment> confine_assignment(const StageAssignment& assignment, const StageEnv& env);

// The stage kinds run_stage runs (any other kind fails as unknown), in
// pipeline order; `lema worker --stages` prints them.
std::vector<std::string> stage_kinds();

// The job's directory for an assignment (absolute, or relative to base_dir).
std::string resolve_work_dir(const std::string& work_dir, const std::string& base_dir);

// Where each stage writes in the (resolved) job directory.
std::string job_data_dir(const std::string& work_dir);     // dataset: train.jsonl, eval.jsonl
std::string job_train_dir(const std::string& work_dir);    // train: checkpoints/, adapter/, metrics.jsonl
std::string job_adapter_dir(const std::string& work_dir);  // train's final PEFT adapter
std::string job_eval_dir(const std::string& work_dir);     // eval: report.json, report.md, loss_curve.svg
std::string job_merged_dir(const std::string& work_dir);   // merge: HF directory
// export: <work_dir>/model.<type>.gguf (type: the spec's [export] gguf)
std::string job_gguf_path(const std::string& work_dir, const std::string& type);

// The engine device for a stage from the spec's train.device ("auto",
// "cpu", "cuda", "cuda:N") and this worker's device: "auto" is this
// worker's device; "cuda" on a GPU worker is its GPU; the rest as given.
std::string stage_device(const std::string& spec_device, const StageEnv& env);

// Whether a failed stage may succeed on another attempt: bad input
// (kInvalidArgument, kUnsupported, kCorruption) fails again anywhere; I/O,
// device errors and files not visible on this worker may not.
bool is_retryable(const Status& status);

// Self-fencing before a stage's first write and before it publishes its
// output (issue 19): asks reporter.wait_for_lease and returns the outcome
// to end the stage with when the lease cannot be shown (kCancelled; with
// `stopped` when env.stop ended the wait), or nullopt to go on. A stage
// that published while its lease was gone would end "done" a second time
// after the attempt that took over (chaos: a dataset stage read from a
// stale ASSIGN after SIGCONT did).
std::optional<StageOutcome> fenced_outcome(StageReporter& reporter, const StageEnv& env);

// Per-kind runners (stage_<kind>.cpp), all of this type; run_stage picks one
// by kind from its table. `work_dir` is resolved and exists.
using StageRunner = StageOutcome (*)(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                                     StageReporter& reporter);
StageOutcome run_dataset_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                               StageReporter& reporter);
StageOutcome run_train_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                             StageReporter& reporter);
StageOutcome run_eval_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                            StageReporter& reporter);
StageOutcome run_merge_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                             StageReporter& reporter);
StageOutcome run_export_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                              StageReporter& reporter);

}  // namespace lema::worker
