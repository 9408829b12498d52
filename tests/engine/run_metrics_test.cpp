// RunMetrics: the rewrite on resume keeps one line per step, the accepted
// attempt's; lines carry stage_id and attempt; a superseded attempt appends
// nothing.
#include "engine/run_metrics.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <string>

#include "common/base/file_util.h"

namespace lema::engine {
namespace {

std::string line(int step, int attempt) {
  return nlohmann::json({{"step", step}, {"loss", step * 0.5}, {"attempt", attempt}}).dump() + "\n";
}

class RunMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/lema_run_metrics_test_" + std::to_string(::getpid());
    ASSERT_TRUE(remove_all(dir_).ok());
    ASSERT_TRUE(make_dirs(dir_).ok());
    path_ = dir_ + "/metrics.jsonl";
  }
  void TearDown() override { (void)remove_all(dir_); }
  std::string dir_, path_;
};

TEST_F(RunMetricsTest, AResumeKeepsTheAcceptedAttemptsLinePerStep) {
  // Attempt 1 did 1..4; attempt 2 resumed from 2 and did 3..6 while attempt
  // 1 still wrote (before fencing); attempt 3 ran from step 4 and died
  // without a checkpoint; a kill tore the last line.
  const std::string text = line(1, 1) + line(2, 1) + line(3, 1) + line(3, 2) + line(4, 1) + line(4, 2) +
                           line(5, 2) + line(5, 3) + line(6, 2) + "{\"step\": 7, \"lo";
  ASSERT_TRUE(write_file_atomic(path_, text).ok());
  auto fence = AttemptFence::claim(dir_, "train", 4);
  ASSERT_TRUE(fence.ok());
  // Attempt 4 resumes from step 5, a checkpoint attempt 2 wrote.
  auto m = RunMetrics::open(path_, *fence, 9, 5, 2);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(read_file(path_).value(), line(1, 1) + line(2, 1) + line(3, 2) + line(4, 2) + line(5, 2));
  ASSERT_TRUE(m->append({{"step", 6}, {"loss", 1.0}}).ok());
  const std::string last = read_file(path_).value().substr(read_file(path_).value().rfind('{'));
  const nlohmann::json j = nlohmann::json::parse(last);
  EXPECT_EQ(j["step"], 6);
  EXPECT_EQ(j["attempt"], 4);
  EXPECT_EQ(j["stage_id"], 9);
}

TEST_F(RunMetricsTest, AFreshRunStartsOver) {
  ASSERT_TRUE(write_file_atomic(path_, line(1, 1) + line(2, 1)).ok());
  auto fence = AttemptFence::claim(dir_, "train", 2);
  ASSERT_TRUE(fence.ok());
  ASSERT_TRUE(RunMetrics::open(path_, *fence, 1, 0, 0).ok());
  EXPECT_EQ(read_file(path_).value(), "");
}

TEST_F(RunMetricsTest, ASupersededAttemptAppendsNothing) {
  auto a1 = AttemptFence::claim(dir_, "train", 1);
  ASSERT_TRUE(a1.ok());
  auto m1 = RunMetrics::open(path_, *a1, 1, 0, 0);
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(m1->append({{"step", 1}}).ok());
  ASSERT_TRUE(AttemptFence::claim(dir_, "train", 2).ok());
  const std::string before = read_file(path_).value();
  EXPECT_EQ(m1->append({{"step", 2}}).code(), Status::Code::kCancelled);
  EXPECT_EQ(read_file(path_).value(), before);
}

TEST_F(RunMetricsTest, OutsideAJobLinesCarryNoAttempt) {
  auto m = RunMetrics::open(path_, AttemptFence::unfenced(dir_), 0, 0, 0);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->append({{"step", 1}}).ok());
  EXPECT_EQ(read_file(path_).value(), "{\"step\":1}\n");
}

}  // namespace
}  // namespace lema::engine
