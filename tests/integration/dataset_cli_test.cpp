// `lema dataset build` end to end through the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "common/base/file_util.h"

#include "tests/integration/lema_processes.h"

namespace lema {
namespace {

test::RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }
using CliRun = test::RunResult;

class DatasetCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lema_dataset_cli_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { (void)remove_all(dir_); }
  std::string dir_;
};

TEST_F(DatasetCli, BuildsTheLemaReplySetDeterministically) {
  std::string a = path_join(dir_, "a"), b = path_join(dir_, "b"), c = path_join(dir_, "c");
  CliRun r = run_lema("dataset build --builder lema-reply --examples 5000 --seed 42 --out " + a);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote"), std::string::npos);
  auto stats_text = read_file(path_join(a, "stats.json"));
  ASSERT_TRUE(stats_text.ok());
  auto stats = nlohmann::json::parse(*stats_text);
  EXPECT_EQ(stats["all"]["examples"], 5000);
  EXPECT_GE(stats["all"]["distinct_questions"].get<int>(), 3000);
  EXPECT_EQ(stats["eval_questions_in_train"], 0);
  for (const char* conf : {"High", "Medium", "Low"}) EXPECT_GT(stats["all"]["by_confidence"][conf].get<int>(), 0) << conf;
  EXPECT_EQ(stats["all"]["by_category"].size(), 8u);

  // Lines in the files match the stats and parse back.
  auto train = read_file(path_join(a, "train.jsonl"));
  auto eval = read_file(path_join(a, "eval.jsonl"));
  ASSERT_TRUE(train.ok() && eval.ok());
  size_t n_train = std::count(train->begin(), train->end(), '\n');
  size_t n_eval = std::count(eval->begin(), eval->end(), '\n');
  EXPECT_EQ(n_train + n_eval, 5000u);
  EXPECT_EQ(static_cast<int>(n_eval), stats["eval"]["examples"].get<int>());

  ASSERT_EQ(run_lema("dataset build --builder lema-reply --examples 5000 --seed 42 --out " + b).exit_code, 0);
  EXPECT_EQ(*read_file(path_join(b, "train.jsonl")), *train);
  EXPECT_EQ(*read_file(path_join(b, "eval.jsonl")), *eval);
  ASSERT_EQ(run_lema("dataset build --builder lema-reply --examples 5000 --seed 7 --out " + c).exit_code, 0);
  EXPECT_NE(*read_file(path_join(c, "train.jsonl")), *train);
}

TEST_F(DatasetCli, ImportsUserJsonlReportingBadLines) {
  std::string in = path_join(dir_, "in.jsonl");
  std::string text;
  for (int i = 0; i < 30; ++i)
    text += R"({"question":"Q)" + std::to_string(i) + R"(?","answer":"A","explanation":"E.","confidence":"Low"})" + "\n";
  text += "{oops\n";                                                                             // line 31
  text += R"({"question":"Q0?","answer":"A","explanation":"E.","confidence":"Low"})" "\n";      // 32: duplicate
  text += R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})" "\n";
  text += R"({"question":"Qx","answer":"A","explanation":"E.","confidence":"Certain"})" "\n";   // 34
  ASSERT_TRUE(write_file_atomic(in, text).ok());

  std::string out = path_join(dir_, "imp");
  CliRun r = run_lema("dataset build --jsonl " + in + " --eval-fraction 0.2 --seed 1 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("in.jsonl:31: bad_json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("in.jsonl:34: bad_confidence"), std::string::npos) << r.output;
  auto stats = nlohmann::json::parse(*read_file(path_join(out, "stats.json")));
  EXPECT_EQ(stats["import"]["bad_lines"], 2);
  EXPECT_EQ(stats["import"]["duplicates_removed"], 1);
  EXPECT_EQ(stats["import"]["bad"][0]["line"], 31);
  EXPECT_EQ(stats["all"]["examples"], 31);
  EXPECT_EQ(stats["all"]["chat_examples"], 1);
  EXPECT_EQ(stats["eval_questions_in_train"], 0);

  CliRun strict = run_lema("dataset build --jsonl " + in + " --strict --out " + path_join(dir_, "strict"));
  EXPECT_EQ(strict.exit_code, 2) << strict.output;
  EXPECT_NE(strict.output.find("in.jsonl:31"), std::string::npos) << strict.output;
  EXPECT_FALSE(path_exists(path_join(dir_, "strict/train.jsonl")));
}

TEST_F(DatasetCli, RejectsBadUsage) {
  EXPECT_EQ(run_lema("dataset build --builder nope --out " + dir_).exit_code, 2);
  EXPECT_EQ(run_lema("dataset build --out " + dir_).exit_code, 2);
  EXPECT_EQ(run_lema("dataset build --jsonl /nonexistent.jsonl --out " + dir_).exit_code, 3);
}

}  // namespace
}  // namespace lema
