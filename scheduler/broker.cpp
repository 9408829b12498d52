// The broker loop. zmq exceptions are caught in run() and create(); store
// errors become ERROR replies. Conversation state per worker connection lives
// in memory (conns_); everything that must survive a crash is in the store.
#include "scheduler/broker.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>
#include <set>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/base/bounds.h"
#include "common/protocol/job_paths.h"
#include "common/protocol/job_spec.h"
#include "common/base/log.h"
#include "common/base/version.h"
#include "scheduler/curve_keys.h"

namespace lema {
namespace {

using nlohmann::json;
using protocol::Message;
using protocol::MessageType;
namespace ec = protocol::error_code;

bool is_local_endpoint(const std::string& ep) {
  for (const char* p : {"ipc://", "inproc://", "tcp://127.", "tcp://localhost:", "tcp://[::1]:"}) {
    if (ep.rfind(p, 0) == 0) return true;
  }
  return false;
}

// Compares without an early exit so the token cannot be guessed byte by byte.
bool token_matches(const std::string& want, const std::string& got) {
  if (want.size() != got.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned char>(want[i] ^ got[i]);
  return diff == 0;
}

// Peer-supplied text in a log line: printable ASCII only (no forged lines).
std::string printable(const std::string& s) {
  std::string out = s.substr(0, 256);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

// Security warnings a peer can provoke are capped at kLogBudget a second,
// so a flood cannot fill the disk through the log; the rest are counted.
constexpr int kLogBudget = 20;
struct LogBudget {
  int64_t second = -1;
  int used = 0;
  uint64_t suppressed = 0;
  bool take(int64_t now_ms) {
    if (now_ms / 1000 != second) {
      if (suppressed > 0) log_warn("broker: %llu more refusals not logged", (unsigned long long)suppressed);
      second = now_ms / 1000;
      used = 0;
      suppressed = 0;
    }
    if (used < kLogBudget) {
      ++used;
      return true;
    }
    ++suppressed;
    return false;
  }
};

const char* error_code_for(const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotFound: return ec::kNotFound;
    case Status::Code::kInvalidArgument: return ec::kInvalid;
    default: return ec::kInternal;
  }
}

struct Counter {
  std::atomic<uint64_t> messages{0}, errors{0}, malformed{0}, unauthorized{0}, stale{0}, assignments{0};
  std::atomic<uint64_t> rate_limited{0}, keys_refused{0}, key_reloads{0};
  std::atomic<uint64_t> rounds{0};
  std::atomic<double> commit_ms_total{0}, commit_ms_max{0};
};

}  // namespace

struct Broker::Impl {
  BrokerOptions options;
  SystemClock system_clock;
  const Clock* clock = nullptr;
  std::unique_ptr<JobStore> store;
  zmq::context_t ctx{1};
  // ZAP handler for CURVE: libzmq asks it whether a client key may connect.
  zmq::socket_t zap{ctx, zmq::socket_type::rep};
  std::set<std::string> authorized_keys;  // Z85
  zmq::socket_t workers{ctx, zmq::socket_type::router};
  zmq::socket_t clients{ctx, zmq::socket_type::router};
  std::string workers_ep, clients_ep;
  std::atomic<bool> stop{false};
  std::atomic<bool> reload{false};
  Counter counter;

  // One connected worker (keyed by its ZeroMQ routing id). info.curve_key
  // is the key its connection authenticated with.
  struct Conn {
    WorkerInfo info;
    int64_t last_seen_ms = 0;
    bool idle = false;
  };
  // Token bucket per connection (routing id), on both sockets.
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };
  std::map<std::string, Bucket> buckets;
  int64_t next_worker_expiry_ms = 0;
  LogBudget log_budget;

  bool curve() const { return !options.curve_secret_key.empty(); }
  // True when the message may be handled: under the peer's rate, and (with
  // CURVE) from a key still authorized.
  bool admit(zmq::socket_t& sock, const std::vector<std::string>& env, const std::string& key,
             const zmq::message_t& payload);
  Status reload_keys();
  std::map<std::string, Conn> conns;                // routing id -> connection
  std::map<std::string, std::string> routing_of;    // worker id -> routing id
  bool work_may_exist = true;  // set when something may have become runnable

  int64_t now() const { return clock->now_ms(); }
  int64_t lease_ms() const { return options.heartbeat_interval_ms * options.heartbeat_liveness; }
  // How long a worker may take to be heard after the broker was away: one
  // silent lease time for it to give up its connection, its longest
  // reconnect backoff, and a lease time for the new HELLO.
  int64_t restart_grace_ms() const { return 2 * lease_ms() + protocol::kReconnectBackoffMaxMs; }

  // --- sending
  // Replies wait in the outbox while a batch is open: a peer must never see
  // an ASSIGN or a job id that a crash could still take back.
  struct Outgoing {
    zmq::socket_t* sock;
    std::vector<std::string> envelope;
    std::string body;
    MessageType type;
  };
  bool batching = false;
  std::vector<Outgoing> outbox;

  void send(zmq::socket_t& sock, const std::vector<std::string>& envelope, const Message& m) {
    queue(sock, envelope, protocol::encode(m), m.type);
  }
  void queue(zmq::socket_t& sock, const std::vector<std::string>& envelope, std::string body, MessageType type) {
    if (batching) {
      outbox.push_back({&sock, envelope, std::move(body), type});
      return;
    }
    send_bytes(sock, envelope, body, type);
  }
  void send_bytes(zmq::socket_t& sock, const std::vector<std::string>& envelope, const std::string& body,
                  MessageType type) {
    try {
      for (const std::string& frame : envelope) sock.send(zmq::buffer(frame), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      sock.send(zmq::buffer(body), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      log_warn("broker: send %s failed: %s", protocol::message_type_name(type), e.what());
    }
  }
  void send_error(zmq::socket_t& sock, const std::vector<std::string>& envelope, const std::string& code,
                  const std::string& text, int64_t req = -1) {
    counter.errors++;
    send(sock, envelope, protocol::make_error(code, text, req));
  }
  void send_worker(const std::string& routing_id, const Message& m) { send(workers, {routing_id}, m); }

  // --- workers
  void handle_worker(const std::vector<std::string>& env, const std::string& key, const std::string& payload);
  void handle_hello(const std::string& rid, const std::string& key, const Message& m);
  void assign_to(const std::string& rid, Conn& conn);
  void assign_idle();
  void send_cancels();
  void purge();
  // Called by purge when the time since the last purge shows this process
  // was not running (gap_ms): leases and connections get a grace period
  // instead of being judged by a silence that was the broker's own.
  void resumed(int64_t t, int64_t gap_ms);
  int64_t last_purge_ms = 0;
  void heartbeat();

  // --- clients
  void handle_client(const std::vector<std::string>& env, const std::string& key, const std::string& payload);
  Result<json> client_request(const Message& m);

  // Reads up to 1000 queued messages of one socket and hands each to `handle`.
  template <typename F>
  void drain(zmq::socket_t& sock, F&& handle) {
    for (int i = 0; i < 1000; ++i) {
      std::vector<zmq::message_t> frames;
      auto n = zmq::recv_multipart(sock, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!n) return;
      counter.messages++;
      std::vector<std::string> env;
      // ROUTER frames: [routing id][(empty delimiter, REQ peers)][payload].
      // Anything else is a malformed envelope.
      if (frames.size() < 2 || frames.size() > 3 || (frames.size() == 3 && frames[1].size() != 0)) {
        counter.malformed++;
        env.push_back(frames[0].to_string());
        if (frames.size() >= 2 && frames[1].size() == 0) env.push_back("");
        send_error(sock, env, ec::kMalformed, "expected exactly one message frame");
        continue;
      }
      for (size_t f = 0; f + 1 < frames.size(); ++f) env.push_back(frames[f].to_string());
      // With CURVE, ZAP set the User-Id of the connection to its public key
      // (Z85): who sent this, whatever the message claims.
      const char* uid = curve() ? zmq_msg_gets(frames.back().handle(), "User-Id") : nullptr;
      std::string key = uid ? uid : "";
      if (!admit(sock, env, key, frames.back())) continue;
      handle(env, key, frames.back().to_string());
    }
  }
};

void Broker::Impl::handle_hello(const std::string& rid, const std::string& key, const Message& m) {
  if (!options.token.empty() && !token_matches(options.token, m.str("token"))) {
    counter.unauthorized++;
    send_error(workers, {rid}, ec::kUnauthorized, "HELLO: bad or missing token");
    return;
  }
  WorkerInfo info;
  info.id = m.str("worker_id");
  info.host = m.str("host").substr(0, 256);
  info.gpus = m.i64("gpus");
  info.vram_bytes = m.i64("vram_bytes");
  info.cpu_only = m.flag("cpu_only", info.gpus == 0);
  info.version = m.str("version").substr(0, 256);
  info.curve_key = key;
  if (info.id.empty() || info.id.size() > 256) {
    send_error(workers, {rid}, ec::kInvalid, "HELLO: worker_id must be 1..256 characters");
    return;
  }
  auto refuse = [&](const std::string& why) {
    counter.unauthorized++;
    if (log_budget.take(now())) {
      log_warn("broker: HELLO as worker %s refused: %s", printable(info.id).c_str(), why.c_str());
    }
    send_error(workers, {rid}, ec::kUnauthorized, "HELLO: " + why);
  };
  // One connection is one worker: a second id on it would leave the first
  // registered forever (and lets one peer fill the table).
  auto same = conns.find(rid);
  if (same != conns.end() && same->second.info.id != info.id) {
    return refuse("this connection is already worker '" + same->second.info.id + "'");
  }
  int per_key = 0;
  for (const auto& [other_rid, c] : conns) {
    if (other_rid != rid && c.info.curve_key == key && c.info.id != info.id) ++per_key;
  }
  if (per_key >= options.max_workers_per_key) {
    return refuse("key " + (key.empty() ? std::string("(none)") : key) + " already has " + std::to_string(per_key) +
                  " workers connected (the limit)");
  }
  // The store refuses an id bound to another key: no peer speaks for another.
  Status s = store->upsert_worker(info, now());
  if (s.code() == Status::Code::kInvalidArgument) return refuse(s.message());
  // The same worker on a new connection replaces the old one.
  auto old = routing_of.find(info.id);
  if (old != routing_of.end() && old->second != rid) {
    conns.erase(old->second);
    buckets.erase(old->second);
  }
  routing_of[info.id] = rid;
  Conn& conn = conns[rid];
  conn.info = info;
  conn.last_seen_ms = now();
  conn.idle = false;
  // A worker that comes back without naming its running stage has lost it.
  int64_t keep = 0;
  if (m.has("running") && m.fields["running"].is_object()) {
    keep = m.fields["running"].value("stage_id", int64_t(0));
  }
  auto released = store->release_worker_leases(info.id, keep, now());
  if (!s.ok() || !released.ok()) {
    log_error("broker: HELLO from %s: %s", info.id.c_str(), (!s.ok() ? s : released.status()).to_string().c_str());
  } else if (!released->empty()) {
    work_may_exist = true;
  }
  if (keep) (void)store->renew_leases(info.id, now() + lease_ms());
  // Whether the named stage's lease is still this worker's: a worker that
  // fenced itself (silence longer than it may write) resumes writing only
  // on held = true, and drops the stage otherwise (issue 19 F2).
  json lease;
  if (keep) {
    const int64_t attempt = m.fields["running"].value("attempt", int64_t(0));
    Result<JobStore::LeaseCheck> held = store->check_lease(keep, attempt, info.id);
    lease = {{"stage_id", keep}, {"attempt", attempt}, {"held", held.ok() && held->held},
             {"done", held.ok() && held->succeeded}};
  }
  log_info("broker: worker %s connected (host %s, %lld GPU, %s VRAM%s%s%s)", printable(info.id).c_str(),
           printable(info.host).c_str(),
           (long long)info.gpus, std::to_string(info.vram_bytes).c_str(), info.cpu_only ? ", cpu only" : "",
           key.empty() ? "" : ", key ", key.c_str());
  Message welcome(MessageType::kWelcome, {{"worker_id", info.id},
                                         {"heartbeat_interval_ms", options.heartbeat_interval_ms},
                                         {"liveness", options.heartbeat_liveness}});
  if (keep) welcome.fields["lease"] = std::move(lease);
  // Echoed so that the worker tells this answer from one to an earlier
  // HELLO that it reads late (after a freeze): only the answer to its
  // newest HELLO speaks of the lease now.
  if (m.has("hello_seq")) welcome.fields["hello_seq"] = m.i64("hello_seq");
  send_worker(rid, welcome);
}

void Broker::Impl::assign_to(const std::string& rid, Conn& conn) {
  auto a = store->assign_next(conn.info, lease_ms(), now());
  if (!a.ok()) {
    log_error("broker: assign: %s", a.status().to_string().c_str());
    return;
  }
  if (!a->has_value()) return;
  Assignment& as = **a;
  json fields = {{"job_id", as.job_id},
                 {"stage_id", as.stage_id},
                 {"attempt", as.attempt},
                 {"kind", std::move(as.kind)},
                 {"work_dir", std::move(as.work_dir)}};
  if (!as.resume_checkpoint.empty()) fields["resume_checkpoint"] = as.resume_checkpoint;
  if (!as.resume_candidates.empty()) fields["resume_candidates"] = std::move(as.resume_candidates);
  conn.idle = false;
  counter.assignments++;
  // The spec goes in as the msgpack the store cached for the job: no copy,
  // no re-encoding per assignment.
  queue(workers, {rid}, protocol::encode(Message(MessageType::kAssign, std::move(fields)), {{"spec", as.spec_msgpack.get()}}),
        MessageType::kAssign);
}

void Broker::Impl::assign_idle() {
  if (!work_may_exist) return;
  work_may_exist = false;
  for (auto& [rid, conn] : conns) {
    if (conn.idle) assign_to(rid, conn);
  }
}

void Broker::Impl::send_cancels() {
  for (const LeaseRef& ref : store->take_cut_leases()) {
    auto it = routing_of.find(ref.worker_id);
    if (it == routing_of.end()) continue;
    send_worker(it->second, Message(MessageType::kCancel, {{"stage_id", ref.stage_id}, {"attempt", ref.attempt}}));
  }
}

void Broker::Impl::handle_worker(const std::vector<std::string>& env, const std::string& key,
                                 const std::string& payload) {
  const std::string& rid = env[0];
  if (env.size() != 1) {
    counter.malformed++;
    send_error(workers, env, ec::kMalformed, "workers must use a DEALER socket (no empty delimiter)");
    return;
  }
  Result<Message> decoded = protocol::decode(payload);
  if (!decoded.ok()) {
    counter.malformed++;
    send_error(workers, env, ec::kMalformed, decoded.status().message());
    return;
  }
  const Message& m = *decoded;
  if (m.type == MessageType::kHello) return handle_hello(rid, key, m);
  auto it = conns.find(rid);
  if (it != conns.end() && it->second.info.curve_key != key) {
    // A routing id reused by another key (ZMQ_ROUTING_ID): not that worker.
    counter.unauthorized++;
    if (log_budget.take(now())) {
      log_warn("broker: %s from key %s on worker %s's routing id refused", protocol::message_type_name(m.type),
               key.c_str(), printable(it->second.info.id).c_str());
    }
    send_error(workers, env, ec::kUnauthorized, "this connection belongs to another key");
    return;
  }
  if (it == conns.end()) {
    send_error(workers, env, ec::kHelloRequired,
               std::string(protocol::message_type_name(m.type)) + " before HELLO: say HELLO first");
    return;
  }
  Conn& conn = it->second;
  conn.last_seen_ms = now();
  const std::string& wid = conn.info.id;
  auto reply_error = [&](const char* code, const std::string& message) {
    Message err = protocol::make_error(code, message);
    if (m.has("stage_id")) err.fields["stage_id"] = m.i64("stage_id");
    if (m.has("attempt")) err.fields["attempt"] = m.i64("attempt");
    counter.errors++;
    send(workers, env, err);
  };
  // Fencing comes first: a message about a stage from an attempt that no
  // longer holds the stage's lease changes nothing and is answered
  // stale_attempt, so that its worker drops the stage.
  const bool about_a_stage = m.type == MessageType::kProgress || m.type == MessageType::kCheckpoint ||
                             m.type == MessageType::kDone || m.type == MessageType::kFailed ||
                             (m.type == MessageType::kLog && m.has("stage_id"));
  if (about_a_stage) {
    Result<JobStore::LeaseCheck> lease = store->check_lease(m.i64("stage_id"), m.i64("attempt"), wid);
    if (!lease.ok()) return reply_error(error_code_for(lease.status()), lease.status().message());
    if (!lease->held) {
      counter.stale++;
      return reply_error(ec::kStaleAttempt, "stale: " + lease->why);
    }
  }
  Status s;
  switch (m.type) {
    case MessageType::kHeartbeat:
      s = store->renew_leases(wid, now() + lease_ms());
      break;
    case MessageType::kReady:
      conn.idle = true;
      assign_to(rid, conn);
      return;
    case MessageType::kProgress:
      s = store->record_progress(m.i64("stage_id"), m.i64("attempt"), wid, m.i64("step"), m.i64("total_steps"),
                                 m.has("metrics") ? m.fields["metrics"] : json::object(), now());
      if (s.ok()) s = store->renew_leases(wid, now() + lease_ms());
      break;
    case MessageType::kCheckpoint:
      s = store->record_checkpoint(m.i64("stage_id"), m.i64("attempt"), wid, m.i64("step"), m.str("path"),
                                   m.str("sha256"), now());
      break;
    case MessageType::kLog:
      // Only about a stage this worker holds (fenced above): a line with no
      // stage would be stored for nobody to read, so it is dropped.
      if (!m.has("stage_id")) return;
      s = store->add_event(0, m.i64("stage_id"), m.i64("attempt"), m.str("level"), m.str("line").substr(0, 8192),
                           now());
      break;
    case MessageType::kDone:
      s = store->complete_stage(m.i64("stage_id"), m.i64("attempt"), wid,
                                m.has("result") ? m.fields["result"] : json(nullptr), now());
      if (s.ok()) work_may_exist = true;
      break;
    case MessageType::kFailed:
      s = store->fail_stage(m.i64("stage_id"), m.i64("attempt"), wid, m.str("error"), m.flag("retryable", true),
                            now(), m.flag("crashed", false));
      if (s.ok()) work_may_exist = true;
      break;
    default:
      send_error(workers, env, ec::kOutOfOrder,
                 std::string(protocol::message_type_name(m.type)) + " is not a worker-to-scheduler message");
      return;
  }
  if (!s.ok()) reply_error(error_code_for(s), s.message());
}

Result<json> Broker::Impl::client_request(const Message& m) {
  switch (m.type) {
    case MessageType::kSubmit: {
      LEMA_ASSIGN_OR_RETURN(JobSpec spec, JobSpec::parse(m.str("spec"), m.str("source", "spec").substr(0, 256)));
      LEMA_RETURN_IF_ERROR(check_submitted_paths(spec, options.allowed_roots));
      const std::string request_id = m.str("request_id");
      if (request_id.size() > 128 || !check_name(request_id, false).ok()) {
        return Status::invalid_argument("SUBMIT: request_id must be at most 128 characters without control characters");
      }
      LEMA_ASSIGN_OR_RETURN(int64_t id, store->submit(m.str("spec"), spec, now(), request_id));
      work_may_exist = true;
      return json{{"job_id", id}};
    }
    case MessageType::kList: {
      LEMA_ASSIGN_OR_RETURN(json jobs, store->list_jobs(m.str("state"), m.i64("limit", 100)));
      LEMA_ASSIGN_OR_RETURN(json counts, store->job_counts());
      return json{{"jobs", jobs}, {"counts", counts}};
    }
    case MessageType::kShow:
      return store->show_job(m.i64("job_id"));
    case MessageType::kLogs: {
      LEMA_ASSIGN_OR_RETURN(json job, store->show_job(m.i64("job_id")));
      LEMA_ASSIGN_OR_RETURN(json events, store->job_logs(m.i64("job_id"), m.i64("after_id"), m.i64("limit", 1000)));
      return json{{"events", events}, {"job_state", job["state"]}};
    }
    case MessageType::kCancel: {
      if (!m.has("job_id")) return Status::invalid_argument("CANCEL: field 'job_id' missing");
      LEMA_RETURN_IF_ERROR(store->cancel_job(m.i64("job_id"), now()));
      send_cancels();
      return json{{"job_id", m.i64("job_id")}, {"state", "cancelled"}};
    }
    case MessageType::kRetry:
      LEMA_RETURN_IF_ERROR(store->retry_job(m.i64("job_id"), now()));
      work_may_exist = true;
      return json{{"job_id", m.i64("job_id")}, {"state", "queued"}};
    case MessageType::kWorkers: {
      LEMA_ASSIGN_OR_RETURN(json workers_json, store->list_workers(m.flag("all", true)));
      for (json& w : workers_json) {
        auto it = routing_of.find(w["id"].get<std::string>());
        bool connected = it != routing_of.end() && conns.count(it->second);
        w["connected"] = connected;
        w["idle"] = connected && conns[it->second].idle;
      }
      return json{{"workers", workers_json}};
    }
    case MessageType::kPing: {
      LEMA_ASSIGN_OR_RETURN(json counts, store->job_counts());
      return json{{"pong", true},
                  {"version", LEMA_VERSION_STRING},
                  {"protocol", protocol::kProtocolVersion},
                  {"jobs", counts},
                  {"workers_connected", conns.size()},
                  {"stats",
                   {{"messages", counter.messages.load()}, {"errors", counter.errors.load()},
                    {"malformed", counter.malformed.load()}, {"unauthorized", counter.unauthorized.load()},
                    {"stale", counter.stale.load()}, {"assignments", counter.assignments.load()},
                    {"rate_limited", counter.rate_limited.load()}, {"keys_refused", counter.keys_refused.load()}}}};
    }
    default:
      return Status::unsupported(std::string(protocol::message_type_name(m.type)) + " is not a client request");
  }
}

void Broker::Impl::handle_client(const std::vector<std::string>& env, const std::string& /*key*/,
                                 const std::string& payload) {
  Result<Message> decoded = protocol::decode(payload);
  if (!decoded.ok()) {
    counter.malformed++;
    send_error(clients, env, ec::kMalformed, decoded.status().message());
    return;
  }
  const Message& m = *decoded;
  int64_t req = m.i64("req", -1);
  if (!options.token.empty() && !token_matches(options.token, m.str("token"))) {
    counter.unauthorized++;
    send_error(clients, env, ec::kUnauthorized, "bad or missing token", req);
    return;
  }
  Result<json> r = client_request(m);
  if (!r.ok()) {
    const char* code = r.status().code() == Status::Code::kUnsupported ? ec::kOutOfOrder : error_code_for(r.status());
    send_error(clients, env, code, r.status().message(), req);
    return;
  }
  send(clients, env, protocol::make_reply(std::move(*r), req));
}

// ZAP request frames (RFC 27): version, request id, domain, address,
// identity, mechanism, then for CURVE the 32-byte client public key.
// The reply's user id is the key itself: every message of the connection
// then carries it as its "User-Id" property (zmq_msg_gets).
void handle_zap(zmq::socket_t& zap, const std::set<std::string>& authorized, Counter& counter, LogBudget& budget,
                int64_t now_ms) {
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(zap, std::back_inserter(frames), zmq::recv_flags::dontwait)) return;
  std::string version = frames.size() > 0 ? frames[0].to_string() : "1.0";
  std::string request_id = frames.size() > 1 ? frames[1].to_string() : "";
  bool ok = false;
  char z85[41] = {0};
  if (frames.size() >= 7 && frames[5].to_string() == "CURVE" && frames[6].size() == 32) {
    zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
    ok = authorized.count(z85) > 0;
    if (!ok) {
      counter.keys_refused++;
      if (budget.take(now_ms)) {
        log_warn("broker: CURVE key %s from %s refused (not in the authorized keys)", z85,
                 frames.size() > 3 ? printable(frames[3].to_string()).c_str() : "?");
      }
    }
  }
  std::vector<std::string> reply = {version, request_id, ok ? "200" : "400", ok ? "OK" : "unauthorized key",
                                    ok ? std::string(z85) : std::string(), ""};
  for (size_t i = 0; i < reply.size(); ++i) {
    zap.send(zmq::buffer(reply[i]), i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

bool Broker::Impl::admit(zmq::socket_t& sock, const std::vector<std::string>& env, const std::string& key,
                         const zmq::message_t& payload) {
  const std::string& rid = env[0];
  if (curve() && !authorized_keys.count(key)) {
    // Authorized at the handshake, revoked since (request_reload).
    counter.unauthorized++;
    auto it = conns.find(rid);
    if (it != conns.end()) {
      log_warn("broker: worker %s: key %s was revoked; dropped", printable(it->second.info.id).c_str(), key.c_str());
      (void)store->mark_worker_lost(it->second.info.id, now());
      routing_of.erase(it->second.info.id);
      conns.erase(it);
    }
    // The request id lets a client tell this answer from a timeout.
    Result<Message> m = protocol::decode(payload.data(), payload.size());
    send_error(sock, env, ec::kUnauthorized, "key " + key + " was revoked", m.ok() ? m->i64("req", -1) : -1);
    return false;
  }
  if (options.max_messages_per_s <= 0) return true;
  const double rate = static_cast<double>(options.max_messages_per_s);
  Bucket& b = buckets[rid];
  const int64_t t = now();
  if (b.last_ms == 0) b.tokens = rate;
  b.tokens = std::min(rate, b.tokens + rate * static_cast<double>(t - b.last_ms) / 1000.0);
  b.last_ms = t;
  if (b.tokens < 1) {
    // Dropped unread and unanswered: an answer would cost as much again.
    if (counter.rate_limited++ % 10000 == 0) {
      log_warn("broker: peer over %lld messages/s; dropping its messages", (long long)options.max_messages_per_s);
    }
    return false;
  }
  b.tokens -= 1;
  return true;
}

Status Broker::Impl::reload_keys() {
  if (!curve()) return Status();
  std::set<std::string> keys(options.curve_authorized_keys.begin(), options.curve_authorized_keys.end());
  if (!options.curve_authorized_path.empty()) {
    LEMA_ASSIGN_OR_RETURN(std::vector<std::string> listed, read_authorized_keys(options.curve_authorized_path));
    keys.insert(listed.begin(), listed.end());
  }
  size_t revoked = 0;
  for (const std::string& k : authorized_keys) revoked += keys.count(k) ? 0 : 1;
  authorized_keys.swap(keys);
  counter.key_reloads++;
  log_info("scheduler: %zu authorized keys (%zu revoked)", authorized_keys.size(), revoked);
  return Status();
}

void Broker::Impl::purge() {
  // One time for the whole judgement: a freeze after this line is seen by
  // the next purge, never half-applied to this one.
  const int64_t t = now();
  if (last_purge_ms > 0 && t - last_purge_ms > options.heartbeat_interval_ms) resumed(t, t - last_purge_ms);
  last_purge_ms = t;
  auto lapsed = store->expire_leases(t);
  if (!lapsed.ok()) {
    log_error("broker: expiring leases: %s", lapsed.status().to_string().c_str());
  } else {
    for (const LeaseRef& ref : *lapsed) {
      log_warn("broker: lease of stage %lld attempt %lld on %s lapsed; requeued", (long long)ref.stage_id,
               (long long)ref.attempt, ref.worker_id.c_str());
      work_may_exist = true;
    }
  }
  int64_t cutoff = t - lease_ms();
  for (auto it = conns.begin(); it != conns.end();) {
    if (it->second.last_seen_ms < cutoff) {
      log_warn("broker: worker %s silent for %lld ms; dropped", it->second.info.id.c_str(),
               (long long)(now() - it->second.last_seen_ms));
      (void)store->mark_worker_lost(it->second.info.id, now());
      routing_of.erase(it->second.info.id);
      it = conns.erase(it);
    } else {
      ++it;
    }
  }
  // Buckets of connections quiet for a while go (a new one starts full).
  for (auto it = buckets.begin(); it != buckets.end();) {
    it = it->second.last_ms < cutoff && !conns.count(it->first) ? buckets.erase(it) : std::next(it);
  }
  if (now() >= next_worker_expiry_ms) {
    next_worker_expiry_ms = now() + 10000;
    auto gone = store->expire_workers(now() - options.worker_retention_ms, options.max_lost_workers);
    if (gone.ok() && *gone > 0) log_info("broker: %lld rows of lost workers expired", (long long)*gone);
  }
  send_cancels();
}

void Broker::Impl::resumed(int64_t t, int64_t gap_ms) {
  // This process did not run for gap_ms (SIGSTOP, a paused VM, a machine
  // swapping; or the clock jumped): whatever the workers sent meanwhile
  // waits unread in the sockets, and libzmq's own threads, frozen too, may
  // not even have moved it off the network yet. Their silence is ours, so
  // no lease is judged by it: every lease and connection gets a full lease
  // time from now to be heard again (issue 19: a DONE queued during the
  // freeze arrived after its lease had been expired and its stage handed
  // to the other worker, which ran it a second time). A gap longer than a
  // lease is a restart as far as the workers can tell (they gave up the
  // connection and may be in their reconnect backoff): the grace of a
  // restart (Broker::create). (A broker late by more than an interval at
  // every sweep would never let a lease lapse; it then hears nobody in
  // time either, and says so here at every sweep.)
  const int64_t grace = gap_ms > lease_ms() ? restart_grace_ms() : lease_ms();
  log_warn("broker: this process did not run for %lld ms: every lease and worker gets %lld ms to be heard "
           "before any is judged silent",
           (long long)gap_ms, (long long)grace);
  Status s = store->extend_all_leases(t + grace);
  if (!s.ok()) log_error("broker: extending leases after a pause: %s", s.to_string().c_str());
  // A connection's silence counts from now, less a lease, plus the grace.
  for (auto& [rid, conn] : conns) conn.last_seen_ms = std::max(conn.last_seen_ms, t - lease_ms() + grace);
}

void Broker::Impl::heartbeat() {
  std::string body = protocol::encode(Message(MessageType::kHeartbeat));
  for (auto& [rid, conn] : conns) {
    try {
      workers.send(zmq::buffer(rid), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      workers.send(zmq::buffer(body), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }
}

Broker::Broker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Broker::~Broker() = default;

Result<std::unique_ptr<Broker>> Broker::create(const BrokerOptions& options) {
  if (!options.allow_remote_clients && !is_local_endpoint(options.clients_bind)) {
    return Status::invalid_argument("client endpoint " + options.clients_bind +
                                    " is not loopback/ipc; pass --allow-remote-clients (and set a token) to allow it");
  }
  if (options.heartbeat_interval_ms <= 0 || options.heartbeat_liveness <= 0) {
    return Status::invalid_argument("heartbeat interval and liveness must be positive");
  }
  // Secure by default: without CURVE, anyone who reaches a port can take job
  // specs, report stages done and submit jobs (docs/SECURITY.md).
  for (const std::string* ep : {&options.workers_bind, &options.clients_bind}) {
    if (options.curve_secret_key.empty() && !is_local_endpoint(*ep)) {
      if (!options.insecure) {
        return Status::invalid_argument(
            "endpoint " + *ep + " reaches beyond loopback and no CURVE keys are set: give --curve-secret-file and "
            "--curve-authorized (docs/SECURITY.md), bind to 127.0.0.1, or pass --insecure");
      }
      log_warn("scheduler: INSECURE: %s is open to anyone who can reach it (no CURVE): any peer can read job "
               "specs, report stages done and submit jobs; tokens cross the network in clear", ep->c_str());
    }
  }
  if (!options.curve_secret_key.empty() && options.curve_authorized_keys.empty() &&
      options.curve_authorized_path.empty()) {
    return Status::invalid_argument("CURVE secret key given but no authorized keys (--curve-authorized)");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock ? options.clock : &impl->system_clock;
  LEMA_ASSIGN_OR_RETURN(impl->store, JobStore::open(options.db_path, options.store));
  try {
    if (!options.curve_secret_key.empty()) {
      if (zmq_has("curve") != 1) return Status::unsupported("CURVE keys given but this libzmq lacks CURVE");
      if (options.curve_secret_key.size() != 40) return Status::invalid_argument("CURVE secret key must be 40 Z85 characters");
      impl->zap.set(zmq::sockopt::linger, 0);
      impl->zap.bind("inproc://zeromq.zap.01");
      LEMA_RETURN_IF_ERROR(impl->reload_keys());
      for (zmq::socket_t* s : {&impl->workers, &impl->clients}) {
        s->set(zmq::sockopt::curve_server, 1);
        s->set(zmq::sockopt::curve_secretkey, options.curve_secret_key);
        s->set(zmq::sockopt::zap_domain, "lema");
      }
    }
    for (zmq::socket_t* s : {&impl->workers, &impl->clients}) {
      s->set(zmq::sockopt::linger, 0);
      // A larger frame drops the connection before it is buffered.
      s->set(zmq::sockopt::maxmsgsize, std::min<int64_t>(options.max_frame_bytes, protocol::kMaxMessageBytes));
      s->set(zmq::sockopt::rcvhwm, 1000);
      s->set(zmq::sockopt::sndhwm, 100000);
    }
    impl->workers.bind(options.workers_bind);
    impl->clients.bind(options.clients_bind);
    impl->workers_ep = impl->workers.get(zmq::sockopt::last_endpoint);
    impl->clients_ep = impl->clients.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::unavailable(std::string("binding ") + options.workers_bind + " / " + options.clients_bind + ": " +
                               e.what());
  }
  // After a restart, running stages keep their leases long enough for their
  // workers to reconnect and name them in HELLO: one silent lease time for
  // the worker to give up its old connection, its longest reconnect backoff,
  // and a lease time for the new HELLO. A lease lapsing first would run a
  // stage (even a finished one, its DONE in flight) a second time (issue 19 F1).
  LEMA_RETURN_IF_ERROR(impl->store->extend_all_leases(impl->now() + impl->restart_grace_ms()));
  return std::unique_ptr<Broker>(new Broker(std::move(impl)));
}

std::string Broker::workers_endpoint() const { return impl_->workers_ep; }
std::string Broker::clients_endpoint() const { return impl_->clients_ep; }
void Broker::request_stop() { impl_->stop = true; }
void Broker::request_reload() { impl_->reload = true; }

BrokerStats Broker::stats() const {
  const Counter& c = impl_->counter;
  BrokerStats s;
  s.messages = c.messages;
  s.errors = c.errors;
  s.malformed = c.malformed;
  s.unauthorized = c.unauthorized;
  s.stale = c.stale;
  s.assignments = c.assignments;
  s.rate_limited = c.rate_limited;
  s.keys_refused = c.keys_refused;
  s.key_reloads = c.key_reloads;
  s.rounds = c.rounds;
  s.commit_ms_total = c.commit_ms_total;
  s.commit_ms_max = c.commit_ms_max;
  return s;
}

Status Broker::run() {
  Impl& d = *impl_;
  log_info("scheduler: workers on %s, clients on %s", d.workers_ep.c_str(), d.clients_ep.c_str());
  // The poll timeout bounds how late a lapsed lease or a stop request is seen.
  const int64_t tick_ms = std::min<int64_t>(d.options.heartbeat_interval_ms / 4 + 1, 100);
  int64_t next_purge = d.now();
  int64_t next_heartbeat = d.now() + d.options.heartbeat_interval_ms;
  try {
    while (!d.stop) {
      bool curve = !d.options.curve_secret_key.empty();
      zmq::pollitem_t items[] = {{d.workers.handle(), 0, ZMQ_POLLIN, 0},
                                 {d.clients.handle(), 0, ZMQ_POLLIN, 0},
                                 {d.zap.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, curve ? 3 : 2, std::chrono::milliseconds(tick_ms));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;  // a signal (SIGINT/SIGTERM sets stop)
        throw;
      }
      if (d.reload.exchange(false)) {
        Status r = d.reload_keys();
        if (!r.ok()) log_error("scheduler: reloading keys: %s (the previous list stays)", r.to_string().c_str());
      }
      if (curve && (items[2].revents & ZMQ_POLLIN)) {
        handle_zap(d.zap, d.authorized_keys, d.counter, d.log_budget, d.now());
      }
      // Everything this iteration does to the store is one transaction; the
      // replies go out after it commits.
      Status begun = d.store->begin_batch();
      if (!begun.ok()) {
        log_error("broker: %s", begun.to_string().c_str());
        continue;
      }
      d.batching = true;
      if (items[0].revents & ZMQ_POLLIN) {
        d.drain(d.workers, [&](const auto& env, const auto& key, const auto& payload) {
          d.handle_worker(env, key, payload);
        });
      }
      if (items[1].revents & ZMQ_POLLIN) {
        d.drain(d.clients, [&](const auto& env, const auto& key, const auto& payload) {
          d.handle_client(env, key, payload);
        });
      }
      int64_t now = d.now();
      if (now >= next_purge) {
        d.purge();
        d.work_may_exist = true;  // retry backoffs may have ended
        next_purge = now + tick_ms;
      }
      d.assign_idle();
      d.batching = false;
      auto commit_start = std::chrono::steady_clock::now();
      Status committed = d.store->commit_batch();
      double commit_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - commit_start).count();
      if (!d.outbox.empty()) {
        d.counter.rounds++;
        d.counter.commit_ms_total = d.counter.commit_ms_total + commit_ms;
        if (commit_ms > d.counter.commit_ms_max) d.counter.commit_ms_max = commit_ms;
      }
      if (committed.ok()) {
        for (const auto& out : d.outbox) d.send_bytes(*out.sock, out.envelope, out.body, out.type);
      } else {
        // Nothing was recorded: drop the replies; peers retry, leases lapse.
        log_error("broker: commit failed, %zu replies dropped: %s", d.outbox.size(), committed.to_string().c_str());
        d.work_may_exist = true;
      }
      d.outbox.clear();
      if (now >= next_heartbeat) {
        d.heartbeat();
        next_heartbeat = now + d.options.heartbeat_interval_ms;
      }
    }
  } catch (const zmq::error_t& e) {
    return Status::unavailable(std::string("scheduler socket: ") + e.what());
  }
  log_info("scheduler: stopped");
  return Status();
}

}  // namespace lema
