// WorkerSession against a scripted broker (a real ROUTER socket on loopback):
// HELLO/WELCOME, READY/ASSIGN, heartbeats while the caller is busy, CANCEL,
// DONE resent until ACK, and reconnection after the broker goes away.
#include "worker/worker_session.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/protocol/protocol.h"

extern char** environ;

namespace lema::worker {
namespace {

using protocol::Message;
using protocol::MessageType;

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
      Result<Message> m = protocol::decode(frames.back().to_string());
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
    std::string bytes = protocol::encode(m);
    socket_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
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
  m.fields = {{"worker_id", "w-1"}, {"heartbeat_interval_ms", 100}, {"liveness", 3}};
  return m;
}

Message assign(int64_t attempt) {
  Message m(MessageType::kAssign);
  m.fields = {{"job_id", 7}, {"stage_id", 12}, {"kind", "train"}, {"attempt", attempt},
              {"spec", {{"name", "tiny"}}}, {"work_dir", "/tmp/x"},
              {"resume_checkpoint", "/tmp/x/checkpoints/step-4"}};
  return m;
}

SessionOptions options_for(const std::string& endpoint) {
  SessionOptions o;
  o.endpoint = endpoint;
  o.worker_id = "testhost/gpu0";
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

TEST(WorkerSession, HelloReadyAssignProgressDone) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47611";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  auto hello = broker.recv(3s);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, MessageType::kHello);
  EXPECT_EQ(hello->fields["host"], "testhost");
  EXPECT_EQ(hello->fields["worker_id"], "testhost/gpu0");
  EXPECT_EQ(hello->fields["gpus"], 1);
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
  EXPECT_EQ(s.job_id, 7);
  EXPECT_EQ(s.stage_id, 12);
  EXPECT_EQ(s.kind, "train");
  EXPECT_EQ(s.attempt, 2);
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
  EXPECT_EQ(d->fields["stage_id"], 12);
  EXPECT_EQ(d->fields["result"]["adapter"], "a");
  EXPECT_TRUE((*session)->flush(3000));
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
      EXPECT_EQ(m->fields["stage_id"], 12);
      broker.reply(Message(MessageType::kHeartbeat));
    }
  }
  EXPECT_GE(heartbeats, 5);
  EXPECT_TRUE((*session)->connected());
  EXPECT_FALSE((*session)->cancel_requested());
  Message cancel(MessageType::kCancel);
  cancel.fields["job_id"] = 7;
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
  // The scheduler dies (no more replies, socket gone) while the stage runs.
  broker.reset();
  for (int i = 0; i < 100 && (*session)->connected(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE((*session)->connected());
  // A restarted scheduler on the same port receives a new HELLO that names
  // the running stage.
  broker = std::make_unique<ScriptedBroker>(ctx, ep);
  auto hello = broker->recv(5s, kSkipHeartbeats);
  ASSERT_TRUE(hello);
  ASSERT_EQ(hello->type, MessageType::kHello);
  EXPECT_EQ(hello->fields["running"]["stage_id"], 12);
  EXPECT_EQ(hello->fields["running"]["attempt"], 3);
  broker->reply(welcome());
  (*session)->send_done(R"({"ok":true})");
  auto done = broker->recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->type, MessageType::kDone);
  // It dies again before recording the DONE: the next scheduler hears HELLO
  // still naming the stage, finished (so that it keeps the lease instead of
  // running the stage again: issue 19 F1), then the DONE once more.
  broker.reset();
  for (int i = 0; i < 100 && (*session)->connected(); ++i) std::this_thread::sleep_for(20ms);
  broker = std::make_unique<ScriptedBroker>(ctx, ep);
  hello = broker->recv(5s, kSkipHeartbeats);
  ASSERT_TRUE(hello);
  ASSERT_EQ(hello->type, MessageType::kHello);
  ASSERT_TRUE(hello->fields.contains("running")) << hello->fields.dump();
  EXPECT_EQ(hello->fields["running"]["stage_id"], 12);
  EXPECT_EQ(hello->fields["running"]["attempt"], 3);
  EXPECT_EQ(hello->fields["running"]["finished"], true);
  broker->reply(welcome());
  done = broker->recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->type, MessageType::kDone);
  EXPECT_EQ(done->fields["result"]["ok"], true);
  EXPECT_TRUE((*session)->flush(3000));
  EXPECT_GE((*session)->connections(), 3);
}

// Issue 19 F2: a worker that has not heard from the scheduler for longer
// than it may write (lease time less one interval) blocks its writes, asks
// with HELLO, and writes again only when WELCOME says the lease is held; a
// lease not held stops the stage.
TEST(WorkerSession, SilenceFencesWritesUntilTheLeaseIsConfirmed) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47615";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(broker.recv(3s));
  broker.reply(welcome());
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto ready = broker.recv(3s, kSkipHeartbeats);
    ASSERT_TRUE(ready);
    broker.reply(assign(3));
  });
  auto a = (*session)->wait_for_assignment(stop, 5000);
  t.join();
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_TRUE((*session)->wait_for_lease(&stop).ok());  // just assigned: at once
  // The scheduler falls silent (heartbeats unanswered) past 2 intervals.
  std::this_thread::sleep_for(350ms);
  Status waited;
  std::atomic<bool> returned{false};
  std::thread writer([&] {
    waited = (*session)->wait_for_lease(&stop);
    returned = true;
  });
  // The session asks: HELLO naming the running stage. Until WELCOME, no write.
  std::optional<Message> hello;
  for (int i = 0; i < 50 && !(hello && hello->type == MessageType::kHello); ++i) hello = broker.recv(100ms);
  ASSERT_TRUE(hello && hello->type == MessageType::kHello);
  EXPECT_EQ(hello->fields["running"]["stage_id"], 12);
  EXPECT_EQ(hello->fields["running"]["finished"], false);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(returned.load()) << "a write went ahead without the lease confirmed";
  // Answer every HELLO (the session may have reconnected meanwhile) until
  // the writer goes on.
  auto answer_hellos = [&](bool held, const std::atomic<bool>& done) {
    Message w = welcome();
    w.fields["lease"] = {{"stage_id", 12}, {"attempt", 3}, {"held", held}};
    broker.reply(w);
    for (int i = 0; i < 100 && !done.load(); ++i) {
      auto m = broker.recv(50ms);
      if (m && m->type == MessageType::kHello) broker.reply(w);
    }
  };
  answer_hellos(true, returned);
  writer.join();
  EXPECT_TRUE(waited.ok()) << waited.to_string();
  EXPECT_FALSE((*session)->cancel_requested());
  // Silent again; this time the lease went to another worker.
  std::this_thread::sleep_for(350ms);
  std::atomic<bool> returned2{false};
  std::thread writer2([&] {
    waited = (*session)->wait_for_lease(&stop);
    returned2 = true;
  });
  hello.reset();
  for (int i = 0; i < 50 && !(hello && hello->type == MessageType::kHello); ++i) hello = broker.recv(100ms);
  ASSERT_TRUE(hello && hello->type == MessageType::kHello);
  answer_hellos(false, returned2);
  stop = true;  // never hang the test: a writer still waiting returns
  writer2.join();
  EXPECT_EQ(waited.code(), Status::Code::kCancelled) << waited.to_string();
  EXPECT_TRUE((*session)->cancel_requested());
}

// Issue 19: only the answer to the newest HELLO speaks of the lease. A
// WELCOME to an earlier one (queued while this process was frozen, read
// after SIGCONT) must not let a fenced stage write again: HELLO carries a
// number that WELCOME echoes.
TEST(WorkerSession, AWelcomeToAnEarlierHelloConfirmsNothing) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47616";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  auto first = broker.recv(3s);
  ASSERT_TRUE(first && first->type == MessageType::kHello);
  EXPECT_TRUE(first->has("hello_seq"));
  broker.reply(welcome());
  std::atomic<bool> stop{false};
  std::thread t([&] {
    auto ready = broker.recv(3s, kSkipHeartbeats);
    ASSERT_TRUE(ready);
    broker.reply(assign(3));
  });
  auto a = (*session)->wait_for_assignment(stop, 5000);
  t.join();
  ASSERT_TRUE(a.ok() && a->has_value());
  // Silent past the fence time: the next write waits, and the session asks.
  std::this_thread::sleep_for(350ms);
  Status waited;
  std::atomic<bool> returned{false};
  std::thread writer([&] {
    waited = (*session)->wait_for_lease(&stop);
    returned = true;
  });
  // Reads for `ms`, answering heartbeats, and keeps the newest HELLO (the
  // session may reconnect and say HELLO again at any time).
  std::optional<Message> hello;
  auto pump = [&](std::chrono::milliseconds ms) {
    const auto until = std::chrono::steady_clock::now() + ms;
    while (std::chrono::steady_clock::now() < until) {
      auto m = broker.recv(20ms, kSkipHeartbeats);
      if (m && m->type == MessageType::kHello) hello = m;
    }
  };
  for (int i = 0; i < 50 && !hello; ++i) pump(100ms);
  ASSERT_TRUE(hello);
  // The answer to the HELLO before it, saying the lease is held.
  Message stale = welcome();
  stale.fields["lease"] = {{"stage_id", 12}, {"attempt", 3}, {"held", true}};
  stale.fields["hello_seq"] = hello->i64("hello_seq") - 1;
  broker.reply(stale);
  pump(200ms);
  EXPECT_FALSE(returned.load()) << "a WELCOME to an earlier HELLO let a fenced stage write";
  // The answer to the newest HELLO: the lease is gone.
  for (int i = 0; i < 100 && !returned.load(); ++i) {
    Message w = welcome();
    w.fields["lease"] = {{"stage_id", 12}, {"attempt", 3}, {"held", false}};
    w.fields["hello_seq"] = hello->i64("hello_seq");
    broker.reply(w);
    pump(50ms);
  }
  stop = true;
  writer.join();
  EXPECT_EQ(waited.code(), Status::Code::kCancelled) << waited.to_string();
  EXPECT_TRUE((*session)->cancel_requested());
}

// The worker process of the freeze test (the test binary re-executed with
// LEMA_TEST_WORKER_EP set): takes one ASSIGN, reads freezes(), says "F" on
// stdout, waits for a byte on stdin (the test stops it there), then sends
// DONE and says on stdout whether confirm_report counted it: "C" or "N".
int run_worker_child_if_asked() {
  const char* ep = std::getenv("LEMA_TEST_WORKER_EP");
  if (!ep) return 0;
  SessionOptions o;
  o.endpoint = ep;
  o.worker_id = "frozen";
  o.capabilities.host = "testhost";
  o.heartbeat_interval_ms = 100;
  o.heartbeat_liveness = 3;
  o.reconnect_initial_ms = 50;
  o.reconnect_max_ms = 200;
  auto session = WorkerSession::start(o);
  if (!session.ok()) _exit(3);
  std::atomic<bool> stop{false};
  auto a = (*session)->wait_for_assignment(stop, 10000);
  if (!a.ok() || !a->has_value()) _exit(4);
  const int64_t freezes = (*session)->freezes();
  const int64_t connections = (*session)->connections();
  if (write(1, "F", 1) != 1) _exit(5);
  char byte = 0;
  if (read(0, &byte, 1) != 1) _exit(6);
  (*session)->send_done_counted("{}", freezes, connections, "stage train of job 7 done");
  Status counts = (*session)->confirm_report(&stop);
  if (write(1, counts.ok() ? "C" : "N", 1) != 1) _exit(7);
  // The session stays (the DONE may still be on its way out) until the
  // test kills this process.
  for (;;) pause();
}
const int kWorkerChildMarker = run_worker_child_if_asked();

// A worker process with pipes on its stdin and stdout.
struct WorkerChild {
  pid_t pid = -1;
  int to_child = -1, from_child = -1;
  explicit WorkerChild(const std::string& ep) {
    int in[2], out[2];
    EXPECT_EQ(pipe(in), 0);
    EXPECT_EQ(pipe(out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.push_back(*e);
    env_strings.push_back("LEMA_TEST_WORKER_EP=" + ep);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    char arg0[] = "worker-child";
    char* argv[] = {arg0, nullptr};
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
    EXPECT_EQ(rc, 0) << std::strerror(rc);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    to_child = in[1];
    from_child = out[0];
  }
  // The next byte the child writes, or 0 after timeout_ms.
  char read_byte(int timeout_ms) {
    pollfd p = {from_child, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return 0;
    char c = 0;
    return ::read(from_child, &c, 1) == 1 ? c : 0;
  }
  ~WorkerChild() {
    if (pid > 0) {
      kill(pid, SIGCONT);
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(to_child);
    close(from_child);
  }
};

// Issue 19 (chaos: a worker frozen as its stage ended said "done" for a
// DONE that arrived after its lease had lapsed, and the stage ran again on
// the other worker). The DONE of a worker process frozen (SIGSTOP) between
// its last lease answer and the DONE leaving counts only once the
// scheduler says so: the session asks (HELLO naming the finished stage)
// and believes the answer. Without a freeze nothing is asked.
TEST(WorkerSession, ADoneSentAfterAFreezeCountsOnlyWhenTheSchedulerSaysSo) {
  (void)kWorkerChildMarker;
  int port = 47617;
  for (const char* answer : {"none", "lost", "done"}) {
    SCOPED_TRACE(answer);
    zmq::context_t ctx;
    const std::string ep = "tcp://127.0.0.1:" + std::to_string(port++);
    ScriptedBroker broker(ctx, ep);
    WorkerChild child(ep);
    auto hello = broker.recv(5s);
    ASSERT_TRUE(hello && hello->type == MessageType::kHello);
    broker.reply(welcome());
    ASSERT_TRUE(broker.recv(5s, kSkipHeartbeats));  // READY
    broker.reply(assign(3));
    ASSERT_EQ(child.read_byte(5000), 'F');
    const bool freeze = std::string(answer) != "none";
    if (freeze) kill(child.pid, SIGSTOP);
    ASSERT_EQ(::write(child.to_child, "x", 1), 1);
    if (freeze) {
      std::this_thread::sleep_for(700ms);  // past the fence time (200 ms) and the lease
      kill(child.pid, SIGCONT);
    }
    // Answer heartbeats; a HELLO gets the answer under test.
    char verdict = 0;
    int hellos = 0;
    bool done_seen = false, finished_named = false;
    // The verdict may come before this reads the DONE (said as it leaves).
    for (int i = 0; i < 200 && !(verdict && done_seen); ++i) {
      auto m = broker.recv(20ms, kSkipHeartbeats);
      if (m && m->type == MessageType::kDone) done_seen = true;
      if (m && m->type == MessageType::kHello) {
        ++hellos;
        // The first may leave before the DONE is queued (it says
        // finished: false, and its answer stops nothing: the stage ended).
        finished_named = finished_named || m->fields["running"]["finished"] == true;
        Message w = welcome();
        w.fields["lease"] = {{"stage_id", 12}, {"attempt", 3}, {"held", false},
                             {"done", std::string(answer) == "done"}};
        w.fields["hello_seq"] = m->i64("hello_seq");
        broker.reply(w);
      }
      if (!verdict) verdict = child.read_byte(0);
    }
    EXPECT_TRUE(done_seen);
    if (!freeze) {
      EXPECT_EQ(verdict, 'C');
      EXPECT_EQ(hellos, 0) << "asked without a freeze";
    } else {
      EXPECT_TRUE(finished_named);
      EXPECT_EQ(verdict, std::string(answer) == "done" ? 'C' : 'N');
    }
  }
}

TEST(WorkerSession, SaysHelloAgainWhenTheSchedulerForgotIt) {
  zmq::context_t ctx;
  const std::string ep = "tcp://127.0.0.1:47614";
  ScriptedBroker broker(ctx, ep);
  auto session = WorkerSession::start(options_for(ep));
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(broker.recv(3s));
  broker.reply(welcome());
  auto hb = broker.recv(3s);
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->type, MessageType::kHeartbeat);
  broker.reply(protocol::make_error(protocol::error_code::kHelloRequired, "who are you"));
  auto hello = broker.recv(3s, kSkipHeartbeats);
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, MessageType::kHello);
  EXPECT_EQ((*session)->last_error(), "hello_required: who are you");
}

}  // namespace
}  // namespace lema::worker
