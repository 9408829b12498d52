// The tokenizer lema uses, as GGUF stores it (tokenizer.ggml.*, docs/EXPORT.md):
// SentencePiece vocabularies (tokenizer.model, or tokenizer.json with a
// Metaspace step) as llama.cpp's "llama" model with scores, byte-level BPE as
// "gpt2" with merges and the pre-tokenizer name llama.cpp knows the regex by,
// special ids, add_bos/add_eos and the chat template of tokenizer_config.json.
// Plain function; thread-safe.
#pragma once

#include <string>

#include "common/base/status.h"
#include "common/formats/gguf_arch.h"

namespace lema::engine {

// `path`: tokenizer.json, tokenizer.model or their directory. `pre_override`:
// llama.cpp's pre-tokenizer name for a byte-level regex not recognised here
// (empty: detect; unknown is refused asking for it).
Result<GgufVocab> gguf_vocab_from_tokenizer(const std::string& path, const std::string& pre_override);

}  // namespace lema::engine
