// `lema jobs [--state S]`: the scheduler's jobs, newest first.
#include <cstdio>

#include "cli/client_util.h"
#include "cli/command.h"

namespace {

void setup_jobs(CLI::App& app) {
  auto* cmd = app.add_subcommand("jobs", "List jobs on the scheduler");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  auto state = std::make_shared<std::string>();
  auto limit = std::make_shared<int64_t>(100);
  cmd->add_option("--state", *state, "Only jobs in this state (queued, running, succeeded, failed, cancelled)");
  cmd->add_option("--limit", *limit, "At most this many jobs")->capture_default_str();
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args, state, limit] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      auto r = client->list(*state, *limit);
      if (!r.ok()) return lema::cli::with_scheduler_hint(r.status(), *args);
      if (args->json) {
        lema::cli::print_json(r.value());
        return lema::Status();
      }
      const nlohmann::json& jobs = r.value()["jobs"];
      if (jobs.empty()) {
        std::printf("no jobs; queue one with `lema submit SPEC.toml`\n");
        return lema::Status();
      }
      std::printf("%-6s %-24s %-10s %-40s %s\n", "ID", "NAME", "STATE", "STAGES", "ERROR");
      for (const auto& j : jobs) {
        std::printf("%-6lld %-24s %-10s %-40s %s\n", static_cast<long long>(j.value("id", int64_t{0})),
                    j.value("name", std::string()).c_str(), j.value("state", std::string()).c_str(),
                    j.value("stages", std::string()).c_str(), j.value("error", std::string()).c_str());
      }
      return lema::Status();
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_jobs);
