// `lema scheduler [--db FILE] [--workers EP] [--clients EP]`: the scheduler
// process (SQLite store + ZeroMQ broker). SIGTERM/Ctrl-C stop it; a restart on
// the same database picks up every job, stage and checkpoint.
#include <csignal>
#include <cstdlib>

#include "cli/command.h"
#include "common/log.h"
#include "scheduler/broker.h"

namespace {

lema::Broker* g_broker = nullptr;
extern "C" void on_scheduler_signal(int) {
  if (g_broker) g_broker->request_stop();
}

void setup_scheduler(CLI::App& app) {
  auto* cmd = app.add_subcommand("scheduler", "Run the scheduler: jobs in SQLite, workers and clients over ZeroMQ");
  auto o = std::make_shared<lema::BrokerOptions>();
  o->db_path = "lema.db";
  cmd->add_option("--db", o->db_path, "SQLite database file")->capture_default_str();
  cmd->add_option("--workers", o->workers_bind, "Endpoint workers connect to")->capture_default_str();
  cmd->add_option("--clients", o->clients_bind, "Endpoint the CLI connects to")->capture_default_str();
  cmd->add_flag("--allow-remote-clients", o->allow_remote_clients,
                "Accept clients on a non-loopback endpoint (set LEMA_TOKEN too)");
  cmd->add_option("--heartbeat-ms", o->heartbeat_interval_ms, "Heartbeat interval")->capture_default_str();
  cmd->add_option("--retry-backoff-ms", o->store.retry_backoff_init_ms, "First retry delay of a failed stage")
      ->capture_default_str();
  cmd->callback([o] {
    if (const char* t = std::getenv("LEMA_TOKEN")) o->token = t;
    auto broker = lema::Broker::create(*o);
    if (!broker.ok()) return lema::cli::finish(broker.status());
    g_broker = broker->get();
    struct sigaction sa = {};
    sa.sa_handler = on_scheduler_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    lema::log_info("scheduler: database %s, workers %s, clients %s", o->db_path.c_str(),
                   (*broker)->workers_endpoint().c_str(), (*broker)->clients_endpoint().c_str());
    lema::Status s = (*broker)->run();
    g_broker = nullptr;
    lema::cli::finish(s);
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_scheduler);
