#include "common/data/dataset_format.h"

#include <utility>

#include "common/data/dataset.h"
#include "common/data/json_fields.h"

namespace lema {
namespace {

using json = nlohmann::json;

constexpr std::pair<DataFormat, const char*> kNames[] = {
    {DataFormat::kAuto, "auto"},         {DataFormat::kLema, "lema"},
    {DataFormat::kMessages, "messages"}, {DataFormat::kShareGpt, "sharegpt"},
    {DataFormat::kAlpaca, "alpaca"},     {DataFormat::kPromptCompletion, "prompt-completion"},
    {DataFormat::kText, "text"},         {DataFormat::kTokenized, "tokenized"},
};

// The role a turn's speaker names in lema's messages; empty when unknown.
std::string sharegpt_role(const std::string& from) {
  if (from == "system") return "system";
  if (from == "human" || from == "user") return "user";
  if (from == "gpt" || from == "assistant") return "assistant";
  return "";
}

// A conversation: obj[list_key] is an array of {role_key, content_key}.
// ShareGPT's speakers are mapped to lema's roles. The conversation must
// render in lema's format (last turn the assistant's), which is also what
// the template path trains on.
bool parse_turns(const json& obj, const char* list_key, const char* role_key, const char* content_key,
                 bool sharegpt, Example* e, BadLine* bad) {
  const json& m = obj.at(list_key);
  if (!m.is_array())
    return reject(bad, LineError::kWrongType,
                  std::string("\"") + list_key + "\": expected an array, got " + m.type_name());
  if (m.empty()) return reject(bad, LineError::kBadMessages, std::string("\"") + list_key + "\" is empty");
  for (size_t i = 0; i < m.size(); ++i) {
    std::string where = std::string(list_key) + "[" + std::to_string(i) + "]";
    if (!m[i].is_object())
      return reject(bad, LineError::kWrongType, where + ": expected an object, got " + m[i].type_name());
    ChatMessage msg;
    BadLine inner;
    if (!read_text_field(m[i], role_key, true, &msg.role, &inner))
      return reject(bad, inner.error, where + ": " + inner.detail);
    std::string role = sharegpt ? sharegpt_role(msg.role) : msg.role;
    if (role != "system" && role != "user" && role != "assistant")
      return reject(bad, LineError::kUnknownRole,
                    where + ": unknown " + role_key + " \"" + msg.role + "\"" +
                        (sharegpt ? " (known: system, human, gpt)" : " (known: system, user, assistant)"));
    msg.role = role;
    if (!read_text_field(m[i], content_key, false, &msg.content, &inner))
      return reject(bad, inner.error, where + ": " + inner.detail);
    e->messages.push_back(std::move(msg));
  }
  auto r = render_messages(e->messages);
  if (!r.ok()) return reject(bad, LineError::kBadMessages, r.status().message());
  return true;
}

bool parse_question(const json& j, Example* e, BadLine* bad) {
  if (!read_text_field(j, "question", false, &e->question, bad)) return false;
  if (!read_text_field(j, "answer", true, &e->answer, bad)) return false;
  if (!read_text_field(j, "explanation", true, &e->explanation, bad)) return false;
  std::string conf;
  if (!read_text_field(j, "confidence", true, &conf, bad)) return false;
  auto c = parse_confidence(conf);
  if (!c.ok()) return reject(bad, LineError::kBadConfidence, "\"confidence\": " + c.status().message());
  e->confidence = *c;
  // The reply must survive the strict validator (e.g. an answer holding
  // "[/LEMA_REPLY]" or leading spaces that change after trimming).
  ReplyCheck check = validate_reply(example_reply(*e));
  if (!check.ok() || check.reply.answer != e->answer || check.reply.explanation != e->explanation)
    return reject(bad, LineError::kInvalidReply,
                  std::string("the rendered reply does not round-trip through the validator (") +
                      reply_error_name(check.error) + "): strip spaces and tags from the fields");
  return true;
}

bool parse_lema(const json& j, Example* e, BadLine* bad) {
  const bool has_q = j.contains("question"), has_m = j.contains("messages");
  if (has_q && has_m) return reject(bad, LineError::kUnknownSchema, "both \"question\" and \"messages\"");
  if (!has_q && !has_m)
    return reject(bad, LineError::kUnknownSchema,
                  "neither \"question\" nor \"messages\" (see docs/DATASET.md for the formats and --format)");
  return has_q ? parse_question(j, e, bad) : parse_turns(j, "messages", "role", "content", false, e, bad);
}

// The key a format cannot do without: its absence is kUnknownSchema (the
// record is of another format), named in the detail.
bool require_key(const json& j, const char* key, DataFormat f, BadLine* bad) {
  if (j.contains(key)) return true;
  return reject(bad, LineError::kUnknownSchema,
                std::string("no \"") + key + "\" in a " + data_format_name(f) + " record (see --format)");
}

bool parse_alpaca(const json& j, Example* e, BadLine* bad) {
  if (!require_key(j, "instruction", DataFormat::kAlpaca, bad)) return false;
  std::string instruction, input, output;
  if (!read_text_field(j, "instruction", false, &instruction, bad)) return false;
  // "input" is optional and often "": only its type is checked.
  if (auto it = j.find("input"); it != j.end() && !it->is_null()) {
    if (!it->is_string())
      return reject(bad, LineError::kWrongType, std::string("\"input\": expected a string, got ") + it->type_name());
    input = it->get<std::string>();
  }
  if (!read_text_field(j, "output", false, &output, bad)) return false;
  e->messages.push_back({"user", is_blank(input) ? instruction : instruction + "\n\n" + input});
  e->messages.push_back({"assistant", output});
  return true;
}

}  // namespace

const char* data_format_name(DataFormat f) {
  for (const auto& [format, name] : kNames)
    if (format == f) return name;
  return "unknown";
}

Result<DataFormat> parse_data_format(const std::string& name) {
  std::string known;
  for (const auto& [format, n] : kNames) {
    if (name == n) return format;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  return Status::invalid_argument("unknown data format '" + name + "' (known: " + known + ")");
}

DataFormat detect_data_format(const json& first) {
  if (!first.is_object()) return DataFormat::kLema;
  if (first.contains("question") || first.contains("messages")) return DataFormat::kLema;
  if (first.contains("conversations")) return DataFormat::kShareGpt;
  if (first.contains("instruction")) return DataFormat::kAlpaca;
  if (first.contains("prompt") || first.contains("completion")) return DataFormat::kPromptCompletion;
  if (first.contains("text")) return DataFormat::kText;
  if (first.contains("input_ids")) return DataFormat::kTokenized;
  return DataFormat::kLema;
}

bool parse_record(const json& j, DataFormat format, Example* out, BadLine* bad) {
  LEMA_CHECK(format != DataFormat::kAuto && format != DataFormat::kTokenized);
  if (!j.is_object()) return reject(bad, LineError::kNotObject, std::string("expected an object, got ") + j.type_name());
  Example e;
  if (auto it = j.find("category"); it != j.end()) {
    if (!it->is_string())
      return reject(bad, LineError::kWrongType, std::string("\"category\": expected a string, got ") + it->type_name());
    e.category = it->get<std::string>();
  }
  bool ok = false;
  switch (format) {
    case DataFormat::kLema:
      ok = parse_lema(j, &e, bad);
      break;
    case DataFormat::kMessages:
      ok = require_key(j, "messages", format, bad) && parse_turns(j, "messages", "role", "content", false, &e, bad);
      break;
    case DataFormat::kShareGpt:
      ok = require_key(j, "conversations", format, bad) &&
           parse_turns(j, "conversations", "from", "value", true, &e, bad);
      break;
    case DataFormat::kAlpaca:
      ok = parse_alpaca(j, &e, bad);
      break;
    case DataFormat::kPromptCompletion:
      e.raw = true;
      ok = require_key(j, "prompt", format, bad) && read_text_field(j, "prompt", false, &e.raw_prompt, bad) &&
           read_text_field(j, "completion", false, &e.raw_completion, bad);
      break;
    case DataFormat::kText:
      e.raw = true;
      ok = require_key(j, "text", format, bad) && read_text_field(j, "text", false, &e.raw_completion, bad);
      break;
    case DataFormat::kAuto:
    case DataFormat::kTokenized:
      break;
  }
  if (!ok) return false;
  *out = std::move(e);
  return true;
}

}  // namespace lema
