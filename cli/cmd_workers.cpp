// `lema workers`: workers the scheduler knows, connected or not.
#include <cstdio>

#include "cli/client_util.h"
#include "cli/command.h"
#include "common/file_util.h"

namespace {

void setup_workers(CLI::App& app) {
  auto* cmd = app.add_subcommand("workers", "List the scheduler's workers");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      auto r = client->workers();
      if (!r.ok()) return lema::cli::with_scheduler_hint(r.status(), *args);
      if (args->json) {
        lema::cli::print_json(r.value());
        return lema::Status();
      }
      const auto& workers = r.value()["workers"];
      if (workers.empty()) {
        std::printf("no workers; start one with `lema worker --scheduler tcp://HOST:7500`\n");
        return lema::Status();
      }
      std::printf("%-28s %-16s %-5s %-10s %-10s %s\n", "ID", "HOST", "GPUS", "VRAM", "STATE", "STAGES");
      for (const auto& w : workers) {
        std::string state = w.value("connected", false) ? (w.value("idle", false) ? "idle" : "busy") : "gone";
        std::printf("%-28s %-16s %-5lld %-10s %-10s %lld\n", w.value("id", std::string()).c_str(),
                    w.value("host", std::string()).c_str(), static_cast<long long>(w.value("gpus", int64_t{0})),
                    w.value("cpu_only", true) ? "-" : lema::format_bytes(w.value("vram_bytes", uint64_t{0})).c_str(),
                    state.c_str(), static_cast<long long>(w.value("leases", int64_t{0})));
      }
      return lema::Status();
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_workers);
