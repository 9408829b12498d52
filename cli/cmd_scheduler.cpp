// `lema scheduler`: runs the scheduler process (SQLite store + ZeroMQ broker).
#include <csignal>
#include <cstdlib>
#include <cstdio>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "common/base/version.h"
#include "scheduler/broker.h"
#include "scheduler/curve_keys.h"

namespace {

lema::Broker* g_broker = nullptr;  // for the signal handler only

void on_signal(int) {
  if (g_broker) g_broker->request_stop();  // sets an atomic flag: async-signal-safe
}
// SIGHUP: re-read the authorized keys (a revoked key is refused from then on).
void on_hangup(int) {
  if (g_broker) g_broker->request_reload();  // an atomic flag too
}

struct SchedulerArgs {
  lema::BrokerOptions options;
  std::string token_file;
  std::string curve_secret_file;
  std::string curve_authorized_file;
  double worker_retention_days = 7;
};

lema::Status run_scheduler(SchedulerArgs& args) {
  if (!args.token_file.empty()) {
    LEMA_ASSIGN_OR_RETURN(std::string token, lema::read_file(args.token_file));
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) return lema::Status::invalid_argument(args.token_file + ": empty token");
    args.options.token = token;
  }
  if (!args.curve_secret_file.empty()) {
    LEMA_ASSIGN_OR_RETURN(args.options.curve_secret_key, lema::read_curve_key(args.curve_secret_file));
    if (args.curve_authorized_file.empty()) {
      return lema::Status::invalid_argument(
          "--curve-secret-file needs --curve-authorized (a directory of the workers' and clients' .pub files)");
    }
    args.options.curve_authorized_path = args.curve_authorized_file;  // read by the broker, again on SIGHUP
  }
  args.options.worker_retention_ms = static_cast<int64_t>(args.worker_retention_days * 24 * 3600 * 1000);
  for (const std::string& root : lema::allowed_roots_from_env()) args.options.allowed_roots.push_back(root);
  if (args.options.allow_remote_clients && args.options.token.empty() && args.options.curve_secret_key.empty()) {
    return lema::Status::invalid_argument("--allow-remote-clients needs a token or CURVE keys");
  }
  std::fprintf(stderr, "%s\n", LEMA_VERSION_STRING);
  LEMA_ASSIGN_OR_RETURN(auto broker, lema::Broker::create(args.options));
  g_broker = broker.get();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_hangup);
  lema::Status s = broker->run();
  g_broker = nullptr;
  return s;
}

void setup_scheduler(CLI::App& app) {
  auto args = std::make_shared<SchedulerArgs>();
  CLI::App* cmd = app.add_subcommand("scheduler", "Run the job scheduler (SQLite store, ZeroMQ broker)");
  cmd->add_option("--db", args->options.db_path, "SQLite database file (created if missing)")->required();
  cmd->add_option("--workers-bind", args->options.workers_bind, "ZeroMQ endpoint for workers")
      ->capture_default_str();
  cmd->add_option("--clients-bind", args->options.clients_bind, "ZeroMQ endpoint for clients (loopback by default)")
      ->capture_default_str();
  cmd->add_flag("--allow-remote-clients", args->options.allow_remote_clients,
                "Allow a non-loopback client endpoint (requires a token)");
  cmd->add_option("--token", args->options.token, "Shared secret required in HELLO and client requests")
      ->envname("LEMA_TOKEN");
  cmd->add_option("--token-file", args->token_file, "Read the shared secret from this file");
  cmd->add_option("--curve-secret-file", args->curve_secret_file, "Scheduler CURVE secret key (from `lema keys`)");
  cmd->add_option("--curve-authorized", args->curve_authorized_file,
                  "Directory of the .pub keys of the workers and clients allowed in (or a file, a key a line); "
                  "re-read on SIGHUP");
  cmd->add_flag("--insecure", args->options.insecure,
                "Allow endpoints beyond loopback without CURVE (anyone who reaches them can take and fake work)");
  cmd->add_option("--allow-path", args->options.allowed_roots,
                  "A root under which job specs may name absolute paths (repeatable; env LEMA_ALLOW_PATH, ':'-separated)");
  cmd->add_option("--worker-retention-days", args->worker_retention_days,
                  "Days the row of a lost worker is kept (`lema workers --all`)")
      ->capture_default_str();
  cmd->add_option("--max-messages-per-s", args->options.max_messages_per_s,
                  "Messages per second one connection may send; more are dropped (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--heartbeat-ms", args->options.heartbeat_interval_ms, "Heartbeat interval")
      ->capture_default_str();
  cmd->add_option("--liveness", args->options.heartbeat_liveness, "Missed heartbeats before a lease lapses")
      ->capture_default_str();
  cmd->callback([args] { lema::cli::finish(run_scheduler(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_scheduler);
