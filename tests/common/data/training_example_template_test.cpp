// tokenize_dataset through a chat template: the labels are the assistant
// turns' content and end of turn, found on a real tokenizer.json.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>

#include "common/base/file_util.h"
#include "common/data/training_example.h"
#include "common/text/chat_template.h"
#include "tests/byte_tokenizer.h"

namespace lema {
namespace {

// ChatML, as Qwen writes it, with the system turn written only when given.
const char* kChatMl =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

class TokenizerDir {
 public:
  TokenizerDir() {
    char tmpl[] = "/tmp/lema_tokenize_dataset_XXXXXX";
    path_ = ::mkdtemp(tmpl);
    test::write_byte_tokenizer(path_);
  }
  ~TokenizerDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The trained ids of each example, decoded run by run.
std::vector<std::string> trained_runs(const Tokenizer& tok, const TokenizedExample& t) {
  std::vector<std::string> runs;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= t.labels.size(); ++i) {
    if (i < t.labels.size() && t.labels[i] != kIgnoreLabel) {
      EXPECT_EQ(t.labels[i], t.input_ids[i]);
      run.push_back(t.labels[i]);
    } else if (!run.empty()) {
      runs.push_back(tok.decode(run, false));
      run.clear();
    }
  }
  return runs;
}

Example chat(std::vector<ChatMessage> m, int64_t line) {
  Example e;
  e.messages = std::move(m);
  e.line = line;
  return e;
}

TEST(TokenizeDataset, EveryAssistantTurnAndItsEndOfTurnCarryTheLoss) {
  TokenizerDir dir;
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  auto tmpl = ChatTemplate::from_source(kChatMl, "chatml", nlohmann::ordered_json::object());
  ASSERT_TRUE(tmpl.ok());
  Example q;
  q.question = "What is 2+2?";
  q.answer = "4";
  q.explanation = "Sum.";
  Example raw;
  raw.raw = true;
  raw.raw_completion = "Plain text.";
  std::vector<Example> examples = {
      chat({{"system", "Be terse."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}, {"assistant", "Later"}}, 1),
      q, raw};
  TokenizeStats stats;
  auto r = tokenize_dataset(**tok, &*tmpl, examples, 4096, &stats);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  // The ids are the template's text as transformers tokenizes it: no BOS added.
  auto text = tmpl->render(example_template_messages(examples[0]), ChatRenderOptions{});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ((*r)[0].input_ids, (*tok)->encode(*text, false));
  EXPECT_EQ(trained_runs(**tok, (*r)[0]), (std::vector<std::string>{"Hello<|im_end|>\n", "Later<|im_end|>\n"}));
  EXPECT_EQ(trained_runs(**tok, (*r)[1]),
            (std::vector<std::string>{render_reply("4", "Sum.", Confidence::kHigh) + "<|im_end|>\n"}));
  // Raw text never goes through the template: BOS, then every token and EOS trained.
  EXPECT_EQ((*r)[2].input_ids.front(), (*tok)->bos_id());
  EXPECT_EQ(trained_runs(**tok, (*r)[2]), (std::vector<std::string>{"Plain text.</s>"}));
  EXPECT_EQ(stats.examples, 3);
  EXPECT_EQ(stats.last_turn_only, 0);
}

TEST(TokenizeDataset, WithoutATemplateLemasFormatIsKept) {
  TokenizerDir dir;
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.ok());
  std::vector<Example> examples = {chat({{"user", "Hi"}, {"assistant", "Hello"}}, 1)};
  auto r = tokenize_dataset(**tok, nullptr, examples, 4096, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].input_ids, tokenize_example(**tok, examples[0], 4096).input_ids);
}

TEST(TokenizeDataset, HistoryRewritingTemplatesTrainTheLastTurnAndSaySo) {
  TokenizerDir dir;
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.ok());
  // Earlier assistant turns are shortened, as Qwen3 drops their reasoning.
  auto tmpl = ChatTemplate::from_source(
      "{% for m in messages %}{% if m.role == 'assistant' %}>{% endif %}{% if m.role == 'assistant' and not loop.last %}"
      "[A]{% else %}{{ m.content }}{% endif %}|{% endfor %}{% if add_generation_prompt %}>{% endif %}",
      "rewrites", nlohmann::ordered_json::object());
  ASSERT_TRUE(tmpl.ok());
  std::vector<Example> examples = {chat({{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}}, 4)};
  TokenizeStats stats;
  auto r = tokenize_dataset(**tok, &*tmpl, examples, 4096, &stats);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(stats.last_turn_only, 1);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(trained_runs(**tok, (*r)[0]), (std::vector<std::string>{"d|"}));
}

TEST(TokenizeDataset, ATemplateErrorNamesTheLine) {
  TokenizerDir dir;
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.ok());
  auto tmpl = ChatTemplate::from_source(
      "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
      "{% endif %}{{ m.content }}{% endfor %}",
      "nosystem", nlohmann::ordered_json::object());
  ASSERT_TRUE(tmpl.ok());
  std::vector<Example> examples = {chat({{"user", "a"}, {"assistant", "b"}}, 1),
                                   chat({{"system", "s"}, {"user", "a"}, {"assistant", "b"}}, 7)};
  auto r = tokenize_dataset(**tok, &*tmpl, examples, 4096, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 7"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("System role not supported"), std::string::npos) << r.status().message();
}

TEST(TokenizeDataset, FindsTheTemplateOfADirectoryOrNone) {
  TokenizerDir dir;
  auto none = ChatTemplate::find(dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(write_file_atomic(path_join(dir.path(), "chat_template.jinja"), kChatMl).ok());
  auto some = ChatTemplate::find(path_join(dir.path(), "tokenizer.json"));
  ASSERT_TRUE(some.ok()) << some.status().to_string();
  EXPECT_TRUE(some->has_value());
  ASSERT_TRUE(write_file_atomic(path_join(dir.path(), "chat_template.jinja"), "{% if %}").ok());
  EXPECT_FALSE(ChatTemplate::find(dir.path()).ok());
}

}  // namespace
}  // namespace lema
