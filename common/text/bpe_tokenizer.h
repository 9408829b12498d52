// BpeTokenizer: the one Tokenizer implementation behind Tokenizer::load().
// Two merge rules share one engine: SentencePiece's (highest piece score
// among adjacent pairs whose concatenation is a piece) for tokenizer.model,
// and Hugging Face's (lowest merge rank) for tokenizer.json. The loaders
// (tokenizer_json.cpp, sentencepiece_model.cpp) fill a BpeSpec; this class
// owns it plus a word cache.
//
// Thread-safety: encode/decode may run from many threads (the cache has a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/text/regex_splitter.h"
#include "common/text/tokenizer.h"
#include "common/text/unicode_normalizer.h"

namespace lema {

// One step of a Hugging Face normalizer, pre-tokenizer or decoder.
struct TextStep {
  enum class Kind {
    // normalizers
    kPrepend, kReplace, kStrip, kUnicode,
    // pre-tokenizers
    kSplit, kByteLevel, kMetaspace, kDigits,
    // decoders
    kDecReplace, kDecByteFallback, kDecFuse, kDecStrip, kDecByteLevel, kDecMetaspace,
  };
  Kind kind;
  std::string text;     // Prepend/Metaspace: the string; Replace: the literal pattern
  std::string content;  // Replace: the replacement; Strip: the char
  std::shared_ptr<RegexSplitter> regex;  // Replace (regex form), Split, ByteLevel use_regex
  int behavior = 0;     // Split: RegexSplitter::Behavior
  bool invert = false;
  bool flag_a = false;  // ByteLevel: add_prefix_space; Metaspace: split; Digits: individual; Strip(norm): left
  bool flag_b = false;  // Strip(norm): right
  int prepend_scheme = 0;  // Metaspace: 0 always, 1 first, 2 never
  UnicodeForm unicode_form = UnicodeForm::kNFC;  // kUnicode
  int start = 0, stop = 0;  // decoder Strip
};

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false, rstrip = false, single_word = false, normalized = false;
};

struct BpeSpec {
  enum class Mode { kSentencePiece, kHuggingFace };
  Mode mode = Mode::kHuggingFace;
  std::string source;  // file name, for messages

  std::vector<std::string> pieces;  // id -> token text (model vocab + added tokens)
  std::unordered_map<std::string, int32_t> piece_ids;  // model vocabulary only

  // SentencePiece: per-id score and type (1 normal, 2 unknown, 3 control,
  // 4 user defined, 5 unused, 6 byte).
  std::vector<float> scores;
  std::vector<uint8_t> types;
  bool spm_add_dummy_prefix = true;
  bool spm_remove_extra_whitespaces = true;
  bool spm_escape_whitespaces = true;
  std::string spm_unk_surface = " \xE2\x81\x87 ";

  // Hugging Face: merges (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  bool ignore_merges = false;
  bool fuse_unk = false;
  bool byte_fallback = false;
  int32_t unk_id = -1;
  std::vector<TextStep> normalizer, pre_tokenizer, decoder;
  std::vector<AddedToken> added_tokens;

  // Post-processor (add_special): ids around each encoded text.
  std::vector<int32_t> prefix_ids, suffix_ids;
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;
};

class BpeTokenizer : public Tokenizer {
 public:
  // Validates the spec (ids in range, merges consistent).
  static Result<std::unique_ptr<BpeTokenizer>> create(BpeSpec spec);

  std::vector<int32_t> encode(const std::string& text, bool add_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(spec_.pieces.size()); }
  int32_t bos_id() const override { return spec_.bos_id; }
  int32_t eos_id() const override { return spec_.eos_id; }
  int32_t pad_id() const override { return spec_.pad_id; }
  std::string id_to_token(int32_t id) const override;
  int32_t token_to_id(const std::string& token) const override;
  bool is_special(int32_t id) const override;

  const BpeSpec& spec() const { return spec_; }
  // Overrides what add_special adds (tokenizer_config.json).
  void set_post_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix);
  void set_special_ids(int32_t bos, int32_t eos, int32_t pad);

 private:
  explicit BpeTokenizer(BpeSpec spec);
  void encode_spm(const std::string& text, std::vector<int32_t>* out) const;
  void encode_hf_segment(const std::string& text, bool first_segment, std::vector<int32_t>* out) const;
  // BPE on one word (SentencePiece: one chunk of the normalized text).
  void bpe_word(const std::string& word, std::vector<int32_t>* out) const;
  void bpe_word_uncached(const std::string& word, std::vector<int32_t>* out) const;
  void bpe_chunked(const std::string& norm, std::vector<int32_t>* out) const;
  std::string decode_spm(const std::vector<int32_t>& ids) const;

  BpeSpec spec_;
  std::vector<uint8_t> is_special_;  // per id
  std::vector<AddedToken> added_sorted_;  // longest first
  std::vector<std::vector<int32_t>> added_first_;  // first byte -> indices into added_sorted_
  bool chunkable_ = true;  // no piece joins a non-"▁" to a following "▁"
  std::vector<std::string> user_defined_;  // SentencePiece, longest first
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // guarded by cache_mu_
};

// UTF-8 helpers shared by the tokenizer files.
namespace utf8 {
// Length of the valid UTF-8 character at s[0..n), or 0 if invalid.
size_t valid_char_len(const char* s, size_t n);
// Replaces each invalid byte with U+FFFD (SentencePiece's rule).
std::string sanitize(const std::string& s);
// Rust's String::from_utf8_lossy (one U+FFFD per maximal invalid subpart).
std::string from_bytes_lossy(const std::string& s);
void append_codepoint(uint32_t cp, std::string* out);
}  // namespace utf8

// GPT-2's byte <-> printable character map used by ByteLevel.
const std::string& byte_to_unicode(uint8_t b);  // UTF-8 of the char for b
// -1 if the code point is not in the map.
int unicode_to_byte(uint32_t cp);

}  // namespace lema
