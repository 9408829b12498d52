#include "engine/gguf_vocab.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/tokenizer.h"

namespace lema::engine {
namespace {

using json = nlohmann::json;

bool has_step(const std::vector<TextStep>& steps, TextStep::Kind kind) {
  for (const auto& st : steps) {
    if (st.kind == kind) return true;
  }
  return false;
}

// llama.cpp's names for the byte-level pre-tokenizer regexes it knows
// (tokenizer.ggml.pre). The text is that of tokenizer.json's Split step.
std::string pre_tokenizer_name(const BpeSpec& spec) {
  static const std::vector<std::pair<std::string, std::string>> known = {
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       "llama-bpe"},
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       "qwen2"},
  };
  bool split = false;
  for (const auto& st : spec.pre_tokenizer) {
    if (st.kind != TextStep::Kind::kSplit) continue;
    split = true;
    for (const auto& [pattern, name] : known) {
      if (st.text == pattern) return name;
    }
  }
  // ByteLevel alone (use_regex) is GPT-2's own pattern.
  return split ? std::string() : std::string("gpt-2");
}

std::string read_chat_template(const std::string& dir) {
  auto text = read_file(path_join(dir, "tokenizer_config.json"));
  if (!text.ok()) return "";
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("chat_template")) return "";
  const json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const json& e : t) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
        return e["template"].get<std::string>();
      }
    }
  }
  return "";
}

}  // namespace

Result<GgufVocab> gguf_vocab_from_tokenizer(const std::string& path, const std::string& pre_override) {
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::load(path));
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(tok.get());
  if (bpe == nullptr) return Status::unsupported("export: " + path + ": not a BPE tokenizer");
  const BpeSpec& spec = bpe->spec();
  const std::string dir = is_directory(path) ? path : path_dirname(path);
  GgufVocab v;
  v.tokens = spec.pieces;
  v.bos_id = tok->bos_id();
  v.eos_id = tok->eos_id();
  v.pad_id = tok->pad_id();
  v.unk_id = spec.unk_id;
  auto contains = [](const std::vector<int32_t>& ids, int32_t id) {
    return id >= 0 && std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  v.add_bos = contains(spec.prefix_ids, v.bos_id);
  v.add_eos = contains(spec.suffix_ids, v.eos_id);
  v.chat_template = read_chat_template(dir.empty() ? "." : dir);
  const size_t n = spec.pieces.size();

  using Kind = TextStep::Kind;
  const bool metaspace = has_step(spec.pre_tokenizer, Kind::kMetaspace) || has_step(spec.normalizer, Kind::kPrepend);
  if (spec.mode == BpeSpec::Mode::kSentencePiece) {
    v.model = "llama";
    v.pre = "default";
    v.scores = spec.scores;
    v.types.assign(spec.types.begin(), spec.types.end());
    v.add_space_prefix = spec.spm_add_dummy_prefix;
    return v;
  }
  if (metaspace) {
    // A SentencePiece vocabulary in tokenizer.json: llama.cpp merges by piece
    // score. Take the scores from tokenizer.model when it sits alongside,
    // else rank them by the merges (the earliest merge scores highest).
    v.model = "llama";
    v.pre = "default";
    v.add_space_prefix = true;
    for (const auto& st : spec.pre_tokenizer) {
      if (st.kind == Kind::kMetaspace && st.prepend_scheme == 2) v.add_space_prefix = false;
    }
    const std::string spm = path_join(dir.empty() ? "." : dir, "tokenizer.model");
    std::unique_ptr<Tokenizer> spm_tok;
    if (path_exists(spm)) {
      LEMA_ASSIGN_OR_RETURN(spm_tok, Tokenizer::load(spm));
    }
    const auto* spm_bpe = dynamic_cast<const BpeTokenizer*>(spm_tok.get());
    if (spm_bpe != nullptr && spm_bpe->spec().pieces.size() <= n &&
        std::equal(spm_bpe->spec().pieces.begin(), spm_bpe->spec().pieces.end(), spec.pieces.begin())) {
      v.scores = spm_bpe->spec().scores;
      v.types.assign(spm_bpe->spec().types.begin(), spm_bpe->spec().types.end());
    } else {
      v.scores.assign(n, 0.0f);
      v.types.assign(n, 1);
      std::vector<int64_t> rank(n, -1);
      for (const auto& [pair, rank_and_id] : spec.merges) {
        const auto id = static_cast<size_t>(rank_and_id.second);
        if (rank[id] < 0 || rank_and_id.first < rank[id]) rank[id] = rank_and_id.first;
      }
      for (size_t id = 0; id < n; ++id) {
        if (rank[id] >= 0) v.scores[id] = -static_cast<float>(rank[id]);
        const std::string& p = spec.pieces[id];
        if (spec.byte_fallback && p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') v.types[id] = 6;
      }
      if (v.unk_id >= 0) v.types[static_cast<size_t>(v.unk_id)] = 2;
    }
    // Added tokens past the SentencePiece pieces (and their kinds).
    v.scores.resize(n, 0.0f);
    v.types.resize(n, 1);
  } else if (has_step(spec.pre_tokenizer, Kind::kByteLevel)) {
    v.model = "gpt2";
    v.pre = pre_override.empty() ? pre_tokenizer_name(spec) : pre_override;
    if (v.pre.empty()) {
      return Status::unsupported("export: " + path + ": the pre-tokenizer regex is not one llama.cpp names here; "
                                 "pass --tokenizer-pre NAME (llama.cpp's tokenizer.ggml.pre)");
    }
    v.types.assign(n, 1);
    std::vector<std::string> merges(spec.merges.size());
    for (const auto& [pair, rank_and_id] : spec.merges) {
      const auto left = static_cast<size_t>(pair >> 32), right = static_cast<size_t>(pair & 0xFFFFFFFFu);
      const auto rank = static_cast<size_t>(rank_and_id.first);
      if (rank >= merges.size() || left >= n || right >= n) {
        return Status::corruption("export: " + path + ": merge ranks are not 0..N-1");
      }
      merges[rank] = spec.pieces[left] + " " + spec.pieces[right];
    }
    v.merges = std::move(merges);
  } else {
    return Status::unsupported("export: " + path +
                               ": GGUF export knows SentencePiece (Metaspace) and byte-level BPE tokenizers");
  }
  for (const AddedToken& t : spec.added_tokens) {
    if (t.id >= 0 && static_cast<size_t>(t.id) < n) v.types[static_cast<size_t>(t.id)] = t.special ? 3 : 4;
  }
  return v;
}

}  // namespace lema::engine
