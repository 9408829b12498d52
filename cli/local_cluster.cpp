#include "cli/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "scheduler/broker.h"
#include "worker/worker_loop.h"

namespace lema::cli {

Result<std::unique_ptr<LocalCluster>> LocalCluster::start(const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->options_ = options;
  LEMA_RETURN_IF_ERROR(make_dirs(path_join(options.work_dir, "logs")));
  BrokerOptions bo;
  bo.db_path = options.db_path;
  bo.workers_bind = "tcp://127.0.0.1:*";
  bo.clients_bind = "tcp://127.0.0.1:*";
  // Loopback only, so the broker may run open (docs/SECURITY.md); paths are
  // still confined to the spec's own.
  bo.allowed_roots = options.allowed_roots;
  for (const std::string& root : allowed_roots_from_env()) bo.allowed_roots.push_back(root);
  LEMA_ASSIGN_OR_RETURN(c->broker_, Broker::create(bo));
  c->clients_ep_ = c->broker_->clients_endpoint();
  c->workers_ep_ = c->broker_->workers_endpoint();
  Broker* b = c->broker_.get();
  // REQUIRES (broker.h): run() on one thread; only request_stop() crosses threads.
  c->broker_thread_ = std::thread([b] {
    Status s = b->run();
    if (!s.ok()) log_error("scheduler: %s", s.to_string().c_str());
  });

  std::vector<worker::GpuInfo> gpus = options.cpu ? std::vector<worker::GpuInfo>() : worker::detect_gpus();
  int n = options.workers > 0 ? options.workers : std::max<int>(1, static_cast<int>(gpus.size()));
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args = {"worker", "--scheduler", c->workers_ep_};
    if (gpus.empty()) {
      args.insert(args.end(), {"--cpu", "--id", str_printf("local/cpu%d", i)});
    } else {
      int g = gpus[static_cast<size_t>(i) % gpus.size()].index;
      args.insert(args.end(), {"--gpu", std::to_string(g), "--id", str_printf("local/gpu%d", g)});
    }
    if (options.threads > 0) args.insert(args.end(), {"--threads", std::to_string(options.threads)});
    for (const std::string& root : options.allowed_roots) args.insert(args.end(), {"--allow-path", root});
    c->worker_args_.push_back(args);
    c->pids_.push_back(-1);
    LEMA_RETURN_IF_ERROR(c->spawn(static_cast<size_t>(i)));
  }
  return c;
}

Status LocalCluster::spawn(size_t index) {
  const std::string log_path = path_join(path_join(options_.work_dir, "logs"), str_printf("worker-%zu.log", index));
  std::vector<std::string> args = worker_args_[index];
  args.insert(args.begin(), "lema");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return status_from_errno("fork", errno);
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    // Ctrl-C goes to `lema run`, which stops the workers in order; if
    // `lema run` itself dies, the workers get SIGTERM (checkpoint, exit).
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  pids_[index] = pid;
  return Status();
}

int LocalCluster::restart_dead_workers() {
  int restarted = 0;
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (pids_[i] <= 0) continue;
    int status = 0;
    if (waitpid(pids_[i], &status, WNOHANG) == pids_[i]) {
      log_warn("worker %zu (pid %d) ended (%s %d); starting another", i, static_cast<int>(pids_[i]),
               WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      pids_[i] = -1;
      if (spawn(i).ok()) ++restarted;
    }
  }
  return restarted;
}

void LocalCluster::stop_workers(int timeout_ms) {
  for (pid_t pid : pids_) {
    if (pid > 0) kill(pid, SIGTERM);
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (pid_t& pid : pids_) {
    while (pid > 0) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
      } else if (std::chrono::steady_clock::now() >= until) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        pid = -1;
      } else {
        usleep(20000);
      }
    }
  }
}

LocalCluster::~LocalCluster() {
  stop_workers(30000);
  if (broker_) broker_->request_stop();
  if (broker_thread_.joinable()) broker_thread_.join();
}

}  // namespace lema::cli
