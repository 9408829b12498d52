// Tokenizer: text <-> token ids, exact against Hugging Face `tokenizers` and
// SentencePiece. Loads tokenizer.json (SentencePiece-BPE or byte-level BPE),
// tokenizer.model (SentencePiece BPE) or a model directory holding either
// (plus tokenizer_config.json). No LibTorch, no protobuf. docs/TOKENIZER.md
// lists what is supported and what is refused.
//
// Thread-safety: const methods may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `path`: tokenizer.json, tokenizer.model, or a directory holding one
  // (tokenizer.json is preferred when both exist).
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& path);

  // add_special: what the post-processor adds (BOS for Llama), per
  // tokenizer_config.json's add_bos_token / add_eos_token. Special tokens
  // written in `text` (e.g. "<|begin_of_text|>") are recognised for
  // tokenizer.json files whatever add_special says, as HF does.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special) const = 0;
  // Ids outside the vocabulary are skipped.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual int32_t pad_id() const = 0;  // -1 if none
  virtual std::string id_to_token(int32_t id) const = 0;  // "" if out of range
  virtual int32_t token_to_id(const std::string& token) const = 0;  // -1 if unknown
  virtual bool is_special(int32_t id) const = 0;
};

// Incremental decoding for streaming generation: push() returns the text
// that the new token completes, never half a UTF-8 character; the
// concatenation of all push() results plus flush() equals decode(all ids).
// Owns its id buffer; `tokenizer` must outlive it. Not thread-safe.
class TokenStreamDecoder {
 public:
  TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special);
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete character decodes as U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_) give context
  size_t read_offset_ = 0;    // text of ids_ before this was emitted
};

// Converts a SentencePiece BPE tokenizer.model to the equivalent Hugging Face
// tokenizer.json text (merges derived from piece scores), so that both files
// give identical ids. Refuses unigram models and non-identity normalizers.
Result<std::string> sentencepiece_model_to_hf_json(const std::string& model_path);

}  // namespace lema
