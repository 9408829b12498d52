#include "common/text/chat_format.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace lema {
namespace {

// The format's own example (docs/DATASET.md "Chat format"), byte for byte.
const char* kDesignExample =
    "<|system|>\n"
    "You are a precise assistant trained using LEMA.\n"
    "\n"
    "<|user|>\n"
    "What is 2 plus 2?\n"
    "\n"
    "<|assistant|>\n"
    "[LEMA_REPLY]\n"
    "Answer: 4\n"
    "Explanation: 2 + 2 = 4.\n"
    "Confidence: High\n"
    "[/LEMA_REPLY]";

TEST(ChatFormat, RendersTheDesignTemplateByteForByte) {
  EXPECT_EQ(render_chat_example("What is 2 plus 2?", "4", "2 + 2 = 4.", Confidence::kHigh), kDesignExample);
  std::string prompt = render_prompt("What is 2 plus 2?");
  EXPECT_EQ(prompt.substr(prompt.size() - 14), "<|assistant|>\n");
  EXPECT_EQ(prompt + render_reply("4", "2 + 2 = 4.", Confidence::kHigh), kDesignExample);
}

TEST(ChatFormat, ConfidenceNamesRoundTrip) {
  for (Confidence c : {Confidence::kHigh, Confidence::kMedium, Confidence::kLow}) {
    auto r = parse_confidence(confidence_name(c));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, c);
  }
  EXPECT_FALSE(parse_confidence("high").ok());
  EXPECT_FALSE(parse_confidence("").ok());
}

TEST(ChatFormat, MessagesUseTheSameMarkers) {
  std::vector<ChatMessage> m = {{"user", "What is 2 plus 2?"},
                                {"assistant", render_reply("4", "2 + 2 = 4.", Confidence::kHigh)}};
  auto r = render_messages(m);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // Without a system message the default one is added: same bytes as the question schema.
  EXPECT_EQ(r->prompt + r->reply, kDesignExample);

  std::vector<ChatMessage> multi = {{"system", "Be short."}, {"user", "Hi"}, {"assistant", "Hello"},
                                    {"user", "Bye"}, {"assistant", "Goodbye"}};
  auto r2 = render_messages(multi);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->prompt, "<|system|>\nBe short.\n\n<|user|>\nHi\n\n<|assistant|>\nHello\n\n<|user|>\nBye\n\n<|assistant|>\n");
  EXPECT_EQ(r2->reply, "Goodbye");

  EXPECT_FALSE(render_messages({}).ok());
  EXPECT_FALSE(render_messages({{"user", "x"}}).ok());
  EXPECT_FALSE(render_messages({{"robot", "x"}, {"assistant", "y"}}).ok());
}

TEST(ReplyValidator, AcceptsWellFormedReplies) {
  std::string good = render_reply("Paris", "Paris is the capital of France.", Confidence::kMedium);
  for (const std::string& text : {good, good + "\n", good + "  \n\n", "\n" + good, " \n" + good + "\t"}) {
    ReplyCheck c = validate_reply(text);
    ASSERT_TRUE(c.ok()) << reply_error_name(c.error) << ": " << c.detail;
    EXPECT_EQ(c.reply.answer, "Paris");
    EXPECT_EQ(c.reply.explanation, "Paris is the capital of France.");
    EXPECT_EQ(c.reply.confidence, Confidence::kMedium);
  }
  for (Confidence conf : {Confidence::kHigh, Confidence::kMedium, Confidence::kLow})
    EXPECT_TRUE(validate_reply(render_reply("a", "b", conf)).ok());
}

TEST(ReplyValidator, NamesEveryFailure) {
  const std::string O = "[LEMA_REPLY]\n", C = "[/LEMA_REPLY]";
  const std::string A = "Answer: 4\n", E = "Explanation: 2 + 2 = 4.\n", K = "Confidence: High\n";
  std::vector<std::pair<ReplyError, std::string>> cases = {
      {ReplyError::kEmpty, ""},
      {ReplyError::kEmpty, " \n\t"},
      {ReplyError::kMissingOpenTag, A + E + K + C},
      {ReplyError::kMissingOpenTag, "The answer is 4."},
      {ReplyError::kMissingCloseTag, O + A + E + K},
      {ReplyError::kDuplicateTag, O + O + A + E + K + C},
      {ReplyError::kDuplicateTag, O + A + E + K + C + "\n" + O + A + E + K + C},
      {ReplyError::kDuplicateTag, O + A + E + K + C + C},
      {ReplyError::kCloseBeforeOpen, C + "\n" + O + A + E + K},
      {ReplyError::kLeadingContent, "Sure! " + O + A + E + K + C},
      {ReplyError::kTrailingContent, O + A + E + K + C + " Hope this helps."},
      {ReplyError::kTrailingContent, O + A + E + K + C + "</s>"},
      {ReplyError::kMissingAnswer, O + E + K + C},
      {ReplyError::kMissingAnswer, O + C},
      {ReplyError::kMissingExplanation, O + A + K + C},
      {ReplyError::kMissingConfidence, O + A + E + C},
      {ReplyError::kDuplicateField, O + A + A + E + K + C},
      {ReplyError::kDuplicateField, O + A + E + K + K + C},
      {ReplyError::kWrongOrder, O + E + A + K + C},
      {ReplyError::kWrongOrder, O + A + K + E + C},
      {ReplyError::kExtraContent, O + A + E + "It is simple.\n" + K + C},
      {ReplyError::kExtraContent, O + A + "\n" + E + K + C},
      {ReplyError::kExtraContent, "[LEMA_REPLY] hi\n" + A + E + K + C},
      {ReplyError::kExtraContent, O + A + E + K + "done" + C},
      {ReplyError::kExtraContent, O + "Note: x\n" + A + E + K + C},
      {ReplyError::kEmptyAnswer, O + "Answer:\n" + E + K + C},
      {ReplyError::kEmptyAnswer, O + "Answer:   \n" + E + K + C},
      {ReplyError::kEmptyExplanation, O + A + "Explanation: \n" + K + C},
      {ReplyError::kBadConfidence, O + A + E + "Confidence: high\n" + C},
      {ReplyError::kBadConfidence, O + A + E + "Confidence: Very High\n" + C},
      {ReplyError::kBadConfidence, O + A + E + "Confidence:\n" + C},
  };
  std::set<ReplyError> covered;
  for (const auto& [want, text] : cases) {
    ReplyCheck c = validate_reply(text);
    EXPECT_EQ(c.error, want) << "text: " << text << "\ngot " << reply_error_name(c.error) << " (" << c.detail
                             << "), want " << reply_error_name(want);
    EXPECT_FALSE(c.detail.empty());
    covered.insert(want);
  }
  // Every named reason has at least one case above.
  for (ReplyError e : all_reply_errors()) EXPECT_TRUE(covered.count(e)) << reply_error_name(e) << " has no test case";
  // Names are distinct snake_case strings.
  std::set<std::string> names;
  for (ReplyError e : all_reply_errors()) names.insert(reply_error_name(e));
  EXPECT_EQ(names.size(), all_reply_errors().size());
  EXPECT_STREQ(reply_error_name(ReplyError::kMissingOpenTag), "missing_open_tag");
}

TEST(ReplyValidator, NothingCrashesOnOddBytes) {
  std::string junk;
  for (int i = 0; i < 256; ++i) junk += static_cast<char>(i);
  EXPECT_FALSE(validate_reply(junk).ok());
  EXPECT_FALSE(validate_reply("[LEMA_REPLY]").ok());
  EXPECT_FALSE(validate_reply("[/LEMA_REPLY][LEMA_REPLY]").ok());
  EXPECT_FALSE(validate_reply(std::string("[LEMA_REPLY]\n\0\n[/LEMA_REPLY]", 27)).ok());
}

}  // namespace
}  // namespace lema
