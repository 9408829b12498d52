#include "worker/stage_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "worker/stage_child.h"

namespace lema::worker {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return str_printf("signal %d (SIG%s)", sig, abbrev ? abbrev : "?");
  }
  if (WIFEXITED(status)) return str_printf("exit status %d", WEXITSTATUS(status));
  return str_printf("wait status %d", status);
}

Result<std::unique_ptr<StageProcess>> StageProcess::spawn(const std::vector<std::string>& argv) {
  LEMA_CHECK(!argv.empty());
  int sv[2];
  // CLOEXEC on both ends: the child gets its end as fd 3 through dup2 (which
  // clears the flag), and no other process the worker starts inherits one.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return status_from_errno("socketpair", errno);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    const int err = errno;
    close(sv[0]);
    close(sv[1]);
    return status_from_errno("pipe", err);
  }
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls (the worker has threads).
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (std::string& s : args) cargv.push_back(s.data());
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    for (int fd : {sv[0], sv[1], out[0], out[1]}) close(fd);
    return status_from_errno("fork", err);
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the worker died before prctl
    dup2(out[1], 1);
    dup2(out[1], 2);
    dup2(sv[1], 3);
    // The worker ignores nothing the stage needs, but a SIGPIPE/SIGTERM
    // disposition set to ignore would be inherited through exec.
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  // Both sides set the group: whichever runs first, signals sent to it
  // reach the child from the start.
  setpgid(pid, pid);
  close(sv[1]);
  close(out[1]);
  std::unique_ptr<StageProcess> p(new StageProcess());
  p->pid_ = pid;
  p->channel_ = std::make_unique<StageChannel>(sv[0]);
  p->output_fd_ = out[0];
  fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
  return p;
}

StageProcess::~StageProcess() {
  if (pid_ > 0 && !reaped_) {
    signal_group(SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (output_fd_ >= 0) close(output_fd_);
}

bool StageProcess::read_output(std::vector<std::string>* lines) {
  if (output_fd_ < 0) return false;
  char buf[8192];
  bool open = true;
  for (;;) {
    ssize_t n = ::read(output_fd_, buf, sizeof(buf));
    if (n > 0) {
      output_partial_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    open = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    break;
  }
  size_t start = 0;
  for (size_t nl; (nl = output_partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines->push_back(output_partial_.substr(start, nl - start));
  }
  output_partial_.erase(0, start);
  if (!open) {
    if (!output_partial_.empty()) lines->push_back(output_partial_);
    output_partial_.clear();
    close(output_fd_);
    output_fd_ = -1;
  }
  return open;
}

void StageProcess::signal_group(int sig) {
  // The group is the child's pid until it is reaped (a zombie keeps it).
  if (pid_ > 0 && !reaped_) kill(-pid_, sig);
}

std::optional<int> StageProcess::try_wait() {
  if (reaped_) return std::nullopt;
  siginfo_t info = {};
  // WNOWAIT first: the zombie keeps the group id ours while the rest of the
  // group is killed, so the SIGKILL cannot reach a process that reused it.
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  kill(-pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  return status;
}

namespace {

// The supervision of one child, its state and timers in one place.
class Supervisor {
 public:
  Supervisor(StageProcess& p, const StageEnv& env, StageReporter& reporter)
      : p_(p), env_(env), reporter_(reporter), started_(Clock::now()) {}

  StageOutcome run(const json& start_frame) {
    if (Status s = p_.channel().send(start_frame, kStageStartTimeoutMs); !s.ok()) {
      broken_ = "the start frame was not taken: " + s.message();
      p_.signal_group(SIGKILL);
    }
    std::optional<int> status;
    while (!(status = p_.try_wait())) {
      // A closed channel or pipe polls readable for ever: left out (-1).
      const bool frames = broken_.empty() && !channel_closed_;
      pollfd fds[2] = {{frames ? p_.channel().fd() : -1, POLLIN, 0}, {p_.output_fd(), POLLIN, 0}};
      poll(fds, 2, 100);
      drain_output();
      if (broken_.empty() && !channel_closed_) read_frames();
      enforce_deadlines();
    }
    // What the child wrote before it ended, and a result frame sent just
    // before: both may still be buffered.
    drain_output();
    if (broken_.empty() && !channel_closed_) read_frames();
    return outcome(*status);
  }

 private:
  void note_line(const std::string& line) {
    lines_.push_back(line);
    if (lines_.size() > kStageCrashLogLines) lines_.pop_front();
  }

  void drain_output() {
    std::vector<std::string> lines;
    p_.read_output(&lines);
    for (const std::string& line : lines) {
      // The child's own log lines (the engine's, LibTorch's warnings, an
      // internal check's message) go to the worker's log as they are.
      std::fprintf(stderr, "%s\n", line.c_str());
      note_line(line);
    }
  }

  void read_frames() {
    for (;;) {
      Result<std::optional<json>> f = p_.channel().receive(0);
      if (!f.ok()) {
        if (f.status().code() == Status::Code::kUnavailable) {
          channel_closed_ = true;  // the child closed or ended: try_wait says how
          // One that closed its channel but does not end (stuck in exit) is
          // ended, as one that sent its result.
          if (!exit_deadline_) exit_deadline_ = Clock::now() + std::chrono::milliseconds(kStageExitGraceMs);
        } else {
          broken_ = f.status().message();
          p_.signal_group(SIGKILL);
        }
        return;
      }
      if (!f.value()) return;
      if (Status s = handle(*f.value()); !s.ok()) {
        broken_ = s.message();
        p_.signal_group(SIGKILL);
        return;
      }
    }
  }

  Status handle(const json& frame) {
    if (!first_frame_) {
      first_frame_ = true;
      // What a stage waits for its process: ~0 when it was started ahead.
      log_info("stage child pid %d: first frame %lld ms after the start frame", static_cast<int>(p_.pid()),
               static_cast<long long>(ms_since(started_)));
    }
    const std::string type = frame["type"].get<std::string>();
    auto str = [&](const char* k) {
      return frame.contains(k) && frame[k].is_string() ? frame[k].get<std::string>() : "";
    };
    auto i64 = [&](const char* k) -> int64_t {
      return frame.contains(k) && frame[k].is_number_integer() ? frame[k].get<int64_t>() : 0;
    };
    if (type == "progress") {
      reporter_.progress(i64("step"), i64("total_steps"),
                         frame.contains("metrics") ? frame["metrics"].dump() : std::string("{}"));
    } else if (type == "log") {
      note_line(str("line"));
      reporter_.log(str("level"), str("line"));
    } else if (type == "checkpoint") {
      reporter_.checkpoint(i64("step"), str("path"), str("sha256"));
    } else if (type == "lease") {
      // The child waits for this answer; the session's own thread keeps
      // the heartbeats going meanwhile.
      Status lease = reporter_.wait_for_lease(env_.stop);
      LEMA_RETURN_IF_ERROR(p_.channel()
                               .send({{"type", "lease"}, {"status", status_to_frame(lease)}}, 5000)
                               .with_context("answering the stage process"));
    } else if (type == "result") {
      Status s;
      LEMA_RETURN_IF_ERROR(status_from_frame(frame.value("status", json()), &s));
      result_ =
          StageOutcome{s, str("result_json"), frame.value("retryable", true), frame.value("stopped", false)};
      if (result_->result_json.empty()) result_->result_json = "{}";
      exit_deadline_ = Clock::now() + std::chrono::milliseconds(kStageExitGraceMs);
    } else {
      return Status::corruption("stage channel: garbled frame (unknown type '" + type + "')");
    }
    return Status();
  }

  void enforce_deadlines() {
    const auto now = Clock::now();
    if (!term_deadline_ && !kill_deadline_ && reporter_.cancel_requested()) {
      log_info("stage child pid %d: CANCEL, SIGTERM to its group", static_cast<int>(p_.pid()));
      cancelled_ = true;
      p_.signal_group(SIGTERM);
      kill_deadline_ = now + std::chrono::milliseconds(kStageKillGraceMs);
    }
    if (!stop_sent_ && env_.stop && env_.stop->load()) {
      stop_sent_ = true;
      if (!p_.channel().send({{"type", "stop"}}, 1000).ok())
        log_warn("stage child: the stop frame was not taken");
      term_deadline_ = now + std::chrono::milliseconds(kStageShutdownGraceMs);
    }
    if (term_deadline_ && now >= *term_deadline_ && !kill_deadline_) {
      log_warn("stage child pid %d: no end %d s after the stop frame, SIGTERM to its group",
               static_cast<int>(p_.pid()), kStageShutdownGraceMs / 1000);
      p_.signal_group(SIGTERM);
      kill_deadline_ = now + std::chrono::milliseconds(kStageKillGraceMs);
    }
    const bool kill_due =
        (kill_deadline_ && now >= *kill_deadline_) || (exit_deadline_ && now >= *exit_deadline_);
    if (kill_due && !killed_) {
      log_warn("stage child pid %d: still there, SIGKILL to its group", static_cast<int>(p_.pid()));
      killed_ = true;
      p_.signal_group(SIGKILL);
    }
  }

  StageOutcome outcome(int status) {
    if (result_ && broken_.empty()) return *result_;
    if (cancelled_)
      return {Status::cancelled("cancelled: stage process ended (" + describe_wait_status(status) + ")"),
              "{}", false};
    if (stop_sent_) {
      return {
          Status::cancelled("worker stopping: stage process ended (" + describe_wait_status(status) + ")"),
          "{}", true, true};
    }
    std::string why = !broken_.empty() ? broken_ : describe_wait_status(status);
    if (broken_.empty() && WIFEXITED(status)) why += " without a result";
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && broken_.empty()) {
      why += killed_ ? ", killed after it closed its channel without a result"
                     : ", killed from outside (out of memory?)";
    }
    std::string msg = "crashed: " + why;
    if (!lines_.empty()) {
      msg += str_printf("; its last %zu log lines:", lines_.size());
      for (const std::string& line : lines_) msg += "\n  " + line;
    }
    StageOutcome out{Status::internal(msg), "{}", true};
    out.crashed = true;
    return out;
  }

  StageProcess& p_;
  const StageEnv& env_;
  StageReporter& reporter_;
  const Clock::time_point started_;  // when the start frame went out
  bool first_frame_ = false;
  bool channel_closed_ = false;
  bool cancelled_ = false;
  bool stop_sent_ = false;
  bool killed_ = false;
  std::string broken_;  // the child broke the channel (garbled frame): a crash
  std::optional<StageOutcome> result_;
  std::optional<Clock::time_point> term_deadline_, kill_deadline_, exit_deadline_;
  std::deque<std::string> lines_;  // the last kStageCrashLogLines lines
};

}  // namespace

StageOutcome run_stage_in_child(const StageAssignment& a, const StageEnv& env, StageReporter& reporter,
                                const std::vector<std::string>& argv) {
  Result<std::unique_ptr<StageProcess>> p = StageProcess::spawn(argv);
  if (!p.ok()) return {p.status().with_context("starting the stage process"), "{}", true};
  return run_stage_in_child(a, env, reporter, std::move(p.value()));
}

StageOutcome run_stage_in_child(const StageAssignment& a, const StageEnv& env, StageReporter& reporter,
                                std::unique_ptr<StageProcess> child) {
  return Supervisor(*child, env, reporter).run(stage_start_frame(a, env));
}

}  // namespace lema::worker
