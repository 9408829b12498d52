// The broker against real SQLite files and real ipc sockets, with scripted
// workers (tests/scheduler/test_worker.h).
#include "scheduler/broker.h"

#include <map>
#include <random>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "scheduler/client.h"
#include "tests/scheduler/scheduler_test_util.h"
#include "tests/scheduler/test_worker.h"

namespace lema {
namespace {

using nlohmann::json;
using namespace lema::testing;

std::unique_ptr<Client> connect_client(const std::string& ep, const std::string& token = "") {
  ClientOptions o;
  o.endpoint = ep;
  o.token = token;
  o.timeout_ms = 5000;
  auto c = Client::connect(o);
  EXPECT_TRUE(c.ok());
  return std::move(*c);
}

int64_t count_state(Client& c, const char* state) {
  auto r = c.ping();
  if (!r.ok()) return -1;
  return (*r)["jobs"][state].get<int64_t>();
}

TEST(Broker, HundredJobsOverThreeWorkersRunEachStageOnce) {
  std::string dir = make_temp_dir("broker100");
  BrokerThread broker(test_broker_options(dir));
  ASSERT_TRUE(broker.ok());
  auto client = connect_client(broker->clients_endpoint());
  constexpr int kJobs = 100;
  for (int i = 0; i < kJobs; ++i) {
    auto id = client->submit(small_spec("job" + std::to_string(i), i % 3));
    ASSERT_TRUE(id.ok()) << id.status().to_string();
  }
  std::vector<std::unique_ptr<ScriptedWorker>> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(std::make_unique<ScriptedWorker>(broker->workers_endpoint(), "w" + std::to_string(w), finish_script));
    workers.back()->start();
  }
  ASSERT_TRUE(wait_for([&] { return count_state(*client, "succeeded") == kJobs; }, 25000))
      << client->ping()->dump();
  for (auto& w : workers) w->stop();

  std::map<int64_t, int> runs;  // stage id -> assignments
  int per_worker_min = kJobs * 4;
  for (auto& w : workers) {
    auto as = w->assignments();
    per_worker_min = std::min<int>(per_worker_min, as.size());
    for (const auto& a : as) runs[a.i64("stage_id")]++;
  }
  EXPECT_EQ(runs.size(), size_t(kJobs * 4));  // dataset, train, eval, merge
  for (const auto& [stage, n] : runs) EXPECT_EQ(n, 1) << "stage " << stage;
  EXPECT_GT(per_worker_min, 0) << "every worker got work";
  auto show = client->show(1);
  ASSERT_TRUE(show.ok());
  for (const auto& st : (*show)["stages"]) {
    EXPECT_EQ(st["state"], "succeeded");
    EXPECT_EQ(st["attempt"], 1);
  }
  auto logs = client->logs(1);
  ASSERT_TRUE(logs.ok());
  EXPECT_GE((*logs)["events"].size(), 5u);
  EXPECT_EQ(broker->stats().stale, 0u);
  remove_all(dir).ok();
}

TEST(Broker, StagesRunInDependencyOrderAndPriorityFirst) {
  std::string dir = make_temp_dir("brokerorder");
  BrokerThread broker(test_broker_options(dir));
  auto client = connect_client(broker->clients_endpoint());
  ASSERT_TRUE(client->submit(small_spec("low", 0)).ok());
  ASSERT_TRUE(client->submit(small_spec("high", 5)).ok());
  ScriptedWorker w(broker->workers_endpoint(), "solo", finish_script);
  w.start();
  ASSERT_TRUE(wait_for([&] { return count_state(*client, "succeeded") == 2; }, 10000));
  w.stop();
  auto as = w.assignments();
  ASSERT_EQ(as.size(), 8u);
  // The high-priority job (id 2) runs all its stages first; within a job
  // dataset precedes train precedes eval and merge.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(as[i].i64("job_id"), 2) << i;
  EXPECT_EQ(as[0].str("kind"), "dataset");
  EXPECT_EQ(as[1].str("kind"), "train");
  EXPECT_EQ(as[1].fields["spec"]["job"]["name"], "high");
  remove_all(dir).ok();
}

// A raw DEALER speaking the protocol by hand.
struct RawPeer {
  RawPeer(zmq::context_t& ctx, const std::string& ep) : sock(ctx, zmq::socket_type::dealer) {
    sock.set(zmq::sockopt::linger, 0);
    sock.connect(ep);
  }
  void send(const protocol::Message& m) { sock.send(zmq::buffer(protocol::encode(m)), zmq::send_flags::none); }
  void send_raw(const std::string& bytes) { sock.send(zmq::buffer(bytes), zmq::send_flags::none); }
  // Next message that is not a HEARTBEAT.
  Result<protocol::Message> recv(int timeout_ms = 3000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item = {sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      (void)sock.recv(msg);
      auto m = protocol::decode(msg.data(), msg.size());
      if (!m.ok()) return m.status();
      if (m->type != MessageType::kHeartbeat) return m;
    }
    return Status::unavailable("timeout");
  }
  zmq::socket_t sock;
};

TEST(Broker, VanishedWorkerStageIsReassignedAndLateMessagesRefused) {
  std::string dir = make_temp_dir("brokervanish");
  BrokerThread broker(test_broker_options(dir));
  auto client = connect_client(broker->clients_endpoint());
  ASSERT_TRUE(client->submit(small_spec("v")).ok());
  zmq::context_t ctx(1);
  RawPeer ghost(ctx, broker->workers_endpoint());
  ghost.send(Message(MessageType::kReady));
  auto err = ghost.recv();
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->type, MessageType::kError);
  EXPECT_EQ(err->str("code"), protocol::error_code::kHelloRequired);
  ghost.send(Message(MessageType::kHello, {{"worker_id", "ghost"}, {"gpus", 1}, {"vram_bytes", 1 << 30}}));
  auto welcome = ghost.recv();
  ASSERT_TRUE(welcome.ok());
  ASSERT_EQ(welcome->type, MessageType::kWelcome);
  ghost.send(Message(MessageType::kReady));
  auto assign = ghost.recv();
  ASSERT_TRUE(assign.ok());
  ASSERT_EQ(assign->type, MessageType::kAssign);
  int64_t stage = assign->i64("stage_id");
  EXPECT_EQ(assign->i64("attempt"), 1);
  ghost.send(Message(MessageType::kProgress, {{"stage_id", stage}, {"attempt", 1}, {"step", 1}}));
  // The ghost now goes silent; after 3 missed heartbeats (300 ms) its lease
  // lapses and a live worker gets the stage as attempt 2.
  ScriptedWorker live(broker->workers_endpoint(), "live", finish_script);
  live.start();
  ASSERT_TRUE(wait_for([&] { return count_state(*client, "succeeded") == 1; }, 10000));
  live.stop();
  auto as = live.assignments();
  ASSERT_FALSE(as.empty());
  EXPECT_EQ(as[0].i64("stage_id"), stage);
  EXPECT_EQ(as[0].i64("attempt"), 2);
  // The ghost's late messages are fenced off.
  while (ghost.recv(100).ok()) {
  }
  ghost.send(Message(MessageType::kHello, {{"worker_id", "ghost"}, {"gpus", 1}, {"vram_bytes", 1 << 30}}));
  ASSERT_EQ(ghost.recv()->type, MessageType::kWelcome);
  ghost.send(Message(MessageType::kDone, {{"stage_id", stage}, {"attempt", 1}}));
  auto stale = ghost.recv();
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->type, MessageType::kError);
  EXPECT_EQ(stale->str("code"), protocol::error_code::kStaleAttempt) << stale->str("error");
  ghost.send(Message(MessageType::kCheckpoint,
                     {{"stage_id", stage}, {"attempt", 1}, {"step", 9}, {"path", "/x"}, {"sha256", "00"}}));
  EXPECT_EQ(ghost.recv()->str("code"), protocol::error_code::kStaleAttempt);
  EXPECT_GE(broker->stats().stale, 2u);
  auto show = client->show(1);
  ASSERT_TRUE(show.ok());
  EXPECT_EQ((*show)["stages"][0]["attempt"], 2);
  EXPECT_EQ((*show)["state"], "succeeded");
  remove_all(dir).ok();
}

// Issue 19 (chaos: SIGSTOP of the scheduler): a broker that did not run for
// a while (here its clock jumps, as it does for a process SIGSTOPped and
// continued) must not judge leases by the silence it caused: what the
// workers sent meanwhile is still unread. The lease holder's DONE, read
// after the pause, is accepted, and the idle worker is not handed the
// stage a second time. A worker silent past the grace still loses its
// lease.
TEST(Broker, PausedSchedulerJudgesNoLeaseBeforeHearingTheWorkers) {
  std::string dir = make_temp_dir("brokerpause");
  ManualClock clock;
  BrokerOptions options = test_broker_options(dir);  // lease 300 ms
  options.clock = &clock;
  BrokerThread broker(options);
  auto client = connect_client(broker->clients_endpoint());
  ASSERT_TRUE(client->submit(small_spec("p")).ok());
  zmq::context_t ctx(1);
  RawPeer a(ctx, broker->workers_endpoint());
  a.send(Message(MessageType::kHello, {{"worker_id", "a"}, {"gpus", 1}, {"vram_bytes", 1 << 30}}));
  ASSERT_EQ(a.recv()->type, MessageType::kWelcome);
  a.send(Message(MessageType::kReady));
  auto assign = a.recv();
  ASSERT_TRUE(assign.ok());
  ASSERT_EQ(assign->type, MessageType::kAssign);
  const int64_t stage = assign->i64("stage_id");
  ASSERT_EQ(assign->i64("attempt"), 1);
  RawPeer b(ctx, broker->workers_endpoint());
  b.send(Message(MessageType::kHello, {{"worker_id", "b"}, {"gpus", 1}, {"vram_bytes", 1 << 30}}));
  ASSERT_EQ(b.recv()->type, MessageType::kWelcome);
  b.send(Message(MessageType::kReady));
  EXPECT_FALSE(b.recv(300).ok()) << "nothing runnable yet";
  // The pause: 2 s, longer than a lease, passes at once. Each broker turn
  // takes some real time; the broker sees the jump at its next purge.
  clock.advance_ms(2000);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto during = b.recv(300);
  EXPECT_FALSE(during.ok() && during->type == MessageType::kAssign && during->i64("stage_id") == stage)
      << "the stage went to the idle worker: its lease was judged before its holder could be heard";
  // The DONE sent "during the pause", read now: accepted.
  a.send(Message(MessageType::kDone, {{"stage_id", stage}, {"attempt", 1}, {"result", {{"ok", true}}}}));
  auto next = b.recv(3000);  // the next stage (train) goes to the idle worker
  ASSERT_TRUE(next.ok()) << next.status().to_string();
  ASSERT_EQ(next->type, MessageType::kAssign) << next->str("code") << ": " << next->str("error");
  EXPECT_NE(next->i64("stage_id"), stage);
  EXPECT_EQ(next->i64("attempt"), 1);
  auto show = client->show(1);
  ASSERT_TRUE(show.ok());
  EXPECT_EQ((*show)["stages"][0]["state"], "succeeded");
  EXPECT_EQ((*show)["stages"][0]["attempt"], 1);
  EXPECT_EQ(broker->stats().stale, 0u);
  // A holder that asks about its finished stage (as a worker frozen as it
  // sent its DONE does) hears that the DONE counted.
  a.send(Message(MessageType::kHello, {{"worker_id", "a"}, {"gpus", 1}, {"vram_bytes", 1 << 30},
                                       {"running", {{"stage_id", stage}, {"attempt", 1}, {"finished", true}}},
                                       {"hello_seq", 7}}));
  auto w = a.recv();
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->type, MessageType::kWelcome);
  EXPECT_EQ(w->fields["lease"]["held"], false);
  EXPECT_EQ(w->fields["lease"]["done"], true);
  EXPECT_EQ(w->i64("hello_seq"), 7);
  // Liveness stays: b now holds train and says nothing more. Time passes in
  // steps shorter than a heartbeat interval (not a pause), and its lease
  // lapses once the grace is over.
  const int64_t train = next->i64("stage_id");
  bool lapsed = false;
  for (int i = 0; i < 1000 && !lapsed; ++i) {
    clock.advance_ms(25);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto s = client->show(1);
    lapsed = s.ok() && (*s)["stages"][1]["attempt"] == 1 && (*s)["stages"][1]["state"] == "retrying";
    if (s.ok() && (*s)["stages"][1]["id"] != train) break;
  }
  EXPECT_TRUE(lapsed) << client->show(1)->dump();
  remove_all(dir).ok();
}

TEST(Broker, TokenIsRequiredWhenSet) {
  std::string dir = make_temp_dir("brokertoken");
  BrokerOptions o = test_broker_options(dir);
  o.token = "s3cret";
  BrokerThread broker(o);
  auto bad = connect_client(broker->clients_endpoint(), "wrong");
  auto r = bad->ping();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unauthorized"), std::string::npos);
  auto good = connect_client(broker->clients_endpoint(), "s3cret");
  ASSERT_TRUE(good->ping().ok());
  zmq::context_t ctx(1);
  RawPeer w(ctx, broker->workers_endpoint());
  w.send(Message(MessageType::kHello, {{"worker_id", "x"}}));
  EXPECT_EQ(w.recv()->str("code"), protocol::error_code::kUnauthorized);
  EXPECT_EQ(broker->stats().unauthorized, 2u);
  remove_all(dir).ok();
}

// Issue 19: a client socket kept open across a scheduler restart re-sends
// its queued SUBMIT to the new scheduler, and the client, which had no
// answer, submits again: with one request id that is one job, not two.
TEST(Broker, RepeatedSubmitWithOneRequestIdMakesOneJob) {
  std::string dir = make_temp_dir("brokerreq");
  BrokerOptions o = test_broker_options(dir);
  auto broker = std::make_unique<BrokerThread>(o);
  auto c = connect_client((*broker)->clients_endpoint());
  const std::string spec = small_spec("r");
  auto first = c->submit(spec, "r.toml", "req-1");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto again = c->submit(spec, "r.toml", "req-1");
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_EQ(*again, *first);
  auto other = c->submit(small_spec("r2"), "r2.toml", "req-1");
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("request id 'req-1' was used by job"), std::string::npos)
      << other.status().to_string();
  // No id given: each call draws its own, two submits are two jobs.
  auto a1 = c->submit(small_spec("n1"), "n1.toml");
  ASSERT_TRUE(a1.ok()) << a1.status().to_string();
  auto a2 = c->submit(small_spec("n2"), "n2.toml");
  ASSERT_TRUE(a2.ok()) << a2.status().to_string();
  EXPECT_NE(*a1, *a2);

  // The restart: a SUBMIT sent while the scheduler is down waits in the
  // client's socket and reaches the new scheduler; the retry follows.
  broker.reset();
  ClientOptions quick;
  quick.endpoint = o.clients_bind;
  quick.timeout_ms = 300;
  auto q = Client::connect(quick);
  ASSERT_TRUE(q.ok());
  const std::string spec_s = small_spec("s");
  auto lost = (*q)->submit(spec_s, "s.toml", "req-2");
  EXPECT_EQ(lost.status().code(), Status::Code::kUnavailable) << lost.status().to_string();
  broker = std::make_unique<BrokerThread>(o);
  Result<int64_t> retried = Status::unavailable("not yet");
  ASSERT_TRUE(wait_for([&] { return (retried = (*q)->submit(spec_s, "s.toml", "req-2")).ok(); }, 10000))
      << retried.status().to_string();
  auto list = c->list("", 100);
  ASSERT_TRUE(list.ok()) << list.status().to_string();
  int named_s = 0;
  for (const json& j : (*list)["jobs"]) named_s += j["name"] == "s";
  EXPECT_EQ(named_s, 1) << list->dump();
  EXPECT_EQ((*list)["jobs"].size(), 4u) << list->dump();
  broker.reset();
  remove_all(dir).ok();
}

TEST(Broker, RemoteClientBindRefusedByDefault) {
  BrokerOptions o;
  o.db_path = ":memory:";
  o.clients_bind = "tcp://*:7501";
  auto b = Broker::create(o);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("loopback"), std::string::npos);
}

TEST(Broker, FuzzedInputGetsErrorsAndBrokerKeepsServing) {
  std::string dir = make_temp_dir("brokerfuzz");
  BrokerThread broker(test_broker_options(dir));
  auto client = connect_client(broker->clients_endpoint());
  ASSERT_TRUE(client->submit(small_spec("f")).ok());
  zmq::context_t ctx(1);
  std::mt19937 rng(1234);
  int sent = 0;
  for (const std::string& ep : {broker->workers_endpoint(), broker->clients_endpoint()}) {
    RawPeer p(ctx, ep);
    // Random bytes of random lengths.
    for (int i = 0; i < 300; ++i) {
      std::string junk(rng() % 200 + 1, '\0');
      for (char& c : junk) c = char(rng());
      p.send_raw(junk);
      ++sent;
    }
    // Well-formed msgpack with wrong shapes and types.
    std::vector<json> docs = {
        json::array({1, 2, 3}),
        json{{"v", 1}},
        json{{"v", 99}, {"type", "PING"}},
        json{{"v", 1}, {"type", "NOPE"}},
        json{{"v", 1}, {"type", 7}},
        json{{"v", "1"}, {"type", "PING"}},
        json{{"v", 1}, {"type", "PROGRESS"}, {"stage_id", "x"}, {"attempt", 1}, {"step", 1}},
        json{{"v", 1}, {"type", "SHOW"}, {"job_id", "one"}},
        json{{"v", 1}, {"type", "SHOW"}, {"job_id", 999999}},
        json{{"v", 1}, {"type", "SUBMIT"}, {"spec", "[job]\nname = 3\n"}},
        json{{"v", 1}, {"type", "SUBMIT"}, {"spec", "not toml ["}},
        json{{"v", 1}, {"type", "DONE"}, {"stage_id", 1}, {"attempt", 1}},
        json{{"v", 1}, {"type", "ASSIGN"}, {"job_id", 1}},
        json{{"v", 1}, {"type", "CANCEL"}},
        json{{"v", 1}, {"type", "HELLO"}, {"worker_id", std::string(1000, 'x')}},
    };
    for (const json& d : docs) {
      auto bytes = json::to_msgpack(d);
      p.send_raw(std::string(bytes.begin(), bytes.end()));
      ++sent;
    }
    // Nesting far deeper than the limit: 100,000 one-element arrays.
    std::string deep(100000, char(0x91));
    deep.push_back(char(0xc0));
    p.send_raw(deep);
    // A map header promising 2^32-1 entries with none present.
    p.send_raw(std::string("\xdf\xff\xff\xff\xff", 5));
    // Multi-frame message.
    p.sock.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
    p.sock.send(zmq::buffer(std::string("b")), zmq::send_flags::none);
    sent += 3;
    // Every one of them gets an ERROR (or, for REPLY-able requests, a reply).
    int answers = 0;
    while (p.recv(500).ok()) ++answers;
    EXPECT_EQ(answers, sent) << ep;  // exactly one answer (ERROR) per message
    sent = 0;
  }
  // A frame larger than ZMQ_MAXMSGSIZE: the peer is disconnected, the broker lives.
  {
    RawPeer big(ctx, broker->clients_endpoint());
    big.send_raw(std::string(protocol::kMaxMessageBytes + 1024, 'x'));
    RawPeer big2(ctx, broker->workers_endpoint());
    big2.send_raw(std::string(protocol::kMaxMessageBytes + 1024, 'x'));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  auto ping = client->ping();
  ASSERT_TRUE(ping.ok()) << ping.status().to_string();
  EXPECT_GT((*ping)["stats"]["malformed"].get<int64_t>(), 500);
  // And it still schedules work.
  ScriptedWorker w(broker->workers_endpoint(), "after-fuzz", finish_script);
  w.start();
  EXPECT_TRUE(wait_for([&] { return count_state(*client, "succeeded") == 1; }, 10000));
  w.stop();
  remove_all(dir).ok();
}

TEST(Broker, CancelStopsRunningStageAndRetryRequeues) {
  std::string dir = make_temp_dir("brokercancel");
  BrokerThread broker(test_broker_options(dir));
  auto client = connect_client(broker->clients_endpoint());
  ASSERT_TRUE(client->submit(small_spec("c")).ok());
  zmq::context_t ctx(1);
  RawPeer p(ctx, broker->workers_endpoint());
  p.send(Message(MessageType::kHello, {{"worker_id", "p"}, {"gpus", 1}, {"vram_bytes", 1 << 30}}));
  ASSERT_EQ(p.recv()->type, MessageType::kWelcome);
  p.send(Message(MessageType::kReady));
  auto a = p.recv();
  ASSERT_EQ(a->type, MessageType::kAssign);
  ASSERT_TRUE(client->cancel(1).ok());
  auto cancel = p.recv();
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(cancel->type, MessageType::kCancel);
  EXPECT_EQ(cancel->i64("stage_id"), a->i64("stage_id"));
  EXPECT_EQ((*client->show(1))["state"], "cancelled");
  EXPECT_FALSE(client->cancel(1).ok());  // already cancelled: invalid transition
  ASSERT_TRUE(client->retry(1).ok());
  p.send(Message(MessageType::kReady));
  auto again = p.recv();
  ASSERT_EQ(again->type, MessageType::kAssign);
  EXPECT_EQ(again->i64("stage_id"), a->i64("stage_id"));
  EXPECT_EQ(again->i64("attempt"), 2);
  remove_all(dir).ok();
}

}  // namespace
}  // namespace lema
