#include "worker/worker_loop.h"

#include <unistd.h>

#include <cstdio>
#include <thread>

#include <zmq.h>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/version.h"
#include "worker/stage_process.h"
#include "worker/stage_runner.h"

namespace lema::worker {

namespace {

class SessionReporter : public StageReporter {
 public:
  explicit SessionReporter(WorkerSession& session) : session_(session) {}
  void progress(int64_t step, int64_t total, const std::string& metrics) override {
    session_.send_progress(step, total, metrics);
  }
  void log(const std::string& level, const std::string& line) override {
    log_line(level == "warn" ? LogLevel::kWarn : level == "error" ? LogLevel::kError : LogLevel::kInfo, line);
    session_.send_log(level, line);
  }
  void checkpoint(int64_t step, const std::string& path, const std::string& sha256) override {
    session_.send_checkpoint(step, path, sha256);
  }
  bool cancel_requested() const override { return session_.cancel_requested(); }
  Status wait_for_lease(const std::atomic<bool>* stop) override { return session_.wait_for_lease(stop); }

 private:
  WorkerSession& session_;
};

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

uint64_t ram_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

}  // namespace

std::vector<GpuInfo> detect_gpus() {
  std::vector<GpuInfo> gpus;
  // nvidia-smi rather than the CUDA runtime: the worker library stays free of
  // LibTorch/CUDA headers, and a CPU build still reports the machine's GPUs.
  FILE* p = popen("nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits 2>/dev/null", "r");
  if (!p) return gpus;
  char line[512];
  while (std::fgets(line, sizeof(line), p)) {
    int index = 0;
    char name[256] = {0};
    unsigned long long mib = 0;
    if (std::sscanf(line, "%d, %255[^,], %llu", &index, name, &mib) == 3) {
      gpus.push_back({index, name, static_cast<uint64_t>(mib) << 20});
    }
  }
  pclose(p);
  return gpus;
}

WorkerCapabilities detect_capabilities(int gpu) {
  WorkerCapabilities caps;
  caps.host = host_name();
  caps.version = LEMA_VERSION_STRING;
  caps.cpu_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  caps.ram_bytes = ram_bytes();
  if (gpu != -2) {
    for (const GpuInfo& g : detect_gpus()) {
      if (gpu < 0 ? caps.gpus.empty() : g.index == gpu) caps.gpus.push_back(g);
    }
  }
  caps.cpu_only = caps.gpus.empty();
  return caps;
}

Status run_worker(const WorkerOptions& options, const std::atomic<bool>& stop) {
  if (options.gpu >= 0) {
    std::vector<GpuInfo> all = detect_gpus();
    bool found = false;
    for (const GpuInfo& g : all) found = found || g.index == options.gpu;
    if (!found) {
      return Status::invalid_argument(str_printf("--gpu %d: no such GPU here (nvidia-smi lists %zu)", options.gpu,
                                                 all.size()));
    }
  }
  SessionOptions so;
  so.endpoint = options.scheduler;
  so.capabilities = detect_capabilities(options.gpu);
  so.token = options.token;
  so.curve_server_public_key = options.curve_server_public_key;
  so.curve_secret_key = options.curve_secret_key;
  if (!so.curve_secret_key.empty()) {
    char pub[41] = {0};
    if (zmq_curve_public(pub, so.curve_secret_key.c_str()) != 0) {
      return Status::invalid_argument("the worker's CURVE secret key is not a 40-character Z85 key");
    }
    so.curve_public_key = pub;
  }
  so.worker_id = options.worker_id;
  if (so.worker_id.empty()) {
    so.worker_id = so.capabilities.cpu_only
                       ? str_printf("%s/cpu.%d", so.capabilities.host.c_str(), static_cast<int>(getpid()))
                       : str_printf("%s/gpu%d", so.capabilities.host.c_str(), so.capabilities.gpus[0].index);
  }
  StageEnv env;
  env.device = so.capabilities.cpu_only ? "cpu" : str_printf("cuda:%d", so.capabilities.gpus[0].index);
  env.base_dir = options.work_dir;
  if (env.base_dir.empty()) {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd))) env.base_dir = cwd;
  }
  env.allowed_roots = options.allowed_roots;
  env.threads = options.threads;
  env.stop = &stop;

  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<WorkerSession> session, WorkerSession::start(so));
  log_info("worker %s: %s, scheduler %s", so.worker_id.c_str(),
           so.capabilities.cpu_only ? "CPU only" : format_bytes(so.capabilities.gpus[0].vram_bytes).c_str(),
           so.endpoint.c_str());
  SessionReporter reporter(*session);
  int64_t stages = 0;
  // The next stage's process, started ahead (while this worker waits for
  // an ASSIGN, or runs the stage before): its exec and LibTorch's loading
  // are then off the stage's path.
  // Started on this thread, which outlives it (PR_SET_PDEATHSIG).
  std::unique_ptr<StageProcess> next_child;
  auto start_next_child = [&] {
    Result<std::unique_ptr<StageProcess>> p = StageProcess::spawn(options.stage_command);
    if (p.ok()) {
      next_child = std::move(p.value());
    } else {
      log_warn("worker: cannot start a stage process ahead: %s", p.status().to_string().c_str());
    }
  };
  while (!stop.load()) {
    if (!next_child) start_next_child();
    LEMA_ASSIGN_OR_RETURN(std::optional<StageAssignment> a, session->wait_for_assignment(stop));
    if (!a) break;
    // Paths come from the network: confined before anything is read or made.
    Result<StageAssignment> confined = confine_assignment(*a, env);
    if (!confined.ok()) {
      log_warn("stage %s of job %lld refused: %s", a->kind.c_str(), static_cast<long long>(a->job_id),
               confined.status().to_string().c_str());
      session->send_failed(confined.status().to_string(), false);
      ++stages;
      if (options.max_stages > 0 && stages >= options.max_stages) break;
      continue;
    }
    // One that died while it waited (it never had a stage) is replaced.
    if (next_child && next_child->try_wait()) next_child.reset();
    std::unique_ptr<StageProcess> child = std::move(next_child);
    // The one after is started now, so it has loaded by the next ASSIGN
    // (the next stage of a job is usually assigned as this one ends).
    start_next_child();
    StageOutcome out = child ? run_stage_in_child(*confined, env, reporter, std::move(child))
                             : run_stage_in_child(*confined, env, reporter, options.stage_command);
    // A result counts only while the lease can be shown: this process may
    // have been frozen as its stage ended (the stage's process runs on
    // meanwhile), and the stage handed to another worker; the session then
    // asks the scheduler first (WorkerSession::wait_for_lease; at once when
    // the scheduler was heard lately). A stop ends the wait: the DONE goes
    // out, and the scheduler's fencing decides.
    // And the DONE counts only if it arrives while the lease holds: a
    // freeze from here until it has left this process is asked about too
    // (WorkerSession::send_done_counted), so "done" is said only of a DONE the
    // scheduler took or will take.
    const int64_t freezes = session->freezes();
    const int64_t connections = session->connections();
    Status lease = out.status.ok() ? session->wait_for_lease(&stop) : Status();
    if (out.status.ok() && !lease.ok() && !stop.load()) {
      log_warn("stage %s of job %lld finished, but its result is dropped: %s", a->kind.c_str(),
               static_cast<long long>(a->job_id), lease.to_string().c_str());
      session->send_failed(lease.to_string(), true);
    } else if (out.status.ok()) {
      // The session says "done" when the DONE counts (send_done_counted).
      session->send_done_counted(out.result_json, freezes, connections,
                                 str_printf("stage %s of job %lld done", a->kind.c_str(),
                                            static_cast<long long>(a->job_id)));
      Status counts = session->confirm_report(&stop);
      if (!counts.ok()) {
        log_warn("stage %s of job %lld finished, but its report does not count: %s", a->kind.c_str(),
                 static_cast<long long>(a->job_id), counts.to_string().c_str());
      }
    } else {
      log_warn("stage %s of job %lld: %s", a->kind.c_str(), static_cast<long long>(a->job_id),
               out.status.to_string().c_str());
      // A crash report starts "crashed: signal 6 (SIGABRT)" on its own: the
      // status code's prefix ("internal error") would only hide that.
      session->send_failed(out.crashed ? out.status.message() : out.status.to_string(), out.retryable, out.crashed);
    }
    ++stages;
    if (options.max_stages > 0 && stages >= options.max_stages) break;
  }
  // Give the last reports a moment to leave; the scheduler may be away.
  if (!session->flush(3000)) log_warn("worker: scheduler unreachable, last reports may be lost");
  return Status();
}

}  // namespace lema::worker
