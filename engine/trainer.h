// `lema train`: a whole LoRA training run on one device. Trainer::run sets
// up (model, data, adapter, optimizer, resume), prints the effective
// config, then loops step -> log -> maybe-checkpoint; step() is the
// layer-wise forward/backward (train_step.h), clipping and AdamW.
//
// Owns the model source, adapter, optimizer and data loader. Not thread-safe.
#pragma once

#include <memory>
#include <string>

#include "common/base/status.h"
#include "engine/train_options.h"

namespace lema::engine {

struct StepReport {
  int64_t step = 0;  // 1-based, after the update
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double tokens_per_s = 0.0;  // input tokens (padding included) per second
  int64_t input_tokens = 0;   // of this step, padding included (bench/packing_bench.sh)
  double step_s = 0.0;        // wall time of this step
  uint64_t memory_bytes = 0;  // peak device memory (CUDA) or peak RSS (CPU)
};

// Observer for the worker: called after every step and every checkpoint.
// Returning a non-OK status stops the run (cancellation).
class TrainObserver {
 public:
  virtual ~TrainObserver() = default;
  virtual Status on_step(const StepReport& report) { return Status(); }
  virtual Status on_checkpoint(int64_t step, const std::string& dir) { return Status(); }
  // Asked after on_step stopped the run: true writes a checkpoint of the
  // step just done before returning (the worker on SIGTERM).
  virtual bool checkpoint_before_stop() const { return false; }
  // Asked before every write the run makes to its directory (a metrics
  // line, a checkpoint, the output): non-OK stops the run without writing.
  // A worker blocks here while it cannot show that it still holds the
  // stage's lease (self-fencing, issue 19 F2).
  virtual Status before_write() { return Status(); }
};

// Runs training as `options` says; observer may be null.
Status run_training(const TrainOptions& options, TrainObserver* observer = nullptr);

}  // namespace lema::engine
