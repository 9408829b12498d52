// `lema submit SPEC.toml`: queue a job on a running scheduler; prints its id.
#include <cstdio>

#include "cli/client_util.h"
#include "cli/command.h"
#include "common/file_util.h"
#include "common/job_spec.h"

namespace {

void setup_submit(CLI::App& app) {
  auto* cmd = app.add_subcommand("submit", "Queue a job (TOML spec) on a running scheduler");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  auto spec = std::make_shared<std::string>();
  cmd->add_option("spec", *spec, "Job spec (TOML)")->required();
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args, spec] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(std::string text, lema::read_file(*spec));
      // Check locally first: errors name the file, key and line.
      LEMA_RETURN_IF_ERROR(lema::JobSpec::parse(text, *spec).status());
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      auto id = client->submit(text);
      if (!id.ok()) return lema::cli::with_scheduler_hint(id.status(), *args);
      if (args->json) {
        lema::cli::print_json({{"job_id", id.value()}});
      } else {
        std::printf("job %lld queued; watch it with `lema show %lld` or `lema logs %lld -f`\n",
                    static_cast<long long>(id.value()), static_cast<long long>(id.value()),
                    static_cast<long long>(id.value()));
      }
      return lema::Status();
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_submit);
