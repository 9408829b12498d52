#include "common/data/dataset.h"

#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/data/json_fields.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

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
  if (e.is_raw()) return e.raw_prompt;
  if (!e.is_chat()) return render_prompt(e.question);
  auto r = render_messages(e.messages);
  LEMA_CHECK_MSG(r.ok(), r.status().to_string());
  return r->prompt;
}

std::string example_reply(const Example& e) {
  if (e.is_raw()) return e.raw_completion;
  if (!e.is_chat()) return render_reply(e.answer, e.explanation, e.confidence);
  return e.messages.back().content;
}

std::string example_question_key(const Example& e) {
  if (e.is_raw()) return e.raw_prompt.empty() ? e.raw_completion : e.raw_prompt;
  if (!e.is_chat()) return e.question;
  std::string key;
  for (size_t i = 0; i + 1 < e.messages.size(); ++i) key += e.messages[i].role + "\x1f" + e.messages[i].content + "\x1e";
  return key;
}

std::string render_plain(const Example& e) {
  if (e.is_raw()) return example_text(e) + "\n";
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
  if (e.is_raw() && e.raw_prompt.empty()) {
    j["text"] = e.raw_completion;
  } else if (e.is_raw()) {
    j["prompt"] = e.raw_prompt;
    j["completion"] = e.raw_completion;
  } else if (e.is_chat()) {
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

std::string bad_line_where(const std::string& name, const BadLine& bad) {
  return bad.element ? str_printf("%s: element %lld", name.c_str(), static_cast<long long>(bad.line))
                     : str_printf("%s:%lld", name.c_str(), static_cast<long long>(bad.line));
}

bool parse_example_line(const std::string& line, Example* out, BadLine* bad) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return reject(bad, LineError::kBadJson, "not valid JSON (or not UTF-8)");
  return parse_record(j, DataFormat::kLema, out, bad);
}

namespace {

// Each record of the file as parsed JSON (discarded when it does not
// parse), with its line (JSONL) or 1-based element (array).
struct Record {
  int64_t line = 0;
  nlohmann::json json;
};

Result<std::vector<Record>> read_records(const std::string& text, const std::string& name, ImportResult* res) {
  std::vector<Record> out;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    // A JSON array file: one document, so a syntax error fails the file.
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded())
      return Status::invalid_argument(name + ": starts with '[' but is not a valid JSON array (nor JSONL)");
    res->json_array = true;
    for (size_t i = 0; i < doc.size(); ++i) out.push_back({static_cast<int64_t>(i + 1), std::move(doc[i])});
    res->lines_total = static_cast<int64_t>(doc.size());
    return out;
  }
  int64_t lines = 0;
  // The callback never fails: a bad line is kept for the caller to count.
  (void)for_each_line(text, name, [&](int64_t line_no, std::string_view view) {
    lines = line_no;
    const std::string line(view);
    if (is_blank(line)) {
      ++res->lines_blank;
      return Status();
    }
    out.push_back({line_no, nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false)});
    return Status();
  });
  res->lines_total = lines;
  return out;
}

}  // namespace

Result<ImportResult> import_jsonl_text(const std::string& text, const std::string& name,
                                       const ImportOptions& options) {
  ImportResult res;
  LEMA_ASSIGN_OR_RETURN(std::vector<Record> records, read_records(text, name, &res));
  res.format = options.format;
  if (res.format == DataFormat::kAuto) {
    res.format = DataFormat::kLema;
    for (const Record& r : records) {
      if (r.json.is_discarded()) continue;
      res.format = detect_data_format(r.json);
      break;
    }
  }
  if (res.format == DataFormat::kTokenized)
    return Status::invalid_argument(name + ": pre-tokenized records (input_ids) are read by `lema train` as they are");
  std::unordered_set<std::string> seen;
  for (Record& r : records) {
    Example e;
    BadLine bad;
    bool ok = !r.json.is_discarded();
    if (!ok) reject(&bad, LineError::kBadJson, "not valid JSON (or not UTF-8)");
    if (ok) ok = parse_record(r.json, res.format, &e, &bad);
    if (!ok) {
      bad.line = r.line;
      bad.element = res.json_array;
      log_warn("%s: %s: %s", bad_line_where(name, bad).c_str(), line_error_name(bad.error), bad.detail.c_str());
      res.bad_by_reason[line_error_name(bad.error)]++;
      res.bad_lines.push_back(std::move(bad));
      continue;
    }
    if (!seen.insert(example_text(e)).second) {
      ++res.duplicates;
      continue;
    }
    e.line = r.line;
    res.examples.push_back(std::move(e));
  }
  if (options.strict && !res.bad_lines.empty()) {
    const BadLine& b = res.bad_lines.front();
    return Status::invalid_argument(str_printf("%s: %s: %s (%zu bad line(s) in all; format %s)",
                                               bad_line_where(name, b).c_str(), line_error_name(b.error),
                                               b.detail.c_str(), res.bad_lines.size(), data_format_name(res.format)));
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
    if (e.is_raw())
      ++s.raw_examples;
    else if (e.is_chat())
      ++s.chat_examples;
    else
      s.by_confidence[confidence_name(e.confidence)]++;
  }
  s.distinct_questions = static_cast<int64_t>(questions.size());
  return s;
}

}  // namespace lema
