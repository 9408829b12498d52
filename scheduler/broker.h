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
  // peers whose public key is in curve_authorized_keys, or in
  // curve_authorized_path (a directory of .pub files, or one file with a key
  // a line; re-read by request_reload()), may connect (ZAP). A worker id is
  // bound to the key that first registered it (docs/SECURITY.md).
  std::string curve_secret_key;
  std::vector<std::string> curve_authorized_keys;
  std::string curve_authorized_path;
  // Without CURVE, an endpoint beyond loopback/ipc is refused unless this is
  // set (and then a warning is logged at every start).
  bool insecure = false;
  // Roots under which a submitted spec may name absolute paths (work_dir,
  // model, tokenizer, data); relative paths may not climb out with "..".
  std::vector<std::string> allowed_roots;
  // Limits per peer (docs/SECURITY.md "Limits"). Frames larger than
  // max_frame_bytes drop the connection (ZMQ_MAXMSGSIZE); messages beyond
  // max_messages_per_s (per connection, burst of one second) are dropped
  // unread; one key registers at most max_workers_per_key connected worker
  // ids; lost workers' rows go after worker_retention_ms, and beyond
  // max_lost_workers rows the oldest go first.
  int64_t max_frame_bytes = 1 << 20;
  int64_t max_messages_per_s = 5000;
  int max_workers_per_key = 256;
  int64_t worker_retention_ms = 7LL * 24 * 3600 * 1000;
  int64_t max_lost_workers = 1000;
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
  uint64_t rate_limited = 0;  // messages dropped by the per-peer rate limit
  uint64_t keys_refused = 0;  // CURVE handshakes ZAP refused
  uint64_t key_reloads = 0;   // authorized key lists (re)read
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
  // Re-reads curve_authorized_path on the broker's thread before its next
  // poll turn; connections whose key is no longer listed are refused from
  // then on. Async-signal-safe (SIGHUP).
  void request_reload();
  BrokerStats stats() const;

 private:
  struct Impl;
  explicit Broker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lema
