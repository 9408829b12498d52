// Shared plumbing of the client verbs (submit, jobs, show, logs, cancel,
// retry, workers): the --scheduler/--json options, a connected Client, and
// errors that say what to do.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/status.h"
#include "scheduler/client.h"

namespace lema::cli {

struct ClientArgs {
  std::string endpoint;  // default: $LEMA_SCHEDULER or tcp://127.0.0.1:7501
  bool json = false;
  int timeout_ms = 5000;
};

// Adds --scheduler, --json and --timeout-ms to `cmd`.
void add_client_options(CLI::App* cmd, ClientArgs& args);

// Connects and pings: a scheduler that does not answer gives kUnavailable
// "no scheduler at ...: start one with `lema scheduler`".
Result<std::unique_ptr<Client>> connect_client(const ClientArgs& args);

// Rewrites an unavailable status with the same hint.
Status with_scheduler_hint(const Status& s, const ClientArgs& args);

// Prints `j` as one line of JSON (for --json).
void print_json(const nlohmann::json& j);

// "12.3 s", "4 min", "2.1 h" for durations in ms.
std::string format_duration_ms(int64_t ms);

}  // namespace lema::cli
