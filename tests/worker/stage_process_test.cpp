// A stage in a child process, with real processes: the real `lema
// stage-child` (LEMA_BINARY) running a dataset stage, the same aborting
// through its test hook, and /bin/sh children that die of SIGSEGV, are
// killed with -9, exit without a result, write garbled frames on fd 3, or
// ignore SIGTERM when cancelled (SIGKILL after kStageKillGraceMs).
#include "worker/stage_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/file_util.h"
#include "worker/stage_child.h"

namespace lema::worker {
namespace {

using Clock = std::chrono::steady_clock;

// Records what the supervisor reports, as the worker's session would send it.
class RecordingReporter : public StageReporter {
 public:
  void progress(int64_t step, int64_t total, const std::string&) override {
    std::lock_guard<std::mutex> l(mu);
    steps.push_back(step);
    (void)total;
  }
  void log(const std::string&, const std::string& line) override {
    std::lock_guard<std::mutex> l(mu);
    lines.push_back(line);
  }
  void checkpoint(int64_t, const std::string&, const std::string&) override {}
  bool cancel_requested() const override { return cancel.load(); }
  std::mutex mu;
  std::vector<int64_t> steps;
  std::vector<std::string> lines;
  std::atomic<bool> cancel{false};
};

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_stageproc_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  return tmpl;
}

// A dataset stage of the built-in builder: seconds, no model needed.
StageAssignment dataset_assignment(const std::string& dir, const std::string& name) {
  StageAssignment a;
  a.job_id = 7;
  a.stage_id = 11;
  a.attempt = 1;
  a.kind = "dataset";
  a.work_dir = dir + "/" + name;
  a.spec_json = nlohmann::json{{"job", {{"name", name}, {"work_dir", a.work_dir}}},
                               {"model", {{"path", dir + "/model"}}},
                               {"data", {{"builder", "lema-reply"}, {"examples", 20}}}}
                    .dump();
  return a;
}

StageEnv env_for(const std::string& dir) {
  StageEnv env;
  env.base_dir = dir;
  env.allowed_roots = {dir};
  return env;
}

const std::vector<std::string> kRealChild = {LEMA_BINARY, "stage-child"};
std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

TEST(StageProcess, TheRealChildRunsAStageAndReportsItsFrames) {
  const std::string dir = temp_dir();
  RecordingReporter r;
  const auto start = Clock::now();
  StageOutcome out = run_stage_in_child(dataset_assignment(dir, "ok"), env_for(dir), r, kRealChild);
  std::fprintf(stderr, "dataset stage in a child: %lld ms\n",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
  ASSERT_TRUE(out.status.ok()) << out.status.to_string();
  EXPECT_FALSE(out.crashed);
  EXPECT_NE(out.result_json.find("train"), std::string::npos) << out.result_json;
  EXPECT_TRUE(path_exists(dir + "/ok/data/train.jsonl"));
  ASSERT_FALSE(r.lines.empty());
  EXPECT_NE(r.lines[0].find("stage dataset (job 7, attempt 1)"), std::string::npos) << r.lines[0];
  EXPECT_FALSE(r.steps.empty());
}

TEST(StageProcess, AStageErrorIsTheStagesNotACrash) {
  const std::string dir = temp_dir();
  RecordingReporter r;
  StageAssignment a = dataset_assignment(dir, "odd");
  a.kind = "bogus";
  StageOutcome out = run_stage_in_child(a, env_for(dir), r, kRealChild);
  EXPECT_EQ(out.status.code(), Status::Code::kInvalidArgument) << out.status.to_string();
  EXPECT_NE(out.status.message().find("unknown stage kind 'bogus'"), std::string::npos);
  EXPECT_FALSE(out.retryable);
  EXPECT_FALSE(out.crashed);
}

TEST(StageProcess, AnAbortIsACrashWithTheSignalAndTheLastLines) {
  const std::string dir = temp_dir();
  RecordingReporter r;
  setenv(kStageCrashTestEnv, "boom/dataset", 1);
  StageOutcome out = run_stage_in_child(dataset_assignment(dir, "boom"), env_for(dir), r, kRealChild);
  unsetenv(kStageCrashTestEnv);
  EXPECT_TRUE(out.crashed);
  EXPECT_TRUE(out.retryable);
  const std::string& m = out.status.message();
  EXPECT_EQ(m.rfind("crashed: signal 6 (SIGABRT)", 0), 0u) << m;
  EXPECT_NE(m.find("last"), std::string::npos) << m;
  EXPECT_NE(m.find("stage dataset (job 7, attempt 1)"), std::string::npos) << m;
}

TEST(StageProcess, ASegfaultIsACrashWithItsOutput) {
  RecordingReporter r;
  StageOutcome out = run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r,
                                        sh("echo about to fail; kill -SEGV $$"));
  EXPECT_TRUE(out.crashed);
  EXPECT_NE(out.status.message().find("crashed: signal 11 (SIGSEGV)"), std::string::npos)
      << out.status.message();
  EXPECT_NE(out.status.message().find("about to fail"), std::string::npos) << out.status.message();
}

TEST(StageProcess, OnlyTheLast20LinesAreKept) {
  RecordingReporter r;
  StageOutcome out =
      run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r,
                         sh("i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done; exit 3"));
  EXPECT_TRUE(out.crashed);
  const std::string& m = out.status.message();
  EXPECT_NE(m.find("crashed: exit status 3 without a result"), std::string::npos) << m;
  EXPECT_NE(m.find("line49"), std::string::npos);
  EXPECT_NE(m.find("line30"), std::string::npos);
  EXPECT_EQ(m.find("line29"), std::string::npos) << m;
}

TEST(StageProcess, AKillFromOutsideIsACrash) {
  const std::string dir = temp_dir();
  const std::string pid_file = dir + "/pid";
  RecordingReporter r;
  std::thread killer([&] {
    // The child writes its pid, then the OOM killer (this thread) strikes.
    for (int i = 0; i < 200 && !path_exists(pid_file); ++i) usleep(20000);
    usleep(100000);
    std::ifstream f(pid_file);
    int pid = 0;
    f >> pid;
    if (pid > 0) kill(pid, SIGKILL);
  });
  StageOutcome out = run_stage_in_child(dataset_assignment(dir, "x"), env_for(dir), r,
                                        sh("echo $$ > " + pid_file + "; exec sleep 30"));
  killer.join();
  EXPECT_TRUE(out.crashed);
  EXPECT_NE(out.status.message().find("crashed: signal 9 (SIGKILL), killed from outside"), std::string::npos)
      << out.status.message();
}

TEST(StageProcess, AGarbledFrameIsACrashAndEndsTheChild) {
  RecordingReporter r;
  const auto start = Clock::now();
  // A length far over the limit, then the child would sleep: the worker
  // must not wait for it.
  StageOutcome out = run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r,
                                        sh("printf '\\377\\377\\377\\377' >&3; exec sleep 30"));
  EXPECT_TRUE(out.crashed);
  EXPECT_NE(out.status.message().find("crashed: stage channel: garbled frame (length 4294967295"),
            std::string::npos)
      << out.status.message();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  // A frame of an unknown type.
  StageOutcome odd =
      run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r,
                         sh("printf '\\000\\000\\000\\016{\"type\":\"zzz\"}' >&3; exec sleep 30"));
  EXPECT_TRUE(odd.crashed);
  EXPECT_NE(odd.status.message().find("unknown type 'zzz'"), std::string::npos) << odd.status.message();
}

TEST(StageProcess, CancelEndsAChildThatIgnoresSigtermAfterTheGrace) {
  RecordingReporter r;
  std::thread canceller([&] {
    usleep(500000);
    r.cancel = true;
  });
  const auto start = Clock::now();
  // The shell and its sleep both ignore SIGTERM (inherited through exec):
  // only the group's SIGKILL ends them.
  StageOutcome out = run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r,
                                        sh("trap '' TERM; sleep 60; sleep 60"));
  canceller.join();
  const auto took = Clock::now() - start;
  EXPECT_FALSE(out.crashed);
  EXPECT_EQ(out.status.code(), Status::Code::kCancelled) << out.status.to_string();
  EXPECT_FALSE(out.retryable);
  EXPECT_GE(took, std::chrono::milliseconds(kStageKillGraceMs));
  EXPECT_LT(took, std::chrono::milliseconds(kStageKillGraceMs + 5000));
}

// The worker's way: the child started ahead (the next stage's, while the
// worker waits for an ASSIGN), given its stage later.
TEST(StageProcess, AChildStartedAheadRunsTheStageItIsGiven) {
  const std::string dir = temp_dir();
  auto child = StageProcess::spawn(kRealChild);
  ASSERT_TRUE(child.ok()) << child.status().to_string();
  // Longer than the child needs to load on an idle machine: it must wait for
  // its start frame however long the ASSIGN takes.
  sleep(3);
  ASSERT_FALSE(child.value()->try_wait()) << "the child ended while waiting for its stage";
  RecordingReporter r;
  const auto start = Clock::now();
  StageOutcome out =
      run_stage_in_child(dataset_assignment(dir, "ahead"), env_for(dir), r, std::move(child.value()));
  std::fprintf(stderr, "dataset stage in a child started ahead: %lld ms\n",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
  ASSERT_TRUE(out.status.ok()) << out.status.to_string();
  EXPECT_TRUE(path_exists(dir + "/ahead/data/train.jsonl"));
}

TEST(StageProcess, ExecFailureIsReported) {
  RecordingReporter r;
  StageOutcome out =
      run_stage_in_child(dataset_assignment("/tmp", "x"), env_for("/tmp"), r, {"/nonexistent/lema"});
  EXPECT_TRUE(out.crashed);
  EXPECT_NE(out.status.message().find("exit status 127"), std::string::npos) << out.status.message();
}

TEST(StageProcess, StartFrameRoundTrips) {
  StageAssignment a = dataset_assignment("/tmp", "rt");
  a.resume_candidates = {{"/tmp/rt/train/checkpoints/step-4", "files:ab", 4}};
  StageEnv env = env_for("/tmp");
  env.device = "cuda:1";
  env.threads = 3;
  StageAssignment b;
  StageEnv e2;
  ASSERT_TRUE(parse_stage_start_frame(stage_start_frame(a, env), &b, &e2).ok());
  EXPECT_EQ(b.spec_json, a.spec_json);
  EXPECT_EQ(b.kind, "dataset");
  ASSERT_EQ(b.resume_candidates.size(), 1u);
  EXPECT_EQ(b.resume_candidates[0].step, 4);
  EXPECT_EQ(e2.device, "cuda:1");
  EXPECT_EQ(e2.threads, 3);
  nlohmann::json bad = stage_start_frame(a, env);
  bad["assignment"]["attempt"] = "one";
  Status s = parse_stage_start_frame(bad, &b, &e2);
  EXPECT_NE(s.message().find("assignment.attempt"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lema::worker
