// `lema eval` end to end with the real binary: a tiny random model (`lema
// model init`) with a byte-level tokenizer, an adapter from a short `lema
// train`, and LEMA_REPLY eval data: report.json and report.md hold the base
// and the tuned column, the summary is printed, the loss curve is drawn;
// bad input (a bad eval line, no tokenizer, an adapter of another shape)
// fails with a message naming the culprit.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "common/base/file_util.h"
#include "tests/integration/lema_processes.h"

namespace lema {
namespace {

using test::RunResult;
RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }


std::string qa_jsonl(int n, int offset) {
  const char* categories[] = {"math", "arithmetic", "math"};
  std::string text;
  for (int i = offset; i < offset + n; ++i) {
    text += nlohmann::json{{"question", "What is " + std::to_string(i) + " plus 2?"},
                           {"answer", std::to_string(i + 2)},
                           {"explanation", "Two more than " + std::to_string(i) + "."},
                           {"confidence", "High"},
                           {"category", categories[i % 3]}}
                .dump() +
            "\n";
  }
  return text;
}

class EvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("eval_cli");
    RunResult init = run_lema("model init --preset tiny --out " + dir_ + "/model");
    ASSERT_EQ(init.exit_code, 0) << init.output;
    test::write_byte_tokenizer(dir_ + "/model");
    ASSERT_TRUE(write_file_atomic(dir_ + "/train.jsonl", qa_jsonl(8, 0)).ok());
    ASSERT_TRUE(write_file_atomic(dir_ + "/eval.jsonl", qa_jsonl(5, 20)).ok());
  }
  void TearDown() override { (void)remove_all(dir_); }

  // A LoRA adapter that moved: a few steps at a high learning rate.
  void train_adapter() {
    RunResult r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/train.jsonl --out " + dir_ +
                           "/run --steps 3 --batch 2 --seq-len 256 --lora-r 2 --lr 1e-2 --threads 1 --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string eval_args(const std::string& data) const {
    return "eval --model " + dir_ + "/model --data " + data + " --out " + dir_ +
           "/report --questions 3 --max-new-tokens 12 --threads 1";
  }
  std::string dir_;
};

TEST_F(EvalCli, WritesBaseAndTunedSideBySide) {
  train_adapter();
  RunResult r = run_lema(eval_args(dir_ + "/eval.jsonl") + " --adapter " + dir_ + "/run/adapter --metrics " +
                         dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The summary table is printed.
  EXPECT_NE(r.output.find("| | base | tuned |"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("| format adherence |"), std::string::npos) << r.output;

  auto json_text = read_file(dir_ + "/report/report.json");
  ASSERT_TRUE(json_text.ok());
  const nlohmann::json j = nlohmann::json::parse(*json_text);
  ASSERT_EQ(j["models"].size(), 2u);
  const auto& base = j["models"][0];
  const auto& tuned = j["models"][1];
  EXPECT_EQ(base["name"], "base");
  EXPECT_EQ(tuned["name"], "tuned");
  EXPECT_EQ(tuned["adapter"], dir_ + "/run/adapter");
  EXPECT_EQ(j["data"], dir_ + "/eval.jsonl");
  for (const auto& m : {base, tuned}) {
    const double loss = m["eval_loss"].get<double>();
    EXPECT_TRUE(std::isfinite(loss) && loss > 0) << m.dump();
    EXPECT_NEAR(m["perplexity"].get<double>(), std::exp(loss), 1e-9 * std::exp(loss));
    EXPECT_EQ(m["total"], 3);
    EXPECT_EQ(m["samples"].size(), 3u);
    int64_t failures = 0, by_category = 0;
    for (const auto& [reason, n] : m["failures_by_reason"].items()) failures += n.get<int64_t>();
    for (const auto& [cat, s] : m["by_category"].items()) by_category += s["total"].get<int64_t>();
    EXPECT_EQ(failures + m["valid"].get<int64_t>(), 3);
    EXPECT_EQ(by_category, 3);
    // The first three eval rows: 20 (math), 21 (arithmetic), 22 (math).
    EXPECT_EQ(m["by_category"]["math"]["total"], 2);
    EXPECT_EQ(m["samples"][1]["question"], "What is 21 plus 2?");
  }
  // Every reply and EOS of the 5 rows counts; the adapter moved the loss.
  EXPECT_EQ(base["eval_tokens"], tuned["eval_tokens"]);
  EXPECT_GT(base["eval_tokens"].get<int64_t>(), 5 * 60);
  EXPECT_NE(base["eval_loss"].get<double>(), tuned["eval_loss"].get<double>());
  EXPECT_EQ(j["loss_curve"], "loss_curve.svg");

  auto md = read_file(dir_ + "/report/report.md");
  ASSERT_TRUE(md.ok());
  EXPECT_NE(md->find("| | base | tuned |"), std::string::npos) << *md;
  EXPECT_NE(md->find("## Sample outputs"), std::string::npos);
  EXPECT_NE(md->find("![training loss](loss_curve.svg)"), std::string::npos);
  auto svg = read_file(dir_ + "/report/loss_curve.svg");
  ASSERT_TRUE(svg.ok());
  EXPECT_NE(svg->find("<polyline"), std::string::npos);
}

TEST_F(EvalCli, BaseOnlyHasOneColumn) {
  RunResult r = run_lema(eval_args(dir_ + "/eval.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(*read_file(dir_ + "/report/report.json"));
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["name"], "base");
  EXPECT_NE(r.output.find("| | base |\n"), std::string::npos) << r.output;
  EXPECT_FALSE(path_exists(dir_ + "/report/loss_curve.svg"));
}

TEST_F(EvalCli, BadEvalLineIsNamed) {
  ASSERT_TRUE(write_file_atomic(dir_ + "/bad.jsonl", qa_jsonl(2, 0) + "{\"question\": \"q\"}\n").ok());
  RunResult r = run_lema(eval_args(dir_ + "/bad.jsonl"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bad.jsonl:3"), std::string::npos) << r.output;
  EXPECT_FALSE(path_exists(dir_ + "/report/report.json"));

  r = run_lema(eval_args(dir_ + "/nope.jsonl"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("nope.jsonl"), std::string::npos) << r.output;
}

TEST_F(EvalCli, NoTokenizerAndForeignAdapterAreRefused) {
  RunResult init = run_lema("model init --preset small --out " + dir_ + "/small");
  ASSERT_EQ(init.exit_code, 0) << init.output;
  RunResult r =
      run_lema("eval --model " + dir_ + "/small --data " + dir_ + "/eval.jsonl --out " + dir_ + "/r2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no tokenizer for model"), std::string::npos) << r.output;

  train_adapter();  // for the tiny model: hidden 64, the small one has 256
  r = run_lema("eval --model " + dir_ + "/small --tokenizer " + dir_ + "/model --adapter " + dir_ +
               "/run/adapter --data " + dir_ + "/eval.jsonl --out " + dir_ + "/r2 --threads 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("adapter " + dir_ + "/run/adapter"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lora_A"), std::string::npos) << r.output;
  EXPECT_FALSE(path_exists(dir_ + "/r2/report.json"));
}

}  // namespace
}  // namespace lema
