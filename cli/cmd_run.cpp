// `lema run SPEC.toml`: the whole pipeline on this machine. Starts an
// embedded scheduler (database <work_dir>/lema.db) and local workers, queues
// the job (or picks up the one already there: running the same command again
// resumes), draws progress, and on Ctrl-C checkpoints and stops.
#include <atomic>
#include <csignal>
#include <map>
#include <cstdio>
#include <thread>

#include "cli/command.h"
#include "cli/local_cluster.h"
#include "common/base/file_util.h"
#include "common/protocol/job_spec.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "scheduler/client.h"

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_run_signal(int) { g_interrupted = true; }

struct RunArgs {
  std::string spec;
  int workers = 0;
  bool cpu = false;
  int64_t threads = 0;
  bool json = false;
};

// The job of this spec in the database: queued anew, or the existing one
// (failed/cancelled ones are retried, which resumes from their checkpoints).
lema::Result<int64_t> find_or_submit(lema::Client& client, const lema::JobSpec& spec, const std::string& text) {
  LEMA_ASSIGN_OR_RETURN(nlohmann::json listing, client.list("", 1000));
  int64_t id = 0;
  std::string state;
  for (const auto& j : listing["jobs"]) {
    if (j.value("name", std::string()) == spec.job.name && j.value("id", int64_t{0}) > id) {
      id = j["id"].get<int64_t>();
      state = j.value("state", std::string());
    }
  }
  if (id == 0) {
    LEMA_ASSIGN_OR_RETURN(id, client.submit(text, spec.job.name));
    lema::log_info("run: job %lld queued", static_cast<long long>(id));
  } else if (state == "failed" || state == "cancelled") {
    LEMA_RETURN_IF_ERROR(client.retry(id).status());
    lema::log_info("run: job %lld was %s; resuming it", static_cast<long long>(id), state.c_str());
  } else {
    lema::log_info("run: job %lld is %s; continuing it", static_cast<long long>(id), state.c_str());
  }
  return id;
}

// One line per stage state change, and a bar while train (steps, loss,
// tokens/s) or eval (permille of the evaluation) runs.
class StageView {
 public:
  void update(const nlohmann::json& job) {
    for (const auto& s : job["stages"]) {
      const std::string kind = s.value("kind", std::string());
      const std::string state = s.value("state", std::string());
      std::string& last = last_state_[kind];
      std::unique_ptr<lema::Progress>& bar = bars_[kind];
      if ((kind == "train" || kind == "eval") && state == "running" && s.contains("progress") &&
          s["progress"].is_object()) {
        const auto& p = s["progress"];
        uint64_t total = p["total_steps"].is_number() ? static_cast<uint64_t>(p["total_steps"].get<double>()) : 0;
        if (!bar && total > 0) bar = std::make_unique<lema::Progress>(kind, total, kind == "train" ? "steps" : "permille");
        if (bar && kind == "train") {
          bar->update(static_cast<uint64_t>(p.value("step", int64_t{0})),
                      lema::str_printf("loss %.4f  %.0f tok/s", p["loss"].is_number() ? p["loss"].get<double>() : 0.0,
                                       p["tokens_per_s"].is_number() ? p["tokens_per_s"].get<double>() : 0.0));
        } else if (bar) {
          bar->update(static_cast<uint64_t>(p.value("step", int64_t{0})));
        }
      }
      if (state != last) {
        if (bar && state != "running") {
          bar->finish();
          bar.reset();
        }
        std::string line = lema::str_printf("stage %-8s %s", kind.c_str(), state.c_str());
        if (!s.value("worker", std::string()).empty()) line += " on " + s["worker"].get<std::string>();
        // A stage that failed for good fails the job, whose error (printed
        // once, as the exit message) carries the stage's: not here too.
        if (state != "failed" && !s.value("error", std::string()).empty()) {
          line += ": " + s["error"].get<std::string>();
        }
        lema::log_info("%s", line.c_str());
        last = state;
      }
    }
  }

 private:
  std::map<std::string, std::string> last_state_;
  std::map<std::string, std::unique_ptr<lema::Progress>> bars_;
};

lema::Status run_pipeline(const RunArgs& args) {
  LEMA_ASSIGN_OR_RETURN(std::string text, lema::read_file(args.spec));
  LEMA_ASSIGN_OR_RETURN(lema::JobSpec spec, lema::JobSpec::parse(text, args.spec));
  lema::cli::LocalClusterOptions co;
  co.work_dir = spec.job.work_dir.empty() ? "runs/" + spec.job.name : spec.job.work_dir;
  co.db_path = lema::path_join(co.work_dir, "lema.db");
  co.workers = args.workers;
  co.cpu = args.cpu;
  co.threads = args.threads;
  // The spec is the user's own: its absolute paths are the roots it may use
  // (relative ones lie under the current directory, the workers' --workdir).
  for (const std::string& p : {co.work_dir, spec.model.path, spec.model.tokenizer, spec.data.jsonl}) {
    if (!p.empty() && p[0] == '/') co.allowed_roots.push_back(p);
  }
  LEMA_RETURN_IF_ERROR(lema::make_dirs(co.work_dir));
  LEMA_ASSIGN_OR_RETURN(auto cluster, lema::cli::LocalCluster::start(co));
  lema::ClientOptions clo;
  clo.endpoint = cluster->clients_endpoint();
  LEMA_ASSIGN_OR_RETURN(auto client, lema::Client::connect(clo));
  LEMA_ASSIGN_OR_RETURN(int64_t job_id, find_or_submit(*client, spec, text));
  lema::log_info("run: work dir %s, worker logs in %s/logs, scheduler for `lema show` at %s", co.work_dir.c_str(),
                 co.work_dir.c_str(), cluster->clients_endpoint().c_str());
  StageView view;
  nlohmann::json job;
  while (true) {
    LEMA_ASSIGN_OR_RETURN(job, client->show(job_id));
    view.update(job);
    const std::string state = job.value("state", std::string());
    if (state == "succeeded" || state == "failed" || state == "cancelled") break;
    if (g_interrupted) {
      lema::log_info("run: stopping (workers write a checkpoint first)...");
      cluster->stop_workers(60000);
      return lema::Status::cancelled("stopped; run `lema run " + args.spec + "` again to resume");
    }
    cluster->restart_dead_workers();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (args.json) std::printf("%s\n", job.dump().c_str());
  const std::string state = job.value("state", std::string());
  if (state != "succeeded") {
    return lema::Status::internal("job " + std::to_string(job_id) + " " + state + ": " +
                                  job.value("error", std::string()));
  }
  for (const auto& s : job["stages"]) {
    if (s.value("kind", std::string()) == "eval" && s.contains("result") && s["result"].is_object() &&
        s["result"].contains("summary") && s["result"]["summary"].is_string()) {
      std::printf("eval: %s (report: %s/eval/report.md)\n", s["result"]["summary"].get<std::string>().c_str(),
                  co.work_dir.c_str());
    }
    if (s.value("kind", std::string()) == "export" && s.contains("result") && s["result"].is_object() &&
        s["result"].contains("file") && s["result"]["file"].is_string()) {
      std::printf("gguf: %s (%s)\n", s["result"]["file"].get<std::string>().c_str(),
                  s["result"].value("type", std::string()).c_str());
    }
  }
  const std::string merged = lema::path_join(co.work_dir, "merged");
  std::printf("job %lld succeeded; outputs in %s (adapter: %s/train/adapter%s)\n", static_cast<long long>(job_id),
              co.work_dir.c_str(), co.work_dir.c_str(),
              lema::path_exists(merged) ? (", merged model: " + merged).c_str() : "");
  return lema::Status();
}

void setup_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a job on this machine: embedded scheduler and local workers");
  auto args = std::make_shared<RunArgs>();
  cmd->add_option("spec", args->spec, "Job spec (TOML)")->required();
  cmd->add_option("--workers", args->workers, "Number of local workers (default: one per GPU, or one CPU worker)");
  cmd->add_flag("--cpu", args->cpu, "Run on the CPU even when GPUs are present");
  cmd->add_option("--threads", args->threads, "CPU threads per worker (default: all cores)");
  cmd->add_flag("--json", args->json, "Print the final job as JSON");
  cmd->callback([args] {
    struct sigaction sa = {};
    sa.sa_handler = on_run_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    lema::cli::finish(run_pipeline(*args));
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_run);
