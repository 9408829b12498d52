// `lema worker --scheduler tcp://HOST:7500 [--gpu N] [--workdir DIR]`: one
// worker process (one GPU, or the CPU). SIGTERM/Ctrl-C checkpoints a running
// training stage and exits cleanly. Each stage runs in a child, the hidden
// `lema stage-child` (worker/stage_child.h), which the worker starts itself.
#include <atomic>
#include <csignal>
#include <execinfo.h>
#include <cstdlib>
#include <cstdio>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "scheduler/curve_keys.h"
#include "worker/stage_child.h"
#include "worker/stage_runner.h"
#include "worker/worker_loop.h"

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }
// A crash leaves a backtrace in the worker's log (then the default action).
extern "C" void on_crash_signal(int sig) {
  void* frames[64];
  int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

void setup_worker(CLI::App& app) {
  auto* cmd = app.add_subcommand("worker", "Run a worker: take stages from a scheduler and run them");
  auto opts = std::make_shared<lema::worker::WorkerOptions>();
  auto cpu = std::make_shared<bool>(false);
  auto list_stages = std::make_shared<bool>(false);
  cmd->add_option("--scheduler", opts->scheduler, "Scheduler worker endpoint")->capture_default_str();
  cmd->add_option("--gpu", opts->gpu, "GPU index to use (default: the first GPU, else CPU)");
  cmd->add_flag("--cpu", *cpu, "Use the CPU even when GPUs are present");
  cmd->add_option("--workdir", opts->work_dir, "Base directory for relative job directories (default: cwd)");
  cmd->add_option("--id", opts->worker_id, "Worker id (default: HOST/gpuN or HOST/cpu.PID)");
  cmd->add_option("--threads", opts->threads, "CPU threads for training (default: all cores)");
  cmd->add_option("--max-stages", opts->max_stages, "Exit after this many stages (default: never)");
  auto server_key = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  cmd->add_option("--server-key", *server_key,
                  "Scheduler's CURVE public key: its .pub file, or the key (Z85) (env LEMA_SERVER_KEY)");
  cmd->add_option("--curve-secret-file", *secret_file,
                  "This worker's CURVE secret key (`lema keys NAME` -> NAME.key); NAME.pub goes to the scheduler");
  cmd->add_option("--allow-path", opts->allowed_roots,
                  "A root under which job specs may name absolute paths (repeatable; env LEMA_ALLOW_PATH, "
                  "':'-separated)");
  cmd->add_flag("--stages", *list_stages, "Print the stage kinds this worker runs, one a line, and exit");
  cmd->callback([opts, cpu, list_stages, server_key, secret_file] {
    if (*list_stages) {
      for (const std::string& kind : lema::worker::stage_kinds()) std::printf("%s\n", kind.c_str());
      lema::cli::finish(lema::Status());
      return;
    }
    if (*cpu) opts->gpu = -2;
    if (const char* t = std::getenv("LEMA_TOKEN")) opts->token = t;
    lema::Status keys = [&]() -> lema::Status {
      std::string server = *server_key;
      if (server.empty()) {
        if (const char* k = std::getenv("LEMA_SERVER_KEY")) server = k;
      }
      if (!server.empty() && lema::path_exists(server)) {
        LEMA_ASSIGN_OR_RETURN(server, lema::read_curve_key(server));
      }
      opts->curve_server_public_key = server;
      if (!secret_file->empty()) {
        LEMA_ASSIGN_OR_RETURN(opts->curve_secret_key, lema::read_curve_key(*secret_file));
      }
      if (server.empty() != opts->curve_secret_key.empty()) {
        return lema::Status::invalid_argument(
            "--server-key and --curve-secret-file go together (docs/SECURITY.md: each worker has its own key)");
      }
      return lema::Status();
    }();
    if (!keys.ok()) {
      lema::cli::finish(keys);
      return;
    }
    for (const std::string& root : lema::allowed_roots_from_env()) opts->allowed_roots.push_back(root);
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGSEGV, on_crash_signal);
    signal(SIGABRT, on_crash_signal);
    lema::Status s = lema::worker::run_worker(*opts, g_stop);
    if (s.ok() && g_stop) lema::log_info("worker stopped");
    lema::cli::finish(s);
  });
}

// Hidden: only `lema worker` starts it, with the channel on fd 3.
void setup_stage_child(CLI::App& app) {
  auto* cmd = app.add_subcommand("stage-child", "Run one stage for the worker that started this process");
  cmd->group("");  // not listed in --help: not a command for people
  cmd->callback([] {
    const int code = lema::worker::run_stage_child(3);
    lema::cli::finish(code == 0 ? lema::Status() : lema::Status::internal("stage-child ended without a result"));
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_worker);
LEMA_REGISTER_COMMAND(setup_stage_child);
