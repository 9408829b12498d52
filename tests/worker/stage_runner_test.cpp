// The stage table and the eval stage's checks of its upstream outputs, with
// no model and no scheduler: the kinds in pipeline order, the job directory
// layout, device resolution, and the eval stage's answers when the dataset
// or train output is missing (retryable: not visible here) or when the data
// was pre-tokenized (not retryable: nothing to evaluate). The happy path
// (a real evaluation inside a job) is tests/integration/pipeline_test.cpp.
#include "worker/stage_runner.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/protocol/job_spec.h"

namespace lema::worker {
namespace {

class RecordingReporter : public StageReporter {
 public:
  void progress(int64_t step, int64_t total, const std::string&) override { steps.push_back({step, total}); }
  void log(const std::string& level, const std::string& line) override { lines.push_back(level + ": " + line); }
  void checkpoint(int64_t, const std::string&, const std::string&) override {}
  bool cancel_requested() const override { return false; }
  std::vector<std::pair<int64_t, int64_t>> steps;
  std::vector<std::string> lines;
};

std::string temp_dir() {
  std::string t = "/tmp/lema_stage_runner_XXXXXX";
  EXPECT_NE(mkdtemp(t.data()), nullptr);
  return t;
}

// The normalised spec the scheduler sends, from TOML like a user's.
std::string spec_json(const std::string& work_dir) {
  auto spec = JobSpec::parse("[job]\nwork_dir = \"" + work_dir +
                             "\"\n[model]\npath = \"/nonexistent/model\"\n[train]\nseq_len = 99\n"
                             "[eval]\nquestions = 3\n");
  EXPECT_TRUE(spec.ok()) << spec.status().to_string();
  return spec->to_json().dump();
}

StageAssignment eval_assignment(const std::string& work_dir) {
  StageAssignment a;
  a.job_id = 1;
  a.stage_id = 3;
  a.kind = "eval";
  a.attempt = 1;
  a.work_dir = work_dir;
  a.spec_json = spec_json(work_dir);
  return a;
}

TEST(StageRunner, RunsEveryKindInPipelineOrder) {
  EXPECT_EQ(stage_kinds(), (std::vector<std::string>{"dataset", "train", "eval", "merge", "export"}));
}

TEST(StageRunner, JobDirectoryLayout) {
  EXPECT_EQ(job_data_dir("/j"), "/j/data");
  EXPECT_EQ(job_train_dir("/j"), "/j/train");
  EXPECT_EQ(job_adapter_dir("/j"), "/j/train/adapter");
  EXPECT_EQ(job_eval_dir("/j"), "/j/eval");
  EXPECT_EQ(job_merged_dir("/j"), "/j/merged");
}

TEST(StageRunner, DeviceFromTheSpecAndTheWorker) {
  StageEnv gpu, cpu;
  gpu.device = "cuda:3";
  cpu.device = "cpu";
  EXPECT_EQ(stage_device("auto", gpu), "cuda:3");
  EXPECT_EQ(stage_device("cuda", gpu), "cuda:3");
  EXPECT_EQ(stage_device("cpu", gpu), "cpu");
  EXPECT_EQ(stage_device("auto", cpu), "cpu");
  EXPECT_EQ(stage_device("cuda", cpu), "cuda");  // the engine then says there is no GPU
}

TEST(StageRunner, UnknownKindIsNotRetryable) {
  std::string dir = temp_dir();
  StageAssignment a = eval_assignment(dir);
  a.kind = "distill";
  RecordingReporter reporter;
  StageOutcome out = run_stage(a, StageEnv(), reporter);
  EXPECT_EQ(out.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(out.status.message().find("distill"), std::string::npos);
  EXPECT_FALSE(out.retryable);
  (void)remove_all(dir);
}

TEST(EvalStage, NoDatasetOutputHereIsRetryable) {
  std::string dir = temp_dir();
  RecordingReporter reporter;
  StageOutcome out = run_stage(eval_assignment(dir), StageEnv(), reporter);
  EXPECT_EQ(out.status.code(), Status::Code::kNotFound) << out.status.to_string();
  EXPECT_NE(out.status.message().find(dir + "/data/eval.jsonl"), std::string::npos) << out.status.to_string();
  EXPECT_TRUE(out.retryable);
  (void)remove_all(dir);
}

TEST(EvalStage, PreTokenizedDataHasNothingToEvaluate) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_dirs(dir + "/data").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/data/train.jsonl", "{\"input_ids\":[1,2,3]}\n").ok());
  RecordingReporter reporter;
  StageOutcome out = run_stage(eval_assignment(dir), StageEnv(), reporter);
  EXPECT_EQ(out.status.code(), Status::Code::kInvalidArgument) << out.status.to_string();
  EXPECT_NE(out.status.message().find("eval.enabled = false"), std::string::npos) << out.status.to_string();
  EXPECT_FALSE(out.retryable);
  (void)remove_all(dir);
}

TEST(EvalStage, AnEmptyEvalSetSaysWhichKeysToChange) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_dirs(dir + "/data").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/data/eval.jsonl", "").ok());
  RecordingReporter reporter;
  StageOutcome out = run_stage(eval_assignment(dir), StageEnv(), reporter);
  EXPECT_EQ(out.status.code(), Status::Code::kInvalidArgument) << out.status.to_string();
  EXPECT_NE(out.status.message().find("data.eval_fraction"), std::string::npos) << out.status.to_string();
  EXPECT_FALSE(out.retryable);
  (void)remove_all(dir);
}

// Issue 19: a JSONL without one usable example failed only in train, whose
// error named the stage's copy; the dataset stage refuses it naming the
// user's file, whether empty, all bad lines, all pre-tokenized-empty, or
// all in the eval split.
TEST(DatasetStage, NoUsableExampleFailsNamingTheUsersFile) {
  std::string dir = temp_dir();
  const std::string jsonl = dir + "/user data.jsonl";
  struct Case {
    const char* text;
    const char* fraction;
    const char* expect;
  };
  // Bad records fail the stage unless [data] skip_bad (then they are counted).
  const Case cases[] = {
      {"", "0.1", "(0 bad record(s)"},
      {"{\"prompt\": 3}\nnot json\n", "0.1\nskip_bad = true", "(2 bad record(s)"},
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
       "0.9", "every example went to the eval split"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(write_file_atomic(jsonl, c.text).ok());
    auto spec = JobSpec::parse("[job]\nwork_dir = \"" + dir + "\"\n[model]\npath = \"/m\"\n[data]\njsonl = \"" +
                               jsonl + "\"\neval_fraction = " + c.fraction + "\n");
    ASSERT_TRUE(spec.ok()) << spec.status().to_string();
    StageAssignment a = eval_assignment(dir);
    a.kind = "dataset";
    a.stage_id = 1;
    a.spec_json = spec->to_json().dump();
    RecordingReporter reporter;
    StageOutcome out = run_stage(a, StageEnv(), reporter);
    EXPECT_EQ(out.status.code(), Status::Code::kInvalidArgument) << c.text << ": " << out.status.to_string();
    EXPECT_NE(out.status.message().find("data.jsonl " + jsonl + ": no usable example"), std::string::npos)
        << out.status.to_string();
    EXPECT_NE(out.status.message().find(c.expect), std::string::npos) << out.status.to_string();
    EXPECT_FALSE(out.retryable);
    EXPECT_FALSE(path_exists(dir + "/data/train.jsonl"));
  }
  (void)remove_all(dir);
}

TEST(EvalStage, NoAdapterHereIsRetryable) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_dirs(dir + "/data").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/data/eval.jsonl",
                                "{\"question\":\"q\",\"answer\":\"a\",\"explanation\":\"e\",\"confidence\":\"High\"}\n")
                  .ok());
  RecordingReporter reporter;
  StageOutcome out = run_stage(eval_assignment(dir), StageEnv(), reporter);
  EXPECT_EQ(out.status.code(), Status::Code::kNotFound) << out.status.to_string();
  EXPECT_NE(out.status.message().find(dir + "/train/adapter"), std::string::npos) << out.status.to_string();
  EXPECT_TRUE(out.retryable);
  (void)remove_all(dir);
}

TEST(EvalStage, AMissingBaseModelFailsNamingIt) {
  // Data and an adapter in place: run_eval itself then fails on the spec's
  // model (here: no tokenizer beside it), and the error names it.
  std::string dir = temp_dir();
  ASSERT_TRUE(make_dirs(dir + "/data").ok());
  ASSERT_TRUE(make_dirs(dir + "/train/adapter").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/data/eval.jsonl",
                                "{\"question\":\"q\",\"answer\":\"a\",\"explanation\":\"e\",\"confidence\":\"High\"}\n")
                  .ok());
  ASSERT_TRUE(write_file_atomic(dir + "/train/adapter/adapter_model.safetensors", "x").ok());
  RecordingReporter reporter;
  StageOutcome out = run_stage(eval_assignment(dir), StageEnv(), reporter);
  EXPECT_FALSE(out.status.ok());
  EXPECT_NE(out.status.to_string().find("/nonexistent/model"), std::string::npos) << out.status.to_string();
  // No metrics.jsonl from a train stage: said, and the report goes without a curve.
  bool warned = false;
  for (const auto& l : reporter.lines) warned |= l.find("no loss curve") != std::string::npos;
  EXPECT_TRUE(warned);
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema::worker
