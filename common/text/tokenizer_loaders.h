// Loaders that turn tokenizer files into a BpeSpec (bpe_tokenizer.h).
// Internal to common/: callers use Tokenizer::load().
#pragma once

#include <string>

#include "common/text/bpe_tokenizer.h"

namespace lema {

// tokenizer.json text; `name` is used in messages.
Result<BpeSpec> parse_tokenizer_json(const std::string& text, const std::string& name);
// tokenizer.model bytes (SentencePiece ModelProto, protobuf wire format).
Result<BpeSpec> parse_sentencepiece_model(const std::string& bytes, const std::string& name);

}  // namespace lema
