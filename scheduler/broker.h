// Broker: the scheduler process's main loop. Owns the JobStore and two
// ZeroMQ ROUTER sockets (workers, clients); runs poll -> dispatch -> purge
// expired leases -> heartbeat (docs/SCHEDULER.md, docs/PROTOCOL.md). Bad
// messages get an ERROR reply and are counted; nothing a peer sends can
// crash it.
//
// Thread-safety: create() and run() from one thread; stats() and
// request_stop() from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol/protocol.h"
#include "common/base/status.h"
#include "scheduler/clock.h"
#include "scheduler/job_store.h"

namespace lema {

struct BrokerOptions {
  std::string db_path;
  std::string workers_bind = "tcp://*:7500";
  std::string clients_bind = "tcp://127.0.0.1:7501";
  // Clients may only connect over loopback or ipc unless this is set.
  bool allow_remote_clients = false;
  // Shared secret that HELLO and every client request must carry; empty: none.
  std::string token;
  // ZeroMQ CURVE (both sockets) when curve_secret_key is set (Z85). Only
  // peers whose public key is in curve_authorized_keys may connect (ZAP).
  std::string curve_secret_key;
  std::vector<std::string> curve_authorized_keys;
  int64_t heartbeat_interval_ms = protocol::kHeartbeatIntervalMs;
  int heartbeat_liveness = protocol::kHeartbeatLiveness;
  StoreOptions store;
  const Clock* clock = nullptr;  // nullptr: the system clock. Must outlive the broker.
};

struct BrokerStats {
  uint64_t messages = 0;      // frames received on either socket
  uint64_t errors = 0;        // ERROR replies sent
  uint64_t malformed = 0;     // undecodable / bad envelope
  uint64_t unauthorized = 0;
  uint64_t stale = 0;         // fenced messages from old attempts
  uint64_t assignments = 0;
  // Loop turns that did work, and the time their COMMITs took (the WAL write,
  // and the checkpoint when SQLite runs one on this thread).
  uint64_t rounds = 0;
  double commit_ms_total = 0;
  double commit_ms_max = 0;
};

class Broker {
 public:
  static Result<std::unique_ptr<Broker>> create(const BrokerOptions& options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Endpoints actually bound (a "*" port resolved), for tests and logs.
  std::string workers_endpoint() const;
  std::string clients_endpoint() const;

  // Serves until request_stop() (or SIGINT/SIGTERM when the caller wires it).
  Status run();
  void request_stop();
  BrokerStats stats() const;

 private:
  struct Impl;
  explicit Broker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lema
