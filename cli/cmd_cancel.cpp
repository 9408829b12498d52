// `lema cancel JOB`: Cancel a job: running stages stop within one step.
#include <cstdio>

#include "cli/client_util.h"
#include "cli/command.h"

namespace {

void setup_cancel(CLI::App& app) {
  auto* cmd = app.add_subcommand("cancel", "Cancel a job: running stages stop within one step");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  auto job = std::make_shared<int64_t>(0);
  cmd->add_option("job", *job, "Job id")->required();
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args, job] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      auto r = client->cancel(*job);
      if (!r.ok()) return lema::cli::with_scheduler_hint(r.status(), *args);
      if (args->json) {
        lema::cli::print_json(r.value());
      } else {
        std::printf("job %lld %s\n", static_cast<long long>(*job), r.value().value("state", std::string()).c_str());
      }
      return lema::Status();
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_cancel);
