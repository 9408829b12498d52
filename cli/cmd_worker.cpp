// `lema worker --scheduler tcp://HOST:7500 [--gpu N] [--workdir DIR]`: one
// worker process (one GPU, or the CPU). SIGTERM/Ctrl-C checkpoints a running
// training stage and exits cleanly.
#include <atomic>
#include <csignal>
#include <execinfo.h>
#include <cstdlib>
#include <cstdio>

#include "cli/command.h"
#include "common/base/log.h"
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
  cmd->add_option("--server-key", opts->curve_server_public_key,
                  "Scheduler's CURVE public key (Z85), from `lema keys` (env LEMA_SERVER_KEY)");
  cmd->add_flag("--stages", *list_stages, "Print the stage kinds this worker runs, one a line, and exit");
  cmd->callback([opts, cpu, list_stages] {
    if (*list_stages) {
      for (const std::string& kind : lema::worker::stage_kinds()) std::printf("%s\n", kind.c_str());
      lema::cli::finish(lema::Status());
      return;
    }
    if (*cpu) opts->gpu = -2;
    if (const char* t = std::getenv("LEMA_TOKEN")) opts->token = t;
    if (opts->curve_server_public_key.empty()) {
      if (const char* k = std::getenv("LEMA_SERVER_KEY")) opts->curve_server_public_key = k;
    }
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

}  // namespace

LEMA_REGISTER_COMMAND(setup_worker);
