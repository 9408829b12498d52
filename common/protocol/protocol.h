// The lema wire protocol between the scheduler, its workers and its clients
// (docs/PROTOCOL.md). Every message is one ZeroMQ frame holding a msgpack map
// {"v": kProtocolVersion, "type": "<NAME>", ...fields}. This header owns the
// version, the message types, the per-type field schema and the timing
// constants; it knows nothing about sockets (no zmq here).
//
// Thread-safety: free functions on values; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"

namespace lema::protocol {

constexpr int kProtocolVersion = 1;

// Timing, in one place (docs/PROTOCOL.md "Timing").
constexpr int64_t kHeartbeatIntervalMs = 2000;
constexpr int kHeartbeatLiveness = 3;  // missed heartbeats before a peer is presumed dead
constexpr int64_t kReconnectBackoffInitMs = 250;
constexpr int64_t kReconnectBackoffMaxMs = 8000;
// The scheduler's retry policy (StoreOptions' defaults): a stage that failed
// retryably waits this long before it runs again, doubled per attempt.
constexpr int64_t kRetryBackoffInitMs = 1000;
constexpr int64_t kRetryBackoffMaxMs = 60000;
// Largest frame either ROUTER accepts (ZMQ_MAXMSGSIZE); larger peers are dropped.
constexpr int64_t kMaxMessageBytes = 16 << 20;
constexpr int kMaxNestingDepth = 32;

enum class MessageType {
  // worker <-> scheduler
  kHello,      // w->s: register (worker_id, host, gpus, vram_bytes, cpu_only, version, token)
  kWelcome,    // s->w: accepted (worker_id, heartbeat_interval_ms, liveness)
  kHeartbeat,  // both ways
  kReady,      // w->s: idle, send me work
  kAssign,     // s->w: run a stage
  kProgress,   // w->s: step / metrics
  kCheckpoint, // w->s: a checkpoint was written and renamed
  kLog,        // w->s: one log line
  kDone,       // w->s: stage finished (result)
  kFailed,     // w->s: stage failed (error, retryable)
  kCancel,     // s->w: stop stage; c->s: cancel job
  // client -> scheduler
  kSubmit,
  kList,
  kShow,
  kLogs,
  kRetry,
  kWorkers,
  kPing,
  // replies (s->c, and kError also s->w)
  kReply,
  kError,
};

const char* message_type_name(MessageType type);
// Returns false for an unknown name.
bool message_type_from_name(const std::string& name, MessageType* type);

// One decoded message: its type and its fields (a JSON object, without "v"
// and "type"). Fields were checked against the type's schema by decode().
struct Message {
  MessageType type = MessageType::kPing;
  nlohmann::json fields = nlohmann::json::object();

  Message() = default;
  Message(MessageType t, nlohmann::json f = nlohmann::json::object()) : type(t), fields(std::move(f)) {}

  // Typed accessors with defaults for optional fields.
  std::string str(const char* key, const std::string& dflt = "") const;
  int64_t i64(const char* key, int64_t dflt = 0) const;
  double f64(const char* key, double dflt = 0) const;
  bool flag(const char* key, bool dflt = false) const;
  bool has(const char* key) const { return fields.contains(key); }
};

// Encodes as a msgpack map. REQUIRES: fields is an object.
std::string encode(const Message& message);
// The same, plus fields whose values are msgpack already (an ASSIGN's job
// spec, cached by the scheduler): (key, encoded value) pairs, not null.
std::string encode(const Message& message, const std::vector<std::pair<const char*, const std::string*>>& raw_fields);

// Decodes and validates one frame: size, msgpack well-formedness and depth,
// version, known type, required fields present with the right msgpack type.
// Never throws; the Status says what is wrong ("field 'attempt' missing").
Result<Message> decode(const void* data, size_t size);
inline Result<Message> decode(const std::string& bytes) { return decode(bytes.data(), bytes.size()); }

// Error codes carried in ERROR messages ("code" field).
namespace error_code {
constexpr const char* kMalformed = "malformed";        // not a valid message
constexpr const char* kUnauthorized = "unauthorized";  // bad or missing token
constexpr const char* kHelloRequired = "hello_required";  // worker message before HELLO
constexpr const char* kStaleAttempt = "stale_attempt";  // fenced: not the current attempt/lease
constexpr const char* kOutOfOrder = "out_of_order";    // message not valid in this state
constexpr const char* kNotFound = "not_found";
constexpr const char* kInvalid = "invalid_argument";
constexpr const char* kInternal = "internal";
}  // namespace error_code

// Builders for the common replies.
Message make_error(const std::string& code, const std::string& text, int64_t req = -1);
Message make_reply(nlohmann::json data, int64_t req = -1);

}  // namespace lema::protocol
