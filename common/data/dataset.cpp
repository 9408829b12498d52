#include "common/data/dataset.h"

#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

bool blank(const std::string& s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

bool set_bad(BadLine* bad, LineError e, std::string detail) {
  bad->error = e;
  bad->detail = std::move(detail);
  return false;
}

// Reads obj[key] as a non-empty single-line string.
bool get_text(const nlohmann::json& obj, const char* key, bool single_line, std::string* out, BadLine* bad) {
  auto it = obj.find(key);
  if (it == obj.end()) return set_bad(bad, LineError::kMissingField, std::string("missing \"") + key + "\"");
  if (!it->is_string())
    return set_bad(bad, LineError::kWrongType,
                   std::string("\"") + key + "\": expected a string, got " + it->type_name());
  *out = it->get<std::string>();
  if (blank(*out)) return set_bad(bad, LineError::kEmptyField, std::string("\"") + key + "\" is empty");
  if (single_line && out->find('\n') != std::string::npos)
    return set_bad(bad, LineError::kMultiline, std::string("\"") + key + "\" contains a newline");
  return true;
}

std::string tags_removed(std::string s) {
  for (const char* tag : {kReplyOpenTag, kReplyCloseTag}) {
    std::string t(tag);
    for (size_t p = s.find(t); p != std::string::npos; p = s.find(t)) s.erase(p, t.size());
  }
  size_t b = s.find_first_not_of(" \n"), e = s.find_last_not_of(" \n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

std::string example_prompt(const Example& e) {
  if (!e.is_chat()) return render_prompt(e.question);
  auto r = render_messages(e.messages);
  LEMA_CHECK_MSG(r.ok(), r.status().to_string());
  return r->prompt;
}

std::string example_reply(const Example& e) {
  if (!e.is_chat()) return render_reply(e.answer, e.explanation, e.confidence);
  return e.messages.back().content;
}

std::string example_question_key(const Example& e) {
  if (!e.is_chat()) return e.question;
  std::string key;
  for (size_t i = 0; i + 1 < e.messages.size(); ++i) key += e.messages[i].role + "\x1f" + e.messages[i].content + "\x1e";
  return key;
}

std::string render_plain(const Example& e) {
  if (!e.is_chat()) return "Question: " + e.question + "\nAnswer: " + e.answer + "\nExplanation: " + e.explanation + "\n";
  std::string question;
  for (const auto& m : e.messages)
    if (m.role == "user") question = m.content;
  ReplyCheck check = validate_reply(e.messages.back().content);
  if (check.ok())
    return "Question: " + question + "\nAnswer: " + check.reply.answer + "\nExplanation: " + check.reply.explanation +
           "\n";
  return "Question: " + question + "\nAnswer: " + tags_removed(e.messages.back().content) + "\n";
}

std::string example_to_json(const Example& e) {
  ojson j;
  if (e.is_chat()) {
    j["messages"] = ojson::array();
    for (const auto& m : e.messages) j["messages"].push_back(ojson{{"role", m.role}, {"content", m.content}});
  } else {
    j["question"] = e.question;
    j["answer"] = e.answer;
    j["explanation"] = e.explanation;
    j["confidence"] = confidence_name(e.confidence);
  }
  if (!e.category.empty()) j["category"] = e.category;
  // Replace invalid UTF-8 rather than throw: the text came from our own
  // parser or builder, so this only guards against a bug.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string examples_to_jsonl(const std::vector<Example>& examples) {
  std::string out;
  for (const auto& e : examples) out += example_to_json(e) + "\n";
  return out;
}

const char* line_error_name(LineError e) {
  switch (e) {
    case LineError::kBadJson: return "bad_json";
    case LineError::kNotObject: return "not_object";
    case LineError::kUnknownSchema: return "unknown_schema";
    case LineError::kMissingField: return "missing_field";
    case LineError::kWrongType: return "wrong_type";
    case LineError::kEmptyField: return "empty_field";
    case LineError::kMultiline: return "multiline";
    case LineError::kBadConfidence: return "bad_confidence";
    case LineError::kUnknownRole: return "unknown_role";
    case LineError::kBadMessages: return "bad_messages";
    case LineError::kInvalidReply: return "invalid_reply";
  }
  return "unknown";
}

bool parse_example_line(const std::string& line, Example* out, BadLine* bad) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return set_bad(bad, LineError::kBadJson, "not valid JSON (or not UTF-8)");
  if (!j.is_object()) return set_bad(bad, LineError::kNotObject, std::string("expected an object, got ") + j.type_name());
  Example e;
  if (auto it = j.find("category"); it != j.end()) {
    if (!it->is_string())
      return set_bad(bad, LineError::kWrongType, std::string("\"category\": expected a string, got ") + it->type_name());
    e.category = it->get<std::string>();
  }
  const bool has_q = j.contains("question"), has_m = j.contains("messages");
  if (has_q && has_m) return set_bad(bad, LineError::kUnknownSchema, "both \"question\" and \"messages\"");
  if (!has_q && !has_m)
    return set_bad(bad, LineError::kUnknownSchema, "neither \"question\" nor \"messages\" (see docs/DATASET.md)");
  if (has_q) {
    if (!get_text(j, "question", false, &e.question, bad)) return false;
    if (!get_text(j, "answer", true, &e.answer, bad)) return false;
    if (!get_text(j, "explanation", true, &e.explanation, bad)) return false;
    std::string conf;
    if (!get_text(j, "confidence", true, &conf, bad)) return false;
    auto c = parse_confidence(conf);
    if (!c.ok()) return set_bad(bad, LineError::kBadConfidence, "\"confidence\": " + c.status().message());
    e.confidence = *c;
    // The reply must survive the strict validator (e.g. an answer holding
    // "[/LEMA_REPLY]" or leading spaces that change after trimming).
    ReplyCheck check = validate_reply(example_reply(e));
    if (!check.ok() || check.reply.answer != e.answer || check.reply.explanation != e.explanation)
      return set_bad(bad, LineError::kInvalidReply,
                     std::string("the rendered reply does not round-trip through the validator (") +
                         reply_error_name(check.error) + "): strip spaces and tags from the fields");
  } else {
    const nlohmann::json& m = j["messages"];
    if (!m.is_array())
      return set_bad(bad, LineError::kWrongType, std::string("\"messages\": expected an array, got ") + m.type_name());
    if (m.empty()) return set_bad(bad, LineError::kBadMessages, "\"messages\" is empty");
    for (size_t i = 0; i < m.size(); ++i) {
      std::string where = "messages[" + std::to_string(i) + "]";
      if (!m[i].is_object())
        return set_bad(bad, LineError::kWrongType, where + ": expected an object, got " + m[i].type_name());
      ChatMessage msg;
      BadLine inner;
      if (!get_text(m[i], "role", true, &msg.role, &inner)) return set_bad(bad, inner.error, where + ": " + inner.detail);
      if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
        return set_bad(bad, LineError::kUnknownRole, where + ": unknown role \"" + msg.role + "\"");
      if (!get_text(m[i], "content", false, &msg.content, &inner))
        return set_bad(bad, inner.error, where + ": " + inner.detail);
      e.messages.push_back(std::move(msg));
    }
    auto r = render_messages(e.messages);
    if (!r.ok()) return set_bad(bad, LineError::kBadMessages, r.status().message());
  }
  *out = std::move(e);
  return true;
}

Result<ImportResult> import_jsonl_text(const std::string& text, const std::string& name,
                                       const ImportOptions& options) {
  ImportResult res;
  std::unordered_set<std::string> seen;
  int64_t lines = 0;
  // The callback never fails: a bad line is counted and skipped.
  (void)for_each_line(text, name, [&](int64_t line_no, std::string_view view) {
    lines = line_no;
    const std::string line(view);
    if (blank(line)) {
      ++res.lines_blank;
      return Status();
    }
    Example e;
    BadLine bad;
    if (!parse_example_line(line, &e, &bad)) {
      bad.line = line_no;
      log_warn("%s:%lld: %s: %s", name.c_str(), static_cast<long long>(line_no), line_error_name(bad.error),
               bad.detail.c_str());
      res.bad_by_reason[line_error_name(bad.error)]++;
      res.bad_lines.push_back(std::move(bad));
      return Status();
    }
    if (!seen.insert(example_text(e)).second) {
      ++res.duplicates;
      return Status();
    }
    res.examples.push_back(std::move(e));
    return Status();
  });
  res.lines_total = lines;
  if (options.strict && !res.bad_lines.empty()) {
    const BadLine& b = res.bad_lines.front();
    return Status::invalid_argument(str_printf("%s:%lld: %s: %s (%zu bad line(s) in all; --strict)", name.c_str(),
                                               static_cast<long long>(b.line), line_error_name(b.error),
                                               b.detail.c_str(), res.bad_lines.size()));
  }
  return res;
}

Result<ImportResult> import_jsonl(const std::string& path, const ImportOptions& options) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return import_jsonl_text(text, path, options);
}

DatasetStats compute_stats(const std::vector<Example>& examples) {
  DatasetStats s;
  std::set<std::string> questions;
  for (const auto& e : examples) {
    ++s.examples;
    questions.insert(example_question_key(e));
    s.by_category[e.category.empty() ? "(none)" : e.category]++;
    if (e.is_chat())
      ++s.chat_examples;
    else
      s.by_confidence[confidence_name(e.confidence)]++;
  }
  s.distinct_questions = static_cast<int64_t>(questions.size());
  return s;
}

}  // namespace lema
