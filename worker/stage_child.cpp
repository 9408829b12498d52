#include "worker/stage_child.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "common/base/log.h"
#include "worker/stage_channel.h"

namespace lema::worker {

namespace {

using nlohmann::json;

// SIGTERM from the worker (CANCEL, or the end of a shutdown's grace): stop
// within a step without writing a checkpoint.
std::atomic<bool> g_cancel{false};
extern "C" void on_child_sigterm(int) { g_cancel = true; }

// A frame the child sends may wait this long for the worker to read: the
// worker reads while it supervises, except while it asks the scheduler
// about the lease (then the child waits for that answer anyway).
constexpr int kChildSendTimeoutMs = 60000;

template <typename T>
Status field(const json& j, const char* object, const char* key, T* out) {
  if (!j.contains(key))
    return Status::invalid_argument(str_printf("start frame: %s.%s is missing", object, key));
  const json& v = j[key];
  bool ok = false;
  if constexpr (std::is_same_v<T, std::string>)
    ok = v.is_string();
  else if constexpr (std::is_same_v<T, int64_t>)
    ok = v.is_number_integer();
  else
    ok = v.is_array();
  if (!ok) return Status::invalid_argument(str_printf("start frame: %s.%s has the wrong type", object, key));
  *out = v.get<T>();
  return Status();
}

// What the stage's runner calls, as frames to the worker.
class ChildReporter : public StageReporter {
 public:
  ChildReporter(StageChannel& channel, std::string crash_at)
      : channel_(channel), crash_at_(std::move(crash_at)) {}

  void progress(int64_t step, int64_t total, const std::string& metrics) override {
    // The test hook (kStageCrashTestEnv): a real abort, as an internal check would.
    if (!crash_at_.empty()) std::abort();
    json m = json::parse(metrics, nullptr, false);
    post({{"type", "progress"},
          {"step", step},
          {"total_steps", total},
          {"metrics", m.is_object() ? m : json::object()}});
  }
  void log(const std::string& level, const std::string& line) override {
    post({{"type", "log"}, {"level", level}, {"line", line}});
  }
  void checkpoint(int64_t step, const std::string& path, const std::string& sha256) override {
    post({{"type", "checkpoint"}, {"step", step}, {"path", path}, {"sha256", sha256}});
  }
  bool cancel_requested() const override { return g_cancel.load(); }
  Status wait_for_lease(const std::atomic<bool>* stop) override {
    std::unique_lock<std::mutex> lock(lease_mu_);
    lease_answer_.reset();
    lock.unlock();
    post({{"type", "lease"}});
    lock.lock();
    // The worker answers at once or after asking the scheduler; CANCEL,
    // SIGTERM or the worker's end (PR_SET_PDEATHSIG) end the wait too. The
    // stop frame does not: it asks for a checkpoint first, and that write
    // needs this answer (the worker answers while it stops, refusing only
    // a lease it cannot show).
    (void)stop;
    while (!lease_answer_ && !g_cancel.load() && !channel_closed_) {
      lease_cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    if (lease_answer_) return *lease_answer_;
    return Status::cancelled("stopped while waiting for the lease");
  }

  // From the reader thread.
  void lease_answered(Status s) {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_answer_ = std::move(s);
    lease_cv_.notify_all();
  }
  void channel_closed() {
    std::lock_guard<std::mutex> lock(lease_mu_);
    channel_closed_ = true;
    lease_cv_.notify_all();
  }

  Status send(const json& frame) {
    std::lock_guard<std::mutex> lock(send_mu_);
    return channel_.send(frame, kChildSendTimeoutMs);
  }
  // A report the worker did not take: the worker is gone or stuck, and a
  // stage nobody hears must not go on writing.
  void post(const json& frame) {
    if (Status s = send(frame); !s.ok()) {
      log_warn("stage-child: %s; stopping the stage", s.to_string().c_str());
      g_cancel = true;
      channel_closed();
    }
  }

 private:
  StageChannel& channel_;
  std::string crash_at_;  // non-empty: abort at the first progress report
  std::mutex send_mu_;    // one frame at a time on the channel
  std::mutex lease_mu_;
  std::condition_variable lease_cv_;
  std::optional<Status> lease_answer_;  // guarded by lease_mu_
  bool channel_closed_ = false;         // guarded by lease_mu_
};

}  // namespace

json stage_start_frame(const StageAssignment& a, const StageEnv& env) {
  json candidates = json::array();
  for (const ResumeCandidate& c : a.resume_candidates) {
    candidates.push_back({{"path", c.path}, {"sha256", c.sha256}, {"step", c.step}});
  }
  json assignment = {{"job_id", a.job_id},
                     {"stage_id", a.stage_id},
                     {"kind", a.kind},
                     {"attempt", a.attempt},
                     {"spec_json", a.spec_json},
                     {"work_dir", a.work_dir},
                     {"resume_checkpoint", a.resume_checkpoint},
                     {"resume_candidates", candidates}};
  json e = {{"device", env.device},
            {"base_dir", env.base_dir},
            {"allowed_roots", env.allowed_roots},
            {"threads", env.threads}};
  return {{"type", "start"}, {"assignment", assignment}, {"env", e}};
}

Status parse_stage_start_frame(const json& frame, StageAssignment* a, StageEnv* env) {
  if (frame.value("type", std::string()) != "start") {
    return Status::invalid_argument("start frame: expected type \"start\", got \"" +
                                    frame.value("type", std::string()) + "\"");
  }
  if (!frame.contains("assignment") || !frame["assignment"].is_object() || !frame.contains("env") ||
      !frame["env"].is_object()) {
    return Status::invalid_argument("start frame: needs the objects \"assignment\" and \"env\"");
  }
  const json& j = frame["assignment"];
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "job_id", &a->job_id));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "stage_id", &a->stage_id));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "kind", &a->kind));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "attempt", &a->attempt));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "spec_json", &a->spec_json));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "work_dir", &a->work_dir));
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "resume_checkpoint", &a->resume_checkpoint));
  json candidates;
  LEMA_RETURN_IF_ERROR(field(j, "assignment", "resume_candidates", &candidates));
  a->resume_candidates.clear();
  for (const json& c : candidates) {
    ResumeCandidate rc;
    if (!c.is_object()) return Status::invalid_argument("start frame: a resume candidate is not an object");
    LEMA_RETURN_IF_ERROR(field(c, "resume_candidates[]", "path", &rc.path));
    LEMA_RETURN_IF_ERROR(field(c, "resume_candidates[]", "sha256", &rc.sha256));
    LEMA_RETURN_IF_ERROR(field(c, "resume_candidates[]", "step", &rc.step));
    a->resume_candidates.push_back(std::move(rc));
  }
  const json& e = frame["env"];
  LEMA_RETURN_IF_ERROR(field(e, "env", "device", &env->device));
  LEMA_RETURN_IF_ERROR(field(e, "env", "base_dir", &env->base_dir));
  LEMA_RETURN_IF_ERROR(field(e, "env", "threads", &env->threads));
  json roots;
  LEMA_RETURN_IF_ERROR(field(e, "env", "allowed_roots", &roots));
  env->allowed_roots.clear();
  for (const json& r : roots) {
    if (!r.is_string()) return Status::invalid_argument("start frame: env.allowed_roots holds a non-string");
    env->allowed_roots.push_back(r.get<std::string>());
  }
  return Status();
}

int run_stage_child(int fd) {
  struct sigaction sa = {};
  sa.sa_handler = on_child_sigterm;
  sigaction(SIGTERM, &sa, nullptr);
  StageChannel channel(fd);
  // No deadline: the worker starts this process ahead of its next ASSIGN
  // and may wait long for one. A worker that dies takes this process with
  // it (PR_SET_PDEATHSIG); one that closes the channel did not need it.
  Result<std::optional<json>> start = channel.receive(-1);
  if (!start.ok() && start.status().code() == Status::Code::kUnavailable) return 0;
  if (!start.ok() || !start.value()) {
    log_error("stage-child: no start frame: %s", start.ok() ? "none" : start.status().to_string().c_str());
    return 1;
  }
  StageAssignment a;
  StageEnv env;
  std::atomic<bool> stop{false};
  env.stop = &stop;
  if (Status s = parse_stage_start_frame(*start.value(), &a, &env); !s.ok()) {
    log_error("stage-child: %s", s.to_string().c_str());
    return 1;
  }
  std::string crash_at;
  if (const char* hook = std::getenv(kStageCrashTestEnv)) {
    json spec = json::parse(a.spec_json, nullptr, false);
    std::string name = spec.is_object() && spec.contains("job") && spec["job"].is_object()
                           ? spec["job"].value("name", std::string())
                           : std::string();
    if (std::string(hook) == name + "/" + a.kind) crash_at = hook;
  }
  ChildReporter reporter(channel, crash_at);

  // The worker's frames while the stage runs: stop and lease answers. A
  // closed channel means the worker is gone (its death signal ends this
  // process too; this only stops a stage that outlived it briefly).
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      Result<std::optional<json>> f = channel.receive(100);
      if (!f.ok()) {
        if (!done.load()) log_warn("stage-child: %s; stopping", f.status().to_string().c_str());
        g_cancel = true;
        reporter.channel_closed();
        return;
      }
      if (!f.value()) continue;
      const json& frame = *f.value();
      const std::string type = frame["type"].get<std::string>();
      if (type == "stop") {
        stop = true;
      } else if (type == "lease") {
        Status lease;
        Status parsed = status_from_frame(frame.value("status", json()), &lease);
        reporter.lease_answered(parsed.ok() ? lease : parsed);
      } else {
        log_warn("stage-child: ignoring a '%s' frame from the worker", type.c_str());
      }
    }
  });
  StageOutcome out = run_stage(a, env, reporter);
  Status sent = reporter.send({{"type", "result"},
                               {"status", status_to_frame(out.status)},
                               {"result_json", out.result_json},
                               {"retryable", out.retryable},
                               {"stopped", out.stopped}});
  done = true;
  reader.join();
  if (!sent.ok()) {
    log_error("stage-child: the result could not be sent: %s", sent.to_string().c_str());
    return 1;
  }
  return 0;
}

}  // namespace lema::worker
