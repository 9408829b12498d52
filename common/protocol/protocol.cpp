// Message schema table, msgpack encode (nlohmann) and decode (msgpack-c++,
// whose unpacker enforces size and nesting limits without recursion).
#include "common/protocol/protocol.h"

#include <msgpack.hpp>

#include <vector>

#include "common/base/log.h"

namespace lema::protocol {
namespace {

using nlohmann::json;

enum class Kind { kStr, kInt, kNum, kBool, kObj, kArr, kAny };
struct Field {
  const char* name;
  Kind kind;
  bool required;
};
struct TypeInfo {
  MessageType type;
  const char* name;
  bool client;  // client requests also accept "req" and "token"
  std::vector<Field> fields;
};

const std::vector<TypeInfo>& type_table() {
  static const std::vector<TypeInfo> table = {
      {MessageType::kHello, "HELLO", false,
       {{"worker_id", Kind::kStr, true}, {"host", Kind::kStr, false}, {"gpus", Kind::kInt, false},
        {"vram_bytes", Kind::kInt, false}, {"cpu_only", Kind::kBool, false},
        {"version", Kind::kStr, false}, {"token", Kind::kStr, false}, {"running", Kind::kObj, false},
        {"hello_seq", Kind::kInt, false}}},
      {MessageType::kWelcome, "WELCOME", false,
       {{"worker_id", Kind::kStr, true}, {"heartbeat_interval_ms", Kind::kInt, true},
        {"liveness", Kind::kInt, true}, {"lease", Kind::kObj, false}, {"hello_seq", Kind::kInt, false}}},
      {MessageType::kHeartbeat, "HEARTBEAT", false,
       {{"stage_id", Kind::kInt, false}, {"attempt", Kind::kInt, false}}},
      {MessageType::kReady, "READY", false, {}},
      {MessageType::kAssign, "ASSIGN", false,
       {{"job_id", Kind::kInt, true}, {"stage_id", Kind::kInt, true}, {"attempt", Kind::kInt, true},
        {"kind", Kind::kStr, true}, {"spec", Kind::kObj, true}, {"work_dir", Kind::kStr, true},
        {"resume_checkpoint", Kind::kStr, false}, {"resume_candidates", Kind::kArr, false}}},
      {MessageType::kProgress, "PROGRESS", false,
       {{"stage_id", Kind::kInt, true}, {"attempt", Kind::kInt, true}, {"step", Kind::kInt, true},
        {"total_steps", Kind::kInt, false}, {"metrics", Kind::kObj, false}}},
      {MessageType::kCheckpoint, "CHECKPOINT", false,
       {{"stage_id", Kind::kInt, true}, {"attempt", Kind::kInt, true}, {"step", Kind::kInt, true},
        {"path", Kind::kStr, true}, {"sha256", Kind::kStr, true}}},
      {MessageType::kLog, "LOG", false,
       {{"stage_id", Kind::kInt, false}, {"attempt", Kind::kInt, false}, {"level", Kind::kStr, true},
        {"line", Kind::kStr, true}}},
      {MessageType::kDone, "DONE", false,
       {{"stage_id", Kind::kInt, true}, {"attempt", Kind::kInt, true}, {"result", Kind::kAny, false}}},
      {MessageType::kFailed, "FAILED", false,
       {{"stage_id", Kind::kInt, true}, {"attempt", Kind::kInt, true}, {"error", Kind::kStr, true},
        {"retryable", Kind::kBool, false}, {"crashed", Kind::kBool, false}}},
      {MessageType::kCancel, "CANCEL", true,
       {{"job_id", Kind::kInt, false}, {"stage_id", Kind::kInt, false}, {"attempt", Kind::kInt, false}}},
      {MessageType::kSubmit, "SUBMIT", true,
       {{"spec", Kind::kStr, true}, {"source", Kind::kStr, false}, {"request_id", Kind::kStr, false}}},
      {MessageType::kList, "LIST", true, {{"state", Kind::kStr, false}, {"limit", Kind::kInt, false}}},
      {MessageType::kShow, "SHOW", true, {{"job_id", Kind::kInt, true}}},
      {MessageType::kLogs, "LOGS", true,
       {{"job_id", Kind::kInt, true}, {"after_id", Kind::kInt, false}, {"limit", Kind::kInt, false}}},
      {MessageType::kRetry, "RETRY", true, {{"job_id", Kind::kInt, true}}},
      {MessageType::kWorkers, "WORKERS", true, {}},
      {MessageType::kPing, "PING", true, {}},
      {MessageType::kReply, "REPLY", true, {{"data", Kind::kAny, false}}},
      {MessageType::kError, "ERROR", true, {{"code", Kind::kStr, true}, {"error", Kind::kStr, true}}},
  };
  return table;
}

const TypeInfo& info_for(MessageType type) {
  for (const auto& t : type_table()) {
    if (t.type == type) return t;
  }
  LEMA_CHECK_MSG(false, "message type missing from the table");
  return type_table()[0];
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kStr: return "a string";
    case Kind::kInt: return "an integer";
    case Kind::kNum: return "a number";
    case Kind::kBool: return "a boolean";
    case Kind::kObj: return "a map";
    case Kind::kArr: return "an array";
    case Kind::kAny: return "any value";
  }
  return "?";
}

bool kind_matches(Kind k, const json& v) {
  switch (k) {
    case Kind::kStr: return v.is_string();
    case Kind::kInt: return v.is_number_integer();
    case Kind::kNum: return v.is_number();
    case Kind::kBool: return v.is_boolean();
    case Kind::kObj: return v.is_object();
    case Kind::kArr: return v.is_array();
    case Kind::kAny: return true;
  }
  return false;
}

// msgpack object -> JSON. Depth is already bounded by the unpack limit.
Status to_json(const msgpack::object& o, json* out) {
  switch (o.type) {
    case msgpack::type::NIL: *out = nullptr; return Status();
    case msgpack::type::BOOLEAN: *out = o.via.boolean; return Status();
    case msgpack::type::POSITIVE_INTEGER: *out = o.via.u64; return Status();
    case msgpack::type::NEGATIVE_INTEGER: *out = o.via.i64; return Status();
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: *out = o.via.f64; return Status();
    case msgpack::type::STR: *out = std::string(o.via.str.ptr, o.via.str.size); return Status();
    case msgpack::type::BIN:
      *out = json::binary(std::vector<uint8_t>(o.via.bin.ptr, o.via.bin.ptr + o.via.bin.size));
      return Status();
    case msgpack::type::ARRAY: {
      *out = json::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        json item;
        LEMA_RETURN_IF_ERROR(to_json(o.via.array.ptr[i], &item));
        out->push_back(std::move(item));
      }
      return Status();
    }
    case msgpack::type::MAP: {
      *out = json::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) return Status::invalid_argument("map key is not a string");
        json value;
        LEMA_RETURN_IF_ERROR(to_json(kv.val, &value));
        (*out)[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = std::move(value);
      }
      return Status();
    }
    default: return Status::invalid_argument("unsupported msgpack type (ext)");
  }
}

// Each element of a msgpack array or map takes at least one byte, so a
// frame cannot hold more elements than it has bytes left. msgpack-c++
// reserves the claimed count before reading any element: a 5-byte frame
// claiming an array of 2^20 (dd 00 10 00 00) made it allocate 16 MiB+ before
// failing. This walk checks every claimed count (and string, bin and ext
// length) against the bytes left before msgpack sees the frame, without
// recursion: it only counts the elements still owed.
Status check_claimed_sizes(const uint8_t* p, size_t size) {
  uint64_t owed = 1;  // the top-level object
  size_t pos = 0;
  auto big_endian = [&](size_t n, uint64_t* out) -> bool {
    if (size - pos < n) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | p[pos + i];
    pos += n;
    *out = v;
    return true;
  };
  auto truncated = [&]() { return Status::invalid_argument(str_printf("bad msgpack: truncated at byte %zu", pos)); };
  while (owed > 0) {
    if (pos >= size) return truncated();
    const uint8_t b = p[pos++];
    --owed;
    uint64_t skip = 0;      // payload bytes after the header
    uint64_t children = 0;  // elements this header adds
    uint64_t n = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      // fixint, nil, booleans: the byte is the value
    } else if (b <= 0x8f) {
      children = 2 * uint64_t(b & 0x0f);
    } else if (b <= 0x9f) {
      children = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      switch (b) {
        case 0xc4: case 0xd9: if (!big_endian(1, &n)) return truncated(); skip = n; break;
        case 0xc5: case 0xda: if (!big_endian(2, &n)) return truncated(); skip = n; break;
        case 0xc6: case 0xdb: if (!big_endian(4, &n)) return truncated(); skip = n; break;
        case 0xc7: if (!big_endian(1, &n)) return truncated(); skip = n + 1; break;
        case 0xc8: if (!big_endian(2, &n)) return truncated(); skip = n + 1; break;
        case 0xc9: if (!big_endian(4, &n)) return truncated(); skip = n + 1; break;
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break;
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: if (!big_endian(2, &n)) return truncated(); children = n; break;
        case 0xdd: if (!big_endian(4, &n)) return truncated(); children = n; break;
        case 0xde: if (!big_endian(2, &n)) return truncated(); children = 2 * n; break;
        case 0xdf: if (!big_endian(4, &n)) return truncated(); children = 2 * n; break;
        default: return Status::invalid_argument(str_printf("bad msgpack: byte 0x%02x at %zu is no type", b, pos - 1));
      }
    }
    if (skip > size - pos) {
      return Status::invalid_argument(str_printf("bad msgpack: %llu bytes claimed at byte %zu, %zu left",
                                                 static_cast<unsigned long long>(skip), pos, size - pos));
    }
    pos += skip;
    owed += children;
    if (owed > size - pos) {
      return Status::invalid_argument(str_printf("bad msgpack: %llu elements claimed at byte %zu, %zu bytes left",
                                                 static_cast<unsigned long long>(owed), pos, size - pos));
    }
  }
  return Status();
}

}  // namespace

const char* message_type_name(MessageType type) { return info_for(type).name; }

bool message_type_from_name(const std::string& name, MessageType* type) {
  for (const auto& t : type_table()) {
    if (name == t.name) {
      *type = t.type;
      return true;
    }
  }
  return false;
}

std::string Message::str(const char* key, const std::string& dflt) const {
  auto it = fields.find(key);
  return it != fields.end() && it->is_string() ? it->get<std::string>() : dflt;
}
int64_t Message::i64(const char* key, int64_t dflt) const {
  auto it = fields.find(key);
  return it != fields.end() && it->is_number_integer() ? it->get<int64_t>() : dflt;
}
double Message::f64(const char* key, double dflt) const {
  auto it = fields.find(key);
  return it != fields.end() && it->is_number() ? it->get<double>() : dflt;
}
bool Message::flag(const char* key, bool dflt) const {
  auto it = fields.find(key);
  return it != fields.end() && it->is_boolean() ? it->get<bool>() : dflt;
}

std::string encode(const Message& message) { return encode(message, {}); }

std::string encode(const Message& message, const std::vector<std::pair<const char*, const std::string*>>& raw_fields) {
  LEMA_CHECK(message.fields.is_object());
  // The same map as to_msgpack(fields + v + type), written around the fields
  // instead of copying them (an ASSIGN carries the whole job spec).
  const json& fields = message.fields;
  size_t n = fields.size() + 2 - fields.count("v") - fields.count("type") + raw_fields.size();
  std::string out;
  out.reserve(128);
  if (n < 16) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(0xde));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0xdf));
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  auto put = [&](const json& j) { json::to_msgpack(j, nlohmann::detail::output_adapter<char>(out)); };
  put("v");
  put(kProtocolVersion);
  put("type");
  put(message_type_name(message.type));
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it.key() == "v" || it.key() == "type") continue;
    put(it.key());
    put(it.value());
  }
  for (const auto& [key, bytes] : raw_fields) {
    LEMA_CHECK(bytes != nullptr && !bytes->empty() && !fields.contains(key));
    put(key);
    out += *bytes;
  }
  return out;
}

Result<Message> decode(const void* data, size_t size) {
  if (size == 0) return Status::invalid_argument("empty message");
  if (size > size_t(kMaxMessageBytes)) {
    return Status::invalid_argument(str_printf("message of %zu bytes exceeds the limit of %lld", size,
                                               static_cast<long long>(kMaxMessageBytes)));
  }
  LEMA_RETURN_IF_ERROR(check_claimed_sizes(static_cast<const uint8_t*>(data), size));
  json doc;
  try {
    size_t offset = 0;
    msgpack::unpack_limit limit(1 << 20, 1 << 20, kMaxMessageBytes, kMaxMessageBytes, 0, kMaxNestingDepth);
    msgpack::object_handle handle =
        msgpack::unpack(static_cast<const char*>(data), size, offset, nullptr, nullptr, limit);
    if (offset != size) return Status::invalid_argument("trailing bytes after the msgpack map");
    if (handle.get().type != msgpack::type::MAP) return Status::invalid_argument("message is not a msgpack map");
    LEMA_RETURN_IF_ERROR(to_json(handle.get(), &doc).with_context("bad msgpack"));
  } catch (const std::exception& e) {
    return Status::invalid_argument(std::string("bad msgpack: ") + e.what());
  }
  auto v = doc.find("v");
  if (v == doc.end() || !v->is_number_integer()) return Status::invalid_argument("field 'v' (protocol version) missing");
  if (v->get<int64_t>() != kProtocolVersion) {
    return Status::unsupported(str_printf("protocol version %lld, this build speaks %d",
                                          static_cast<long long>(v->get<int64_t>()), kProtocolVersion));
  }
  auto t = doc.find("type");
  if (t == doc.end() || !t->is_string()) return Status::invalid_argument("field 'type' missing or not a string");
  Message msg;
  if (!message_type_from_name(t->get<std::string>(), &msg.type)) {
    return Status::invalid_argument("unknown message type '" + t->get<std::string>().substr(0, 64) + "'");
  }
  doc.erase("v");
  doc.erase("type");
  const TypeInfo& info = info_for(msg.type);
  auto check = [&](const Field& f) -> Status {
    auto it = doc.find(f.name);
    if (it == doc.end() || it->is_null()) {
      if (f.required) return Status::invalid_argument(str_printf("%s: field '%s' missing", info.name, f.name));
      return Status();
    }
    if (!kind_matches(f.kind, *it)) {
      return Status::invalid_argument(str_printf("%s: field '%s' must be %s", info.name, f.name, kind_name(f.kind)));
    }
    return Status();
  };
  for (const Field& f : info.fields) LEMA_RETURN_IF_ERROR(check(f));
  if (info.client) {
    LEMA_RETURN_IF_ERROR(check({"req", Kind::kInt, false}));
    LEMA_RETURN_IF_ERROR(check({"token", Kind::kStr, false}));
  }
  msg.fields = std::move(doc);
  return msg;
}

Message make_error(const std::string& code, const std::string& text, int64_t req) {
  Message m(MessageType::kError, {{"code", code}, {"error", text}});
  if (req >= 0) m.fields["req"] = req;
  return m;
}

Message make_reply(nlohmann::json data, int64_t req) {
  Message m(MessageType::kReply, {{"data", std::move(data)}});
  if (req >= 0) m.fields["req"] = req;
  return m;
}

}  // namespace lema::protocol
