// Issue #18 end to end: real `lema scheduler` and `lema worker` processes on
// loopback TCP, keys made by `lema keys`, rogue peers as raw ZeroMQ sockets
// in this process, the scheduler's RSS from /proc and its database file
// sizes measured around floods, and the job paths checked on disk.
#include <sys/stat.h>

#include <zmq.hpp>

#include "common/base/file_util.h"
#include "common/protocol/protocol.h"
#include "scheduler/client.h"
#include "scheduler/curve_keys.h"
#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

using protocol::Message;
using protocol::MessageType;

int64_t rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

int64_t db_bytes(const std::string& db) { return file_size(db) + file_size(db + "-wal"); }

// A raw worker-side DEALER, with a CURVE key pair or none.
struct RawPeer {
  RawPeer(zmq::context_t& ctx, const std::string& ep, const CurveKeyPair* me, const std::string& server_pub)
      : sock(ctx, zmq::socket_type::dealer) {
    sock.set(zmq::sockopt::linger, 0);
    // A peer the server refuses never completes its connection: a send must
    // not wait for it forever (what the peer gets is what the tests check).
    sock.set(zmq::sockopt::sndtimeo, 2000);
    if (me) {
      sock.set(zmq::sockopt::curve_serverkey, server_pub);
      sock.set(zmq::sockopt::curve_publickey, me->public_z85);
      sock.set(zmq::sockopt::curve_secretkey, me->secret_z85);
    }
    sock.connect(ep);
  }
  void send(const Message& m) { sock.send(zmq::buffer(protocol::encode(m)), zmq::send_flags::none); }
  void hello(const std::string& id) {
    send(Message(MessageType::kHello, {{"worker_id", id}, {"host", "rogue"}, {"gpus", 0}, {"vram_bytes", 0},
                                       {"cpu_only", true}, {"version", "x"}}));
  }
  Result<Message> recv(int timeout_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item = {sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      (void)sock.recv(msg);
      auto m = protocol::decode(msg.data(), msg.size());
      if (!m.ok() || m->type != MessageType::kHeartbeat) return m;
    }
    return Status::unavailable("timeout");
  }
  zmq::socket_t sock;
};

class SecurityCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("seccli");
    sched_.db = dir_ + "/sched.db";
    sched_.log = dir_ + "/scheduler.log";
    sched_.workers = "tcp://127.0.0.1:" + std::to_string(free_port());
    sched_.clients = "tcp://127.0.0.1:" + std::to_string(free_port());
  }
  void TearDown() override {
    for (pid_t w : workers_) kill_and_reap(w, SIGKILL);
    kill_and_reap(sched_pid_, SIGKILL);
    if (HasFailure()) {
      std::fprintf(stderr, "--- scheduler log\n%s\n", slurp(sched_.log).c_str());
      for (size_t i = 0; i < workers_.size(); ++i) {
        std::fprintf(stderr, "--- worker %zu log\n%s\n", i, slurp(worker_log(i)).c_str());
      }
    }
  }
  std::string worker_log(size_t i) const { return dir_ + "/worker" + std::to_string(i) + ".log"; }
  // `lema keys NAME --out DIR`, read back.
  CurveKeyPair make_keys(const std::string& name, const std::string& out) {
    RunResult r = run_lema({"keys", name, "--out", out});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return {read_curve_key(out + "/" + name + ".pub").value(), read_curve_key(out + "/" + name + ".key").value()};
  }
  // A CURVE scheduler: its key in dir_/keys, authorized .pub files in dir_/authorized.
  void start_curve_scheduler(const std::vector<std::string>& extra = {}) {
    server_ = make_keys("scheduler", dir_ + "/keys");
    ASSERT_TRUE(make_dirs(dir_ + "/authorized").ok());
    std::vector<std::string> args = {"scheduler", "--db", sched_.db, "--workers-bind", sched_.workers,
                                     "--clients-bind", sched_.clients, "--heartbeat-ms", "300",
                                     "--curve-secret-file", dir_ + "/keys/scheduler.key", "--curve-authorized",
                                     dir_ + "/authorized"};
    args.insert(args.end(), extra.begin(), extra.end());
    sched_pid_ = spawn_lema(args, sched_.log);
    ASSERT_TRUE(wait_until([&] { return slurp(sched_.log).find("workers on") != std::string::npos; }, 30));
  }
  // A peer's key: made by `lema keys`, its .pub copied into the authorized directory.
  CurveKeyPair authorize(const std::string& name) {
    CurveKeyPair k = make_keys(name, dir_ + "/keys");
    EXPECT_TRUE(write_file_atomic(dir_ + "/authorized/" + name + ".pub", k.public_z85 + "\n").ok());
    return k;
  }
  std::vector<std::string> client_args(const std::string& who) {
    return {"--scheduler", sched_.clients, "--curve-server-key", dir_ + "/keys/scheduler.pub", "--curve-key",
            dir_ + "/keys/" + who, "--timeout-ms", "2000"};
  }
  RunResult lema_as(const std::string& who, std::vector<std::string> args) {
    for (const std::string& a : client_args(who)) args.push_back(a);
    return run_lema(args);
  }
  std::string job_state(const std::string& who, int64_t job) {
    RunResult r = lema_as(who, {"show", std::to_string(job), "--json"});
    size_t brace = r.output.find('{');
    if (r.exit_code != 0 || brace == std::string::npos) return "";
    auto j = nlohmann::json::parse(r.output.substr(brace), nullptr, false);
    return j.is_object() ? j.value("state", std::string()) : "";
  }
  int64_t submit_as(const std::string& who, const std::string& spec_text, RunResult* out = nullptr) {
    const std::string spec = dir_ + "/spec" + std::to_string(++specs_) + ".toml";
    write_text(spec, spec_text);
    RunResult r = lema_as(who, {"submit", spec, "--json"});
    if (out) *out = r;
    size_t brace = r.output.find('{');
    if (r.exit_code != 0 || brace == std::string::npos) return 0;
    auto j = nlohmann::json::parse(r.output.substr(brace), nullptr, false);
    return j.is_object() ? j.value("job_id", int64_t{0}) : 0;
  }
  pid_t start_worker(const std::string& key_name, const std::string& id, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"worker", "--scheduler", sched_.workers, "--cpu", "--threads", "1",
                                     "--id", id, "--server-key", dir_ + "/keys/scheduler.pub",
                                     "--curve-secret-file", dir_ + "/keys/" + key_name + ".key"};
    args.insert(args.end(), extra.begin(), extra.end());
    workers_.push_back(spawn_lema(args, worker_log(workers_.size())));
    return workers_.back();
  }

  std::string dir_;
  SchedulerProcess sched_;
  pid_t sched_pid_ = -1;
  CurveKeyPair server_;
  std::vector<pid_t> workers_;
  int specs_ = 0;
};

TEST_F(SecurityCli, OpenEndpointBeyondLoopbackRefusedUnlessInsecure) {
  const std::string any = "tcp://*:" + std::to_string(free_port());
  RunResult r = run_lema({"scheduler", "--db", sched_.db, "--workers-bind", any, "--clients-bind", sched_.clients});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("reaches beyond loopback"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--insecure"), std::string::npos) << r.output;

  sched_pid_ = spawn_lema({"scheduler", "--db", sched_.db, "--workers-bind", any, "--clients-bind", sched_.clients,
                           "--insecure"},
                          sched_.log);
  ASSERT_TRUE(wait_until([&] { return slurp(sched_.log).find("workers on") != std::string::npos; }, 30));
  EXPECT_NE(slurp(sched_.log).find("INSECURE: " + any + " is open"), std::string::npos) << slurp(sched_.log);
}

// A worker with its own key runs a job through a CURVE scheduler; peers
// without a listed key get nothing; a listed key cannot take its id.
TEST_F(SecurityCli, CurveWorkerRunsAJobAndRoguesGetNothing) {
  start_curve_scheduler();
  authorize("alice");
  authorize("gpu01");
  CurveKeyPair mallory = authorize("mallory");
  CurveKeyPair stranger = make_keys("stranger", dir_ + "/keys");  // not authorized
  kill(sched_pid_, SIGHUP);
  ASSERT_TRUE(wait_until([&] { return slurp(sched_.log).find("3 authorized keys") != std::string::npos; }, 10));
  make_model_and_data(dir_, 24);
  int64_t job = submit_as("alice", tiny_spec(dir_, "a", 2, 1));
  ASSERT_GT(job, 0);
  start_worker("gpu01", "gpu01/cpu");
  ASSERT_TRUE(wait_until([&] { return job_state("alice", job) == "succeeded"; }, 120, 300))
      << slurp(worker_log(0));
  EXPECT_EQ(slurp(worker_log(0)).find("silent, reconnecting"), std::string::npos);

  zmq::context_t ctx(1);
  RawPeer plain(ctx, sched_.workers, nullptr, "");
  RawPeer unlisted(ctx, sched_.workers, &stranger, server_.public_z85);
  for (RawPeer* p : {&plain, &unlisted}) {
    p->hello("rogue");
    EXPECT_EQ(p->recv(1000).status().code(), Status::Code::kUnavailable);
  }
  RawPeer thief(ctx, sched_.workers, &mallory, server_.public_z85);
  thief.hello("gpu01/cpu");
  auto refused = thief.recv(3000);
  ASSERT_TRUE(refused.ok()) << refused.status().to_string();
  EXPECT_EQ(refused->str("code"), "unauthorized");
  EXPECT_TRUE(wait_until([&] { return slurp(sched_.log).find("HELLO as worker gpu01/cpu refused") != std::string::npos; },
                         5));
  EXPECT_NE(slurp(sched_.log).find("CURVE key " + stranger.public_z85), std::string::npos);
  RunResult workers = lema_as("alice", {"workers", "--all", "--json"});
  EXPECT_EQ(workers.output.find("rogue"), std::string::npos) << workers.output;
  // The stranger's key is no client either.
  EXPECT_NE(lema_as("stranger", {"ping"}).exit_code, 0);
}

TEST_F(SecurityCli, SighupRevokesAKey) {
  start_curve_scheduler();
  authorize("alice");
  authorize("bob");
  kill(sched_pid_, SIGHUP);
  ASSERT_TRUE(wait_until([&] { return lema_as("bob", {"ping"}).exit_code == 0; }, 10));
  ASSERT_EQ(unlink((dir_ + "/authorized/bob.pub").c_str()), 0);
  kill(sched_pid_, SIGHUP);
  ASSERT_TRUE(wait_until([&] { return slurp(sched_.log).find("(1 revoked)") != std::string::npos; }, 10))
      << slurp(sched_.log);
  RunResult bob = lema_as("bob", {"ping"});
  EXPECT_NE(bob.exit_code, 0) << bob.output;
  EXPECT_EQ(lema_as("alice", {"ping"}).exit_code, 0);
}

// The audit's floods, from a peer with a listed key of its own (one without
// never gets past the handshake): 60 frames of 15 MiB, 5,000 HELLOs with new
// ids, 10,000 LOG lines about no stage. Bounds: RSS +64 MiB, worker rows 1,
// database +256 KiB.
TEST_F(SecurityCli, FloodsLeaveTheSchedulerBounded) {
  start_curve_scheduler();
  authorize("alice");
  CurveKeyPair mallory = authorize("mallory");
  kill(sched_pid_, SIGHUP);
  ASSERT_TRUE(wait_until([&] { return lema_as("alice", {"ping"}).exit_code == 0; }, 10));
  const int64_t rss0 = rss_kib(sched_pid_), db0 = db_bytes(sched_.db);
  zmq::context_t ctx(1);
  {
    RawPeer big(ctx, sched_.workers, &mallory, server_.public_z85);
    std::string frame(15 << 20, 'x');
    // Zero-copy: 60 queued frames share one buffer in this process.
    for (int i = 0; i < 60; ++i) {
      zmq::message_t m(frame.data(), frame.size(), nullptr, nullptr);
      big.sock.send(m, zmq::send_flags::none);
    }
    std::this_thread::sleep_for(std::chrono::seconds(8));  // reconnects, one frame each
  }
  {
    RawPeer unauth(ctx, sched_.workers, nullptr, "");
    std::string frame(15 << 20, 'x');
    for (int i = 0; i < 20; ++i) {
      zmq::message_t m(frame.data(), frame.size(), nullptr, nullptr);
      (void)unauth.sock.send(m, zmq::send_flags::dontwait);
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  const int64_t rss_frames = rss_kib(sched_pid_);
  RawPeer p(ctx, sched_.workers, &mallory, server_.public_z85);
  for (int i = 0; i < 5000; ++i) p.hello("flood-" + std::to_string(i));
  for (int i = 0; i < 10000; ++i) {
    p.send(Message(MessageType::kLog, {{"level", "info"}, {"line", std::string(8000, 'L')}}));
  }
  RunResult ping;
  // Served throughout; the floods are all read once the scheduler's message
  // count has passed them.
  ASSERT_TRUE(wait_until([&] {
    ping = lema_as("alice", {"ping", "--json"});
    size_t brace = ping.output.find('{');
    if (ping.exit_code != 0 || brace == std::string::npos) return false;
    auto j = nlohmann::json::parse(ping.output.substr(brace), nullptr, false);
    return j.is_object() && j["stats"].value("messages", 0) >= 15000;
  }, 60, 500)) << ping.output;
  const int64_t rss1 = rss_kib(sched_pid_), db1 = db_bytes(sched_.db);
  RunResult workers = lema_as("alice", {"workers", "--all", "--json"});
  auto wj = nlohmann::json::parse(workers.output.substr(workers.output.find('{')), nullptr, false);
  ASSERT_TRUE(wj.is_object()) << workers.output;
  std::fprintf(stderr, "scheduler RSS %lld KiB -> %lld KiB after 60x15 MiB frames -> %lld KiB after the floods; "
                       "database %lld -> %lld bytes; %zu worker rows\n",
               (long long)rss0, (long long)rss_frames, (long long)rss1, (long long)db0, (long long)db1,
               wj["workers"].size());
  EXPECT_LE(rss_frames - rss0, 64 * 1024);
  EXPECT_LE(rss1 - rss0, 64 * 1024);
  EXPECT_LE(wj["workers"].size(), 1u);
  EXPECT_LE(db1 - db0, 256 * 1024);
}

// Job paths with a real worker: refused at submit where the scheduler can
// tell, refused by the worker where only it can (its --workdir and roots),
// and a merged/ lema did not make is never deleted.
TEST_F(SecurityCli, JobPathsStayInsideTheRoots) {
  const std::string w = dir_ + "/W", models = dir_ + "/models", existing = dir_ + "/existing";
  ASSERT_TRUE(make_dirs(w).ok());
  ASSERT_TRUE(make_dirs(existing + "/merged").ok());
  ASSERT_TRUE(make_dirs(models).ok());
  write_text(existing + "/merged/precious", "mine");
  make_model_and_data(models, 24);
  // Scheduler roots: everything under /tmp (the test's LEMA_ALLOW_PATH); the
  // worker's are narrower: its --workdir, the models, `existing`.
  start_curve_scheduler();
  authorize("alice");
  authorize("gpu01");
  kill(sched_pid_, SIGHUP);
  ASSERT_TRUE(wait_until([&] { return lema_as("alice", {"ping"}).exit_code == 0; }, 10));
  const std::string old_env = std::getenv("LEMA_ALLOW_PATH") ? std::getenv("LEMA_ALLOW_PATH") : "";
  setenv("LEMA_ALLOW_PATH", (models + ":" + existing).c_str(), 1);
  start_worker("gpu01", "gpu01/cpu", {"--workdir", w});
  setenv("LEMA_ALLOW_PATH", old_env.c_str(), 1);

  auto spec = [&](const std::string& name, const std::string& work_dir, const std::string& data, bool merge) {
    std::string s = tiny_spec(models, name, 2, 1, merge);
    s.replace(s.find("work_dir = \""), s.find('\n', s.find("work_dir")) - s.find("work_dir = \""),
              "work_dir = \"" + work_dir + "\"");
    if (!data.empty()) {
      size_t at = s.find("jsonl = \"");
      s.replace(at, s.find('\n', at) - at, "jsonl = \"" + data + "\"");
    }
    return s;
  };
  RunResult r;
  EXPECT_EQ(submit_as("alice", spec("climb", "../../x", "", false), &r), 0);
  EXPECT_NE(r.output.find("job.work_dir '../../x' climbs out of the work directory"), std::string::npos) << r.output;
  EXPECT_EQ(submit_as("alice", spec("passwd", "p", "/etc/passwd", false), &r), 0);
  EXPECT_NE(r.output.find("data.jsonl '/etc/passwd' resolves to /etc/passwd, outside every --allow-path root"),
            std::string::npos)
      << r.output;

  // Accepted by the scheduler (under /tmp), refused by the worker.
  const std::string outside = dir_ + "/outside";
  int64_t out_job = submit_as("alice", spec("out", outside, "", false));
  ASSERT_GT(out_job, 0);
  ASSERT_EQ(symlink("/etc/passwd", (w + "/passwd.jsonl").c_str()), 0);
  int64_t link_job = submit_as("alice", spec("link", "linkjob", "passwd.jsonl", false));
  ASSERT_GT(link_job, 0);
  ASSERT_TRUE(wait_until([&] { return job_state("alice", out_job) == "failed"; }, 60, 300));
  ASSERT_TRUE(wait_until([&] { return job_state("alice", link_job) == "failed"; }, 60, 300));
  RunResult shown = lema_as("alice", {"show", std::to_string(out_job), "--json"});
  EXPECT_NE(shown.output.find("outside every --allow-path root"), std::string::npos) << shown.output;
  shown = lema_as("alice", {"show", std::to_string(link_job), "--json"});
  EXPECT_NE(shown.output.find("resolves to /etc/passwd"), std::string::npos) << shown.output;
  EXPECT_FALSE(path_exists(outside));
  EXPECT_FALSE(path_exists(w + "/linkjob/data"));  // nothing made for it

  // An existing directory with a merged/ of somebody else's: trained, but
  // the merge refuses to delete what it did not make.
  int64_t merge_job = submit_as("alice", spec("merge", existing, "", true));
  ASSERT_GT(merge_job, 0);
  // One live job per directory (a train stage a CPU worker never takes
  // keeps the job running).
  const std::string gpu_only = "[resources]\ncpu_ok = false\n";
  ASSERT_GT(submit_as("alice", spec("dup", "dupdir", "", false) + gpu_only), 0);
  EXPECT_EQ(submit_as("alice", spec("again", "./dupdir/", "", false) + gpu_only, &r), 0)
      << lema_as("alice", {"jobs"}).output;
  EXPECT_NE(r.output.find("one live job per directory"), std::string::npos) << r.output;
  ASSERT_TRUE(wait_until([&] { return job_state("alice", merge_job) == "failed"; }, 180, 500));
  shown = lema_as("alice", {"show", std::to_string(merge_job), "--json"});
  EXPECT_NE(shown.output.find("was not made by lema"), std::string::npos) << shown.output;
  EXPECT_EQ(slurp(existing + "/merged/precious"), "mine");
}

}  // namespace
}  // namespace lema::test
