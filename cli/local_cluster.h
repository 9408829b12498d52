// LocalCluster: what `lema run` starts on one machine: the scheduler's broker
// on a thread of this process (database in the job's work dir, loopback
// endpoints on free ports) and worker child processes (`lema worker`, one per
// GPU or one on the CPU) whose output goes to <work_dir>/logs/.
//
// Owns the broker thread and the children; the destructor stops both.
// Not thread-safe: one owner.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/status.h"

namespace lema {
class Broker;
}

namespace lema::cli {

struct LocalClusterOptions {
  std::string work_dir;
  std::string db_path;
  int workers = 0;         // 0: one per GPU, or one CPU worker
  bool cpu = false;        // force CPU workers
  int64_t threads = 0;     // CPU threads per worker
  // Where the job's absolute paths may point, for the broker (at submit) and
  // the workers (--allow-path); LEMA_ALLOW_PATH is added to it.
  std::vector<std::string> allowed_roots;
};

class LocalCluster {
 public:
  static Result<std::unique_ptr<LocalCluster>> start(const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  std::string clients_endpoint() const { return clients_ep_; }
  std::string workers_endpoint() const { return workers_ep_; }
  // Restarts children that died (kill -9, crash); returns how many.
  int restart_dead_workers();
  // SIGTERM to every child (they checkpoint and exit), wait up to timeout_ms,
  // then SIGKILL what remains.
  void stop_workers(int timeout_ms);

 private:
  LocalCluster() = default;
  Status spawn(size_t index);
  LocalClusterOptions options_;
  std::unique_ptr<Broker> broker_;
  std::thread broker_thread_;
  std::string clients_ep_, workers_ep_;
  std::vector<std::vector<std::string>> worker_args_;
  std::vector<pid_t> pids_;
};

}  // namespace lema::cli
