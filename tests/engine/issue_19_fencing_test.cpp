// Issue 19, fencing on disk: a stale attempt of a train stage (one the
// scheduler gave up on: SIGSTOPped past its lease, then continued) writes
// nothing into the job's run directory once a newer attempt has claimed it,
// and a resume keeps only the accepted attempts' metrics lines.
//
// The attempts are direct calls of run_training with the options the
// worker's train stage passes (attempt, stage_id, resume), on a tiny random
// model and pre-tokenized data.
#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/attempt_publish.h"
#include "common/base/file_util.h"
#include "common/formats/model_presets.h"
#include "engine/trainer.h"

namespace lema::engine {
namespace {

class Issue19Fencing : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/lema_issue19_fencing_" + std::to_string(::getpid());
    ASSERT_TRUE(remove_all(dir_).ok());
    ASSERT_TRUE(make_dirs(dir_).ok());
    Result<ModelConfig> c = model_preset("tiny");
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(write_random_hf_model(c.value(), dir_ + "/model", 7).ok());
    std::string text;
    for (int i = 0; i < 16; ++i) {
      std::vector<int> ids;
      for (int t = 0; t < 12; ++t) ids.push_back(3 + (i * 7 + t * 5) % 200);
      text += nlohmann::json({{"input_ids", ids}}).dump() + "\n";
    }
    ASSERT_TRUE(write_file_atomic(dir_ + "/train.jsonl", text).ok());
  }
  void TearDown() override { (void)remove_all(dir_); }

  TrainOptions options(int64_t attempt, const std::string& resume, int64_t stop_after) const {
    TrainOptions o;
    o.model = dir_ + "/model";
    o.data = dir_ + "/train.jsonl";
    o.out = out();
    o.steps = 10;
    o.batch = 2;
    o.seq_len = 16;
    o.lora_r = 4;
    o.checkpoint_every = 4;
    o.stop_after = stop_after;
    o.threads = 1;
    o.quiet = true;
    o.attempt = attempt;
    o.stage_id = 42;
    o.resume = resume;
    return o;
  }
  std::string out() const { return dir_ + "/train"; }
  std::string checkpoint(int step) const { return out() + "/checkpoints/step-" + std::to_string(step); }

  // step -> attempts of its lines, in file order.
  std::map<int64_t, std::vector<int64_t>> metrics() const {
    std::map<int64_t, std::vector<int64_t>> by_step;
    Result<std::string> text = read_file(out() + "/metrics.jsonl");
    EXPECT_TRUE(text.ok());
    EXPECT_TRUE(for_each_line(text.value(), "metrics.jsonl", [&](int64_t, std::string_view line) {
                  const nlohmann::json j = nlohmann::json::parse(line);
                  EXPECT_EQ(j.value("stage_id", 0), 42);
                  by_step[j.at("step").get<int64_t>()].push_back(j.value("attempt", 0));
                  return Status();
                }).ok());
    return by_step;
  }

  std::string dir_;
};

TEST_F(Issue19Fencing, AStaleAttemptCannotWriteAndItsLinesGoOnResume) {
  // Attempt 1 trains steps 1..6 (checkpoints 4 and 6), then is lost; the
  // scheduler recorded step-4 only (the CHECKPOINT of step 6 never arrived).
  ASSERT_TRUE(run_training(options(1, "", 6)).ok());
  EXPECT_EQ(published_attempt(checkpoint(6)).value(), 1);
  // Attempt 2 resumes from step-4: attempt 1's lines of steps 5 and 6 go,
  // steps 1..4 (the checkpoint's own attempt) stay; it trains 5..8.
  Status a2 = run_training(options(2, checkpoint(4), 8));
  ASSERT_TRUE(a2.ok()) << a2.message();
  std::map<int64_t, std::vector<int64_t>> m = metrics();
  ASSERT_EQ(m.size(), 8u);
  for (int64_t step = 1; step <= 8; ++step) {
    EXPECT_EQ(m[step], std::vector<int64_t>({step <= 4 ? 1 : 2})) << "step " << step;
  }
  EXPECT_EQ(published_attempt(checkpoint(8)).value(), 2);

  // Attempt 1 continues (SIGCONT) from its step-6: every write refused.
  const std::string metrics_before = read_file(out() + "/metrics.jsonl").value();
  const std::string ckpt8_before = read_file(checkpoint(8) + "/adapter_model.safetensors").value();
  Status stale = run_training(options(1, checkpoint(6), 0));
  EXPECT_EQ(stale.code(), Status::Code::kCancelled) << stale.message();
  EXPECT_EQ(read_file(out() + "/metrics.jsonl").value(), metrics_before);
  EXPECT_EQ(read_file(checkpoint(8) + "/adapter_model.safetensors").value(), ckpt8_before);
  EXPECT_EQ(published_attempt(checkpoint(8)).value(), 2);
  EXPECT_FALSE(path_exists(checkpoint(10)));
  EXPECT_FALSE(path_exists(out() + "/adapter"));

  // Attempt 3 finishes from step-8: steps 1..10 once each, the adapter its.
  ASSERT_TRUE(run_training(options(3, checkpoint(8), 0)).ok());
  m = metrics();
  ASSERT_EQ(m.size(), 10u);
  for (int64_t step = 1; step <= 10; ++step) {
    EXPECT_EQ(m[step], std::vector<int64_t>({step <= 4 ? 1 : step <= 8 ? 2 : 3})) << "step " << step;
  }
  EXPECT_EQ(published_attempt(out() + "/adapter").value(), 3);
  // Nothing but published names: no temp directory of any attempt is left.
  DIR* d = opendir((out() + "/checkpoints").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) {
    EXPECT_EQ(std::string(e->d_name).find(".tmp."), std::string::npos) << e->d_name;
  }
  closedir(d);
}

}  // namespace
}  // namespace lema::engine
