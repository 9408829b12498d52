#include "common/protocol/protocol.h"

#include <gtest/gtest.h>

#include "common/base/sha256.h"

namespace lema::protocol {
namespace {

using nlohmann::json;

std::string pack(const json& j) {
  auto b = json::to_msgpack(j);
  return std::string(b.begin(), b.end());
}

TEST(Protocol, RoundTripsEveryTypeWithItsRequiredFields) {
  std::vector<Message> msgs = {
      Message(MessageType::kHello, {{"worker_id", "gpu0"}, {"gpus", 1}, {"vram_bytes", int64_t(80) << 30},
                                    {"cpu_only", false}, {"host", "h"}, {"version", "lema 0.1"}}),
      Message(MessageType::kWelcome, {{"worker_id", "gpu0"}, {"heartbeat_interval_ms", 2000}, {"liveness", 3}}),
      Message(MessageType::kHeartbeat),
      Message(MessageType::kReady),
      Message(MessageType::kAssign, {{"job_id", 1}, {"stage_id", 2}, {"attempt", 3}, {"kind", "train"},
                                     {"spec", {{"train", {{"lr", 1e-4}}}}}, {"work_dir", "/w"},
                                     {"resume_checkpoint", "/w/checkpoints/step-10"}}),
      Message(MessageType::kProgress, {{"stage_id", 2}, {"attempt", 3}, {"step", 4}, {"total_steps", 10},
                                       {"metrics", {{"loss", 1.25}, {"tokens_per_s", 900.5}}}}),
      Message(MessageType::kCheckpoint,
              {{"stage_id", 2}, {"attempt", 3}, {"step", 4}, {"path", "/p"}, {"sha256", std::string(64, 'f')}}),
      Message(MessageType::kLog, {{"level", "info"}, {"line", "héllo"}}),
      Message(MessageType::kDone, {{"stage_id", 2}, {"attempt", 3}, {"result", {{"adapter", "/a"}}}}),
      Message(MessageType::kFailed, {{"stage_id", 2}, {"attempt", 3}, {"error", "oom"}, {"retryable", false}}),
      Message(MessageType::kCancel, {{"stage_id", 2}, {"attempt", 3}}),
      Message(MessageType::kSubmit, {{"spec", "[job]\n"}, {"req", 7}, {"token", "t"}}),
      Message(MessageType::kList, {{"state", "queued"}}),
      Message(MessageType::kShow, {{"job_id", 5}}),
      Message(MessageType::kLogs, {{"job_id", 5}, {"after_id", 10}}),
      Message(MessageType::kRetry, {{"job_id", 5}}),
      Message(MessageType::kWorkers),
      Message(MessageType::kPing),
      make_reply({{"x", 1}}, 9),
      make_error(error_code::kStaleAttempt, "old", 9),
  };
  for (const Message& m : msgs) {
    std::string bytes = encode(m);
    auto back = decode(bytes);
    ASSERT_TRUE(back.ok()) << message_type_name(m.type) << ": " << back.status().to_string();
    EXPECT_EQ(back->type, m.type);
    EXPECT_EQ(back->fields, m.fields) << message_type_name(m.type);
    // The wire form is a msgpack map with v and type (independent decoder).
    json raw = json::from_msgpack(bytes);
    EXPECT_EQ(raw["v"], kProtocolVersion);
    EXPECT_EQ(raw["type"], message_type_name(m.type));
  }
  EXPECT_EQ(decode(encode(msgs[5]))->f64("metrics", -1), -1);  // wrong kind -> default
  EXPECT_EQ(decode(encode(msgs[5]))->i64("step"), 4);
}

// The scheduler splices a cached msgpack spec into ASSIGN: the bytes must be
// the same message as encoding the spec as an ordinary field (checked against
// nlohmann's own to_msgpack of the whole map), including a map of 16+ keys.
TEST(Protocol, RawFieldsEncodeLikeOrdinaryFields) {
  json spec = {{"model", {{"path", "/m"}}}, {"train", {{"lr", 2e-4}, {"steps", 7}}}};
  std::vector<uint8_t> packed = json::to_msgpack(spec);
  std::string raw(packed.begin(), packed.end());
  json fields = {{"job_id", 3}, {"stage_id", 9}, {"attempt", 1}, {"kind", "train"}, {"work_dir", "runs/x"}};
  for (int extra : {0, 12}) {
    for (int i = 0; i < extra; ++i) fields["x" + std::to_string(i)] = i;
    std::string spliced = encode(Message(MessageType::kAssign, fields), {{"spec", &raw}});
    json whole = fields;
    whole["spec"] = spec;
    whole["v"] = kProtocolVersion;
    whole["type"] = "ASSIGN";
    EXPECT_EQ(json::from_msgpack(spliced), whole);
    auto back = decode(spliced);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(back->fields["spec"], spec);
    EXPECT_EQ(back->i64("stage_id"), 9);
  }
}

TEST(Protocol, RejectsBadInputWithAReason) {
  auto why = [](const std::string& bytes) {
    auto r = decode(bytes);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(why("").find("empty"), std::string::npos);
  EXPECT_NE(why("\xc1").find("msgpack"), std::string::npos);  // never-used byte
  EXPECT_NE(why(pack(json::array({1}))).find("not a msgpack map"), std::string::npos);
  EXPECT_NE(why(pack({{"type", "PING"}})).find("'v'"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 2}, {"type", "PING"}})).find("version 2"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 1}, {"type", "FROB"}})).find("unknown message type 'FROB'"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 1}, {"type", "SHOW"}})).find("SHOW: field 'job_id' missing"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 1}, {"type", "SHOW"}, {"job_id", "1"}})).find("SHOW: field 'job_id' must be an integer"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 1}, {"type", "PING"}, {"req", 1.5}})).find("'req'"), std::string::npos);
  EXPECT_NE(why(pack({{"v", 1}, {"type", "PING"}}) + "x").find("trailing"), std::string::npos);
  std::string deep(1000, char(0x91));
  deep.push_back(char(0xc0));
  EXPECT_FALSE(decode(deep).ok());
  EXPECT_FALSE(decode(std::string("\xdf\xff\xff\xff\xff", 5)).ok());  // map claiming 4G entries
  EXPECT_NE(why(std::string(kMaxMessageBytes + 1, 'a')).find("exceeds"), std::string::npos);
  // Non-string map keys.
  EXPECT_FALSE(decode(std::string("\x81\x01\x02", 3)).ok());
}

TEST(Protocol, TypeNamesRoundTrip) {
  for (int t = 0; t <= int(MessageType::kError); ++t) {
    MessageType back;
    ASSERT_TRUE(message_type_from_name(message_type_name(MessageType(t)), &back));
    EXPECT_EQ(int(back), t);
  }
  MessageType x;
  EXPECT_FALSE(message_type_from_name("hello", &x));  // names are upper case
}

TEST(Sha256, MatchesFips180Vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace lema::protocol
