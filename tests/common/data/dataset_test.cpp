#include "common/data/dataset.h"

#include <gtest/gtest.h>

#include "common/base/file_util.h"

namespace lema {
namespace {

const char* kGood = R"({"question":"What is 2 plus 2?","answer":"4","explanation":"2 + 2 = 4.","confidence":"High","category":"math"})";

TEST(DatasetImport, ReadsBothSchemas) {
  std::string text = std::string(kGood) + "\n" +
                     R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})" + "\n";
  auto r = import_jsonl_text(text, "t.jsonl", {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->examples.size(), 2u);
  EXPECT_EQ(r->examples[0].question, "What is 2 plus 2?");
  EXPECT_EQ(r->examples[0].confidence, Confidence::kHigh);
  EXPECT_EQ(r->examples[0].category, "math");
  EXPECT_TRUE(r->examples[1].is_chat());
  EXPECT_EQ(example_reply(r->examples[1]), "Hello");
  EXPECT_EQ(example_prompt(r->examples[1]), render_prompt("Hi"));
  EXPECT_EQ(r->lines_total, 2);
  EXPECT_TRUE(r->bad_lines.empty());
}

TEST(DatasetImport, ReportsEveryBadLineWithItsNumberAndReason) {
  // line number -> expected reason; line 1 is good, line 3 blank.
  std::vector<std::pair<std::string, const char*>> lines = {
      {kGood, nullptr},
      {"{not json", "bad_json"},
      {"", nullptr},
      {"[1,2]", "not_object"},
      {R"({"prompt":"x"})", "unknown_schema"},
      {R"({"question":"q","explanation":"e","confidence":"High"})", "missing_field"},
      {R"({"question":"q","answer":3,"explanation":"e","confidence":"High"})", "wrong_type"},
      {R"({"question":"q","answer":"  ","explanation":"e","confidence":"High"})", "empty_field"},
      {R"({"question":"q","answer":"a\nb","explanation":"e","confidence":"High"})", "multiline"},
      {R"({"question":"q","answer":"a","explanation":"e","confidence":"Sure"})", "bad_confidence"},
      {R"({"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"y"}]})", "unknown_role"},
      {R"({"messages":[]})", "bad_messages"},
      {R"({"messages":[{"role":"user","content":"x"}]})", "bad_messages"},
      {R"({"messages":"hi"})", "wrong_type"},
      {R"({"messages":[{"role":"user"},{"role":"assistant","content":"y"}]})", "missing_field"},
      {R"({"question":"q","answer":"a [/LEMA_REPLY]","explanation":"e","confidence":"Low"})", "invalid_reply"},
      {R"({"question":"q","answer":"a","explanation":"e","confidence":"High","category":7})", "wrong_type"},
      {"\xff\xfe{}", "bad_json"},
      {R"({"question":"Q2","answer":"a","explanation":"e","confidence":"Medium"})", nullptr},
  };
  std::string text;
  for (const auto& l : lines) text += l.first + "\n";
  auto r = import_jsonl_text(text, "data.jsonl", {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->examples.size(), 2u);
  EXPECT_EQ(r->lines_blank, 1);
  EXPECT_EQ(r->lines_total, static_cast<int64_t>(lines.size()));
  size_t bi = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].second) continue;
    ASSERT_LT(bi, r->bad_lines.size()) << "line " << i + 1 << " not reported";
    EXPECT_EQ(r->bad_lines[bi].line, static_cast<int64_t>(i + 1));
    EXPECT_STREQ(line_error_name(r->bad_lines[bi].error), lines[i].second) << "line " << i + 1 << ": "
                                                                          << r->bad_lines[bi].detail;
    EXPECT_FALSE(r->bad_lines[bi].detail.empty());
    ++bi;
  }
  EXPECT_EQ(bi, r->bad_lines.size());
  EXPECT_EQ(r->bad_by_reason["wrong_type"], 3);

  auto strict = import_jsonl_text(text, "data.jsonl", ImportOptions{true});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(strict.status().message().find("data.jsonl:2: bad_json"), std::string::npos) << strict.status().message();
  EXPECT_NE(strict.status().message().find("16 bad line"), std::string::npos) << strict.status().message();
}

TEST(DatasetImport, RemovesAndCountsDuplicates) {
  std::string other = R"({"question":"What is 2 plus 2?","answer":"4","explanation":"Two and two.","confidence":"High"})";
  std::string text = std::string(kGood) + "\n" + kGood + "\r\n" + other + "\n" + kGood;  // no final newline
  auto r = import_jsonl_text(text, "d.jsonl", {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->examples.size(), 2u);  // same question, different explanation: kept
  EXPECT_EQ(r->duplicates, 2);
  DatasetStats s = compute_stats(r->examples);
  EXPECT_EQ(s.examples, 2);
  EXPECT_EQ(s.distinct_questions, 1);
}

TEST(DatasetImport, MissingFileIsNotFound) {
  auto r = import_jsonl("/nonexistent/x.jsonl", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
}

TEST(Dataset, JsonRoundTripAndPlainRendering) {
  Example e;
  e.question = "Say \"hi\" \\ please";
  e.answer = "hi";
  e.explanation = "It was asked.";
  e.confidence = Confidence::kLow;
  e.category = "general_knowledge";
  Example back;
  BadLine bad;
  ASSERT_TRUE(parse_example_line(example_to_json(e), &back, &bad)) << bad.detail;
  EXPECT_EQ(example_text(back), example_text(e));
  EXPECT_EQ(back.category, e.category);
  EXPECT_EQ(render_plain(e), "Question: Say \"hi\" \\ please\nAnswer: hi\nExplanation: It was asked.\n");

  Example chat;
  chat.messages = {{"user", "What is 2 plus 2?"}, {"assistant", render_reply("4", "Sum.", Confidence::kHigh)}};
  std::string plain = render_plain(chat);
  EXPECT_EQ(plain, "Question: What is 2 plus 2?\nAnswer: 4\nExplanation: Sum.\n");
  chat.messages[1].content = "[LEMA_REPLY] free text [/LEMA_REPLY]";
  EXPECT_EQ(render_plain(chat).find("LEMA_REPLY"), std::string::npos);
  ASSERT_TRUE(parse_example_line(example_to_json(chat), &back, &bad)) << bad.detail;
  EXPECT_EQ(example_text(back), example_text(chat));
}

}  // namespace
}  // namespace lema
