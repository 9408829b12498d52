// Client verbs talking to a running `lema scheduler`:
// submit, jobs, show, logs [-f], cancel, retry, workers, ping. --json prints
// the scheduler's reply as JSON (docs/PROTOCOL.md).
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "scheduler/client.h"
#include "scheduler/curve_keys.h"

namespace {

using nlohmann::json;

struct ClientArgs {
  lema::ClientOptions options;
  bool as_json = false;
  std::string spec_path;
  std::string request_id;  // submit: "" draws one
  std::string state;
  int64_t job_id = 0;
  bool follow = false;
  bool all_workers = false;
  std::string curve_server_file;
  std::string curve_key_stem;
};

void add_client_options(CLI::App* cmd, ClientArgs& a) {
  a.options.endpoint = "tcp://127.0.0.1:7501";
  cmd->add_option("--scheduler", a.options.endpoint, "Scheduler client endpoint")
      ->envname("LEMA_SCHEDULER")
      ->capture_default_str();
  cmd->add_option("--token", a.options.token, "Shared secret")->envname("LEMA_TOKEN");
  cmd->add_option("--timeout-ms", a.options.timeout_ms, "How long to wait for the scheduler")->capture_default_str();
  cmd->add_flag("--json", a.as_json, "Print the reply as JSON");
  cmd->add_option("--curve-server-key", a.curve_server_file, "Scheduler's CURVE public key file (.pub)");
  cmd->add_option("--curve-key", a.curve_key_stem, "This client's key pair: path without .pub/.key");
}

lema::Status load_curve(ClientArgs& a) {
  if (a.curve_server_file.empty()) return lema::Status();
  if (a.curve_key_stem.empty()) return lema::Status::invalid_argument("--curve-server-key needs --curve-key");
  LEMA_ASSIGN_OR_RETURN(a.options.curve_server_key, lema::read_curve_key(a.curve_server_file));
  LEMA_ASSIGN_OR_RETURN(a.options.curve_public_key, lema::read_curve_key(a.curve_key_stem + ".pub"));
  LEMA_ASSIGN_OR_RETURN(a.options.curve_secret_key, lema::read_curve_key(a.curve_key_stem + ".key"));
  return lema::Status();
}

std::string format_time_ms(int64_t ms) {
  time_t t = ms / 1000;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

lema::Status run_verb(const std::string& verb, ClientArgs& a) {
  LEMA_RETURN_IF_ERROR(load_curve(a));
  LEMA_ASSIGN_OR_RETURN(auto client, lema::Client::connect(a.options));
  json reply;
  if (verb == "submit") {
    LEMA_ASSIGN_OR_RETURN(std::string text, lema::read_file(a.spec_path));
    LEMA_ASSIGN_OR_RETURN(int64_t id, client->submit(text, a.spec_path, a.request_id));
    reply = {{"job_id", id}};
    if (!a.as_json) std::printf("submitted job %lld\n", (long long)id);
  } else if (verb == "jobs") {
    LEMA_ASSIGN_OR_RETURN(reply, client->list(a.state, 1000));
    if (!a.as_json) {
      std::printf("%6s  %-10s  %-20s  %s\n", "ID", "STATE", "NAME", "STAGES");
      for (const json& j : reply["jobs"]) {
        std::printf("%6lld  %-10s  %-20s  %s\n", (long long)j["id"].get<int64_t>(),
                    j["state"].get<std::string>().c_str(), j["name"].get<std::string>().c_str(),
                    j["stages"].get<std::string>().c_str());
      }
    }
  } else if (verb == "show") {
    LEMA_ASSIGN_OR_RETURN(reply, client->show(a.job_id));
    if (!a.as_json) {
      std::printf("job %lld '%s': %s\n", (long long)a.job_id, reply["name"].get<std::string>().c_str(),
                  reply["state"].get<std::string>().c_str());
      if (!reply["error"].get<std::string>().empty()) std::printf("  error: %s\n", reply["error"].get<std::string>().c_str());
      std::printf("  work dir: %s\n", reply["work_dir"].get<std::string>().c_str());
      for (const json& s : reply["stages"]) {
        std::printf("  %-8s %-10s attempt %lld/%lld", s["kind"].get<std::string>().c_str(),
                    s["state"].get<std::string>().c_str(), (long long)s["attempt"].get<int64_t>(),
                    (long long)s["max_attempts"].get<int64_t>());
        if (!s["worker"].get<std::string>().empty()) std::printf("  on %s", s["worker"].get<std::string>().c_str());
        if (s.contains("progress")) {
          const json& p = s["progress"];
          std::printf("  step %lld", (long long)p["step"].get<int64_t>());
          if (p["loss"].is_number()) std::printf("  loss %.4f", p["loss"].get<double>());
        }
        if (!s["error"].get<std::string>().empty()) std::printf("  (%s)", s["error"].get<std::string>().c_str());
        std::printf("\n");
        // A stage's one-line result (the eval stage's base vs tuned figures).
        if (s.contains("result") && s["result"].is_object() && s["result"].contains("summary") &&
            s["result"]["summary"].is_string()) {
          std::printf("           %s\n", s["result"]["summary"].get<std::string>().c_str());
        }
        // A stage's output (the merged directory, the export's GGUF file).
        for (const char* key : {"dir", "file"}) {
          if (s.contains("result") && s["result"].is_object() && s["result"].contains(key) &&
              s["result"][key].is_string()) {
            std::printf("           output: %s\n", s["result"][key].get<std::string>().c_str());
          }
        }
      }
    }
  } else if (verb == "logs") {
    int64_t after = 0;
    while (true) {
      LEMA_ASSIGN_OR_RETURN(json r, client->logs(a.job_id, after, 1000));
      for (const json& e : r["events"]) {
        after = e["id"].get<int64_t>();
        if (a.as_json) {
          std::printf("%s\n", e.dump().c_str());
        } else {
          std::printf("%s %-5s %-8s %s\n", format_time_ms(e["time_ms"].get<int64_t>()).c_str(),
                      e["level"].get<std::string>().c_str(), e["stage"].get<std::string>().c_str(),
                      e["line"].get<std::string>().c_str());
        }
      }
      std::fflush(stdout);
      std::string st = r["job_state"].get<std::string>();
      bool finished = st == "succeeded" || st == "failed" || st == "cancelled";
      if (!a.follow || (finished && r["events"].empty())) return lema::Status();
      if (r["events"].empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  } else if (verb == "cancel") {
    LEMA_ASSIGN_OR_RETURN(reply, client->cancel(a.job_id));
    if (!a.as_json) std::printf("job %lld cancelled\n", (long long)a.job_id);
  } else if (verb == "retry") {
    LEMA_ASSIGN_OR_RETURN(reply, client->retry(a.job_id));
    if (!a.as_json) std::printf("job %lld queued again\n", (long long)a.job_id);
  } else if (verb == "workers") {
    LEMA_ASSIGN_OR_RETURN(reply, client->workers(a.all_workers));
    if (!a.as_json) {
      std::printf("%-20s  %-7s  %4s  %10s  %6s  %s\n", "ID", "STATE", "GPUS", "VRAM", "LEASES", "HOST");
      for (const json& w : reply["workers"]) {
        std::printf("%-20s  %-7s  %4lld  %10s  %6lld  %s\n", w["id"].get<std::string>().c_str(),
                    w["connected"].get<bool>() ? (w["idle"].get<bool>() ? "idle" : "busy") : "lost",
                    (long long)w["gpus"].get<int64_t>(),
                    lema::format_bytes(uint64_t(w["vram_bytes"].get<int64_t>())).c_str(),
                    (long long)w["leases"].get<int64_t>(), w["host"].get<std::string>().c_str());
      }
    }
  } else if (verb == "ping") {
    LEMA_ASSIGN_OR_RETURN(reply, client->ping());
    if (!a.as_json) std::printf("%s: %s\n", a.options.endpoint.c_str(), reply["version"].get<std::string>().c_str());
  }
  if (a.as_json) std::printf("%s\n", reply.dump(2).c_str());
  return lema::Status();
}

void add_verb(CLI::App& app, const std::string& verb, const std::string& help,
              void (*extra)(CLI::App*, ClientArgs&)) {
  auto args = std::make_shared<ClientArgs>();
  CLI::App* cmd = app.add_subcommand(verb, help);
  add_client_options(cmd, *args);
  if (extra) extra(cmd, *args);
  cmd->callback([verb, args] { lema::cli::finish(run_verb(verb, *args)); });
}

void job_id_arg(CLI::App* cmd, ClientArgs& a) { cmd->add_option("job", a.job_id, "Job id")->required(); }

void setup_jobs(CLI::App& app) {
  add_verb(app, "submit", "Submit a job spec (TOML) to the scheduler", [](CLI::App* c, ClientArgs& a) {
    c->add_option("spec", a.spec_path, "Job spec file")->required()->check(CLI::ExistingFile);
    c->add_option("--request-id", a.request_id,
                  "Id of this submission: submitting again with it returns the first job (default: a random one)");
  });
  add_verb(app, "jobs", "List jobs", [](CLI::App* c, ClientArgs& a) {
    c->add_option("--state", a.state, "Only jobs in this state");
  });
  add_verb(app, "show", "Show a job, its stages and progress", job_id_arg);
  add_verb(app, "logs", "Print a job's log", [](CLI::App* c, ClientArgs& a) {
    job_id_arg(c, a);
    c->add_flag("-f,--follow", a.follow, "Keep printing until the job ends");
  });
  add_verb(app, "cancel", "Cancel a job", job_id_arg);
  add_verb(app, "retry", "Queue a failed or cancelled job again", job_id_arg);
  add_verb(app, "workers", "List connected workers", [](CLI::App* c, ClientArgs& a) {
    c->add_flag("--all", a.all_workers, "Also the lost workers still retained (--worker-retention-days)");
  });
  add_verb(app, "ping", "Check that the scheduler answers", nullptr);
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_jobs);
