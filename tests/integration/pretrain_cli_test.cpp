// `lema model pretrain` through the real binary: a base that learned the
// plain text (loss falls) and never saw the reply format, written as a model
// directory with its tokenizer; running it again resumes instead of
// starting over; bad input names the file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"

#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

std::vector<double> metric_losses(const std::string& path) {
  std::vector<double> out;
  const std::string text = slurp(path);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(nlohmann::json::parse(text.substr(start, end - start))["loss"].get<double>());
    start = end + 1;
  }
  return out;
}

TEST(PretrainCli, MakesABaseThatKnowsThePlainTextOnly) {
  const std::string dir = make_temp_dir("pretrain");
  RunResult r = run_lema_shell("dataset build --builder lema-reply --examples 400 --seed 3 --out " + dir + "/data");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string args = "model pretrain --preset tiny --vocab 400 --steps 12 --batch 8 --seq-len 96 --lr 3e-3 "
                           "--checkpoint-every 6 --threads 1 --quiet --data " + dir + "/data/train.jsonl --out " +
                           dir + "/base";
  r = run_lema_shell(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json"}) {
    EXPECT_TRUE(path_exists(dir + "/base/" + f)) << f;
  }
  const auto cfg = nlohmann::json::parse(slurp(dir + "/base/config.json"));
  EXPECT_EQ(cfg["vocab_size"], 400);
  EXPECT_EQ(run_lema_shell("inspect " + dir + "/base").exit_code, 0);

  // The base learned from plain text that never holds the reply tags.
  const std::string corpus = slurp(dir + "/base/pretrain/corpus.txt");
  EXPECT_NE(corpus.find("Answer: "), std::string::npos);
  EXPECT_EQ(corpus.find("[LEMA_REPLY]"), std::string::npos);
  const auto losses = metric_losses(dir + "/base/pretrain/run/metrics.jsonl");
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(losses.back(), losses.front() - 0.5);

  // The same command again resumes from the last checkpoint and rewrites
  // the same weights.
  const std::string weights = slurp(dir + "/base/model.safetensors");
  r = run_lema_shell(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_TRUE(slurp(dir + "/base/model.safetensors") == weights);

  r = run_lema_shell("model pretrain --preset tiny --data " + dir + "/missing.jsonl --out " + dir + "/x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir + "/missing.jsonl"), std::string::npos) << r.output;
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema::test
