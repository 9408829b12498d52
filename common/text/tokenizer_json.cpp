// Reads Hugging Face tokenizer.json files of the BPE kinds (SentencePiece-BPE
// as in Llama-2, byte-level as in GPT-2 / Llama-3) into a BpeSpec. Anything
// else is refused by name so that users learn what is missing.
#include <nlohmann/json.hpp>

#include "common/text/tokenizer_loaders.h"

namespace lema {

namespace {
using json = nlohmann::json;

// GPT-2's pre-tokenizer regex, used by ByteLevel with use_regex = true.
const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string get_str(const json& j, const char* key, const std::string& dflt = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : dflt;
}
bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : dflt;
}

// {"String": "x"} or {"Regex": "x"} -> (pattern, is_regex)
Status read_pattern(const json& j, const std::string& where, std::string* pat, bool* is_regex) {
  if (!j.is_object()) return Status::invalid_argument(where + ": 'pattern' must be an object");
  if (j.contains("String") && j["String"].is_string()) { *pat = j["String"]; *is_regex = false; return Status(); }
  if (j.contains("Regex") && j["Regex"].is_string()) { *pat = j["Regex"]; *is_regex = true; return Status(); }
  return Status::invalid_argument(where + ": 'pattern' needs a String or Regex");
}

int prepend_scheme(const json& j) {
  std::string s = get_str(j, "prepend_scheme", "");
  if (s.empty()) return get_bool(j, "add_prefix_space", true) ? 0 : 2;
  return s == "first" ? 1 : s == "never" ? 2 : 0;
}

Status add_normalizer(const json& j, const std::string& name, std::vector<TextStep>* out) {
  if (j.is_null()) return Status();
  std::string type = get_str(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.value("normalizers", json::array())) LEMA_RETURN_IF_ERROR(add_normalizer(n, name, out));
    return Status();
  }
  TextStep st{};
  if (type == "Prepend") {
    st.kind = TextStep::Kind::kPrepend;
    st.text = get_str(j, "prepend");
  } else if (type == "Replace") {
    st.kind = TextStep::Kind::kReplace;
    bool is_regex = false;
    LEMA_RETURN_IF_ERROR(read_pattern(j.value("pattern", json()), name + ": normalizer Replace", &st.text, &is_regex));
    st.content = get_str(j, "content");
    if (is_regex) { LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile(st.text, false)); }
  } else if (type == "Strip") {
    st.kind = TextStep::Kind::kStrip;
    st.flag_a = get_bool(j, "strip_left", true);
    st.flag_b = get_bool(j, "strip_right", true);
  } else if (Result<UnicodeForm> form = unicode_form_from_name(type); form.ok()) {
    st.kind = TextStep::Kind::kUnicode;
    st.unicode_form = *form;
    LEMA_RETURN_IF_ERROR(unicode_normalizer_check(*form).with_context(name + ": normalizer " + type));
  } else {
    return Status::unsupported(name + ": normalizer '" + type +
                               "' is not supported (supported: Sequence, Prepend, Replace, Strip, NFC, NFD, NFKC, NFKD)");
  }
  out->push_back(std::move(st));
  return Status();
}

Status add_pre_tokenizer(const json& j, const std::string& name, std::vector<TextStep>* out) {
  if (j.is_null()) return Status();
  std::string type = get_str(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.value("pretokenizers", json::array())) LEMA_RETURN_IF_ERROR(add_pre_tokenizer(n, name, out));
    return Status();
  }
  TextStep st{};
  if (type == "Split") {
    st.kind = TextStep::Kind::kSplit;
    bool is_regex = false;
    LEMA_RETURN_IF_ERROR(read_pattern(j.value("pattern", json()), name + ": pre_tokenizer Split", &st.text, &is_regex));
    LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile(st.text, !is_regex));
    std::string b = get_str(j, "behavior", "Isolated");
    if (b == "Isolated") st.behavior = RegexSplitter::kIsolated;
    else if (b == "Removed") st.behavior = RegexSplitter::kRemoved;
    else if (b == "MergedWithPrevious") st.behavior = RegexSplitter::kMergedWithPrevious;
    else if (b == "MergedWithNext") st.behavior = RegexSplitter::kMergedWithNext;
    else if (b == "Contiguous") st.behavior = RegexSplitter::kContiguous;
    else return Status::unsupported(name + ": Split behavior '" + b + "'");
    st.invert = get_bool(j, "invert", false);
  } else if (type == "ByteLevel") {
    st.kind = TextStep::Kind::kByteLevel;
    st.flag_a = get_bool(j, "add_prefix_space", false);
    if (get_bool(j, "use_regex", true)) { LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile(kGpt2Pattern, false)); }
  } else if (type == "Metaspace") {
    st.kind = TextStep::Kind::kMetaspace;
    st.text = get_str(j, "replacement", "\xE2\x96\x81");
    st.prepend_scheme = prepend_scheme(j);
    st.flag_a = get_bool(j, "split", true);
    LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile(st.text, true));
  } else if (type == "Digits") {
    st.kind = TextStep::Kind::kDigits;
    st.flag_a = get_bool(j, "individual_digits", false);
    LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile("\\p{N}", false));
  } else {
    return Status::unsupported(name + ": pre_tokenizer '" + type +
                               "' is not supported (supported: Sequence, Split, ByteLevel, Metaspace, Digits)");
  }
  out->push_back(std::move(st));
  return Status();
}

Status add_decoder(const json& j, const std::string& name, std::vector<TextStep>* out) {
  if (j.is_null()) return Status();
  std::string type = get_str(j, "type");
  if (type == "Sequence") {
    for (const auto& n : j.value("decoders", json::array())) LEMA_RETURN_IF_ERROR(add_decoder(n, name, out));
    return Status();
  }
  TextStep st{};
  if (type == "Replace") {
    st.kind = TextStep::Kind::kDecReplace;
    bool is_regex = false;
    LEMA_RETURN_IF_ERROR(read_pattern(j.value("pattern", json()), name + ": decoder Replace", &st.text, &is_regex));
    st.content = get_str(j, "content");
    if (is_regex) { LEMA_ASSIGN_OR_RETURN(st.regex, RegexSplitter::compile(st.text, false)); }
  } else if (type == "ByteFallback") {
    st.kind = TextStep::Kind::kDecByteFallback;
  } else if (type == "Fuse") {
    st.kind = TextStep::Kind::kDecFuse;
  } else if (type == "Strip") {
    st.kind = TextStep::Kind::kDecStrip;
    st.content = get_str(j, "content", " ");
    st.start = j.value("start", 0);
    st.stop = j.value("stop", 0);
  } else if (type == "ByteLevel") {
    st.kind = TextStep::Kind::kDecByteLevel;
  } else if (type == "Metaspace") {
    st.kind = TextStep::Kind::kDecMetaspace;
    st.text = get_str(j, "replacement", "\xE2\x96\x81");
    st.prepend_scheme = prepend_scheme(j);
  } else {
    return Status::unsupported(name + ": decoder '" + type +
                               "' is not supported (supported: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)");
  }
  out->push_back(std::move(st));
  return Status();
}

// TemplateProcessing's "single" template -> ids before/after the text.
Status read_post_processor(const json& j, const std::string& name, BpeSpec* spec) {
  if (j.is_null()) return Status();
  std::string type = get_str(j, "type");
  if (type == "Sequence") {
    for (const auto& p : j.value("processors", json::array())) LEMA_RETURN_IF_ERROR(read_post_processor(p, name, spec));
    return Status();
  }
  if (type == "ByteLevel") return Status();  // offsets only
  if (type != "TemplateProcessing")
    return Status::unsupported(name + ": post_processor '" + type + "' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
  const json& specials = j.value("special_tokens", json::object());
  bool after = false;
  for (const auto& item : j.value("single", json::array())) {
    if (item.contains("Sequence")) { after = true; continue; }
    if (!item.contains("SpecialToken")) return Status::invalid_argument(name + ": post_processor template item without SpecialToken or Sequence");
    std::string tok = get_str(item["SpecialToken"], "id");
    if (!specials.contains(tok) || !specials[tok].contains("ids") || !specials[tok]["ids"].is_array())
      return Status::invalid_argument(name + ": post_processor names special token '" + tok + "' without ids");
    for (const auto& id : specials[tok]["ids"]) {
      if (!id.is_number_integer()) return Status::invalid_argument(name + ": post_processor ids of '" + tok + "' must be integers");
      (after ? spec->suffix_ids : spec->prefix_ids).push_back(id.get<int32_t>());
    }
  }
  return Status();
}

Result<BpeSpec> parse_json_impl(const json& root, const std::string& name) {
  BpeSpec spec;
  spec.mode = BpeSpec::Mode::kHuggingFace;
  spec.source = name;
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object())
    return Status::invalid_argument(name + ": no 'model' object");
  const json& model = root["model"];
  std::string mtype = get_str(model, "type", "BPE");
  if (mtype != "BPE")
    return Status::unsupported(name + ": model type '" + mtype + "' is not supported (lema reads BPE tokenizers only)");
  if (!get_str(model, "continuing_subword_prefix").empty() || !get_str(model, "end_of_word_suffix").empty())
    return Status::unsupported(name + ": continuing_subword_prefix / end_of_word_suffix are not supported");
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    return Status::unsupported(name + ": BPE dropout is not supported");
  if (!model.contains("vocab") || !model["vocab"].is_object()) return Status::invalid_argument(name + ": model.vocab missing or not an object");
  if (!model.contains("merges") || !model["merges"].is_array()) return Status::invalid_argument(name + ": model.merges missing or not an array");
  constexpr int64_t kMaxId = 1 << 24;
  int64_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) return Status::invalid_argument(name + ": vocab entry '" + it.key() + "' is not an integer id");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId) return Status::invalid_argument(name + ": vocab entry '" + it.key() + "' has id " + std::to_string(id) + " out of range");
    spec.piece_ids[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, id);
  }
  for (const auto& a : root.value("added_tokens", json::array())) {
    AddedToken t;
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
      return Status::invalid_argument(name + ": an added_tokens entry needs integer 'id' and string 'content'");
    int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= kMaxId) return Status::invalid_argument(name + ": added token '" + a["content"].get<std::string>() + "' has id " + std::to_string(id) + " out of range");
    t.id = static_cast<int32_t>(id);
    t.content = a["content"];
    t.special = get_bool(a, "special", false);
    t.lstrip = get_bool(a, "lstrip", false);
    t.rstrip = get_bool(a, "rstrip", false);
    t.single_word = get_bool(a, "single_word", false);
    t.normalized = get_bool(a, "normalized", !t.special);
    max_id = std::max(max_id, id);
    spec.added_tokens.push_back(std::move(t));
  }
  spec.pieces.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& kv : spec.piece_ids) spec.pieces[kv.second] = kv.first;
  for (const auto& t : spec.added_tokens) spec.pieces[t.id] = t.content;

  int32_t rank = 0;
  for (const auto& m : model["merges"]) {
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return Status::invalid_argument(name + ": merge " + std::to_string(rank) + " '" + s + "' is not 'a b'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0]; b = m[1];
    } else {
      return Status::invalid_argument(name + ": merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
    }
    auto ia = spec.piece_ids.find(a), ib = spec.piece_ids.find(b), ic = spec.piece_ids.find(a + b);
    if (ia == spec.piece_ids.end() || ib == spec.piece_ids.end() || ic == spec.piece_ids.end())
      return Status::invalid_argument(name + ": merge " + std::to_string(rank) + " ('" + a + "', '" + b + "') uses a token outside the vocab");
    uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) | static_cast<uint32_t>(ib->second);
    spec.merges[key] = std::make_pair(rank, ic->second);  // HF: a later duplicate overwrites
    ++rank;
  }
  spec.ignore_merges = get_bool(model, "ignore_merges", false);
  spec.fuse_unk = get_bool(model, "fuse_unk", false);
  spec.byte_fallback = get_bool(model, "byte_fallback", false);
  std::string unk = get_str(model, "unk_token");
  if (!unk.empty()) {
    auto it = spec.piece_ids.find(unk);
    if (it == spec.piece_ids.end()) return Status::invalid_argument(name + ": unk_token '" + unk + "' is not in the vocab");
    spec.unk_id = it->second;
  }
  LEMA_RETURN_IF_ERROR(add_normalizer(root.value("normalizer", json()), name, &spec.normalizer));
  LEMA_RETURN_IF_ERROR(add_pre_tokenizer(root.value("pre_tokenizer", json()), name, &spec.pre_tokenizer));
  LEMA_RETURN_IF_ERROR(add_decoder(root.value("decoder", json()), name, &spec.decoder));
  LEMA_RETURN_IF_ERROR(read_post_processor(root.value("post_processor", json()), name, &spec));

  // Well-known special tokens; tokenizer_config.json may name others.
  auto find = [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* n : names) {
      for (const auto& t : spec.added_tokens) if (t.content == n) return t.id;
      auto it = spec.piece_ids.find(n);
      if (it != spec.piece_ids.end()) return it->second;
    }
    return -1;
  };
  spec.bos_id = !spec.prefix_ids.empty() ? spec.prefix_ids.front() : find({"<s>", "<|begin_of_text|>"});
  spec.eos_id = find({"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"});
  spec.pad_id = find({"<pad>", "<|pad|>"});
  return spec;
}
}  // namespace

Result<BpeSpec> parse_tokenizer_json(const std::string& text, const std::string& name) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Status::invalid_argument(name + ": not valid JSON");
  try {
    return parse_json_impl(root, name);
  } catch (const std::exception& e) {
    // nlohmann throws on a value of the wrong type deep inside the file.
    return Status::invalid_argument(name + ": unexpected value: " + e.what());
  }
}

}  // namespace lema
