// The LEMA chat format (docs/DATASET.md "Chat format"), byte for byte, and the strict
// validator of the [LEMA_REPLY] block.
//
//   <|system|>\nYou are a precise assistant trained using LEMA.\n\n
//   <|user|>\n{Question}\n\n
//   <|assistant|>\n                                  <- end of the prompt part
//   [LEMA_REPLY]\nAnswer: {A}\nExplanation: {E}\nConfidence: {C}\n[/LEMA_REPLY]
//
// The reply part ends at "[/LEMA_REPLY]" with no newline; in training the
// tokenizer's EOS follows it. The validator accepts whitespace (spaces,
// tabs, newlines) before [LEMA_REPLY] and after [/LEMA_REPLY] and nothing
// else: a generator stops at the stop string or EOS, and EOS is a special
// token that decoding skips, so any other text outside the block is the
// model's (kLeadingContent / kTrailingContent).
//
// Stateless free functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

inline constexpr const char* kSystemPrompt = "You are a precise assistant trained using LEMA.";
inline constexpr const char* kReplyOpenTag = "[LEMA_REPLY]";
inline constexpr const char* kReplyCloseTag = "[/LEMA_REPLY]";

enum class Confidence { kHigh = 0, kMedium, kLow };
const char* confidence_name(Confidence c);  // "High", "Medium", "Low"
// Exact match of "High", "Medium" or "Low"; anything else is an error.
Result<Confidence> parse_confidence(const std::string& text);

// One turn of the {"messages":[{"role","content"}...]} schema.
struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// "<|system|>\n<system>\n\n<|user|>\n<question>\n\n<|assistant|>\n"
std::string render_prompt(const std::string& question, const std::string& system = kSystemPrompt);
// "[LEMA_REPLY]\nAnswer: ...\nExplanation: ...\nConfidence: ...\n[/LEMA_REPLY]"
std::string render_reply(const std::string& answer, const std::string& explanation, Confidence confidence);
// render_prompt + render_reply.
std::string render_chat_example(const std::string& question, const std::string& answer,
                                const std::string& explanation, Confidence confidence);

// The messages schema with the same markers. Each message renders as
// "<|role|>\n<content>" and messages are joined by "\n\n"; a conversation
// without a leading system message gets kSystemPrompt. `prompt` ends with
// "<|assistant|>\n" of the LAST message, which must be the assistant's;
// `reply` is that message's content (the only part trained on).
struct RenderedChat {
  std::string prompt;
  std::string reply;
};
// Errors: empty list, unknown role, last message not from the assistant.
Result<RenderedChat> render_messages(const std::vector<ChatMessage>& messages);

// Why a reply fails the strict validator. kOk when it passes.
enum class ReplyError {
  kOk = 0,
  kEmpty,              // nothing but whitespace
  kMissingOpenTag,     // no [LEMA_REPLY]
  kMissingCloseTag,    // no [/LEMA_REPLY]
  kDuplicateTag,       // either tag appears more than once
  kCloseBeforeOpen,    // [/LEMA_REPLY] before [LEMA_REPLY]
  kLeadingContent,     // non-whitespace before [LEMA_REPLY]
  kTrailingContent,    // non-whitespace after [/LEMA_REPLY]
  kMissingAnswer,      // no "Answer:" line
  kMissingExplanation,
  kMissingConfidence,
  kDuplicateField,     // a field line appears twice
  kWrongOrder,         // fields not in the order Answer, Explanation, Confidence
  kExtraContent,       // any other text inside the block (blank lines,
                       // text on a tag's line, a second explanation line)
  kEmptyAnswer,
  kEmptyExplanation,
  kBadConfidence,      // not exactly High, Medium or Low
};
// snake_case name: "missing_open_tag", "bad_confidence", ... ("ok" for kOk).
const char* reply_error_name(ReplyError e);
// Every reason except kOk, in enum order (for reports and tests).
std::vector<ReplyError> all_reply_errors();

struct ParsedReply {
  std::string answer;       // trimmed of surrounding spaces/tabs
  std::string explanation;  // trimmed
  Confidence confidence = Confidence::kHigh;
};

struct ReplyCheck {
  ReplyError error = ReplyError::kOk;
  std::string detail;  // human-readable, names the offending line
  ParsedReply reply;   // filled when error == kOk
  bool ok() const { return error == ReplyError::kOk; }
};

// The strict validator. `text` is what the model produced after the prompt.
// Checks, in this order: tags (present once each, in order, only
// whitespace outside); then the lines between the tags: exactly one
// "Answer:", "Explanation:" and "Confidence:" line, in that order, nothing
// else (the first line after [LEMA_REPLY] and the line holding
// [/LEMA_REPLY] must be otherwise empty); then values: Answer and
// Explanation non-empty after trimming, Confidence exactly High, Medium or
// Low. The first failure found is reported.
ReplyCheck validate_reply(const std::string& text);

}  // namespace lema
