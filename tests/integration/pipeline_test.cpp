// End-to-end: the real `lema` binary as scheduler, workers and client on
// loopback, a tiny model on the CPU. Covers issue 9's acceptance: a job
// through every stage that exists, kill -9 of a worker (resume from a
// checkpoint, adapter byte-identical to an uninterrupted run), kill -9 of
// the scheduler, cancel within seconds, two workers running two jobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <sys/stat.h>

#include "common/base/file_util.h"
#include "common/formats/gguf_reader.h"
#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

// Generous: a job takes seconds on an idle machine, but a 2-core CI machine
// that is also compiling can be 20x slower. Waits end as soon as they can.
constexpr int kJobTimeoutS = 300;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("pipeline");
    make_model_and_data(dir_, 48);
    sched_.db = dir_ + "/sched.db";
    sched_.log = dir_ + "/scheduler.log";
    sched_.workers = "tcp://127.0.0.1:" + std::to_string(free_port());
    sched_.clients = "tcp://127.0.0.1:" + std::to_string(free_port());
    sched_.start();
  }
  void TearDown() override {
    for (size_t i = 0; i < workers_.size(); ++i) {
      int st = 0;
      if (HasFailure() && waitpid(workers_[i], &st, WNOHANG) == workers_[i]) {
        std::fprintf(stderr, "worker %zu had ended: %s %d\n", i, WIFSIGNALED(st) ? "signal" : "exit",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      }
      kill_and_reap(workers_[i], SIGKILL);
    }
    sched_.stop(SIGKILL);
    if (HasFailure()) {
      std::fprintf(stderr, "--- scheduler log\n%s\n", slurp(sched_.log).c_str());
      for (size_t i = 0; i < workers_.size(); ++i) {
        std::fprintf(stderr, "--- worker %zu log\n%s\n", i, slurp(worker_log(i)).c_str());
      }
    }
  }
  std::string worker_log(size_t i) const { return dir_ + "/worker" + std::to_string(i) + ".log"; }
  size_t start_worker() {
    size_t i = workers_.size();
    workers_.push_back(spawn_lema({"worker", "--scheduler", sched_.workers, "--cpu", "--threads", "1", "--id",
                                   "w" + std::to_string(i)},
                                  worker_log(i)));
    return i;
  }
  int64_t submit(const std::string& name, int steps, int checkpoint_every, bool merge = false) {
    const std::string spec = dir_ + "/" + name + ".toml";
    write_text(spec, tiny_spec(dir_, name, steps, checkpoint_every, merge));
    RunResult r = run_lema({"submit", spec, "--json", "--scheduler", sched_.clients});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')), nullptr, false);
    return j.is_object() ? j.value("job_id", int64_t{0}) : 0;
  }
  std::string state(int64_t job) {
    nlohmann::json j = show_job(sched_.clients, job);
    return j.is_object() ? j.value("state", std::string()) : "";
  }
  bool wait_state(int64_t job, const std::string& want, double timeout_s) {
    return wait_until([&] { return state(job) == want; }, timeout_s, 200);
  }
  std::string adapter(const std::string& name) {
    return slurp(dir_ + "/" + name + "/train/adapter/adapter_model.safetensors");
  }

  std::string dir_;
  SchedulerProcess sched_;
  std::vector<pid_t> workers_;
};

TEST_F(PipelineTest, TinyJobPassesEveryStageThatExists) {
  start_worker();
  int64_t job = submit("a", 12, 4, /*merge=*/true);
  ASSERT_GT(job, 0);
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  nlohmann::json j = show_job(sched_.clients, job);
  EXPECT_EQ(stage_of(j, "dataset")["state"], "succeeded");
  EXPECT_EQ(stage_of(j, "train")["state"], "succeeded");
  EXPECT_EQ(stage_of(j, "merge")["state"], "succeeded");
  EXPECT_EQ(train_step(j), 12);
  // Outputs exist and validate: the dataset copy, checkpoints, a PEFT adapter.
  EXPECT_EQ(slurp(dir_ + "/a/data/train.jsonl"), slurp(dir_ + "/tokens.jsonl"));
  EXPECT_TRUE(std::ifstream(dir_ + "/a/train/checkpoints/step-8/DONE").good());
  auto config = nlohmann::json::parse(slurp(dir_ + "/a/train/adapter/adapter_config.json"), nullptr, false);
  ASSERT_TRUE(config.is_object());
  EXPECT_EQ(config.value("r", 0), 4);
  std::string weights = adapter("a");
  ASSERT_GT(weights.size(), 8u);
  // safetensors: 8-byte little-endian header length, then a JSON header with PEFT keys.
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(weights[i]);
  ASSERT_LE(8 + header_len, weights.size());
  auto header = nlohmann::json::parse(weights.substr(8, header_len), nullptr, false);
  ASSERT_TRUE(header.is_object());
  EXPECT_TRUE(header.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")) << header.dump();
  // The merged model: an HF directory our own import reads, fp32 as asked.
  const std::string merged = dir_ + "/a/merged";
  auto merged_config = nlohmann::json::parse(slurp(merged + "/config.json"), nullptr, false);
  ASSERT_TRUE(merged_config.is_object()) << slurp(merged + "/config.json");
  EXPECT_EQ(merged_config.value("torch_dtype", std::string()), "float32");
  EXPECT_TRUE(path_exists(merged + "/model.safetensors"));
  EXPECT_TRUE(path_exists(merged + "/generation_config.json"));
  RunResult inspect = run_lema({"inspect", merged});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(slurp(dir_ + "/model/model.safetensors"), slurp(merged + "/model.safetensors"))
      << "the merge changed nothing";
  // The client verbs answer for it.
  RunResult jobs = run_lema({"jobs", "--scheduler", sched_.clients});
  EXPECT_EQ(jobs.exit_code, 0);
  EXPECT_NE(jobs.output.find("succeeded"), std::string::npos) << jobs.output;
  RunResult logs = run_lema({"logs", std::to_string(job), "--scheduler", sched_.clients});
  EXPECT_NE(logs.output.find("stage train (job"), std::string::npos) << logs.output;
  RunResult workers = run_lema({"workers", "--json", "--scheduler", sched_.clients});
  EXPECT_NE(workers.output.find("\"w0\""), std::string::npos) << workers.output;
}

TEST_F(PipelineTest, WorkerKilledMidTrainingResumesFromCheckpointBitIdentical) {
  const int kSteps = 80;
  // Uninterrupted reference run.
  start_worker();
  int64_t ref = submit("ref", kSteps, 5);
  ASSERT_TRUE(wait_state(ref, "succeeded", kJobTimeoutS));
  kill_and_reap(workers_[0], SIGKILL);

  // The same job again; its worker is killed after a checkpoint.
  size_t first = start_worker();
  int64_t job = submit("killed", kSteps, 5);
  // Watch the file system, not the scheduler's progress: on a fast machine
  // the whole run ends between two progress reports.
  const std::string train_dir = dir_ + "/killed/train";
  ASSERT_TRUE(wait_until([&] { return path_exists(train_dir + "/checkpoints/step-10"); }, kJobTimeoutS, 1));
  kill_and_reap(workers_[first], SIGKILL);
  ASSERT_FALSE(path_exists(train_dir + "/adapter/adapter_model.safetensors"))
      << "training finished before the kill; make the job longer";
  start_worker();
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  nlohmann::json j = show_job(sched_.clients, job);
  EXPECT_GE(stage_of(j, "train")["attempt"].get<int64_t>(), 2);
  RunResult logs = run_lema({"logs", std::to_string(job), "--scheduler", sched_.clients});
  EXPECT_NE(logs.output.find("resuming from " + dir_ + "/killed/train/checkpoints/step-"), std::string::npos)
      << logs.output;
  EXPECT_EQ(logs.output.find("checkpoints/step-0"), std::string::npos);
  const std::string a = adapter("ref"), b = adapter("killed");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "adapter after kill + resume differs from the uninterrupted run";
}

// Issue 19 F3: the newest recorded checkpoint corrupted and the one before it
// deleted. The next attempt verifies each against the digest recorded in the
// database, says so in the job's events, keeps the corrupted one aside, and
// resumes from the newest intact one: the adapter is byte-identical to an
// uninterrupted run.
TEST_F(PipelineTest, BrokenCheckpointsFallBackToTheNewestIntactOne) {
  const int kSteps = 150;
  start_worker();
  int64_t ref = submit("ref3", kSteps, 5);
  ASSERT_TRUE(wait_state(ref, "succeeded", kJobTimeoutS));
  kill_and_reap(workers_[0], SIGKILL);

  size_t first = start_worker();
  int64_t job = submit("broken", kSteps, 5);
  const std::string ckdir = dir_ + "/broken/train/checkpoints/";
  int64_t newest = 0;
  auto newest_recorded = [&] {
    const nlohmann::json st = stage_of(show_job(sched_.clients, job), "train");
    const std::string p = st.is_object() ? st.value("checkpoint", std::string()) : std::string();
    newest = p.empty() ? 0 : std::atoll(p.substr(p.rfind("step-") + 5).c_str());
    return newest >= 15;
  };
  ASSERT_TRUE(wait_until(newest_recorded, kJobTimeoutS, 50));
  kill_and_reap(workers_[first], SIGKILL);
  // The newest the scheduler recorded once the worker is gone (training went
  // on while the first answer came back): the one the next attempt is offered first.
  ASSERT_TRUE(newest_recorded());
  ASSERT_FALSE(path_exists(dir_ + "/broken/train/adapter/adapter_model.safetensors")) << "finished before the kill";
  const std::string corrupt = ckdir + "step-" + std::to_string(newest);
  const std::string deleted = ckdir + "step-" + std::to_string(newest - 5);
  const std::string intact = ckdir + "step-" + std::to_string(newest - 10);
  {
    std::string bytes = slurp(corrupt + "/optimizer.safetensors");
    ASSERT_GT(bytes.size(), 100u);
    bytes[bytes.size() - 7] ^= 0x5a;  // a tensor byte: the header still parses
    ASSERT_TRUE(write_file_atomic(corrupt + "/optimizer.safetensors", bytes).ok());
  }
  ASSERT_TRUE(remove_all(deleted).ok());
  start_worker();
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  RunResult logs = run_lema({"logs", std::to_string(job), "--scheduler", sched_.clients});
  EXPECT_NE(logs.output.find("checkpoint broken: " + corrupt + ": digest"), std::string::npos) << logs.output;
  EXPECT_NE(logs.output.find("checkpoint broken: " + deleted + ": missing"), std::string::npos) << logs.output;
  EXPECT_NE(logs.output.find("falling back to " + intact), std::string::npos) << logs.output;
  EXPECT_TRUE(path_exists(corrupt + ".broken-a2/optimizer.safetensors")) << "the broken checkpoint was not kept";
  const std::string a = adapter("ref3"), b = adapter("broken");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "adapter after the fallback differs from the uninterrupted run";
}

TEST_F(PipelineTest, SchedulerKilledMidTrainingJobStillSucceeds) {
  start_worker();
  int64_t job = submit("s", 150, 5);
  ASSERT_TRUE(wait_until([&] { return path_exists(dir_ + "/s/train/checkpoints/step-5"); }, kJobTimeoutS, 1));
  ASSERT_FALSE(path_exists(dir_ + "/s/train/adapter/adapter_model.safetensors")) << "training finished before the kill";
  sched_.stop(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  sched_.start();
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  EXPECT_FALSE(adapter("s").empty());
}

// Issue 19 F1 and F2: the scheduler is frozen (SIGSTOP) during training,
// then killed and restarted. Within the fence time (2 heartbeats of 1.5 s)
// the worker either finishes the stage, its DONE waiting unread, or stops
// writing by itself and waits. Either way the restarted scheduler keeps the
// lease of the stage the worker names in HELLO (finished or running), takes
// the DONE, and the stage is never run again: one attempt, one "done".
TEST_F(PipelineTest, AStageIsNotRunAgainAfterASchedulerRestart) {
  sched_.stop(SIGKILL);
  sched_.heartbeat_ms = "1500";
  sched_.start();
  size_t w = start_worker();
  int64_t job = submit("f1", 60, 5);
  const std::string train_dir = dir_ + "/f1/train";
  ASSERT_TRUE(wait_until([&] { return path_exists(train_dir + "/checkpoints/step-5"); }, kJobTimeoutS, 1));
  kill(sched_.pid, SIGSTOP);
  ASSERT_FALSE(path_exists(train_dir + "/adapter/adapter_model.safetensors")) << "training finished before the stop";
  const std::string done_line = "stage train of job " + std::to_string(job) + " done";
  const std::string fence_line = "stops writing until it confirms the lease";
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string log = slurp(worker_log(w));
        return log.find(done_line) != std::string::npos || log.find(fence_line) != std::string::npos;
      },
      kJobTimeoutS, 100));
  const bool finished = slurp(worker_log(w)).find(done_line) != std::string::npos;
  std::fprintf(stderr, "the stage %s while the scheduler was stopped\n", finished ? "finished" : "fenced itself");
  if (!finished) {
    // Fenced: not one more metrics line while the lease cannot be shown.
    const std::string before = slurp(train_dir + "/metrics.jsonl");
    std::this_thread::sleep_for(std::chrono::seconds(2));
    EXPECT_EQ(slurp(train_dir + "/metrics.jsonl"), before) << "a fenced worker kept writing";
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the DONE is sent (and waits unread)
  }
  sched_.stop(SIGKILL);
  sched_.start();
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  nlohmann::json j = show_job(sched_.clients, job);
  EXPECT_EQ(stage_of(j, "train")["attempt"].get<int64_t>(), 1) << j.dump(1);
  const std::string log = slurp(worker_log(w));
  EXPECT_EQ(log.find(done_line), log.rfind(done_line)) << "the train stage ran again:\n" << log;
  RunResult logs = run_lema({"logs", std::to_string(job), "--scheduler", sched_.clients});
  EXPECT_EQ(logs.output.find("restarted without the stage"), std::string::npos) << logs.output;
  // Every metrics line is of attempt 1, steps 1..60 once each.
  std::istringstream lines(slurp(train_dir + "/metrics.jsonl"));
  std::string line;
  int64_t expect_step = 1;
  while (std::getline(lines, line)) {
    auto m = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(m.is_object()) << line;
    EXPECT_EQ(m.value("step", int64_t(0)), expect_step++) << line;
    EXPECT_EQ(m.value("attempt", int64_t(0)), 1) << line;
  }
  EXPECT_EQ(expect_step, 61);
}

// Issue 19 F2: a worker frozen (SIGSTOP) past its lease while another takes
// the stage over, then woken (SIGCONT), stops writing by itself: it sees on
// its own clock that the scheduler has been silent too long, asks, learns
// the lease is gone, and drops the stage. metrics.jsonl holds each step
// once, the steps after the resume all of attempt 2.
TEST_F(PipelineTest, AWorkerWokenAfterItsLeaseLapsedWritesNothing) {
  size_t a = start_worker();
  int64_t job = submit("frozen", 150, 5);
  const std::string train_dir = dir_ + "/frozen/train";
  ASSERT_TRUE(wait_until([&] { return path_exists(train_dir + "/checkpoints/step-10"); }, kJobTimeoutS, 1));
  kill(workers_[a], SIGSTOP);
  ASSERT_FALSE(path_exists(train_dir + "/adapter/adapter_model.safetensors")) << "training finished before the stop";
  start_worker();
  ASSERT_TRUE(wait_until(
      [&] {
        const nlohmann::json st = stage_of(show_job(sched_.clients, job), "train");
        return st.is_object() && st.value("attempt", 0) >= 2;
      },
      kJobTimeoutS, 100));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(workers_[a], SIGCONT);
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // anything the woken worker would still write
  std::istringstream lines(slurp(train_dir + "/metrics.jsonl"));
  std::string line;
  int64_t expect_step = 1, attempt = 1;
  while (std::getline(lines, line)) {
    auto m = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(m.is_object()) << line;
    EXPECT_EQ(m.value("step", int64_t(0)), expect_step++) << line;
    EXPECT_GE(m.value("attempt", int64_t(0)), attempt) << "an older attempt wrote after a newer one: " << line;
    attempt = m.value("attempt", int64_t(0));
  }
  EXPECT_EQ(expect_step, 151);
  EXPECT_EQ(attempt, 2);
  const std::string log = slurp(worker_log(a));
  EXPECT_NE(log.find("stopping it"), std::string::npos) << log;
}

TEST_F(PipelineTest, CancelStopsARunningJobWithinSeconds) {
  start_worker();
  int64_t job = submit("c", 100000, 0);
  ASSERT_TRUE(wait_until([&] { return train_step(show_job(sched_.clients, job)) >= 2; }, kJobTimeoutS, 50));
  auto t0 = std::chrono::steady_clock::now();
  RunResult r = run_lema({"cancel", std::to_string(job), "--scheduler", sched_.clients});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(state(job), "cancelled");
  // The worker stops training and is idle again.
  bool idle = wait_until(
      [&] {
        RunResult w = run_lema({"workers", "--json", "--scheduler", sched_.clients});
        auto j = nlohmann::json::parse(w.output.substr(std::min(w.output.size(), w.output.find('{'))), nullptr, false);
        if (!j.is_object() || !j.contains("workers") || j["workers"].empty()) return false;
        return j["workers"][0].value("idle", false);
      },
      10, 100);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(idle) << "worker still busy " << seconds << " s after cancel";
  EXPECT_LT(seconds, 10.0);  // two `lema` process starts included: 1-2 s each on a loaded 2-core machine
  std::fprintf(stderr, "cancel -> worker idle in %.2f s\n", seconds);
  int64_t step = train_step(show_job(sched_.clients, job));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(train_step(show_job(sched_.clients, job)), step) << "training went on after cancel";
}

// SIGTERM: the worker checkpoints the step it is on, exits 0, and the next
// worker resumes from that checkpoint (checkpoint_every = 0: no other).
TEST_F(PipelineTest, SigtermCheckpointsAndTheNextWorkerResumes) {
  size_t first = start_worker();
  int64_t job = submit("t", 300, 0);
  ASSERT_TRUE(wait_until([&] { return train_step(show_job(sched_.clients, job)) >= 5; }, kJobTimeoutS, 20));
  kill(workers_[first], SIGTERM);
  int status = -1;
  ASSERT_TRUE(wait_until([&] { return waitpid(workers_[first], &status, WNOHANG) == workers_[first]; }, 30, 50));
  workers_[first] = -1;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(slurp(worker_log(first)).find("checkpoint " + dir_ + "/t/train/checkpoints/step-"), std::string::npos)
      << slurp(worker_log(first));
  start_worker();
  ASSERT_TRUE(wait_state(job, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, job).dump(1);
  RunResult logs = run_lema({"logs", std::to_string(job), "--scheduler", sched_.clients});
  EXPECT_NE(logs.output.find("resuming from " + dir_ + "/t/train/checkpoints/step-"), std::string::npos)
      << logs.output;
}

// A worker whose training was stopped mid-run (CANCEL) runs the next job.
TEST_F(PipelineTest, WorkerRunsANewJobAfterACancelledOne) {
  start_worker();
  int64_t job = submit("x1", 100000, 0);
  ASSERT_TRUE(wait_until([&] { return train_step(show_job(sched_.clients, job)) >= 2; }, kJobTimeoutS, 50));
  ASSERT_EQ(run_lema({"cancel", std::to_string(job), "--scheduler", sched_.clients}).exit_code, 0);
  int64_t next = submit("x2", 10, 5);
  ASSERT_TRUE(wait_state(next, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, next).dump(1);
}

TEST_F(PipelineTest, TwoWorkersRunTwoJobsInParallel) {
  start_worker();
  start_worker();
  // Long enough (~15 s side by side, one thread each) that polling `lema show` sees both running.
  int64_t a = submit("p1", 600, 0);
  int64_t b = submit("p2", 600, 0);
  bool overlapped = false;
  ASSERT_TRUE(wait_until(
      [&] {
        nlohmann::json ja = show_job(sched_.clients, a), jb = show_job(sched_.clients, b);
        if (stage_of(ja, "train")["state"] == "running" && stage_of(jb, "train")["state"] == "running") {
          overlapped = true;
        }
        return ja.value("state", std::string()) == "succeeded" && jb.value("state", std::string()) == "succeeded";
      },
      kJobTimeoutS, 100));
  EXPECT_TRUE(overlapped) << "the two train stages never ran at the same time";
}

TEST_F(PipelineTest, OneWorkerRunsTwoJobsInARow) {
  start_worker();
  int64_t a = submit("q1", 20, 5);
  ASSERT_TRUE(wait_state(a, "succeeded", kJobTimeoutS));
  int64_t b = submit("q2", 20, 5);
  ASSERT_TRUE(wait_state(b, "succeeded", kJobTimeoutS)) << show_job(sched_.clients, b).dump(1);
  EXPECT_EQ(adapter("q1"), adapter("q2")) << "same spec and data, same bytes";
}

TEST(RunCommand, RunsTheJobAndRunningAgainIsANoOp) {
  std::string dir = make_temp_dir("run");
  make_model_and_data(dir, 32);
  write_text(dir + "/r.toml", tiny_spec(dir, "r", 8, 4));
  RunResult r = run_lema({"run", dir + "/r.toml", "--cpu", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output << slurp(dir + "/r/logs/worker-0.log");
  EXPECT_NE(r.output.find("succeeded"), std::string::npos);
  EXPECT_FALSE(slurp(dir + "/r/train/adapter/adapter_model.safetensors").empty());
  RunResult again = run_lema({"run", dir + "/r.toml", "--cpu"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

// Ctrl-C (SIGINT) stops `lema run` after its worker checkpoints the step it
// is on (checkpoint_every = 0: no other checkpoint exists); the same
// command again resumes from that checkpoint, not from step 0, and finishes.
TEST(RunCommand, CtrlCCheckpointsAndRunningAgainResumes) {
  std::string dir = make_temp_dir("ctrlc");
  make_model_and_data(dir, 32);
  write_text(dir + "/c.toml", tiny_spec(dir, "c", 100000, 0));
  const std::string metrics = dir + "/c/train/metrics.jsonl";
  pid_t pid = spawn_lema({"run", dir + "/c.toml", "--cpu", "--threads", "1"}, dir + "/first.log");
  ASSERT_TRUE(wait_until(
                  [&] {
                    const std::string m = slurp(metrics);
                    return std::count(m.begin(), m.end(), '\n') >= 3;
                  },
                  kJobTimeoutS, 50))
      << slurp(dir + "/first.log");
  kill(pid, SIGINT);
  int status = 0;
  ASSERT_TRUE(wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 60, 50)) << "lema run ignored Ctrl-C";
  EXPECT_TRUE(WIFEXITED(status)) << "lema run died of a signal";
  EXPECT_NE(WEXITSTATUS(status), 0) << "an interrupted run must not report success";
  EXPECT_TRUE(path_exists(dir + "/c/train/checkpoints")) << slurp(dir + "/first.log");
  EXPECT_FALSE(path_exists(dir + "/c/train/adapter/adapter_model.safetensors"));

  // The same command again: the worker resumes from that checkpoint (its
  // "resumed from" line); then Ctrl-C once more, the job never ends.
  pid = spawn_lema({"run", dir + "/c.toml", "--cpu", "--threads", "1"}, dir + "/second.log");
  const std::string worker_log = dir + "/c/logs/worker-0.log";
  bool resumed = wait_until([&] { return slurp(worker_log).find("resumed from") != std::string::npos; }, kJobTimeoutS, 50);
  kill(pid, SIGINT);
  waitpid(pid, &status, 0);
  EXPECT_TRUE(resumed) << slurp(dir + "/second.log") << slurp(worker_log);
  EXPECT_EQ(slurp(worker_log).find("resumed from " + dir + "/c/train/checkpoints/step-0"), std::string::npos);
}

// The last line of `lema run --json`'s output that is a JSON object: the final job.
nlohmann::json final_job(const std::string& output) {
  nlohmann::json job;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("stages")) job = j;
  }
  return job;
}

// Text examples from the dataset builder, tokenized by the train stage with
// the spec's tokenizer (not next to the model), the layer file streamed
// within train.ram; the eval stage (base vs
// tuned, the loss curve), compared with `lema eval` by hand on the same
// inputs; a layer-file base, merged into an HF directory that carries that
// tokenizer, which `lema chat` loads.
TEST(RunCommand, TextDataWithATokenizerAndALayerFileBase) {
  std::string dir = make_temp_dir("runtext");
  RunResult init = run_lema({"model", "init", "--preset", "tiny", "--out", dir + "/hf"});
  ASSERT_EQ(init.exit_code, 0) << init.output;
  RunResult conv = run_lema({"convert", dir + "/hf", "-o", dir + "/base.lema.safetensors"});
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  ASSERT_EQ(::mkdir((dir + "/tok").c_str(), 0755), 0);
  write_byte_tokenizer(dir + "/tok");
  std::ostringstream spec;
  spec << "[job]\nname = \"text\"\nwork_dir = \"" << dir << "/text\"\n"
       << "[model]\npath = \"" << dir << "/base.lema.safetensors\"\ntokenizer = \"" << dir << "/tok/tokenizer.json\"\n"
       << "[data]\nbuilder = \"lema-reply\"\nexamples = 24\nseed = 3\neval_fraction = 0.25\n"
       << "[train]\nsteps = 3\nbatch = 2\nmicro_batch = 2\nseq_len = 384\nlora_r = 4\nlora_alpha = 8\n"
       << "lora_dropout = 0.0\nlr = 1e-2\ndevice = \"cpu\"\ncheckpoint_every = 0\nram = \"1GiB\"\n"
       << "[eval]\nquestions = 2\nmax_new_tokens = 6\n[merge]\ndtype = \"bf16\"\n[export]\ngguf = \"q8_0\"\n";
  write_text(dir + "/text.toml", spec.str());
  RunResult stages = run_lema({"worker", "--stages"});
  EXPECT_EQ(stages.output, "dataset\ntrain\neval\nmerge\nexport\n");
  RunResult r = run_lema({"run", dir + "/text.toml", "--cpu", "--threads", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output << slurp(dir + "/text/logs/worker-0.log");
  // The dataset stage wrote text, the train stage tokenized it.
  EXPECT_NE(slurp(dir + "/text/data/train.jsonl").find("\"question\""), std::string::npos);
  EXPECT_FALSE(slurp(dir + "/text/train/adapter/adapter_model.safetensors").empty());
  // train.ram reached the engine: the layer file was streamed as planned.
  EXPECT_NE(slurp(dir + "/text/logs/worker-0.log").find("memory plan: mode"), std::string::npos)
      << slurp(dir + "/text/logs/worker-0.log");

  // Every stage ran; the eval stage wrote report.json with base and tuned.
  const nlohmann::json job = final_job(r.output);
  ASSERT_TRUE(job.is_object()) << r.output;
  for (const char* kind : {"dataset", "train", "eval", "merge", "export"}) {
    EXPECT_EQ(stage_of(job, kind)["state"], "succeeded") << kind;
  }
  // [export] gguf: the merged model as a GGUF file, named in the result.
  const std::string gguf = dir + "/text/model.q8_0.gguf";
  EXPECT_EQ(stage_of(job, "export")["result"].value("file", std::string()), gguf) << stage_of(job, "export").dump();
  {
    auto g = GgufReader::open(gguf);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    EXPECT_EQ((*g)->find("general.architecture")->s, "llama");
    EXPECT_EQ((*g)->find("general.file_type")->u, 7u);  // q8_0
    EXPECT_EQ((*g)->find("general.name")->s, "text");
  }
  EXPECT_NE(r.output.find("gguf: " + gguf + " (q8_0)"), std::string::npos) << r.output;
  auto report = nlohmann::json::parse(slurp(dir + "/text/eval/report.json"), nullptr, false);
  ASSERT_TRUE(report.is_object()) << slurp(dir + "/text/eval/report.json");
  ASSERT_EQ(report["models"].size(), 2u);
  const nlohmann::json& base = report["models"][0];
  const nlohmann::json& tuned = report["models"][1];
  EXPECT_EQ(base["name"], "base");
  EXPECT_EQ(tuned["name"], "tuned");
  EXPECT_EQ(tuned["adapter"], dir + "/text/train/adapter");
  EXPECT_EQ(report["data"], dir + "/text/data/eval.jsonl");
  for (const nlohmann::json* m : {&base, &tuned}) {
    EXPECT_TRUE((*m)["adherence"].is_number());
    EXPECT_EQ((*m)["total"], 2) << "eval.questions = 2";
    EXPECT_GT((*m)["eval_loss"].get<double>(), 0.0);
  }
  EXPECT_NE(base["eval_loss"], tuned["eval_loss"]) << "the adapter changed nothing";
  // The loss curve of the train stage's metrics.jsonl: one point per step.
  EXPECT_EQ(report.value("loss_curve", std::string()), "loss_curve.svg");
  const std::string svg = slurp(dir + "/text/eval/loss_curve.svg");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(dir + "/text/train/metrics.jsonl"), std::string::npos) << svg.substr(0, 400);
  EXPECT_FALSE(slurp(dir + "/text/eval/report.md").empty());
  // DONE's result carries the figures (what `lema show` prints).
  const nlohmann::json result = stage_of(job, "eval")["result"];
  ASSERT_TRUE(result.is_object()) << stage_of(job, "eval").dump();
  EXPECT_EQ(result["base"]["adherence"], base["adherence"]);
  EXPECT_EQ(result["tuned"]["adherence"], tuned["adherence"]);
  EXPECT_EQ(result["base"]["eval_loss"], base["eval_loss"]);
  EXPECT_EQ(result["tuned"]["eval_loss"], tuned["eval_loss"]);
  // 6 byte tokens cannot hold a [LEMA_REPLY] block: no reply is valid.
  EXPECT_NE(result.value("summary", std::string()).find("adherence base 0/2"), std::string::npos)
      << result.dump();
  EXPECT_NE(r.output.find("eval: adherence base"), std::string::npos) << r.output;
  {
    // `lema show` against a scheduler on the run's database prints it.
    SchedulerProcess sched;
    sched.db = dir + "/text/lema.db";
    sched.log = dir + "/show_scheduler.log";
    sched.workers = "tcp://127.0.0.1:" + std::to_string(free_port());
    sched.clients = "tcp://127.0.0.1:" + std::to_string(free_port());
    sched.start();
    RunResult show;
    wait_until([&] { return (show = run_lema({"show", "1", "--scheduler", sched.clients})).exit_code == 0; }, 30);
    sched.stop();
    EXPECT_NE(show.output.find(result.value("summary", std::string("?"))), std::string::npos) << show.output;
    EXPECT_NE(show.output.find("output: " + gguf), std::string::npos) << show.output;
  }
  // The same figures as `lema eval` by hand on the stage's inputs (the
  // spec's tokenizer, seq_len, questions and max_new_tokens).
  RunResult by_hand = run_lema({"eval", "--model", dir + "/base.lema.safetensors", "--tokenizer",
                                dir + "/tok/tokenizer.json", "--adapter", dir + "/text/train/adapter", "--data",
                                dir + "/text/data/eval.jsonl", "--out", dir + "/by_hand", "--questions", "2",
                                "--max-new-tokens", "6", "--seq-len", "384", "--threads", "1"});
  ASSERT_EQ(by_hand.exit_code, 0) << by_hand.output;
  auto hand = nlohmann::json::parse(slurp(dir + "/by_hand/report.json"), nullptr, false);
  ASSERT_TRUE(hand.is_object());
  ASSERT_EQ(hand["models"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(hand["models"][i]["eval_loss"].get<double>(), report["models"][i]["eval_loss"].get<double>(), 1e-9);
    EXPECT_EQ(hand["models"][i]["eval_tokens"], report["models"][i]["eval_tokens"]);
    EXPECT_EQ(hand["models"][i]["samples"], report["models"][i]["samples"]);
  }
  const std::string merged = dir + "/text/merged";
  auto config = nlohmann::json::parse(slurp(merged + "/config.json"), nullptr, false);
  ASSERT_TRUE(config.is_object());
  EXPECT_EQ(config.value("torch_dtype", std::string()), "bfloat16");
  EXPECT_EQ(config.value("num_hidden_layers", 0), 2);
  EXPECT_EQ(slurp(merged + "/tokenizer.json"), slurp(dir + "/tok/tokenizer.json"));
  EXPECT_EQ(slurp(merged + "/tokenizer_config.json"), slurp(dir + "/tok/tokenizer_config.json"));
  RunResult inspect = run_lema({"inspect", merged});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  RunResult chat = run_lema({"chat", merged, "--prompt", "What is 2 plus 2?", "--max-new-tokens", "4", "--threads", "1"});
  EXPECT_EQ(chat.exit_code, 0) << chat.output;
  // Within a budget the base streams from its layer file (a LayerStore,
  // forward only) and answers as the whole base does: greedy, the same reply.
  const std::vector<std::string> chat_base = {"chat", dir + "/base.lema.safetensors", "--tokenizer",
                                              dir + "/tok/tokenizer.json", "--prompt", "What is 2 plus 2?",
                                              "--max-new-tokens", "8", "--threads", "1"};
  RunResult whole = run_lema(chat_base);
  std::vector<std::string> budget_args = chat_base;
  budget_args.insert(budget_args.end(), {"--vram", "64MiB", "--ram", "64MiB"});
  RunResult budgeted = run_lema(budget_args);
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  ASSERT_EQ(budgeted.exit_code, 0) << budgeted.output;
  EXPECT_NE(budgeted.output.find("memory plan:"), std::string::npos) << budgeted.output;
  // The reply: the output without log and progress lines (stderr), up to
  // the validity line.
  auto reply = [](const std::string& out) {
    std::string text, line;
    std::istringstream in(out);
    while (std::getline(in, line)) {
      if (line.rfind("lema ", 0) == 0 || line.rfind("loading layers:", 0) == 0) continue;
      text += line + "\n";
    }
    return text.substr(0, text.find("\n-- "));
  };
  EXPECT_EQ(reply(budgeted.output), reply(whole.output));
  EXPECT_FALSE(reply(whole.output).empty());
  // In the REPL a question longer than the plan's prompts is turned down
  // with a message, and the next one is answered.
  {
    std::string words;
    for (int i = 0; i < 4000; ++i) words += "word" + std::to_string(i) + " ";
    ASSERT_TRUE(write_file_atomic(dir + "/questions.txt", words + "\nWhat is 2 plus 2?\n").ok());
    RunResult repl = run_lema_shell("chat " + dir + "/base.lema.safetensors --tokenizer " + dir +
                                    "/tok/tokenizer.json --max-new-tokens 8 --threads 1 --vram 512MiB --ram 64MiB < " +
                                    dir + "/questions.txt");
    EXPECT_EQ(repl.exit_code, 0) << repl.output;
    EXPECT_NE(repl.output.find("the REPL plans for prompts of up to 2048 tokens"), std::string::npos) << repl.output;
    EXPECT_NE(repl.output.find("\n-- "), std::string::npos) << repl.output;  // the second question's reply
  }
  std::vector<std::string> dir_args = budget_args;
  dir_args[1] = merged;
  RunResult refused = run_lema(dir_args);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("lema convert"), std::string::npos) << refused.output;
  if (!::testing::Test::HasFailure()) (void)remove_all(dir);
}

TEST(ClientVerbs, NoSchedulerSaysWhatToDo) {
  RunResult r = run_lema({"jobs", "--scheduler", "tcp://127.0.0.1:" + std::to_string(free_port()), "--timeout-ms",
                          "300"});
  EXPECT_EQ(r.exit_code, 6) << r.output;
  EXPECT_NE(r.output.find("`lema scheduler`"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lema::test
