// StageProcess: one stage run in a child process of the worker, so that a
// crash, an abort or an OOM kill of the stage ends the stage, not the worker
// (issue 19; docs/WORKER.md, "The stage child").
//
// spawn() forks and execs the child's command (the worker passes
// /proc/self/exe stage-child: exec, not fork alone, because LibTorch's and
// the session's threads do not survive a fork) with one end of a socketpair
// as fd 3 (StageChannel frames), stdout and stderr on a pipe, in a process
// group of its own (a CANCEL reaches everything the stage started), and
// PR_SET_PDEATHSIG SIGKILL (a worker killed with -9 leaves no stage writing).
// The death signal is tied to the thread that forked: spawn from a thread
// that outlives the child (the worker's main loop).
//
// run_stage_in_child() is the supervision: start frame, then the child's
// frames become the reporter's calls (PROGRESS, LOG, CHECKPOINT, lease
// questions) while the worker's session keeps heartbeating on its own
// thread; CANCEL and the worker's SIGTERM end the child within bounded
// times; a child that dies without a result is a crash.
//
// Thread-safety: a StageProcess has one owner; run_stage_in_child runs on
// the caller's thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "worker/stage_channel.h"
#include "worker/stage_runner.h"

namespace lema::worker {

// The child must have taken the start frame this long after it was sent
// (exec and LibTorch's loading take about 1 s of CPU; a loaded machine
// many times that, when the child was not started ahead).
constexpr int kStageStartTimeoutMs = 60000;
// CANCEL: SIGTERM to the child's group, SIGKILL this long after. The child
// stops within one step on SIGTERM, so this is the time of one step on a
// slow machine, not of a checkpoint.
constexpr int kStageKillGraceMs = 5000;
// The worker's SIGTERM: a stop frame, after which the child writes a
// checkpoint and ends; past this, the CANCEL sequence above.
constexpr int kStageShutdownGraceMs = 120000;
// A child that sent its result and does not exit within this is killed
// (its result stands).
constexpr int kStageExitGraceMs = 5000;
// How many of the child's last log lines a crash report carries.
constexpr size_t kStageCrashLogLines = 20;

class StageProcess {
 public:
  // REQUIRES: argv non-empty (argv[0] the executable's path).
  static Result<std::unique_ptr<StageProcess>> spawn(const std::vector<std::string>& argv);
  // Kills the group (SIGKILL) and reaps a child still there.
  ~StageProcess();
  StageProcess(const StageProcess&) = delete;
  StageProcess& operator=(const StageProcess&) = delete;

  pid_t pid() const { return pid_; }
  StageChannel& channel() { return *channel_; }
  // The child's stdout and stderr (non-blocking; -1 once drained).
  int output_fd() const { return output_fd_; }
  // Appends what the child wrote since the last call, whole lines only
  // (the rest at end of stream); false once the pipe is closed and empty.
  bool read_output(std::vector<std::string>* lines);

  // Signals every process of the child's group.
  void signal_group(int sig);
  // The child's wait status once it has ended (reaped, after SIGKILL to its
  // group so no process of the stage outlives it), else nullopt.
  std::optional<int> try_wait();

 private:
  StageProcess() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::unique_ptr<StageChannel> channel_;
  int output_fd_ = -1;
  std::string output_partial_;
};

// "signal 6 (SIGABRT)" or "exit status 1", from a wait status.
std::string describe_wait_status(int status);

// Runs `a` in a child started with `argv` (the worker: /proc/self/exe
// stage-child) and returns its outcome: the child's result, or for a child
// that died without one `crashed` with "crashed: signal 6 (SIGABRT)" (or
// the exit status, or the garbled frame) and its last kStageCrashLogLines
// log lines. CANCEL (reporter.cancel_requested()) and `env.stop` end the
// child as described above; those ends are not crashes.
StageOutcome run_stage_in_child(const StageAssignment& a, const StageEnv& env, StageReporter& reporter,
                                const std::vector<std::string>& argv);
// The same in a child spawned before (the worker starts the next stage's
// child while it waits for an ASSIGN, so LibTorch's loading, about 1 s of
// CPU, is not on the stage's path). REQUIRES: `child` has not been sent a
// start frame.
StageOutcome run_stage_in_child(const StageAssignment& a, const StageEnv& env, StageReporter& reporter,
                                std::unique_ptr<StageProcess> child);

}  // namespace lema::worker
