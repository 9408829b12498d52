#include "cli/client_util.h"

#include <cstdio>
#include <cstdlib>

#include "common/log.h"

namespace lema::cli {

void add_client_options(CLI::App* cmd, ClientArgs& args) {
  const char* env = std::getenv("LEMA_SCHEDULER");
  args.endpoint = env && *env ? env : "tcp://127.0.0.1:7501";
  cmd->add_option("--scheduler", args.endpoint, "Scheduler client endpoint (env LEMA_SCHEDULER)")
      ->capture_default_str();
  cmd->add_flag("--json", args.json, "Print JSON for scripts");
  cmd->add_option("--timeout-ms", args.timeout_ms, "How long to wait for the scheduler")->capture_default_str();
}

Status with_scheduler_hint(const Status& s, const ClientArgs& args) {
  if (s.code() != Status::Code::kUnavailable) return s;
  return Status::unavailable("no scheduler at " + args.endpoint +
                             ": start one with `lema scheduler` (or pass --scheduler / set LEMA_SCHEDULER)");
}

Result<std::unique_ptr<Client>> connect_client(const ClientArgs& args) {
  ClientOptions o;
  o.endpoint = args.endpoint;
  o.timeout_ms = args.timeout_ms;
  if (const char* t = std::getenv("LEMA_TOKEN")) o.token = t;
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::connect(o));
  Result<nlohmann::json> pong = client->ping();
  if (!pong.ok()) return with_scheduler_hint(pong.status(), args);
  return client;
}

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

std::string format_duration_ms(int64_t ms) {
  if (ms < 60000) return str_printf("%.1f s", ms / 1000.0);
  if (ms < 3600000) return str_printf("%.1f min", ms / 60000.0);
  return str_printf("%.1f h", ms / 3600000.0);
}

}  // namespace lema::cli
