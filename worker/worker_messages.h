// The worker's view of the scheduler protocol messages: a type plus a JSON
// map of fields, carried on the wire as one msgpack map
// {"v": kProtocolVersion, "type": "<NAME>", ...fields}. Kept behind this
// header so that worker_session.cpp is the only place that builds them.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "worker/worker_session.h"

namespace lema::worker {

constexpr int kWorkerProtocolVersion = 1;

enum class MessageType {
  kHello, kWelcome, kHeartbeat, kReady, kAssign, kProgress, kLog, kCheckpoint,
  kDone, kFailed, kCancel, kAck, kError, kUnknown,
};

const char* message_type_name(MessageType type);
MessageType message_type_from_name(const std::string& name);

struct Message {
  Message() = default;
  explicit Message(MessageType t) : type(t), fields(nlohmann::json::object()) {}
  MessageType type = MessageType::kUnknown;
  nlohmann::json fields = nlohmann::json::object();  // without "v" and "type"
};

// msgpack bytes <-> Message. decode rejects non-maps, a wrong version and a
// missing type with kInvalidArgument; never throws.
std::string encode_message(const Message& m);
Result<Message> decode_message(const std::string& bytes);

Message hello_message(const WorkerCapabilities& caps);
Result<StageAssignment> assignment_from_message(const Message& m);
// Parses `text` as JSON; text that is not JSON travels as a string.
nlohmann::json json_or_string(const std::string& text);

}  // namespace lema::worker
