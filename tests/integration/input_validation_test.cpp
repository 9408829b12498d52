// Issue 19's bad inputs, through the real `lema` binary: each is refused at
// once with an error that names the flag, key, file or endpoint (exit 2),
// never a hang, an abort or a silent acceptance.
#include <sys/stat.h>

#include "common/base/file_util.h"
#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

// `lema ARGS...` with a deadline: a hang is a failure, not a stuck test.
RunResult run_lema_within(const std::vector<std::string>& args, double seconds) {
  char tmpl[] = "/tmp/lema_out_XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  pid_t pid = spawn_lema(args, tmpl);
  int status = 0;
  const bool ended = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, seconds, 50);
  RunResult r;
  if (!ended) {
    kill_and_reap(pid, SIGKILL);
    r.exit_code = -1;
  } else {
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.signaled = WIFSIGNALED(status);
  }
  r.output = slurp(tmpl);
  unlink(tmpl);
  return r;
}

// C1/C2 and the flags the spec refuses: `lema train` checks the same bounds
// (common/base/bounds.h) before it opens the model.
TEST(InputValidation, TrainFlagsAreBoundedAsTheSpecIs) {
  const std::vector<std::string> base = {"train", "--model", "/nonexistent/m", "--data", "/nonexistent/d.jsonl",
                                         "--out", "/tmp/lema_never_written"};
  struct Case {
    std::vector<std::string> flags;
    const char* expect;
  };
  const Case cases[] = {
      {{"--steps", "-5"}, "steps: must be in [0, 1000000000] (got -5)"},
      {{"--steps", "9223372036854775807"}, "steps: must be in"},
      {{"--seq-len", "2147483648"}, "seq_len: must be in [8, 1048576]"},
      {{"--batch", "2147483648"}, "batch: must be in [1, 65536]"},
      {{"--batch", "4", "--micro-batch", "3"}, "micro_batch must be 0 (auto) or divide batch"},
      {{"--lora-alpha", "-8"}, "lora_alpha: must be in (0, 1000000]"},
      {{"--lr", "0"}, "lr: must be in (0, 1)"},
      {{"--ram", "2000TiB"}, "ram: must be in"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = base;
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    RunResult r = run_lema_within(args, 60);
    EXPECT_EQ(r.exit_code, 2) << c.flags[0] << ": " << r.output;
    EXPECT_FALSE(r.signaled) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.flags[0] << ": " << r.output;
  }
}

TEST(InputValidation, InspectRefusesAFifoInsteadOfHanging) {
  std::string dir = make_temp_dir("fifo");
  const std::string fifo = dir + "/model.safetensors";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  RunResult r = run_lema_within({"inspect", fifo}, 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(fifo + ": not a regular file"), std::string::npos) << r.output;
  // A job spec that is a FIFO: the same (read_file).
  r = run_lema_within({"submit", fifo, "--scheduler", "tcp://127.0.0.1:" + std::to_string(free_port()),
                       "--timeout-ms", "300"},
                      30);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, -1) << "hung: " << r.output;
  (void)remove_all(dir);
}

// Over the protocol's 16 MiB the scheduler drops the frame without a word:
// the client refuses it first (no scheduler is needed to see it).
TEST(InputValidation, ASpecOverTheMessageLimitIsRefusedBeforeSending) {
  std::string dir = make_temp_dir("bigspec");
  std::string spec = "[model]\npath = \"/tmp/m\"\n";
  spec += "# " + std::string(17 << 20, 'x') + "\n";
  write_text(dir + "/big.toml", spec);
  RunResult r = run_lema_within({"submit", dir + "/big.toml", "--scheduler",
                                 "tcp://127.0.0.1:" + std::to_string(free_port()), "--timeout-ms", "2000"},
                                30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("over the protocol's limit of 16.0 MiB"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("no answer"), std::string::npos) << r.output;
  (void)remove_all(dir);
}

TEST(InputValidation, JobsRefusesAnUnknownState) {
  std::string dir = make_temp_dir("state");
  SchedulerProcess sched;
  sched.db = dir + "/s.db";
  sched.log = dir + "/scheduler.log";
  sched.workers = "tcp://127.0.0.1:" + std::to_string(free_port());
  sched.clients = "tcp://127.0.0.1:" + std::to_string(free_port());
  sched.start();
  RunResult ok;
  ASSERT_TRUE(wait_until([&] { return (ok = run_lema({"jobs", "--scheduler", sched.clients})).exit_code == 0; }, 30))
      << ok.output;
  RunResult known = run_lema({"jobs", "--state", "failed", "--scheduler", sched.clients});
  EXPECT_EQ(known.exit_code, 0) << known.output;
  RunResult bogus = run_lema({"jobs", "--state", "bogus", "--scheduler", sched.clients});
  EXPECT_EQ(bogus.exit_code, 2) << bogus.output;
  EXPECT_NE(bogus.output.find("unknown job state 'bogus'"), std::string::npos) << bogus.output;
  sched.stop();
  (void)remove_all(dir);
}

// A malformed endpoint or key fails the same way on every try: the worker
// exits saying so. An unreachable scheduler is retried (it may come up).
TEST(InputValidation, WorkerExitsOnAMalformedEndpointOrKey) {
  std::string dir = make_temp_dir("wbad");
  RunResult r = run_lema_within({"worker", "--cpu", "--scheduler", "tcp://127.0.0.1"}, 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("malformed scheduler endpoint 'tcp://127.0.0.1'"), std::string::npos) << r.output;
  r = run_lema_within({"worker", "--cpu", "--scheduler", "bogus://x"}, 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  RunResult keys = run_lema({"keys", "w", "--out", dir});
  ASSERT_EQ(keys.exit_code, 0) << keys.output;
  r = run_lema_within({"worker", "--cpu", "--scheduler", "tcp://127.0.0.1:" + std::to_string(free_port()),
                       "--server-key", "not-a-key", "--curve-secret-file", dir + "/w.key"},
                      30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("CURVE key"), std::string::npos) << r.output;
  // Unreachable but well formed: still running after 2 s (retrying).
  pid_t pid = spawn_lema({"worker", "--cpu", "--scheduler", "tcp://127.0.0.1:" + std::to_string(free_port())},
                         dir + "/worker.log");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << slurp(dir + "/worker.log");
  kill_and_reap(pid, SIGKILL);
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema::test
