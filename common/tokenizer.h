// Tokenizer: text <-> token ids, exact against Hugging Face `tokenizers` and
// SentencePiece. Loads tokenizer.json (SentencePiece-BPE or byte-level BPE),
// tokenizer.model (SentencePiece BPE) or a model directory holding either
// (plus tokenizer_config.json). No LibTorch, no protobuf.
//
// Thread-safety: const methods may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace lema {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // `path`: tokenizer.json, tokenizer.model, or a directory holding one.
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& path);

  // add_special: what the post-processor adds (BOS for Llama), per
  // tokenizer_config.json's add_bos_token / add_eos_token.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_special) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special) const = 0;

  virtual int64_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual int32_t pad_id() const = 0;  // -1 if none
  virtual std::string id_to_token(int32_t id) const = 0;
  virtual int32_t token_to_id(const std::string& token) const = 0;  // -1 if unknown
  virtual bool is_special(int32_t id) const = 0;
};

}  // namespace lema
