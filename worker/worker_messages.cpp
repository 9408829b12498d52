#include "worker/worker_messages.h"

namespace lema::worker {

namespace {
struct TypeName {
  MessageType type;
  const char* name;
};
constexpr TypeName kTypeNames[] = {
    {MessageType::kHello, "HELLO"},       {MessageType::kWelcome, "WELCOME"},
    {MessageType::kHeartbeat, "HEARTBEAT"}, {MessageType::kReady, "READY"},
    {MessageType::kAssign, "ASSIGN"},     {MessageType::kProgress, "PROGRESS"},
    {MessageType::kLog, "LOG"},           {MessageType::kCheckpoint, "CHECKPOINT"},
    {MessageType::kDone, "DONE"},         {MessageType::kFailed, "FAILED"},
    {MessageType::kCancel, "CANCEL"},     {MessageType::kAck, "ACK"},
    {MessageType::kError, "ERROR"},
};
}  // namespace

const char* message_type_name(MessageType type) {
  for (const auto& t : kTypeNames) {
    if (t.type == type) return t.name;
  }
  return "UNKNOWN";
}

MessageType message_type_from_name(const std::string& name) {
  for (const auto& t : kTypeNames) {
    if (name == t.name) return t.type;
  }
  return MessageType::kUnknown;
}

std::string encode_message(const Message& m) {
  nlohmann::json j = m.fields;
  j["v"] = kWorkerProtocolVersion;
  j["type"] = message_type_name(m.type);
  std::vector<uint8_t> bytes = nlohmann::json::to_msgpack(j);
  return std::string(bytes.begin(), bytes.end());
}

Result<Message> decode_message(const std::string& bytes) {
  nlohmann::json j = nlohmann::json::from_msgpack(bytes, /*strict=*/true, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument("message is not valid msgpack");
  if (!j.is_object()) return Status::invalid_argument("message is not a msgpack map");
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != kWorkerProtocolVersion) {
    return Status::invalid_argument("message has no or a wrong protocol version 'v'");
  }
  auto t = j.find("type");
  if (t == j.end() || !t->is_string()) return Status::invalid_argument("message has no 'type'");
  Message m(message_type_from_name(t->get<std::string>()));
  if (m.type == MessageType::kUnknown) {
    return Status::invalid_argument("unknown message type '" + t->get<std::string>() + "'");
  }
  j.erase("v");
  j.erase("type");
  m.fields = std::move(j);
  return m;
}

Message hello_message(const WorkerCapabilities& caps) {
  Message m(MessageType::kHello);
  m.fields["host"] = caps.host;
  m.fields["version"] = caps.version;
  m.fields["cpu_only"] = caps.cpu_only;
  m.fields["cpu_cores"] = caps.cpu_cores;
  m.fields["ram_bytes"] = caps.ram_bytes;
  nlohmann::json gpus = nlohmann::json::array();
  uint64_t vram = 0;
  for (const GpuInfo& g : caps.gpus) {
    gpus.push_back({{"index", g.index}, {"name", g.name}, {"vram_bytes", g.vram_bytes}});
    vram = std::max(vram, g.vram_bytes);
  }
  m.fields["gpus"] = gpus;
  m.fields["vram_bytes"] = vram;
  return m;
}

Result<StageAssignment> assignment_from_message(const Message& m) {
  const nlohmann::json& f = m.fields;
  StageAssignment a;
  auto get_string = [&](const char* key, std::string* out, bool required) -> Status {
    auto it = f.find(key);
    if (it == f.end() || it->is_null()) {
      return required ? Status::invalid_argument(std::string("ASSIGN without '") + key + "'") : Status();
    }
    if (!it->is_string()) return Status::invalid_argument(std::string("ASSIGN: '") + key + "' is not a string");
    *out = it->get<std::string>();
    return Status();
  };
  LEMA_RETURN_IF_ERROR(get_string("job_id", &a.job_id, true));
  LEMA_RETURN_IF_ERROR(get_string("stage_id", &a.stage_id, true));
  LEMA_RETURN_IF_ERROR(get_string("kind", &a.kind, true));
  LEMA_RETURN_IF_ERROR(get_string("work_dir", &a.work_dir, true));
  LEMA_RETURN_IF_ERROR(get_string("resume_checkpoint", &a.resume_checkpoint, false));
  auto spec = f.find("spec");
  if (spec == f.end()) return Status::invalid_argument("ASSIGN without 'spec'");
  a.spec_json = spec->is_string() ? spec->get<std::string>() : spec->dump();
  auto attempt = f.find("attempt");
  if (attempt == f.end() || !attempt->is_number_integer()) {
    return Status::invalid_argument("ASSIGN without an integer 'attempt'");
  }
  a.attempt = attempt->get<int64_t>();
  auto step = f.find("resume_step");
  if (step != f.end() && step->is_number_integer()) a.resume_step = step->get<int64_t>();
  return a;
}

nlohmann::json json_or_string(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return text;
  return j;
}

}  // namespace lema::worker
