// The worker process's loop: detect capabilities, open a WorkerSession,
// then READY -> ASSIGN -> run the stage -> DONE/FAILED, until `stop` (SIGTERM,
// Ctrl-C): a running train stage then checkpoints, reports FAILED
// retryable=true so the stage is requeued, and the loop returns.
//
// Thread-safety: run_worker blocks its caller; `stop` may be set from a
// signal handler.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "worker/worker_session.h"

namespace lema::worker {

struct WorkerOptions {
  std::string scheduler = "tcp://127.0.0.1:7500";
  int gpu = -1;              // -1: the first GPU if any, else CPU; -2: force CPU
  std::string work_dir;      // base for relative job directories (default: cwd)
  std::string worker_id;     // default: "<host>/gpu<N>" or "<host>/cpu.<pid>"
  std::string token;         // shared secret (LEMA_TOKEN)
  std::string curve_server_public_key;  // Z85; empty: no CURVE
  std::string curve_secret_key;         // this worker's key (Z85), authorized by the scheduler
  std::vector<std::string> allowed_roots;  // --allow-path: absolute spec paths only under these
  int64_t threads = 0;       // CPU training threads; 0: all cores
  int64_t max_stages = 0;    // exit after this many stages (0: never)
  // The command that runs one stage in a child process (stage_process.h):
  // this very binary, so worker and stage are one version.
  std::vector<std::string> stage_command = {"/proc/self/exe", "stage-child"};
};

// GPUs as nvidia-smi reports them (none when it is absent or fails).
std::vector<GpuInfo> detect_gpus();
WorkerCapabilities detect_capabilities(int gpu);

Status run_worker(const WorkerOptions& options, const std::atomic<bool>& stop);

}  // namespace lema::worker
