// The stage child: the process that runs one stage for `lema worker`
// (`lema stage-child`, exec'd by StageProcess::spawn; docs/WORKER.md, "The
// stage child"). It reads the start frame from fd 3, runs run_stage with a
// reporter that turns every report into a frame, answers the worker's stop
// frame (checkpoint, then stop) and SIGTERM (stop within a step, no
// checkpoint: CANCEL), sends the result frame and exits 0.
//
// Frames (StageChannel), worker -> child:
//   {"type":"start","assignment":{...},"env":{...}}   first, once
//   {"type":"stop"}                                    the worker's SIGTERM
//   {"type":"lease","status":{code,message}}          answer to a lease question
// child -> worker:
//   {"type":"progress","step","total_steps","metrics"}
//   {"type":"log","level","line"}
//   {"type":"checkpoint","step","path","sha256"}
//   {"type":"lease"}                                   may I write? (wait_for_lease)
//   {"type":"result","status":{code,message},"result_json","retryable","stopped"}
//
// Thread-safety: run_stage_child owns the process (signal handlers, a
// reader thread); call it once, from main.
#pragma once

#include <nlohmann/json.hpp>

#include "common/base/status.h"
#include "worker/stage_runner.h"

namespace lema::worker {

// The test hook of tests/integration/stage_crash_test.cpp, read only by the
// stage child: "<job name>/<stage kind>" makes the child of that stage
// abort() at its first PROGRESS report (a crash with log lines before it).
constexpr const char* kStageCrashTestEnv = "LEMA_TEST_STAGE_CHILD_ABORT";

// The start frame and back (what a child needs: the confined assignment and
// the worker's environment; `env.stop` is not carried). Errors name the field.
nlohmann::json stage_start_frame(const StageAssignment& a, const StageEnv& env);
Status parse_stage_start_frame(const nlohmann::json& frame, StageAssignment* a, StageEnv* env);

// The child's main over the channel on `fd`; returns the exit code (0 once
// a result was sent, 1 when none could be: the worker then reports a crash).
int run_stage_child(int fd);

}  // namespace lema::worker
