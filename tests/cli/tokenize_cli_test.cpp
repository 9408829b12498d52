// `lema tokenize` end to end: a tokenizer written by lema's own converter
// path is not needed here; a small byte-level tokenizer.json is enough to
// check the JSONL contract (one output line per input line, errors naming
// FILE:LINE, --decode of strings and id arrays) against the library.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"

#include "tests/integration/lema_processes.h"

namespace {

using CliRun = lema::test::RunResult;
CliRun run(const std::string& args) { return lema::test::run_lema_shell(args); }

const char kJson[] = R"({"added_tokens":[{"id":7,"content":"<|end|>","special":true}],
  "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
  "decoder":{"type":"ByteLevel"},
  "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|end|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
    "special_tokens":{"<|end|>":{"id":"<|end|>","ids":[7],"tokens":["<|end|>"]}}},
  "model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5,"Ġ":6},"merges":["a b","ab c"]}})";

TEST(TokenizeCli, JsonlMatchesLibraryAndNamesBadLines) {
  char tmpl[] = "/tmp/lema_tok_cli_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(lema::write_file_atomic(dir + "/tokenizer.json", kJson).ok());
  auto tok = lema::Tokenizer::load(dir);
  ASSERT_TRUE(tok.ok());
  ASSERT_TRUE(lema::write_file_atomic(dir + "/in.jsonl", "\"abc ab\"\n\"c<|end|>a\"\n").ok());
  auto expect_ids = [&](const std::string& s, bool special) {
    std::string line = "[";
    auto ids = tok.value()->encode(s, special);
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? "," : "") + std::to_string(ids[i]);
    return line + "]";
  };
  CliRun r = run("tokenize --tokenizer " + dir + " --jsonl " + dir + "/in.jsonl --special");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, expect_ids("abc ab", true) + "\n" + expect_ids("c<|end|>a", true) + "\n");
  r = run("tokenize --tokenizer " + dir + "/tokenizer.json --text 'abc ab'");
  EXPECT_EQ(r.output, expect_ids("abc ab", false) + "\n");
  ASSERT_TRUE(lema::write_file_atomic(dir + "/ids.jsonl", "[5,6,3]\n\"ab\"\n").ok());
  r = run("tokenize --tokenizer " + dir + " --jsonl " + dir + "/ids.jsonl --decode");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "\"abc ab\"\n\"ab\"\n");
  ASSERT_TRUE(lema::write_file_atomic(dir + "/bad.jsonl", "\"ok\"\n{oops\n").ok());
  r = run("tokenize --tokenizer " + dir + " --jsonl " + dir + "/bad.jsonl");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  ASSERT_TRUE(lema::write_file_atomic(dir + "/range.jsonl", "[1,99]\n").ok());
  r = run("tokenize --tokenizer " + dir + " --jsonl " + dir + "/range.jsonl --decode");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("range.jsonl:1"), std::string::npos) << r.output;
  (void)lema::remove_all(dir);
}

}  // namespace

namespace {

TEST(TokenizerTrainCli, WritesModelJsonAndConfigThatAgree) {
  const std::string exe = lema::path_join(lema::path_dirname(LEMA_BINARY), "../tools/spm_train/lema-spm-train");
  if (!lema::path_exists(exe) && getenv("LEMA_SPM_TRAIN") == nullptr) GTEST_SKIP() << "lema-spm-train not built";
  char tmpl[] = "/tmp/lema_tok_train_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::string corpus;
  const char* words[] = {"alpha", "beta", "gamma", "delta", "lema", "streams", "layers", "through", "the", "GPU"};
  for (int i = 0; i < 3000; ++i) corpus += std::string(words[i % 10]) + " " + words[(i * 7) % 10] + " " + std::to_string(i) + ".\n";
  ASSERT_TRUE(lema::write_file_atomic(dir + "/corpus.txt", corpus).ok());
  CliRun r = run("tokenizer train --corpus " + dir + "/corpus.txt --vocab 300 --out " + dir + "/tok");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto model = lema::Tokenizer::load(dir + "/tok/tokenizer.model");
  auto json = lema::Tokenizer::load(dir + "/tok/tokenizer.json");
  auto from_dir = lema::Tokenizer::load(dir + "/tok");
  ASSERT_TRUE(model.ok() && json.ok() && from_dir.ok());
  EXPECT_EQ(model.value()->vocab_size(), 300);
  for (const char* s : {"alpha beta 12.", "  the GPU\tstreams\n", "unseen ünïcode 東京 🚀"}) {
    EXPECT_EQ(model.value()->encode(s, true), json.value()->encode(s, true)) << s;
    EXPECT_EQ(model.value()->decode(model.value()->encode(s, false), true), s);
  }
  r = run("tokenizer train --corpus " + dir + "/corpus.txt --vocab 100000 --out " + dir + "/tok2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Vocabulary size"), std::string::npos) << r.output;
  (void)lema::remove_all(dir);
}

}  // namespace
