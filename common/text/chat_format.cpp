#include "common/text/chat_format.h"

#include <cstring>

namespace lema {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

bool all_space(const std::string& s, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    if (!is_space(s[i])) return false;
  return true;
}

// Trims spaces, tabs and CR (not newlines: values are single lines).
std::string trim_inline(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

size_t count_occurrences(const std::string& s, const char* needle) {
  size_t n = 0, len = std::strlen(needle);
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + len)) ++n;
  return n;
}

std::string excerpt(const std::string& s) {
  std::string out = s.size() > 60 ? s.substr(0, 60) + "..." : s;
  for (char& c : out)
    if (c == '\n') c = ' ';
  return out;
}

ReplyCheck fail(ReplyError e, std::string detail) {
  ReplyCheck c;
  c.error = e;
  c.detail = std::move(detail);
  return c;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

const char* confidence_name(Confidence c) {
  switch (c) {
    case Confidence::kHigh: return "High";
    case Confidence::kMedium: return "Medium";
    case Confidence::kLow: return "Low";
  }
  return "?";
}

Result<Confidence> parse_confidence(const std::string& text) {
  if (text == "High") return Confidence::kHigh;
  if (text == "Medium") return Confidence::kMedium;
  if (text == "Low") return Confidence::kLow;
  return Status::invalid_argument("confidence must be High, Medium or Low, got '" + excerpt(text) + "'");
}

std::string render_prompt(const std::string& question, const std::string& system) {
  return "<|system|>\n" + system + "\n\n<|user|>\n" + question + "\n\n<|assistant|>\n";
}

std::string render_reply(const std::string& answer, const std::string& explanation, Confidence confidence) {
  return std::string(kReplyOpenTag) + "\nAnswer: " + answer + "\nExplanation: " + explanation +
         "\nConfidence: " + confidence_name(confidence) + "\n" + kReplyCloseTag;
}

std::string render_chat_example(const std::string& question, const std::string& answer,
                                const std::string& explanation, Confidence confidence) {
  return render_prompt(question) + render_reply(answer, explanation, confidence);
}

Result<RenderedChat> render_messages(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return Status::invalid_argument("messages: empty list");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant")
      return Status::invalid_argument("messages[" + std::to_string(i) + "]: unknown role '" + excerpt(r) +
                                      "' (expected system, user or assistant)");
  }
  if (messages.back().role != "assistant")
    return Status::invalid_argument("messages: the last message must be the assistant's (the reply trained on)");
  RenderedChat out;
  if (messages.front().role != "system") out.prompt = std::string("<|system|>\n") + kSystemPrompt + "\n\n";
  for (size_t i = 0; i + 1 < messages.size(); ++i)
    out.prompt += "<|" + messages[i].role + "|>\n" + messages[i].content + "\n\n";
  out.prompt += "<|assistant|>\n";
  out.reply = messages.back().content;
  return out;
}

const char* reply_error_name(ReplyError e) {
  switch (e) {
    case ReplyError::kOk: return "ok";
    case ReplyError::kEmpty: return "empty";
    case ReplyError::kMissingOpenTag: return "missing_open_tag";
    case ReplyError::kMissingCloseTag: return "missing_close_tag";
    case ReplyError::kDuplicateTag: return "duplicate_tag";
    case ReplyError::kCloseBeforeOpen: return "close_before_open";
    case ReplyError::kLeadingContent: return "leading_content";
    case ReplyError::kTrailingContent: return "trailing_content";
    case ReplyError::kMissingAnswer: return "missing_answer";
    case ReplyError::kMissingExplanation: return "missing_explanation";
    case ReplyError::kMissingConfidence: return "missing_confidence";
    case ReplyError::kDuplicateField: return "duplicate_field";
    case ReplyError::kWrongOrder: return "wrong_order";
    case ReplyError::kExtraContent: return "extra_content";
    case ReplyError::kEmptyAnswer: return "empty_answer";
    case ReplyError::kEmptyExplanation: return "empty_explanation";
    case ReplyError::kBadConfidence: return "bad_confidence";
  }
  return "unknown";
}

std::vector<ReplyError> all_reply_errors() {
  std::vector<ReplyError> v;
  for (int i = static_cast<int>(ReplyError::kEmpty); i <= static_cast<int>(ReplyError::kBadConfidence); ++i)
    v.push_back(static_cast<ReplyError>(i));
  return v;
}

ReplyCheck validate_reply(const std::string& text) {
  if (all_space(text, 0, text.size())) return fail(ReplyError::kEmpty, "the reply is empty");
  const size_t open_len = std::strlen(kReplyOpenTag), close_len = std::strlen(kReplyCloseTag);
  size_t n_open = count_occurrences(text, kReplyOpenTag);
  size_t n_close = count_occurrences(text, kReplyCloseTag);
  if (n_open == 0) return fail(ReplyError::kMissingOpenTag, "no [LEMA_REPLY] in '" + excerpt(text) + "'");
  if (n_open > 1) return fail(ReplyError::kDuplicateTag, "[LEMA_REPLY] appears " + std::to_string(n_open) + " times");
  if (n_close == 0) return fail(ReplyError::kMissingCloseTag, "no [/LEMA_REPLY]");
  if (n_close > 1)
    return fail(ReplyError::kDuplicateTag, "[/LEMA_REPLY] appears " + std::to_string(n_close) + " times");
  size_t open = text.find(kReplyOpenTag);
  size_t close = text.find(kReplyCloseTag);
  if (close < open) return fail(ReplyError::kCloseBeforeOpen, "[/LEMA_REPLY] comes before [LEMA_REPLY]");
  if (!all_space(text, 0, open))
    return fail(ReplyError::kLeadingContent, "text before [LEMA_REPLY]: '" + excerpt(text.substr(0, open)) + "'");
  if (!all_space(text, close + close_len, text.size()))
    return fail(ReplyError::kTrailingContent,
                "text after [/LEMA_REPLY]: '" + excerpt(text.substr(close + close_len)) + "'");

  // Lines between the tags. lines.front() is the rest of the open tag's
  // line and lines.back() the start of the close tag's line: both must be
  // empty in a well-formed block.
  std::string inner = text.substr(open + open_len, close - open - open_len);
  std::vector<std::string> lines;
  size_t start = 0;
  for (;;) {
    size_t nl = inner.find('\n', start);
    lines.push_back(inner.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  const char* kFields[3] = {"Answer:", "Explanation:", "Confidence:"};
  int count[3] = {0, 0, 0};
  int first_index[3] = {-1, -1, -1};
  std::string value[3];
  std::string extra;
  for (size_t i = 0; i < lines.size(); ++i) {
    const bool edge = (i == 0 || i + 1 == lines.size());
    int field = -1;
    for (int f = 0; f < 3; ++f)
      if (starts_with(lines[i], kFields[f])) field = f;
    if (field < 0 || (edge && lines.size() > 1)) {
      if ((!lines[i].empty() || !edge) && extra.empty()) {
        extra = edge ? "text on the line of a tag: '" + excerpt(lines[i]) + "'"
                     : "unexpected line " + std::to_string(i) + " inside the block: '" + excerpt(lines[i]) + "'";
      }
      if (field < 0) continue;
    }
    if (count[field]++ == 0) {
      first_index[field] = static_cast<int>(i);
      value[field] = trim_inline(lines[i].substr(std::strlen(kFields[field])));
    }
  }
  for (int f = 0; f < 3; ++f)
    if (count[f] > 1) return fail(ReplyError::kDuplicateField, std::string(kFields[f]) + " appears " +
                                                                  std::to_string(count[f]) + " times");
  if (count[0] == 0) return fail(ReplyError::kMissingAnswer, "no 'Answer:' line");
  if (count[1] == 0) return fail(ReplyError::kMissingExplanation, "no 'Explanation:' line");
  if (count[2] == 0) return fail(ReplyError::kMissingConfidence, "no 'Confidence:' line");
  if (!(first_index[0] < first_index[1] && first_index[1] < first_index[2]))
    return fail(ReplyError::kWrongOrder, "fields must come as Answer, Explanation, Confidence");
  if (!extra.empty()) return fail(ReplyError::kExtraContent, extra);
  if (value[0].empty()) return fail(ReplyError::kEmptyAnswer, "Answer is empty");
  if (value[1].empty()) return fail(ReplyError::kEmptyExplanation, "Explanation is empty");
  auto conf = parse_confidence(value[2]);
  if (!conf.ok()) return fail(ReplyError::kBadConfidence, conf.status().message());
  ReplyCheck ok;
  ok.reply.answer = value[0];
  ok.reply.explanation = value[1];
  ok.reply.confidence = *conf;
  return ok;
}

}  // namespace lema
