// Tokenizer::load (file or directory, plus tokenizer_config.json) and the
// SentencePiece model -> tokenizer.json converter.
#include "common/text/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/text/bpe_tokenizer.h"
#include "common/base/file_util.h"
#include "common/text/tokenizer_loaders.h"

namespace lema {

namespace {
using json = nlohmann::json;

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// A special token in tokenizer_config.json: "x" or {"content": "x", ...};
// null means the tokenizer has none (Qwen's "bos_token": null).
struct ConfigToken {
  bool present = false;  // the key is there
  bool none = false;     // null
  std::string content;
};

Result<ConfigToken> config_token(const json& cfg, const char* key, const std::string& path) {
  ConfigToken t;
  auto it = cfg.find(key);
  if (it == cfg.end()) return t;
  t.present = true;
  if (it->is_null()) {
    t.none = true;
  } else if (it->is_string()) {
    t.content = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    t.content = (*it)["content"];
  } else {
    return Status::invalid_argument(path + ": " + key + " must be a string, {\"content\": ...} or null");
  }
  return t;
}

struct SpecialIds {
  int32_t bos_id, eos_id, pad_id;
};

// Applies tokenizer_config.json next to the tokenizer file, when present.
Status apply_config(const std::string& path, BpeTokenizer* tok, SpecialIds* spec_out) {
  if (!path_exists(path)) return Status();
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  json cfg = json::parse(text, nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object()) return Status::invalid_argument(path + ": not a valid JSON object");
  auto id_of = [&](const char* key, int32_t* id) -> Status {
    LEMA_ASSIGN_OR_RETURN(ConfigToken t, config_token(cfg, key, path));
    if (!t.present) return Status();
    if (t.none) {
      *id = -1;  // transformers: the attribute is None, whatever tokenizer.json's vocab holds
      return Status();
    }
    if (t.content.empty()) return Status::invalid_argument(path + ": " + key + " is an empty string");
    const int32_t found = tok->token_to_id(t.content);
    if (found < 0)
      return Status::invalid_argument(path + ": " + key + " '" + t.content + "' is not a token of " + tok->spec().source);
    *id = found;
    return Status();
  };
  LEMA_RETURN_IF_ERROR(id_of("bos_token", &spec_out->bos_id));
  LEMA_RETURN_IF_ERROR(id_of("eos_token", &spec_out->eos_id));
  LEMA_RETURN_IF_ERROR(id_of("pad_token", &spec_out->pad_id));
  const bool has_bos = cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean();
  const bool has_eos = cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean();
  if (has_bos || has_eos) {
    // As LlamaTokenizerFast.update_post_processor: BOS? text EOS?
    std::vector<int32_t> prefix, suffix;
    bool add_bos = has_bos ? cfg["add_bos_token"].get<bool>() : !tok->spec().prefix_ids.empty();
    bool add_eos = has_eos ? cfg["add_eos_token"].get<bool>() : !tok->spec().suffix_ids.empty();
    if (add_bos && spec_out->bos_id >= 0) prefix.push_back(spec_out->bos_id);
    if (add_eos && spec_out->eos_id >= 0) suffix.push_back(spec_out->eos_id);
    tok->set_post_processor(prefix, suffix);
  }
  return Status();
}
}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& path) {
  std::string file = path;
  if (is_directory(path)) {
    if (path_exists(path_join(path, "tokenizer.json"))) file = path_join(path, "tokenizer.json");
    else if (path_exists(path_join(path, "tokenizer.model"))) file = path_join(path, "tokenizer.model");
    else return Status::not_found(path + ": no tokenizer.json or tokenizer.model in this directory");
  }
  LEMA_ASSIGN_OR_RETURN(std::string bytes, read_file(file));
  Result<BpeSpec> spec = Status::internal("unset");
  // tokenizer.json starts with '{'; anything else is taken as a ModelProto.
  size_t first = bytes.find_first_not_of(" \t\r\n");
  if (ends_with(file, ".json") || (first != std::string::npos && bytes[first] == '{'))
    spec = parse_tokenizer_json(bytes, file);
  else
    spec = parse_sentencepiece_model(bytes, file);
  if (!spec.ok()) return spec.status();
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tok, BpeTokenizer::create(std::move(spec).value()));
  // The config may rename BOS/EOS/PAD and change what add_special adds.
  SpecialIds ids{tok->bos_id(), tok->eos_id(), tok->pad_id()};
  LEMA_RETURN_IF_ERROR(apply_config(path_join(path_dirname(file), "tokenizer_config.json"), tok.get(), &ids));
  if (ids.bos_id != tok->bos_id() || ids.eos_id != tok->eos_id() || ids.pad_id != tok->pad_id())
    tok->set_special_ids(ids.bos_id, ids.eos_id, ids.pad_id);
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

Result<std::string> sentencepiece_model_to_hf_json(const std::string& model_path) {
  LEMA_ASSIGN_OR_RETURN(std::string bytes, read_file(model_path));
  LEMA_ASSIGN_OR_RETURN(BpeSpec spec, parse_sentencepiece_model(bytes, model_path));
  const std::string kSpace = "\xE2\x96\x81";
  using ojson = nlohmann::ordered_json;
  ojson vocab = ojson::object();
  for (size_t i = 0; i < spec.pieces.size(); ++i) vocab[spec.pieces[i]] = static_cast<int64_t>(i);

  // Merges: every split (a, b) of a normal piece z into two normal pieces,
  // ranked by z's score (SentencePiece merges the best-scoring pair first).
  struct M { float score; int32_t z, a, b; };
  std::vector<M> merges;
  for (size_t z = 0; z < spec.pieces.size(); ++z) {
    if (spec.types[z] != 1) continue;
    const std::string& p = spec.pieces[z];
    for (size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // not a character boundary
      auto ia = spec.piece_ids.find(p.substr(0, k)), ib = spec.piece_ids.find(p.substr(k));
      if (ia == spec.piece_ids.end() || ib == spec.piece_ids.end()) continue;
      if (spec.types[ia->second] != 1 || spec.types[ib->second] != 1) continue;
      merges.push_back({spec.scores[z], static_cast<int32_t>(z), ia->second, ib->second});
    }
  }
  std::sort(merges.begin(), merges.end(), [](const M& x, const M& y) {
    if (x.score != y.score) return x.score > y.score;
    if (x.z != y.z) return x.z < y.z;
    if (x.a != y.a) return x.a < y.a;
    return x.b < y.b;
  });
  ojson jmerges = ojson::array();
  for (const auto& m : merges) jmerges.push_back(ojson::array({spec.pieces[m.a], spec.pieces[m.b]}));

  ojson added = ojson::array();
  for (size_t i = 0; i < spec.pieces.size(); ++i) {
    uint8_t t = spec.types[i];
    if (t != 2 && t != 3 && t != 4) continue;
    added.push_back({{"id", i}, {"content", spec.pieces[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", t != 4}});
  }
  ojson norms = ojson::array();
  if (spec.spm_remove_extra_whitespaces) {
    norms.push_back({{"type", "Replace"}, {"pattern", {{"Regex", "\\A +| +\\z"}}}, {"content", ""}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}});
  }
  if (spec.spm_add_dummy_prefix) norms.push_back({{"type", "Prepend"}, {"prepend", kSpace}});
  if (spec.spm_escape_whitespaces) norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}});
  ojson decoders = ojson::array();
  decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}});
  if (spec.byte_fallback) decoders.push_back({{"type", "ByteFallback"}});
  decoders.push_back({{"type", "Fuse"}});
  if (spec.spm_add_dummy_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  ojson post = nullptr;
  if (spec.bos_id >= 0) {
    const std::string& bos = spec.pieces[spec.bos_id];
    post = {{"type", "TemplateProcessing"},
            {"single", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
            {"pair", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                   {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", ojson::array({spec.bos_id})}, {"tokens", ojson::array({bos})}}}}}};
  }
  ojson root = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", norms.empty() ? ojson(nullptr) : ojson({{"type", "Sequence"}, {"normalizers", norms}})},
      {"pre_tokenizer", nullptr},
      {"post_processor", post},
      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", spec.pieces[spec.unk_id]},
                 {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", true},
                 {"byte_fallback", spec.byte_fallback}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", jmerges}}},
  };
  return root.dump(1) + "\n";
}

}  // namespace lema
