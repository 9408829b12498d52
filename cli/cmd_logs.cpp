// `lema logs JOB [-f]`: a job's log lines; -f follows until the job ends.
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/client_util.h"
#include "cli/command.h"

namespace {

bool finished(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

void setup_logs(CLI::App& app) {
  auto* cmd = app.add_subcommand("logs", "Print a job's log lines (-f: follow until it ends)");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  auto job = std::make_shared<int64_t>(0);
  auto follow = std::make_shared<bool>(false);
  cmd->add_option("job", *job, "Job id")->required();
  cmd->add_flag("-f,--follow", *follow, "Keep printing new lines until the job ends");
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args, job, follow] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      int64_t after = 0;
      while (true) {
        auto r = client->logs(*job, after);
        if (!r.ok()) return lema::cli::with_scheduler_hint(r.status(), *args);
        for (const auto& e : r.value()["events"]) {
          after = std::max(after, e.value("id", int64_t{0}));
          if (args->json) {
            lema::cli::print_json(e);
          } else {
            std::printf("[%s #%lld] %s %s\n", e.value("stage", std::string()).c_str(),
                        static_cast<long long>(e.value("attempt", int64_t{0})),
                        e.value("level", std::string()).c_str(), e.value("line", std::string()).c_str());
          }
        }
        std::fflush(stdout);
        std::string state = r.value().value("job_state", std::string());
        if (!*follow || finished(state)) {
          if (*follow && state != "succeeded") return lema::Status::internal("job " + std::to_string(*job) + " " + state);
          return lema::Status();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_logs);
