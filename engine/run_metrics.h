// A run's metrics.jsonl: one JSON line per optimizer step done, written by
// the trainer alone through this class.
//
// Each line carries the step, the step's figures and, in a job, the stage
// id and attempt that trained it. Opening the file for a run that starts at
// step S (0 for a fresh run, the checkpoint's step on a resume) rewrites it
// atomically keeping, for steps 1..S, one line per step: the line of the
// newest attempt not newer than the attempt that wrote the checkpoint (the
// accepted one: a line of an attempt the scheduler gave up on, or of steps
// redone after the checkpoint, goes); torn and unparsable lines go too.
// Every write goes through the run's AttemptFence, so an attempt that has
// been superseded writes no line.
//
// Not thread-safe; one RunMetrics per run.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/base/attempt_publish.h"
#include "common/base/status.h"

namespace lema::engine {

class RunMetrics {
 public:
  // `path`: <out>/metrics.jsonl; `fence`: the run directory's; resume_step
  // S and resume_attempt (the ATTEMPT of the checkpoint resumed from; 0:
  // none recorded, then every attempt's line counts) as above.
  static Result<RunMetrics> open(const std::string& path, const AttemptFence& fence, int64_t stage_id,
                                 int64_t resume_step, int64_t resume_attempt);

  // Appends `fields` (an object holding "step") with stage_id and attempt.
  Status append(nlohmann::json fields) const;

  const std::string& path() const { return path_; }

 private:
  RunMetrics(std::string path, AttemptFence fence, int64_t stage_id)
      : path_(std::move(path)), fence_(std::move(fence)), stage_id_(stage_id) {}

  std::string path_;
  AttemptFence fence_;
  int64_t stage_id_ = 0;
};

}  // namespace lema::engine
