// The dataset stage on the user's own file: [data] path / format /
// skip_bad of the job spec (the spec's list of format names, kept apart
// because the protocol does not link the data library, agrees with
// common/data/dataset_format.h; the keys round-trip), and the stage's
// validation, counts and outputs.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <utility>

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/data/dataset_format.h"
#include "common/protocol/job_spec.h"
#include "worker/stage_runner.h"

namespace lema {
namespace {

std::string spec_with(const std::string& data) { return "[model]\npath = \"/m\"\n[data]\n" + data; }

TEST(DataFormatSpec, EveryFormatNameIsAcceptedAndNoOther) {
  size_t n = 0;
  for (const char* name : kDataFormatNames) {
    auto f = parse_data_format(name);
    ASSERT_TRUE(f.ok()) << name;
    EXPECT_STREQ(data_format_name(*f), name);
    auto spec = JobSpec::parse(spec_with(std::string("path = \"/d/mine.jsonl\"\nformat = \"") + name + "\"\n"));
    ASSERT_TRUE(spec.ok()) << spec.status().to_string();
    EXPECT_EQ(spec->data.format, name);
    ++n;
  }
  // Every enum value has a name in the spec's list.
  for (int v = 0; v <= static_cast<int>(DataFormat::kTokenized); ++v) {
    bool found = false;
    for (const char* name : kDataFormatNames) found = found || std::string(name) == data_format_name(static_cast<DataFormat>(v));
    EXPECT_TRUE(found) << data_format_name(static_cast<DataFormat>(v));
  }
  EXPECT_EQ(n, static_cast<size_t>(DataFormat::kTokenized) + 1);
  auto bad = JobSpec::parse(spec_with("path = \"/d/mine.jsonl\"\nformat = \"csv\"\n"), "job.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[data] format"), std::string::npos) << bad.status().message();
}

TEST(DataFormatSpec, PathIsTheUsersFileAndRoundTrips) {
  auto spec = JobSpec::parse(spec_with("path = \"/d/mine.jsonl\"\nformat = \"sharegpt\"\nskip_bad = true\n"));
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(spec->data.jsonl, "/d/mine.jsonl");
  EXPECT_TRUE(spec->data.builder.empty());
  EXPECT_TRUE(spec->data.skip_bad);
  auto back = JobSpec::from_json(spec->to_json());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), spec->to_json());
  EXPECT_EQ(back->data.format, "sharegpt");
  EXPECT_TRUE(back->data.skip_bad);
  // Refused: both names of the file, a builder with it, a format for the builder.
  EXPECT_FALSE(JobSpec::parse(spec_with("path = \"/a\"\njsonl = \"/b\"\n")).ok());
  EXPECT_FALSE(JobSpec::parse(spec_with("path = \"/a\"\nbuilder = \"lema-reply\"\n")).ok());
  auto fixed = JobSpec::parse(spec_with("format = \"alpaca\"\n"));
  ASSERT_FALSE(fixed.ok());
  EXPECT_NE(fixed.status().message().find("[data] format"), std::string::npos) << fixed.status().message();
}

class RecordingReporter : public worker::StageReporter {
 public:
  void progress(int64_t, int64_t, const std::string&) override {}
  void log(const std::string& level, const std::string& line) override { lines.push_back(level + ": " + line); }
  void checkpoint(int64_t, const std::string&, const std::string&) override {}
  bool cancel_requested() const override { return false; }
  std::vector<std::string> lines;
};

worker::StageOutcome run_dataset(const std::string& dir, const std::string& data_toml) {
  auto spec = JobSpec::parse("[job]\nwork_dir = \"" + dir + "\"\n[model]\npath = \"/nonexistent/model\"\n[data]\n" + data_toml);
  EXPECT_TRUE(spec.ok()) << spec.status().to_string();
  worker::StageAssignment a;
  a.job_id = 1;
  a.stage_id = 1;
  a.kind = "dataset";
  a.attempt = 1;
  a.work_dir = dir;
  a.spec_json = spec->to_json().dump();
  RecordingReporter reporter;
  return worker::run_stage(a, worker::StageEnv(), reporter);
}

TEST(DatasetStage, TheUsersFileIsValidatedSplitAndCounted) {
  std::string dir = "/tmp/lema_stage_dataset_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  std::string text;
  for (int i = 0; i < 9; ++i)
    text += R"({"conversations":[{"from":"human","value":"Q)" + std::to_string(i) + R"("},{"from":"gpt","value":"A"}]})" "\n";
  text.insert(0, R"({"conversations":[{"from":"human","value":"Q"},{"from":"bot","value":"A"}]})" "\n");
  ASSERT_TRUE(write_file_atomic(dir + "/mine.jsonl", text).ok());
  const std::string path = "path = \"" + dir + "/mine.jsonl\"\n";
  worker::StageOutcome strict = run_dataset(dir + "/job1", path);
  ASSERT_FALSE(strict.status.ok());
  EXPECT_NE(strict.status.message().find(dir + "/mine.jsonl:1: unknown_role: conversations[1]: unknown from \"bot\""),
            std::string::npos)
      << strict.status.to_string();
  EXPECT_FALSE(path_exists(dir + "/job1/data/train.jsonl"));

  worker::StageOutcome skipped = run_dataset(dir + "/job2", path + "skip_bad = true\neval_fraction = 0.2\n");
  ASSERT_TRUE(skipped.status.ok()) << skipped.status.to_string();
  const auto result = nlohmann::json::parse(skipped.result_json);
  EXPECT_EQ(result["format"], "sharegpt");
  EXPECT_EQ(result["bad_records"], 1);
  EXPECT_EQ(result["train_examples"].get<int>() + result["eval_examples"].get<int>(), 9);
  const auto stats = nlohmann::json::parse(*read_file(dir + "/job2/data/stats.json"));
  EXPECT_EQ(stats["import"]["format"], "sharegpt");
  EXPECT_EQ(stats["import"]["bad_by_reason"]["unknown_role"], 1);
  // Written as lema's messages schema, which the train stage reads back.
  const std::string train = *read_file(dir + "/job2/data/train.jsonl");
  EXPECT_EQ(train.rfind(R"({"messages":[{"role":"user","content":"Q)", 0), 0u) << train;

  ASSERT_TRUE(write_file_atomic(dir + "/bad.jsonl", "{\"text\": 1}\n").ok());
  worker::StageOutcome none = run_dataset(dir + "/job3", "path = \"" + dir + "/bad.jsonl\"\nskip_bad = true\n");
  ASSERT_FALSE(none.status.ok());
  EXPECT_NE(none.status.message().find(dir + "/bad.jsonl: no usable example"), std::string::npos) << none.status.to_string();
  (void)remove_all(dir);
}

// Self-fencing (issue 19; chaos: a dataset stage read from a stale ASSIGN
// after SIGCONT ran to the end and said "done" a second time): the stage
// publishes data/ only while its lease can be shown. Refused from the
// start, or lost while the data was built, it ends kCancelled and writes
// nothing in place.
class LeaseReporter : public RecordingReporter {
 public:
  explicit LeaseReporter(int granted) : granted_(granted) {}
  Status wait_for_lease(const std::atomic<bool>*) override {
    ++asked;
    return asked <= granted_ ? Status() : Status::cancelled("fenced: the stage's lease was lost");
  }
  int asked = 0;

 private:
  int granted_;
};

TEST(DatasetStage, PublishesNothingWhileTheLeaseCannotBeShown) {
  std::string dir = "/tmp/lema_stage_dataset_lease_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  std::string tokens;
  for (int i = 0; i < 4; ++i) tokens += R"({"input_ids": [3, 4, 5, 6, 7, 8]})" "\n";
  ASSERT_TRUE(write_file_atomic(dir + "/tok.jsonl", tokens).ok());
  auto run = [&](const std::string& job, const std::string& data_toml, int granted, int* asked) {
    auto spec = JobSpec::parse("[job]\nwork_dir = \"" + dir + "/" + job + "\"\n[model]\npath = \"/nonexistent/model\"\n[data]\n" +
                               data_toml);
    EXPECT_TRUE(spec.ok()) << spec.status().to_string();
    worker::StageAssignment a;
    a.job_id = 1;
    a.stage_id = 1;
    a.kind = "dataset";
    a.attempt = 1;
    a.work_dir = dir + "/" + job;
    a.spec_json = spec->to_json().dump();
    LeaseReporter reporter(granted);
    worker::StageOutcome out = worker::run_stage(a, worker::StageEnv(), reporter);
    *asked = reporter.asked;
    return out;
  };
  const std::string tokenized = "path = \"" + dir + "/tok.jsonl\"\n";
  const std::string built = "builder = \"lema-reply\"\nexamples = 20\n";
  int asked = 0;
  // The lease shown throughout: asked before the start and before publishing.
  worker::StageOutcome ok = run("ok", tokenized, 100, &asked);
  ASSERT_TRUE(ok.status.ok()) << ok.status.to_string();
  EXPECT_GE(asked, 2);
  EXPECT_TRUE(path_exists(dir + "/ok/data/train.jsonl"));
  for (const auto& [job, data] : {std::pair<std::string, std::string>{"tok", tokenized}, {"built", built}}) {
    // Not shown at the start (a stale ASSIGN): nothing runs.
    worker::StageOutcome refused = run(job + "0", data, 0, &asked);
    EXPECT_EQ(refused.status.code(), Status::Code::kCancelled) << refused.status.to_string();
    EXPECT_FALSE(path_exists(dir + "/" + job + "0/data")) << job;
    // Lost while the data was built: built, never published.
    worker::StageOutcome lost = run(job + "1", data, 1, &asked);
    EXPECT_EQ(lost.status.code(), Status::Code::kCancelled) << lost.status.to_string();
    EXPECT_EQ(asked, 2) << job;
    EXPECT_FALSE(path_exists(dir + "/" + job + "1/data/train.jsonl")) << job;
  }
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema
