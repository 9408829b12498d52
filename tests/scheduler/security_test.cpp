// Issue #18: nobody but our workers and clients. A real broker on real
// sockets (ipc, and tcp for the bind checks), peers as raw DEALER sockets
// with and without CURVE keys, and the SQLite file read back afterwards.
#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "common/base/file_util.h"
#include "scheduler/client.h"
#include "scheduler/curve_keys.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace lema {
namespace {

using namespace lema::testing;
using nlohmann::json;
using protocol::Message;
using protocol::MessageType;

// A raw worker-side peer: a DEALER, optionally with a CURVE key pair.
struct Peer {
  Peer(zmq::context_t& ctx, const std::string& ep, const CurveKeyPair* me = nullptr,
       const std::string& server_pub = "")
      : sock(ctx, zmq::socket_type::dealer) {
    sock.set(zmq::sockopt::linger, 0);
    if (me) {
      sock.set(zmq::sockopt::curve_serverkey, server_pub);
      sock.set(zmq::sockopt::curve_publickey, me->public_z85);
      sock.set(zmq::sockopt::curve_secretkey, me->secret_z85);
    }
    sock.connect(ep);
  }
  // Blocking: a flood must arrive, not stop at the socket's high-water mark.
  void send(const Message& m) { sock.send(zmq::buffer(protocol::encode(m)), zmq::send_flags::none); }
  void hello(const std::string& id) {
    send(Message(MessageType::kHello, {{"worker_id", id}, {"host", "t"}, {"gpus", 1}, {"vram_bytes", int64_t(80) << 30},
                                       {"cpu_only", false}, {"version", "test"}}));
  }
  // The next message that is not a HEARTBEAT; kUnavailable on timeout.
  Result<Message> recv(int timeout_ms = 2000) {
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

// Rows of a table of the broker's database, read with plain SQLite.
int64_t count_rows(const std::string& db, const std::string& table) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(h, ("SELECT count(*) FROM " + table).c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return n;
}

std::unique_ptr<Client> connect_client(const std::string& ep) {
  ClientOptions o;
  o.endpoint = ep;
  o.timeout_ms = 5000;
  return Client::connect(o).value();
}

struct Keys {
  CurveKeyPair server = make_curve_keypair().value();
  CurveKeyPair alice = make_curve_keypair().value();
  CurveKeyPair mallory = make_curve_keypair().value();
  CurveKeyPair stranger = make_curve_keypair().value();  // never authorized
};

ClientOptions client_options(const std::string& ep, const Keys& k, const CurveKeyPair& who) {
  ClientOptions co;
  co.endpoint = ep;
  co.timeout_ms = 1500;
  co.curve_server_key = k.server.public_z85;
  co.curve_public_key = who.public_z85;
  co.curve_secret_key = who.secret_z85;
  return co;
}

TEST(Security, OpenEndpointsBeyondLoopbackNeedKeysOrInsecure) {
  std::string dir = make_temp_dir("secbind");
  BrokerOptions o = test_broker_options(dir);
  o.workers_bind = "tcp://*:*";
  auto refused = Broker::create(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("tcp://*:*"), std::string::npos) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("--insecure"), std::string::npos);

  o.insecure = true;
  EXPECT_TRUE(Broker::create(o).ok());

  if (curve_available()) {
    Keys k;
    o.insecure = false;
    o.curve_secret_key = k.server.secret_z85;
    o.curve_authorized_keys = {k.alice.public_z85};
    EXPECT_TRUE(Broker::create(o).ok());
  }
  // Loopback alone may run open (as `lema run` does).
  BrokerOptions local = test_broker_options(dir);
  local.db_path = dir + "/local.db";
  local.workers_bind = "tcp://127.0.0.1:*";
  local.clients_bind = "tcp://127.0.0.1:*";
  EXPECT_TRUE(Broker::create(local).ok());
  remove_all(dir).ok();
}

TEST(Security, PeerWithoutAnAuthorizedKeyGetsNothingAndLeavesNothing) {
  if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  std::string dir = make_temp_dir("secrogue");
  Keys k;
  BrokerOptions o = test_broker_options(dir);
  o.curve_secret_key = k.server.secret_z85;
  o.curve_authorized_keys = {k.alice.public_z85};
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  auto client = Client::connect(client_options(broker->clients_endpoint(), k, k.alice)).value();
  ASSERT_TRUE(client->submit(small_spec("job")).ok());

  zmq::context_t ctx(1);
  Peer plain(ctx, broker->workers_endpoint());  // no CURVE at all
  Peer stranger(ctx, broker->workers_endpoint(), &k.stranger, k.server.public_z85);
  for (Peer* p : {&plain, &stranger}) {
    p->hello("rogue");
    p->send(Message(MessageType::kReady));
    p->send(Message(MessageType::kLog, {{"level", "info"}, {"line", "x"}}));
  }
  EXPECT_EQ(plain.recv(700).status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(stranger.recv(700).status().code(), Status::Code::kUnavailable);
  EXPECT_GE(broker->stats().keys_refused, 1u);
  EXPECT_EQ(broker->stats().assignments, 0u);
  EXPECT_TRUE((*client->workers())["workers"].empty());

  // The same HELLO with an authorized key is served.
  Peer alice(ctx, broker->workers_endpoint(), &k.alice, k.server.public_z85);
  alice.hello("alice/gpu0");
  auto welcome = alice.recv();
  ASSERT_TRUE(welcome.ok()) << welcome.status().to_string();
  EXPECT_EQ(welcome->type, MessageType::kWelcome);
  remove_all(dir).ok();
}

TEST(Security, AKeyCannotSpeakForAnotherWorkersStage) {
  if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  std::string dir = make_temp_dir("secsteal");
  Keys k;
  BrokerOptions o = test_broker_options(dir);
  o.heartbeat_interval_ms = 200;
  o.curve_secret_key = k.server.secret_z85;
  o.curve_authorized_keys = {k.alice.public_z85, k.mallory.public_z85};
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  auto client = Client::connect(client_options(broker->clients_endpoint(), k, k.alice)).value();
  int64_t job = client->submit(small_spec("victim")).value();

  zmq::context_t ctx(1);
  Peer alice(ctx, broker->workers_endpoint(), &k.alice, k.server.public_z85);
  alice.hello("alice/gpu0");
  ASSERT_EQ(alice.recv()->type, MessageType::kWelcome);
  alice.send(Message(MessageType::kReady));
  auto assign = alice.recv();
  ASSERT_TRUE(assign.ok()) << assign.status().to_string();
  ASSERT_EQ(assign->type, MessageType::kAssign);
  const int64_t stage = assign->i64("stage_id"), attempt = assign->i64("attempt");

  // Mallory claims Alice's id: refused, and Alice keeps her stage.
  Peer mallory(ctx, broker->workers_endpoint(), &k.mallory, k.server.public_z85);
  mallory.hello("alice/gpu0");
  auto refused = mallory.recv();
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->type, MessageType::kError);
  EXPECT_EQ(refused->str("code"), "unauthorized");
  EXPECT_NE(refused->str("error").find("belongs to key " + k.alice.public_z85), std::string::npos) << refused->str("error");
  // Even with Alice's running stage named in the HELLO.
  mallory.send(Message(MessageType::kHello, {{"worker_id", "alice/gpu0"}, {"host", "t"}, {"gpus", 1},
                                            {"vram_bytes", 1}, {"cpu_only", false}, {"version", "t"},
                                            {"running", {{"stage_id", stage}, {"attempt", attempt}}}}));
  EXPECT_EQ(mallory.recv()->str("code"), "unauthorized");

  // Under her own id, Mallory cannot finish, log to or checkpoint Alice's stage.
  mallory.hello("mallory/gpu0");
  ASSERT_EQ(mallory.recv()->type, MessageType::kWelcome);
  mallory.send(Message(MessageType::kLog, {{"stage_id", stage}, {"attempt", attempt}, {"level", "info"},
                                          {"line", "MALLORY WAS HERE"}}));
  EXPECT_EQ(mallory.recv()->str("code"), "stale_attempt");
  mallory.send(Message(MessageType::kProgress, {{"stage_id", stage}, {"attempt", attempt}, {"step", 99},
                                               {"total_steps", 100}}));
  EXPECT_EQ(mallory.recv()->str("code"), "stale_attempt");
  mallory.send(Message(MessageType::kDone, {{"stage_id", stage}, {"attempt", attempt}, {"result", json::object()}}));
  EXPECT_EQ(mallory.recv()->str("code"), "stale_attempt");
  // A LOG about no stage is not stored.
  const int64_t events_before = count_rows(o.db_path, "events");
  for (int i = 0; i < 100; ++i) mallory.send(Message(MessageType::kLog, {{"level", "info"}, {"line", "noise"}}));
  mallory.send(Message(MessageType::kHeartbeat));
  ASSERT_TRUE(wait_for([&] { return broker->stats().messages >= 100; }, 2000));

  json shown = client->show(job).value();
  EXPECT_EQ(shown["stages"][0]["state"], "assigned") << shown.dump();
  EXPECT_EQ(shown["stages"][0]["attempt"], attempt);
  EXPECT_EQ(shown.dump().find("MALLORY"), std::string::npos);
  EXPECT_EQ(count_rows(o.db_path, "events"), events_before);
  // Alice still holds it: her DONE is accepted.
  alice.send(Message(MessageType::kDone, {{"stage_id", stage}, {"attempt", attempt}, {"result", json::object()}}));
  ASSERT_TRUE(wait_for([&] { return client->show(job).value()["stages"][0]["state"] == "succeeded"; }, 3000));
  remove_all(dir).ok();
}

TEST(Security, RevokedKeyIsRefusedAfterReload) {
  if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  std::string dir = make_temp_dir("secrevoke");
  Keys k;
  ASSERT_TRUE(write_curve_keypair(dir + "/keys", "alice", k.alice).ok());
  ASSERT_TRUE(write_curve_keypair(dir + "/keys", "mallory", k.mallory).ok());
  // Secret keys in the directory are not read: only *.pub.
  BrokerOptions o = test_broker_options(dir);
  o.curve_secret_key = k.server.secret_z85;
  o.curve_authorized_path = dir + "/keys";
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  auto alice = Client::connect(client_options(broker->clients_endpoint(), k, k.alice)).value();
  auto mallory = Client::connect(client_options(broker->clients_endpoint(), k, k.mallory)).value();
  ASSERT_TRUE(alice->ping().ok());
  ASSERT_TRUE(mallory->ping().ok());
  zmq::context_t ctx(1);
  Peer worker(ctx, broker->workers_endpoint(), &k.mallory, k.server.public_z85);
  worker.hello("mallory/gpu0");
  ASSERT_EQ(worker.recv()->type, MessageType::kWelcome);

  ASSERT_EQ(unlink((dir + "/keys/mallory.pub").c_str()), 0);
  const uint64_t reloads = broker->stats().key_reloads;
  broker->request_reload();
  ASSERT_TRUE(wait_for([&] { return broker->stats().key_reloads > reloads; }, 2000));
  // Its open connections are refused, and so is a new handshake.
  auto pinged = mallory->ping();
  EXPECT_FALSE(pinged.ok());
  EXPECT_NE(pinged.status().message().find("revoked"), std::string::npos) << pinged.status().to_string();
  worker.send(Message(MessageType::kReady));
  EXPECT_EQ(worker.recv()->str("code"), "unauthorized");
  auto fresh = Client::connect(client_options(broker->clients_endpoint(), k, k.mallory)).value();
  EXPECT_EQ(fresh->ping().status().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(alice->ping().ok());
  // A key put back is let in again.
  ASSERT_TRUE(write_curve_keypair(dir + "/keys", "mallory", k.mallory).ok());
  broker->request_reload();
  ASSERT_TRUE(wait_for([&] { return broker->stats().key_reloads > reloads + 1; }, 2000));
  EXPECT_TRUE(Client::connect(client_options(broker->clients_endpoint(), k, k.mallory)).value()->ping().ok());
  remove_all(dir).ok();
}

TEST(Security, HelloFloodLeavesBoundedWorkerRows) {
  std::string dir = make_temp_dir("sechello");
  BrokerOptions o = test_broker_options(dir);
  o.max_workers_per_key = 8;
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  zmq::context_t ctx(1);
  // 5,000 ids on one connection: the first is the connection's for good.
  Peer one(ctx, broker->workers_endpoint());
  for (int i = 0; i < 5000; ++i) one.hello("flood-" + std::to_string(i));
  ASSERT_TRUE(wait_for([&] { return broker->stats().messages >= 5000; }, 10000));
  // 50 connections with new ids: at most max_workers_per_key registered.
  std::vector<std::unique_ptr<Peer>> many;
  for (int i = 0; i < 50; ++i) {
    many.push_back(std::make_unique<Peer>(ctx, broker->workers_endpoint()));
    many.back()->hello("conn-" + std::to_string(i));
  }
  ASSERT_TRUE(wait_for([&] { return broker->stats().messages >= 5050; }, 10000));
  auto client = connect_client(broker->clients_endpoint());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LE(count_rows(o.db_path, "workers"), 8);
  BrokerStats st = broker->stats();
  EXPECT_GE(st.unauthorized + st.rate_limited, 5000u - 1 + 50 - 8);
  remove_all(dir).ok();
}

TEST(Security, LostWorkerRowsExpire) {
  std::string dir = make_temp_dir("secexpire");
  auto store = JobStore::open(dir + "/s.db").value();
  for (int i = 0; i < 50; ++i) {
    WorkerInfo w;
    w.id = "w" + std::to_string(i);
    ASSERT_TRUE(store->upsert_worker(w, 1000 + i).ok());
    ASSERT_TRUE(store->mark_worker_lost(w.id, 1000 + i).ok());
  }
  WorkerInfo live;
  live.id = "live";
  ASSERT_TRUE(store->upsert_worker(live, 0).ok());
  EXPECT_EQ(store->list_workers(false)->size(), 1u);
  EXPECT_EQ(store->list_workers(true)->size(), 51u);
  // Beyond 10 lost rows the oldest go; rows lost before 1045 go anyway.
  EXPECT_EQ(*store->expire_workers(0, 10), 40);
  EXPECT_EQ(*store->expire_workers(1045, 10), 5);
  auto left = *store->list_workers(true);
  ASSERT_EQ(left.size(), 6u);
  EXPECT_EQ(left[0]["id"], "live");  // an online worker never expires
  remove_all(dir).ok();
}

TEST(Security, MessagesBeyondThePeerRateAreDropped) {
  std::string dir = make_temp_dir("secrate");
  BrokerOptions o = test_broker_options(dir);
  o.max_messages_per_s = 100;
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  zmq::context_t ctx(1);
  Peer p(ctx, broker->clients_endpoint());
  for (int i = 0; i < 2000; ++i) p.send(Message(MessageType::kPing, {{"req", i}}));
  int replies = 0;
  while (p.recv(500).ok()) ++replies;
  EXPECT_GE(replies, 100);
  EXPECT_LE(replies, 400);
  EXPECT_GE(broker->stats().rate_limited, 1500u);
  remove_all(dir).ok();
}

TEST(Security, LargeFramesDropTheConnectionNotTheScheduler) {
  std::string dir = make_temp_dir("secframe");
  BrokerOptions o = test_broker_options(dir);
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  zmq::context_t ctx(1);
  Peer p(ctx, broker->clients_endpoint());
  std::string big(o.max_frame_bytes + 1, 'x');
  for (int i = 0; i < 5; ++i) p.sock.send(zmq::buffer(big), zmq::send_flags::none);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(broker->stats().messages, 0u);  // never read: the connection went with the frame
  auto client = connect_client(broker->clients_endpoint());
  EXPECT_TRUE(client->ping().ok());
  remove_all(dir).ok();
}

TEST(Security, SubmittedPathsAreConfined) {
  std::string dir = make_temp_dir("secpaths");
  BrokerOptions o = test_broker_options(dir);
  o.allowed_roots = {"/models", dir + "/jobs"};
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  auto client = connect_client(broker->clients_endpoint());
  auto submit = [&](const std::string& job, const std::string& extra) {
    return client->submit("[job]\nname = \"p\"\n" + job + "[model]\npath = \"/models/tiny\"\n" + extra);
  };
  auto climb = submit("work_dir = \"../../x\"\n", "");
  ASSERT_FALSE(climb.ok());
  EXPECT_NE(climb.status().message().find("job.work_dir '../../x' climbs out"), std::string::npos)
      << climb.status().to_string();
  auto passwd = submit("", "[data]\njsonl = \"/etc/passwd\"\n");
  ASSERT_FALSE(passwd.ok());
  EXPECT_NE(passwd.status().message().find("data.jsonl '/etc/passwd'"), std::string::npos);
  EXPECT_NE(passwd.status().message().find("outside every --allow-path root"), std::string::npos);
  auto abs = submit("work_dir = \"/srv/x\"\n", "");
  ASSERT_FALSE(abs.ok());
  EXPECT_NE(abs.status().message().find("job.work_dir '/srv/x'"), std::string::npos);
  // A symlink under an allowed root that leads out of it is followed.
  ASSERT_TRUE(make_dirs(dir + "/jobs").ok());
  ASSERT_EQ(symlink("/etc", (dir + "/jobs/etc").c_str()), 0);
  auto via_link = submit("", "[data]\njsonl = \"" + dir + "/jobs/etc/passwd\"\n");
  ASSERT_FALSE(via_link.ok());
  EXPECT_NE(via_link.status().message().find("resolves to /etc/passwd"), std::string::npos)
      << via_link.status().to_string();

  // One live job per work_dir, however it is spelled.
  auto first = submit("work_dir = \"" + dir + "/jobs/a\"\n", "");
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto second = submit("work_dir = \"" + dir + "/jobs/./a/\"\n", "");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("one live job per directory"), std::string::npos)
      << second.status().to_string();
  ASSERT_TRUE(client->cancel(*first).ok());
  EXPECT_TRUE(submit("work_dir = \"" + dir + "/jobs/a\"\n", "").ok());
  remove_all(dir).ok();
}

}  // namespace
}  // namespace lema
