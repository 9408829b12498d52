#include "common/data/dataset_format.h"

#include <gtest/gtest.h>

#include "common/base/file_util.h"
#include "common/data/dataset.h"

namespace lema {
namespace {

Result<ImportResult> import(const std::string& text, DataFormat f = DataFormat::kAuto, bool strict = false) {
  ImportOptions o;
  o.strict = strict;
  o.format = f;
  return import_jsonl_text(text, "my.jsonl", o);
}

TEST(DataFormat, NamesRoundTripAndUnknownIsRefused) {
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kLema, DataFormat::kMessages, DataFormat::kShareGpt,
                       DataFormat::kAlpaca, DataFormat::kPromptCompletion, DataFormat::kText, DataFormat::kTokenized}) {
    auto back = parse_data_format(data_format_name(f));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, f);
  }
  auto bad = parse_data_format("csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'csv'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("sharegpt"), std::string::npos);
}

TEST(DataFormat, MessagesWithSystemKeepEveryTurn) {
  auto r = import(R"({"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi"},)"
                  R"({"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"},)"
                  R"({"role":"assistant","content":"Later"}]})");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, DataFormat::kLema);
  ASSERT_EQ(r->examples.size(), 1u);
  const Example& e = r->examples[0];
  ASSERT_EQ(e.messages.size(), 5u);
  EXPECT_EQ(e.messages[0].role, "system");
  EXPECT_EQ(e.messages[0].content, "Be terse.");
  EXPECT_EQ(example_reply(e), "Later");
  EXPECT_EQ(e.line, 1);
}

TEST(DataFormat, ShareGptSpeakersBecomeRoles) {
  auto r = import(R"({"conversations":[{"from":"system","value":"S"},{"from":"human","value":"Q"},)"
                  R"({"from":"gpt","value":"A"}]})" "\n"
                  R"({"conversations":[{"from":"human","value":"Q2"},{"from":"bot","value":"A2"}]})" "\n"
                  R"({"conversations":[{"from":"human","value":"Q3"}]})" "\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->format, DataFormat::kShareGpt);
  ASSERT_EQ(r->examples.size(), 1u);
  const auto& m = r->examples[0].messages;
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[1].role, "user");
  EXPECT_EQ(m[1].content, "Q");
  EXPECT_EQ(m[2].role, "assistant");
  EXPECT_EQ(m[2].content, "A");
  ASSERT_EQ(r->bad_lines.size(), 2u);
  EXPECT_EQ(r->bad_lines[0].line, 2);
  EXPECT_EQ(r->bad_lines[0].error, LineError::kUnknownRole);
  EXPECT_NE(r->bad_lines[0].detail.find("conversations[1]"), std::string::npos) << r->bad_lines[0].detail;
  EXPECT_NE(r->bad_lines[0].detail.find("\"bot\""), std::string::npos);
  EXPECT_EQ(r->bad_lines[1].error, LineError::kBadMessages);  // ends with the user's turn
}

TEST(DataFormat, AlpacaJoinsInstructionAndInput) {
  auto r = import(R"({"instruction":"Translate.","input":"chat","output":"cat"})" "\n"
                  R"({"instruction":"Name a color.","input":"","output":"Red"})" "\n"
                  R"({"instruction":"Name a shape.","output":"Circle"})" "\n"
                  R"({"instruction":"X","input":5,"output":"Y"})" "\n"
                  R"({"instruction":"X","input":""})" "\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->format, DataFormat::kAlpaca);
  ASSERT_EQ(r->examples.size(), 3u);
  EXPECT_EQ(r->examples[0].messages[0].content, "Translate.\n\nchat");
  EXPECT_EQ(r->examples[0].messages[1].content, "cat");
  EXPECT_EQ(r->examples[1].messages[0].content, "Name a color.");
  EXPECT_EQ(r->examples[2].messages[0].content, "Name a shape.");
  ASSERT_EQ(r->bad_lines.size(), 2u);
  EXPECT_EQ(r->bad_lines[0].error, LineError::kWrongType);
  EXPECT_NE(r->bad_lines[0].detail.find("\"input\""), std::string::npos);
  EXPECT_EQ(r->bad_lines[1].error, LineError::kMissingField);
  EXPECT_NE(r->bad_lines[1].detail.find("\"output\""), std::string::npos);
}

TEST(DataFormat, PromptCompletionAndTextAreRaw) {
  auto pc = import(R"({"prompt":"2+2=","completion":" 4"})" "\n" R"({"prompt":"3+3="})" "\n");
  ASSERT_TRUE(pc.ok());
  EXPECT_EQ(pc->format, DataFormat::kPromptCompletion);
  ASSERT_EQ(pc->examples.size(), 1u);
  EXPECT_TRUE(pc->examples[0].is_raw());
  EXPECT_EQ(example_prompt(pc->examples[0]), "2+2=");
  EXPECT_EQ(example_reply(pc->examples[0]), " 4");
  ASSERT_EQ(pc->bad_lines.size(), 1u);
  EXPECT_NE(pc->bad_lines[0].detail.find("\"completion\""), std::string::npos);

  auto tx = import(R"({"text":"Once upon a time."})" "\n" R"({"text":7})" "\n");
  ASSERT_TRUE(tx.ok());
  EXPECT_EQ(tx->format, DataFormat::kText);
  ASSERT_EQ(tx->examples.size(), 1u);
  EXPECT_EQ(example_prompt(tx->examples[0]), "");
  EXPECT_EQ(example_reply(tx->examples[0]), "Once upon a time.");
  EXPECT_EQ(tx->bad_by_reason.at("wrong_type"), 1);
}

TEST(DataFormat, RawExamplesRoundTripThroughTheWrittenJsonl) {
  auto tx = import(R"({"text":"a b"})" "\n" R"({"text":"c d"})" "\n");
  auto pc = import(R"({"prompt":"p","completion":"c","category":"k"})" "\n");
  ASSERT_TRUE(tx.ok() && pc.ok());
  for (const auto* r : {&tx.value(), &pc.value()}) {
    auto back = import(examples_to_jsonl(r->examples), DataFormat::kAuto, /*strict=*/true);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(back->format, r->format);
    ASSERT_EQ(back->examples.size(), r->examples.size());
    for (size_t i = 0; i < r->examples.size(); ++i) EXPECT_EQ(example_to_json(back->examples[i]), example_to_json(r->examples[i]));
  }
}

TEST(DataFormat, TheOverrideParsesEveryLineAsThatFormat) {
  const std::string text = R"({"text":"plain","prompt":"p","completion":"c"})" "\n";
  auto detected = import(text);
  ASSERT_TRUE(detected.ok());
  EXPECT_EQ(detected->format, DataFormat::kPromptCompletion);
  auto forced = import(text, DataFormat::kText);
  ASSERT_TRUE(forced.ok());
  ASSERT_EQ(forced->examples.size(), 1u);
  EXPECT_EQ(example_reply(forced->examples[0]), "plain");
  // A line of another shape names the key its format needs.
  auto wrong = import(R"({"instruction":"i","output":"o"})" "\n", DataFormat::kMessages, /*strict=*/true);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("my.jsonl:1: unknown_schema: no \"messages\" in a messages record"),
            std::string::npos)
      << wrong.status().message();
}

TEST(DataFormat, JsonArrayFilesNameTheElement) {
  const std::string text = "  [\n" R"({"instruction":"A","output":"B"},)" "\n" R"({"instruction":"C"},)"
                           R"({"instruction":"D","output":"E"}])" "\n";
  auto r = import(text);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->json_array);
  EXPECT_EQ(r->format, DataFormat::kAlpaca);
  EXPECT_EQ(r->examples.size(), 2u);
  EXPECT_EQ(r->lines_total, 3);
  ASSERT_EQ(r->bad_lines.size(), 1u);
  EXPECT_EQ(bad_line_where("my.json", r->bad_lines[0]), "my.json: element 2");
  auto strict = import(text, DataFormat::kAuto, true);
  ASSERT_FALSE(strict.ok());
  EXPECT_NE(strict.status().message().find("my.jsonl: element 2: missing_field: missing \"output\""), std::string::npos)
      << strict.status().message();
  auto broken = import("[{\"text\":\"a\"},", DataFormat::kAuto);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("my.jsonl: starts with '['"), std::string::npos);
}

TEST(DataFormat, PretokenizedFilesAreLeftToTheEngine) {
  auto r = import(R"({"input_ids":[1,2,3]})" "\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("my.jsonl: pre-tokenized"), std::string::npos);
}

TEST(DataFormat, DetectionLooksPastBadFirstLines) {
  auto r = import("{oops\n" R"({"text":"t"})" "\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->format, DataFormat::kText);
  EXPECT_EQ(r->examples.size(), 1u);
  EXPECT_EQ(r->bad_by_reason.at("bad_json"), 1);
}

}  // namespace
}  // namespace lema
