// ScriptedWorker: a test worker that speaks the wire protocol over a DEALER
// (docs/PROTOCOL.md), as a reference for the real worker session. On ASSIGN
// it runs a script (messages to send back), then says READY again; it sends
// its own heartbeats, answers the scheduler's, and re-registers when the
// scheduler says hello_required (after a scheduler restart).
//
// Thread-safety: one thread runs run(); stop() and the counters from any.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/protocol/protocol.h"

namespace lema::testing {

using protocol::Message;
using protocol::MessageType;

// What the worker does with one ASSIGN: the messages to send, in order. An
// empty vector means "hang" (send nothing and do not become READY).
using AssignScript = std::function<std::vector<Message>(const Message& assign)>;

// The ordinary script: PROGRESS, CHECKPOINT (train), LOG, DONE.
inline std::vector<Message> finish_script(const Message& a) {
  int64_t stage = a.i64("stage_id"), attempt = a.i64("attempt");
  std::vector<Message> out;
  out.emplace_back(MessageType::kProgress,
                   nlohmann::json{{"stage_id", stage}, {"attempt", attempt}, {"step", 1}, {"total_steps", 2},
                                  {"metrics", {{"loss", 1.5}, {"lr", 1e-4}, {"tokens_per_s", 100.0}}}});
  if (a.str("kind") == "train") {
    out.emplace_back(MessageType::kCheckpoint, nlohmann::json{{"stage_id", stage}, {"attempt", attempt}, {"step", 1},
                                                              {"path", a.str("work_dir") + "/checkpoints/step-1"},
                                                              {"sha256", std::string(64, 'a')}});
  }
  out.emplace_back(MessageType::kLog, nlohmann::json{{"stage_id", stage}, {"attempt", attempt}, {"level", "info"},
                                                     {"line", "working on " + a.str("kind")}});
  out.emplace_back(MessageType::kDone,
                   nlohmann::json{{"stage_id", stage}, {"attempt", attempt}, {"result", {{"ok", true}}}});
  return out;
}

class ScriptedWorker {
 public:
  ScriptedWorker(std::string endpoint, std::string id, AssignScript script, int64_t heartbeat_ms = 100,
                 std::string token = "")
      : endpoint_(std::move(endpoint)), id_(std::move(id)), script_(std::move(script)),
        heartbeat_ms_(heartbeat_ms), token_(std::move(token)) {}

  void start() { thread_ = std::thread([this] { run(); }); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~ScriptedWorker() { stop(); }

  std::atomic<int> assigns{0};
  std::atomic<int> welcomes{0};
  std::atomic<int> errors{0};
  std::atomic<int> stale_errors{0};

  std::vector<Message> assignments() {
    std::lock_guard<std::mutex> lock(mu_);
    return assigned_;
  }

 private:
  void send(zmq::socket_t& s, const Message& m) {
    std::string body = protocol::encode(m);
    (void)s.send(zmq::buffer(body), zmq::send_flags::dontwait);
  }
  void hello(zmq::socket_t& s) {
    nlohmann::json f = {{"worker_id", id_}, {"host", "test"}, {"gpus", 1}, {"vram_bytes", int64_t(80) << 30},
                        {"cpu_only", false}, {"version", "test"}};
    if (!token_.empty()) f["token"] = token_;
    send(s, Message(MessageType::kHello, f));
  }

  void run() {
    zmq::context_t ctx(1);
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::reconnect_ivl, 20);
    s.connect(endpoint_);
    hello(s);
    auto next_hb = std::chrono::steady_clock::now();
    while (!stop_) {
      zmq::pollitem_t item = {s.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      auto now = std::chrono::steady_clock::now();
      if (now >= next_hb) {
        send(s, Message(MessageType::kHeartbeat));
        next_hb = now + std::chrono::milliseconds(heartbeat_ms_);
      }
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      if (!s.recv(msg, zmq::recv_flags::dontwait)) continue;
      auto m = protocol::decode(msg.data(), msg.size());
      if (!m.ok()) continue;
      switch (m->type) {
        case MessageType::kWelcome:
          welcomes++;
          send(s, Message(MessageType::kReady));
          break;
        case MessageType::kError:
          errors++;
          if (m->str("code") == protocol::error_code::kStaleAttempt) stale_errors++;
          if (m->str("code") == protocol::error_code::kHelloRequired) hello(s);
          break;
        case MessageType::kAssign: {
          assigns++;
          {
            std::lock_guard<std::mutex> lock(mu_);
            assigned_.push_back(*m);
          }
          std::vector<Message> out = script_(*m);
          if (out.empty()) break;  // hang: keep heartbeating, never finish
          for (const Message& r : out) send(s, r);
          send(s, Message(MessageType::kReady));
          break;
        }
        default:
          break;
      }
    }
  }

  std::string endpoint_, id_;
  AssignScript script_;
  int64_t heartbeat_ms_;
  std::string token_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Message> assigned_;  // guarded by mu_
};

}  // namespace lema::testing
