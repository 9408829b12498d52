// WorkerSession against a scripted broker (a real ROUTER socket on loopback):
// HELLO/WELCOME, READY/ASSIGN, heartbeats while the caller is busy, CANCEL,
// DONE resent until ACK, and reconnection after the broker goes away.
#include "worker/worker_session.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "worker/worker_messages.h"

namespace lema::worker {
namespace {

using namespace std::chrono_literals;

// A broker the test drives by hand: receive one message, reply to its sender.
class ScriptedBroker {
 public:
  ScriptedBroker(zmq::context_t& ctx, const std::string& endpoint)
      : socket_(ctx, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(endpoint);
  }
  // Next message within timeout, skipping `skip` types (e.g. heartbeats).
  std::optional<Message> recv(std::chrono::milliseconds timeout, std::vector<MessageType> skip = {}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, 20ms);
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      (void)zmq::recv_multipart(socket_, std::back_inserter(frames));
      if (frames.size() < 2) continue;
      peer_ = frames.front().to_string();
      Result<Message> m = decode_message(frames.back().to_string());
      EXPECT_TRUE(m.ok()) << m.status().message();
      if (!m.ok()) continue;
      if (std::find(skip.begin(), skip.end(), m->type) != skip.end()) {
        ++skipped_;
        if (m->type == MessageType::kHeartbeat) reply(Message(MessageType::kHeartbeat));
        continue;
      }
      return m.value();
    }
    return std::nullopt;
  }
  void reply(const Message& m) {
    std::string bytes = encode_message(m);
    socket_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
    socket_.send(zmq::const_buffer("", 0), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(bytes));
  }
  int skipped() const { return skipped_; }

 private:
  zmq::socket_t socket_;
  std::string peer_;
  int skipped_ = 0;
};

Message welcome() {
  Message m(MessageType::kWelcome);
  m.fields["worker_id"] = "w-1";
  return m;
}

Message assign(int64_t attempt) {
  Message m(MessageType::kAssign);
  m.fields = {{"job_id", "j1"}, {"stage_id", "j1/train"}, {"kind", "train"}, {"attempt", attempt},
              {"spec", {{"name", "tiny"}}}, {"work_dir", "/tmp/x"},
              {"resume_checkpoint", "/tmp/x/checkpoints/step-4"}, {"resume_step", 4}};
  return m;
}

SessionOptions options_for(const std::string& endpoint) {
  SessionOptions o;
  o.endpoint = endpoint;
  o.capabilities.host = "testhost";
  o.capabilities.version = "test";
  o.capabilities.gpus = {{0, "FakeGPU", 80ull << 30}};
  o.capabilities.cpu_only = false;
  o.heartbeat_interval_ms = 100;
  o.heartbeat_liveness = 3;
  o.reconnect_initial_ms = 50;
  o.reconnect_max_ms = 200;
  return o;
}

const std::vector<MessageType> kSkipHeartbeats = {MessageType::kHeartbeat};

TEST(WorkerSession, HelloReadyAssignProgressDoneAck) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47611";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  auto hello = broker.recv(3s);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, MessageType::kHello);
  EXPECT_EQ(hello->fields["host"], "testhost");
  EXPECT_EQ(hello->fields["vram_bytes"].get<uint64_t>(), 80ull << 30);
  EXPECT_FALSE(hello->fields["cpu_only"].get<bool>());
  broker.reply(welcome());

  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    auto ready = broker.recv(3s, kSkipHeartbeats);
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->type, MessageType::kReady);
    broker.reply(assign(2));
  });
  auto a = (*session)->wait_for_assignment(stop, 5000);
  waiter.join();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->has_value());
  const StageAssignment& s = **a;
  EXPECT_EQ(s.job_id, "j1");
  EXPECT_EQ(s.kind, "train");
  EXPECT_EQ(s.attempt, 2);
  EXPECT_EQ(s.resume_step, 4);
  EXPECT_EQ(s.resume_checkpoint, "/tmp/x/checkpoints/step-4");
  EXPECT_EQ((*session)->worker_id(), "w-1");

  (*session)->send_progress(5, 10, R"({"loss":1.5})");
  auto p = broker.recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, MessageType::kProgress);
  EXPECT_EQ(p->fields["attempt"], 2);
  EXPECT_EQ(p->fields["step"], 5);
  EXPECT_DOUBLE_EQ(p->fields["metrics"]["loss"].get<double>(), 1.5);

  (*session)->send_done(R"({"adapter":"a"})");
  auto d = broker.recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->type, MessageType::kDone);
  // Without an ACK the DONE stays pending (and is resent with heartbeats).
  std::atomic<bool> flushed{false};
  std::thread flusher([&] { flushed = (*session)->flush(3000); });
  auto again = broker.recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->type, MessageType::kDone);
  EXPECT_FALSE(flushed.load()) << "DONE must wait for its ACK";
  Message ack(MessageType::kAck);
  ack.fields = {{"stage_id", "j1/train"}, {"attempt", 2}};
  broker.reply(ack);
  flusher.join();
  EXPECT_TRUE(flushed.load());
}

TEST(WorkerSession, HeartbeatsFlowWhileCallerIsBusyAndCancelArrives) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47612";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(broker.recv(3s));
  broker.reply(welcome());
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto ready = broker.recv(3s, kSkipHeartbeats);
    ASSERT_TRUE(ready);
    broker.reply(assign(1));
  });
  auto a = (*session)->wait_for_assignment(stop, 5000);
  t.join();
  ASSERT_TRUE(a.ok() && a->has_value());
  // The caller is now "in a long GPU step": it does not touch the session.
  // The broker answers heartbeats and counts them.
  int heartbeats = 0;
  auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    auto m = broker.recv(200ms);
    if (m && m->type == MessageType::kHeartbeat) {
      ++heartbeats;
      EXPECT_EQ(m->fields["job_id"], "j1");
      broker.reply(Message(MessageType::kHeartbeat));
    }
  }
  EXPECT_GE(heartbeats, 5);
  EXPECT_TRUE((*session)->connected());
  EXPECT_FALSE((*session)->cancel_requested());
  Message cancel(MessageType::kCancel);
  cancel.fields["job_id"] = "j1";
  broker.reply(cancel);
  for (int i = 0; i < 100 && !(*session)->cancel_requested(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE((*session)->cancel_requested());
}

TEST(WorkerSession, ReconnectsWithBackoffAndResendsUnacknowledgedDone) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47613";
  auto broker = std::make_unique<ScriptedBroker>(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(broker->recv(3s));
  broker->reply(welcome());
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto ready = broker->recv(3s, kSkipHeartbeats);
    ASSERT_TRUE(ready);
    broker->reply(assign(3));
  });
  auto a = (*session)->wait_for_assignment(stop, 5000);
  t.join();
  ASSERT_TRUE(a.ok() && a->has_value());
  // The scheduler dies (no more replies, socket gone).
  broker.reset();
  (*session)->send_done(R"({"ok":true})");
  for (int i = 0; i < 100 && (*session)->connected(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE((*session)->connected());
  // A restarted scheduler on the same port receives a new HELLO that names
  // the running stage, then the DONE again.
  broker = std::make_unique<ScriptedBroker>(ctx, ep);
  auto hello = broker->recv(5s, kSkipHeartbeats);
  ASSERT_TRUE(hello);
  ASSERT_EQ(hello->type, MessageType::kHello);
  EXPECT_EQ(hello->fields["running"]["stage_id"], "j1/train");
  EXPECT_EQ(hello->fields["running"]["attempt"], 3);
  broker->reply(welcome());
  auto done = broker->recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->type, MessageType::kDone);
  EXPECT_EQ(done->fields["result"]["ok"], true);
  Message ack(MessageType::kAck);
  ack.fields = {{"stage_id", "j1/train"}, {"attempt", 3}};
  broker->reply(ack);
  EXPECT_TRUE((*session)->flush(3000));
  EXPECT_GE((*session)->connections(), 2);
}

TEST(WorkerMessages, DecodeRejectsGarbage) {
  EXPECT_FALSE(decode_message("").ok());
  EXPECT_FALSE(decode_message("\xc1\xff\x00").ok());
  Message m(MessageType::kHeartbeat);
  std::string good = encode_message(m);
  EXPECT_TRUE(decode_message(good).ok());
  EXPECT_FALSE(decode_message(good.substr(0, good.size() - 1)).ok());
  nlohmann::json wrong_version = {{"v", 99}, {"type", "HEARTBEAT"}};
  auto bytes = nlohmann::json::to_msgpack(wrong_version);
  EXPECT_FALSE(decode_message(std::string(bytes.begin(), bytes.end())).ok());
  Message bad_assign(MessageType::kAssign);
  bad_assign.fields = {{"job_id", 3}};
  EXPECT_FALSE(assignment_from_message(bad_assign).ok());
}

}  // namespace
}  // namespace lema::worker
