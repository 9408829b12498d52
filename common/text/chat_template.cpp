#include "common/text/chat_template.h"

#include <algorithm>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"

namespace lema {

namespace {

using ojson = nlohmann::ordered_json;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The special tokens transformers passes to the template: those named as a
// string or an AddedToken object {"content": ...}.
ojson special_tokens_of(const ojson& config) {
  ojson out = ojson::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    auto it = config.find(key);
    if (it == config.end()) continue;
    if (it->is_string()) {
      out[key] = *it;
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      out[key] = (*it)["content"];
    }
  }
  auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array()) {
    ojson list = ojson::array();
    for (const auto& t : *extra) {
      if (t.is_string())
        list.push_back(t);
      else if (t.is_object() && t.contains("content") && t["content"].is_string())
        list.push_back(t["content"]);
    }
    out["additional_special_tokens"] = list;
  }
  return out;
}

Result<ojson> read_json(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  ojson j = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument(path + ": not valid JSON");
  if (!j.is_object()) return Status::invalid_argument(path + ": expected a JSON object");
  return j;
}

// The template text from tokenizer_config.json's "chat_template": a string,
// or a list of {"name", "template"}.
Result<std::string> pick_template(const ojson& field, const std::string& where, const std::string& wanted) {
  if (field.is_string()) {
    if (!wanted.empty() && wanted != "default") {
      return Status::not_found(where + ": holds a single template; there is no template named '" + wanted +
                               "'");
    }
    return field.get<std::string>();
  }
  if (!field.is_array())
    return Status::invalid_argument(where + ": must be a string or a list of {name, template}");
  std::string name = wanted.empty() ? "default" : wanted;
  std::string names;
  for (const auto& e : field) {
    if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
        !e["template"].is_string()) {
      return Status::invalid_argument(where + ": each entry needs string 'name' and 'template'");
    }
    if (e["name"] == name) return e["template"].get<std::string>();
    names += (names.empty() ? "" : ", ") + e["name"].get<std::string>();
  }
  return Status::not_found(where + ": no template named '" + name + "' (has: " + names + ")");
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

Result<ChatTemplate> ChatTemplate::from_source(const std::string& source, const std::string& name,
                                               const ojson& special_tokens) {
  LEMA_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::parse(source, name));
  ChatTemplate c;
  c.template_ = std::move(t);
  c.special_tokens_ = special_tokens.is_object() ? special_tokens : ojson::object();
  return c;
}

Result<std::optional<ChatTemplate>> ChatTemplate::find(const std::string& path) {
  const std::string dir = is_directory(path) ? path : path_dirname(path);
  const std::string config_file = path_join(dir, "tokenizer_config.json");
  bool has = path_exists(path_join(dir, "chat_template.jinja"));
  if (!has && path_exists(config_file)) {
    LEMA_ASSIGN_OR_RETURN(ojson config, read_json(config_file));
    auto it = config.find("chat_template");
    has = it != config.end() && !it->is_null();
  }
  if (!has) return std::optional<ChatTemplate>();
  LEMA_ASSIGN_OR_RETURN(ChatTemplate t, load(dir));
  return std::optional<ChatTemplate>(std::move(t));
}

Result<ChatTemplate> ChatTemplate::load_override(const std::string& template_file, const std::string& model_dir) {
  std::string source;
  if (ends_with(template_file, ".jinja")) {
    LEMA_ASSIGN_OR_RETURN(source, read_file(template_file));
  } else {
    LEMA_ASSIGN_OR_RETURN(ojson config, read_json(template_file));
    auto it = config.find("chat_template");
    if (it == config.end() || it->is_null()) return Status::not_found(template_file + ": has no chat_template");
    LEMA_ASSIGN_OR_RETURN(source, pick_template(*it, template_file + ": chat_template", ""));
  }
  const std::string dir = is_directory(model_dir) ? model_dir : path_dirname(model_dir);
  const std::string config_file = path_join(dir, "tokenizer_config.json");
  ojson config = ojson::object();
  if (path_exists(config_file)) {
    LEMA_ASSIGN_OR_RETURN(config, read_json(config_file));
  }
  return from_source(source, template_file, special_tokens_of(config));
}

Result<std::optional<ChatTemplate>> ChatTemplate::select(const std::string& template_file,
                                                         const std::string& model_dir) {
  if (template_file.empty()) return find(model_dir);
  LEMA_ASSIGN_OR_RETURN(ChatTemplate t, load_override(template_file, model_dir));
  return std::optional<ChatTemplate>(std::move(t));
}

Result<ChatTemplate> ChatTemplate::load(const std::string& path, const std::string& template_name) {
  std::string dir, config_path, jinja_path;
  if (is_directory(path)) {
    dir = path;
  } else if (path_exists(path)) {
    dir = path_dirname(path);
    if (ends_with(path, ".jinja"))
      jinja_path = path;
    else
      config_path = path;
  } else {
    return Status::not_found(path + ": no such file or directory");
  }
  const std::string config_file = path_join(dir, "tokenizer_config.json");
  const std::string jinja_file = path_join(dir, "chat_template.jinja");
  if (config_path.empty() && path_exists(config_file)) config_path = config_file;
  if (jinja_path.empty() && path_exists(jinja_file) &&
      (template_name.empty() || template_name == "default")) {
    jinja_path = jinja_file;
  }
  ojson config = ojson::object();
  if (!config_path.empty()) {
    LEMA_ASSIGN_OR_RETURN(config, read_json(config_path));
  }
  std::string source, name;
  if (!jinja_path.empty()) {
    LEMA_ASSIGN_OR_RETURN(source, read_file(jinja_path));
    name = jinja_path;
  } else {
    if (config_path.empty())
      return Status::not_found(path + ": no tokenizer_config.json or chat_template.jinja");
    auto it = config.find("chat_template");
    if (it == config.end() || it->is_null()) {
      return Status::not_found(config_path +
                               ": has no chat_template (and there is no chat_template.jinja beside it)");
    }
    LEMA_ASSIGN_OR_RETURN(source, pick_template(*it, config_path + ": chat_template", template_name));
    name = config_path + ":chat_template";
    if (!template_name.empty()) name += "[" + template_name + "]";
  }
  return from_source(source, name, special_tokens_of(config));
}

Result<jinja::RenderResult> ChatTemplate::render_raw(const ojson& messages, bool add_generation_prompt,
                                                     const ChatRenderOptions& options) const {
  if (!messages.is_array()) return Status::invalid_argument("messages must be a JSON array");
  if (!options.extra.is_object() && !options.extra.is_null()) {
    return Status::invalid_argument("extra template variables must be a JSON object");
  }
  ojson ctx = ojson::object();
  ctx["messages"] = messages;
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it) ctx[it.key()] = it.value();
  if (options.extra.is_object()) {
    for (auto it = options.extra.begin(); it != options.extra.end(); ++it) ctx[it.key()] = it.value();
  }
  jinja::RenderOptions ro;
  ro.now_unix_s = options.now_unix_s;
  return template_.render(ctx, ro);
}

Result<std::string> ChatTemplate::render(const ojson& messages, const ChatRenderOptions& options) const {
  if (options.continue_final_message && options.add_generation_prompt) {
    return Status::invalid_argument("continue_final_message and add_generation_prompt cannot both be set");
  }
  LEMA_ASSIGN_OR_RETURN(jinja::RenderResult r, render_raw(messages, options.add_generation_prompt, options));
  if (!options.continue_final_message) return std::move(r.text);
  // As transformers: cut after the last occurrence of the final message's
  // content (its last text part for a list), or of that content stripped,
  // for templates that trim messages.
  if (!messages.is_array() || messages.empty() || !messages.back().is_object()) {
    return Status::invalid_argument("continue_final_message needs a final message");
  }
  const ojson& last = messages.back();
  std::string content;
  auto c = last.find("content");
  if (c != last.end() && c->is_string()) {
    content = c->get<std::string>();
  } else if (c != last.end() && c->is_array() && !c->empty() && c->back().is_object() &&
             c->back().contains("text") && c->back()["text"].is_string()) {
    content = c->back()["text"].get<std::string>();
  } else {
    return Status::invalid_argument("continue_final_message: the final message has no text content");
  }
  size_t at = r.text.rfind(content);
  if (at == std::string::npos) {
    content = jinja::py_strip_whitespace(content);
    at = r.text.rfind(content);
  }
  if (at == std::string::npos) {
    return Status::invalid_argument(
        template_.name() +
        ": continue_final_message: the final message's content does not appear in the rendered text");
  }
  return r.text.substr(0, at + content.size());
}

Result<ChatRendering> ChatTemplate::render_for_training(const ojson& messages,
                                                        const ChatRenderOptions& options,
                                                        bool last_assistant_only) const {
  LEMA_ASSIGN_OR_RETURN(jinja::RenderResult full, render_raw(messages, false, options));
  ChatRendering out;
  out.text = std::move(full.text);
  if (template_.has_generation()) {
    out.method = AssistantMaskMethod::kGenerationTags;
    out.assistant_spans = std::move(full.generation_spans);
    if (last_assistant_only && out.assistant_spans.size() > 1) {
      out.assistant_spans.erase(out.assistant_spans.begin(), out.assistant_spans.end() - 1);
    }
    return out;
  }
  out.method = AssistantMaskMethod::kPrefixRendering;
  std::vector<size_t> turns;
  for (size_t k = 0; k < messages.size(); ++k) {
    const ojson& m = messages[k];
    if (m.is_object() && m.contains("role") && m["role"] == "assistant") turns.push_back(k);
  }
  if (last_assistant_only && turns.size() > 1) turns.erase(turns.begin(), turns.end() - 1);
  for (size_t k : turns) {
    std::string where = "message " + std::to_string(k) + " (assistant)";
    ojson before(ojson::value_t::array), upto(ojson::value_t::array);
    for (size_t i = 0; i < k; ++i) before.push_back(messages[i]);
    upto = before;
    upto.push_back(messages[k]);
    auto prompt = render_raw(before, true, options);
    if (!prompt.ok()) return prompt.status().with_context(where + ": rendering the messages before it");
    auto reply = render_raw(upto, false, options);
    if (!reply.ok()) return reply.status().with_context(where + ": rendering the messages through it");
    const std::string& p = prompt->text;
    const std::string& r = reply->text;
    if (!starts_with(out.text, p) || !starts_with(r, p) || !starts_with(out.text, r)) {
      return Status::unsupported(
          template_.name() + ": " + where +
          ": the template renders the conversation differently when it is cut after this message, so the "
          "reply cannot be located by rendering prefixes; train on the last assistant message only, or use a "
          "template with {% generation %} blocks");
    }
    out.assistant_spans.push_back(jinja::Span{p.size(), r.size()});
  }
  return out;
}

std::vector<uint8_t> token_mask_for_spans(const Tokenizer& tokenizer, const std::string& text,
                                          const std::vector<int32_t>& ids,
                                          const std::vector<jinja::Span>& spans) {
  std::vector<uint8_t> mask(ids.size(), 0);
  if (spans.empty() || ids.empty()) return mask;
  // Exact token offsets when decoding gives the text back byte for byte:
  // the streaming decoder emits each token's completed bytes (a token that
  // ends inside a UTF-8 character gets its bytes counted with the next).
  std::vector<size_t> ends(ids.size());
  {
    TokenStreamDecoder stream(tokenizer, /*skip_special=*/false);
    std::string decoded;
    for (size_t i = 0; i < ids.size(); ++i) {
      decoded += stream.push(ids[i]);
      ends[i] = decoded.size();
    }
    decoded += stream.flush();
    if (decoded == text) {
      ends.back() = decoded.size();
      size_t begin = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        for (const auto& s : spans) {
          // A token with no bytes of its own (the start of a split UTF-8
          // character) goes with the bytes that follow it.
          bool inside =
              ends[i] > begin ? (begin >= s.begin && ends[i] <= s.end) : (begin >= s.begin && begin < s.end);
          if (inside) {
            mask[i] = 1;
            break;
          }
        }
        begin = ends[i];
      }
      return mask;
    }
  }
  // Otherwise (e.g. SentencePiece's dummy prefix changes the decoded text):
  // locate each edge as the common prefix of the ids and the ids of the text
  // up to the edge; tokens straddling an edge stay untrained.
  auto edge = [&](size_t offset, bool is_begin) -> size_t {
    if (offset == 0) return 0;
    if (offset >= text.size()) return ids.size();
    std::vector<int32_t> prefix = tokenizer.encode(text.substr(0, offset), false);
    size_t n = common_prefix(prefix, ids);
    bool aligned = n == prefix.size();
    return (is_begin && !aligned) ? n + 1 : n;
  };
  for (const auto& s : spans) {
    size_t b = edge(s.begin, true), e = edge(s.end, false);
    for (size_t i = b; i < e && i < ids.size(); ++i) mask[i] = 1;
  }
  return mask;
}

Result<ChatTokens> tokenize_chat(const ChatTemplate& tmpl, const Tokenizer& tokenizer, const ojson& messages,
                                 const ChatRenderOptions& options, bool last_assistant_only) {
  LEMA_ASSIGN_OR_RETURN(ChatRendering r, tmpl.render_for_training(messages, options, last_assistant_only));
  ChatTokens out;
  out.ids = tokenizer.encode(r.text, /*add_special=*/false);
  out.loss_mask = token_mask_for_spans(tokenizer, r.text, out.ids, r.assistant_spans);
  return out;
}

}  // namespace lema
