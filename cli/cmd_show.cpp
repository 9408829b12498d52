// `lema show JOB`: a job's stages, attempts, progress and last metrics.
#include <cstdio>

#include "cli/client_util.h"
#include "cli/command.h"
#include "common/log.h"

namespace {

void setup_show(CLI::App& app) {
  auto* cmd = app.add_subcommand("show", "Show a job: stages, attempts, progress, last metrics");
  auto args = std::make_shared<lema::cli::ClientArgs>();
  auto job = std::make_shared<int64_t>(0);
  cmd->add_option("job", *job, "Job id")->required();
  lema::cli::add_client_options(cmd, *args);
  cmd->callback([args, job] {
    lema::cli::finish([&]() -> lema::Status {
      LEMA_ASSIGN_OR_RETURN(auto client, lema::cli::connect_client(*args));
      auto r = client->show(*job);
      if (!r.ok()) return lema::cli::with_scheduler_hint(r.status(), *args);
      const nlohmann::json& j = r.value();
      if (args->json) {
        lema::cli::print_json(j);
        return lema::Status();
      }
      std::printf("job %lld  %s  %s\n  work dir: %s\n", static_cast<long long>(j.value("id", int64_t{0})),
                  j.value("name", std::string()).c_str(), j.value("state", std::string()).c_str(),
                  j.value("work_dir", std::string()).c_str());
      if (!j.value("error", std::string()).empty()) std::printf("  error: %s\n", j["error"].get<std::string>().c_str());
      if (!j.contains("stages")) return lema::Status();
      for (const auto& s : j["stages"]) {
        std::string line = lema::str_printf("  %-8s %-10s attempt %lld/%lld", s.value("kind", std::string()).c_str(),
                                            s.value("state", std::string()).c_str(),
                                            static_cast<long long>(s.value("attempt", int64_t{0})),
                                            static_cast<long long>(s.value("max_attempts", int64_t{0})));
        if (!s.value("worker", std::string()).empty()) line += "  on " + s["worker"].get<std::string>();
        if (s.contains("progress") && s["progress"].is_object()) {
          const auto& p = s["progress"];
          line += lema::str_printf("  step %lld", static_cast<long long>(p.value("step", int64_t{0})));
          if (p["total_steps"].is_number()) line += lema::str_printf("/%.0f", p["total_steps"].get<double>());
          if (p["loss"].is_number()) line += lema::str_printf("  loss %.4f", p["loss"].get<double>());
          if (p["tokens_per_s"].is_number()) line += lema::str_printf("  %.0f tok/s", p["tokens_per_s"].get<double>());
        }
        if (!s.value("checkpoint", std::string()).empty()) line += "\n           checkpoint " + s["checkpoint"].get<std::string>();
        if (!s.value("error", std::string()).empty()) line += "\n           error: " + s["error"].get<std::string>();
        std::printf("%s\n", line.c_str());
      }
      return lema::Status();
    }());
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_show);
