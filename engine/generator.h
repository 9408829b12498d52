// Text generation with a KV cache, layer by layer through a LayerSource:
// the prompt batch runs through each layer (prefill), then every decode step
// runs one token per row through all layers. A streamed source therefore
// loads each layer once for the prefill and once per decode step; a
// resident source costs nothing extra.
//
// Batches of prompts are left-padded: each row has its own position ids
// (0 at its first real token) and pads are masked out as keys, so a row's
// tokens equal what it would produce alone (up to float rounding of the
// batched matmuls).
//
// Sampling (per row, fp32): repetition penalty (HF's: divide positive
// logits, multiply negative ones, over prompt + generated tokens), then
// temperature, top-k, top-p, then a draw from an own splitmix64 stream
// seeded per row, so results do not depend on the LibTorch version.
// temperature 0 is greedy (argmax after the penalty).
//
// The Generator borrows the source, adapter and tokenizer: they must outlive
// it. Not thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/text/tokenizer.h"
#include "engine/layer_source.h"
#include "engine/lora.h"

namespace lema::engine {

struct SamplingOptions {
  double temperature = 0.0;         // 0: greedy
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double repetition_penalty = 1.0;  // 1: off
  uint64_t seed = 0;                // row i draws from mix_seed(seed, i)
};

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  // A row stops once its decoded text contains one of these (the text is cut
  // right after it). Needs a tokenizer.
  std::vector<std::string> stop_strings;
  // A row stops at any of these ids (the id is not part of the result).
  // Empty: the tokenizer's EOS when there is one.
  std::vector<int32_t> eos_ids;
};

enum class StopReason { kEos, kStopString, kMaxTokens };
const char* stop_reason_name(StopReason reason);

struct Generation {
  std::vector<int32_t> tokens;  // new tokens (EOS excluded)
  std::string text;             // decoded tokens (empty without tokenizer), cut after a stop string
  StopReason stop = StopReason::kMaxTokens;
};

// Called with a row index and the text that row added since the last call:
// only complete UTF-8 is emitted.
using TextCallback = std::function<void(int64_t row, const std::string& piece)>;

class Generator {
 public:
  // adapter and tokenizer may be null (no LoRA; token ids only).
  Generator(LayerSource& source, const LoraAdapter* adapter, const Tokenizer* tokenizer)
      : source_(source), adapter_(adapter), tokenizer_(tokenizer) {}

  // prompts: token ids (BOS included when wanted), each non-empty.
  Result<std::vector<Generation>> generate(const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerateOptions& options, const TextCallback& on_text = {});

 private:
  LayerSource& source_;
  const LoraAdapter* adapter_;
  const Tokenizer* tokenizer_;
};

// Picks the next token from one row of logits [V] (any dtype, any device)
// with the rules above. `context`: prompt + generated ids (for the penalty).
// `rng_state`: the row's splitmix64 state, advanced by one draw when sampling.
int32_t sample_token(const at::Tensor& logits, const std::vector<int32_t>& context, const SamplingOptions& options,
                     uint64_t& rng_state);

// The longest prefix of `text` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(const std::string& text);

}  // namespace lema::engine
