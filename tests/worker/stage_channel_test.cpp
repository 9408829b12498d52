// StageChannel over a real socketpair: frames both ways, and each way a
// peer can break the stream (a length over the limit or zero, a body that
// is not a JSON object or has no type, a stream that ends inside a frame,
// a peer that has gone) is an error naming what was wrong.
#include "worker/stage_channel.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

namespace lema::worker {
namespace {

struct Pair {
  Pair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ours = std::make_unique<StageChannel>(sv[0]);
    raw = sv[1];
  }
  ~Pair() {
    if (raw >= 0) close(raw);
  }
  void write_raw(const std::string& bytes) {
    ASSERT_EQ(write(raw, bytes.data(), bytes.size()), ssize_t(bytes.size()));
  }
  std::unique_ptr<StageChannel> ours;
  int raw = -1;
};

std::string be32(uint32_t n) {
  return {char(n >> 24), char((n >> 16) & 0xff), char((n >> 8) & 0xff), char(n & 0xff)};
}

std::string raw_frame(const std::string& body) { return be32(uint32_t(body.size())) + body; }

TEST(StageChannel, FramesGoBothWaysWhole) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  StageChannel a(sv[0]), b(sv[1]);
  // Large enough to need several writes and reads (the socket buffer is smaller).
  const std::string big(3 << 20, 'x');
  std::thread sender([&] {
    EXPECT_TRUE(a.send({{"type", "log"}, {"line", "one"}}, 1000).ok());
    EXPECT_TRUE(a.send({{"type", "start"}, {"blob", big}}, 10000).ok());
  });
  auto f1 = b.receive(5000);
  ASSERT_TRUE(f1.ok() && f1.value()) << f1.status().to_string();
  EXPECT_EQ((*f1.value())["line"], "one");
  auto f2 = b.receive(10000);
  ASSERT_TRUE(f2.ok() && f2.value()) << f2.status().to_string();
  EXPECT_EQ((*f2.value())["blob"].get<std::string>().size(), big.size());
  sender.join();
  // Nothing more: a timeout is no frame, not an error.
  auto none = b.receive(50);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value());
}

TEST(StageChannel, GarbledFramesAreNamed) {
  {
    Pair p;
    p.write_raw(be32(0xffffffffu));
    auto f = p.ours->receive(1000);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), Status::Code::kCorruption);
    EXPECT_NE(f.status().message().find("garbled frame (length 4294967295"), std::string::npos)
        << f.status().message();
  }
  {
    Pair p;
    p.write_raw(be32(0));
    auto f = p.ours->receive(1000);
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("length 0"), std::string::npos) << f.status().message();
  }
  {
    Pair p;
    p.write_raw(raw_frame("abc"));
    auto f = p.ours->receive(1000);
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("not a JSON object"), std::string::npos) << f.status().message();
  }
  {
    Pair p;
    p.write_raw(raw_frame("[]"));
    EXPECT_FALSE(p.ours->receive(1000).ok());
  }
  {
    Pair p;
    p.write_raw(raw_frame("{\"type\": 5}"));
    auto f = p.ours->receive(1000);
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("no string \"type\""), std::string::npos) << f.status().message();
  }
  {
    // The peer ends inside a frame: corruption, not a clean end.
    Pair p;
    p.write_raw(be32(100) + "{\"type\"");
    close(p.raw);
    p.raw = -1;
    auto f = p.ours->receive(1000);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), Status::Code::kCorruption);
    EXPECT_NE(f.status().message().find("ended inside a frame"), std::string::npos) << f.status().message();
  }
}

TEST(StageChannel, APeerThatLeftIsUnavailable) {
  Pair p;
  // A whole frame sent before leaving still arrives.
  p.write_raw(raw_frame("{\"type\":\"log\"}"));
  close(p.raw);
  p.raw = -1;
  auto f = p.ours->receive(1000);
  ASSERT_TRUE(f.ok() && f.value()) << f.status().to_string();
  auto end = p.ours->receive(1000);
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.status().code(), Status::Code::kUnavailable);
  // Writing to it: an error, not a SIGPIPE that ends this process.
  Status s = p.ours->send({{"type", "stop"}}, 1000);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.to_string();
}

TEST(StageChannel, AFrameOverTheLimitIsRefusedBeforeSending) {
  Pair p;
  Status s = p.ours->send({{"type", "start"}, {"blob", std::string(kMaxStageFrameBytes, 'x')}}, 1000);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("over the limit"), std::string::npos) << s.message();
}

TEST(StageChannel, APeerThatDoesNotReadTimesOut) {
  Pair p;
  auto start = std::chrono::steady_clock::now();
  Status s = p.ours->send({{"type", "start"}, {"blob", std::string(8 << 20, 'x')}}, 300);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.to_string();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(StageChannel, StatusesRoundTrip) {
  for (const Status& s :
       {Status(), Status::invalid_argument("bad spec"), Status::cancelled("stop"), Status::internal("x")}) {
    Status back = Status::internal("unset");
    ASSERT_TRUE(status_from_frame(status_to_frame(s), &back).ok());
    EXPECT_EQ(back.code(), s.code());
    EXPECT_EQ(back.message(), s.message());
  }
  Status out;
  EXPECT_EQ(status_from_frame({{"code", 99}}, &out).code(), Status::Code::kCorruption);
  EXPECT_EQ(status_from_frame({{"code", "1"}}, &out).code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace lema::worker
