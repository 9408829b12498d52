// The scheduler as a separate process, killed with SIGKILL mid-run and
// restarted on the same database: every accepted job still finishes. The
// test binary re-executes itself as the scheduler (LEMA_TEST_SCHEDULER_DB).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

#include "scheduler/broker.h"
#include "scheduler/client.h"
#include "tests/scheduler/scheduler_test_util.h"
#include "tests/scheduler/test_worker.h"

extern char** environ;

namespace lema {
namespace {

using namespace lema::testing;

// When started as the scheduler child, serve and never return to gtest.
int run_scheduler_child_if_asked() {
  const char* db = std::getenv("LEMA_TEST_SCHEDULER_DB");
  if (!db) return 0;
  BrokerOptions o;
  o.db_path = db;
  o.workers_bind = std::getenv("LEMA_TEST_WORKERS_EP");
  o.clients_bind = std::getenv("LEMA_TEST_CLIENTS_EP");
  o.heartbeat_interval_ms = 100;
  o.store.retry_backoff_init_ms = 20;
  o.allowed_roots = {"/models"};  // small_spec's model.path
  auto b = Broker::create(o);
  if (!b.ok()) {
    std::fprintf(stderr, "scheduler child: %s\n", b.status().to_string().c_str());
    _exit(3);
  }
  Status s = (*b)->run();
  _exit(s.ok() ? 0 : 4);
}
const int kChildMarker = run_scheduler_child_if_asked();

pid_t spawn_scheduler(const std::string& dir) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.push_back(*e);
  env_strings.push_back("LEMA_TEST_SCHEDULER_DB=" + dir + "/sched.db");
  env_strings.push_back("LEMA_TEST_WORKERS_EP=ipc://" + dir + "/w.sock");
  env_strings.push_back("LEMA_TEST_CLIENTS_EP=ipc://" + dir + "/c.sock");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char arg0[] = "scheduler-child";
  char* argv[] = {arg0, nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data());
  EXPECT_EQ(rc, 0) << std::strerror(rc);
  return pid;
}

void kill_hard(pid_t pid) {
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST(Restart, SigkillMidRunLosesNoJob) {
  (void)kChildMarker;
  std::string dir = make_temp_dir("restart");
  pid_t pid = spawn_scheduler(dir);
  ClientOptions co;
  co.endpoint = "ipc://" + dir + "/c.sock";
  co.timeout_ms = 3000;
  std::unique_ptr<Client> client = Client::connect(co).value();
  constexpr int kJobs = 40;
  for (int i = 0; i < kJobs; ++i) {
    auto id = client->submit(small_spec("r" + std::to_string(i)));
    ASSERT_TRUE(id.ok()) << id.status().to_string();
  }
  auto slow_script = [](const Message& a) {
    std::this_thread::sleep_for(std::chrono::milliseconds(4));
    return finish_script(a);
  };
  std::vector<std::unique_ptr<ScriptedWorker>> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(std::make_unique<ScriptedWorker>("ipc://" + dir + "/w.sock", "w" + std::to_string(w), slow_script));
    workers.back()->start();
  }
  auto succeeded = [&]() -> int64_t {
    auto r = client->ping();
    return r.ok() ? (*r)["jobs"]["succeeded"].get<int64_t>() : -1;
  };
  // Kill twice, each time part-way through.
  for (int round = 0; round < 2; ++round) {
    int64_t target = 10 + 12 * round;
    ASSERT_TRUE(wait_for([&] { return succeeded() >= target; }, 20000)) << "round " << round;
    EXPECT_LT(succeeded(), kJobs) << "the kill should land mid-run";
    kill_hard(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // workers keep talking to nobody
    pid = spawn_scheduler(dir);
    // A fresh client: the old one may hold a half-sent request.
    client = Client::connect(co).value();
  }
  ASSERT_TRUE(wait_for([&] { return succeeded() == kJobs; }, 25000)) << client->ping()->dump();
  for (auto& w : workers) w->stop();
  auto jobs = client->list("", 1000);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ((*jobs)["jobs"].size(), size_t(kJobs));
  for (const auto& j : (*jobs)["jobs"]) {
    EXPECT_EQ(j["state"], "succeeded");
    EXPECT_EQ(j["stages"], "dataset:succeeded train:succeeded eval:succeeded merge:succeeded");
  }
  kill_hard(pid);
  remove_all(dir).ok();
}

}  // namespace
}  // namespace lema
