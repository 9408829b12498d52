#include "engine/generator.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace lema::engine {
namespace {

uint64_t splitmix64_next(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
double uniform01(uint64_t& state) { return static_cast<double>(splitmix64_next(state) >> 11) * 0x1.0p-53; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kMaxTokens: return "max_tokens";
  }
  return "?";
}

size_t complete_utf8_prefix(const std::string& text) {
  const size_t n = text.size();
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4) {
    const auto byte = static_cast<unsigned char>(text[i - 1]);
    if ((byte & 0xC0) != 0x80) {
      size_t need = 1;
      if ((byte & 0xE0) == 0xC0) need = 2;
      else if ((byte & 0xF0) == 0xE0) need = 3;
      else if ((byte & 0xF8) == 0xF0) need = 4;
      return (n - (i - 1) >= need) ? n : i - 1;
    }
    --i;
    ++back;
  }
  return n;  // only continuation bytes: nothing better to do than emit them
}

int32_t sample_token(const at::Tensor& logits_in, const std::vector<int32_t>& context, const SamplingOptions& o,
                     uint64_t& rng_state) {
  const at::Tensor logits_t = logits_in.to(at::kCPU, at::kFloat).contiguous();
  std::vector<float> logits(logits_t.data_ptr<float>(), logits_t.data_ptr<float>() + logits_t.numel());
  const auto vocab = static_cast<int64_t>(logits.size());
  if (o.repetition_penalty != 1.0) {
    std::unordered_set<int32_t> seen(context.begin(), context.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? static_cast<float>(l / o.repetition_penalty) : static_cast<float>(l * o.repetition_penalty);
    }
  }
  if (o.temperature <= 0.0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  for (float& l : logits) l = static_cast<float>(l / o.temperature);
  // Candidates sorted by logit, descending (ties by id, so results are stable).
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = order.size();
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < keep) {
    // HF keeps every token whose logit is >= the k-th largest (ties included).
    const float kth = logits[order[static_cast<size_t>(o.top_k) - 1]];
    keep = static_cast<size_t>(o.top_k);
    while (keep < order.size() && logits[order[keep]] >= kth) ++keep;
  }
  std::vector<double> probs(keep);
  const double top = logits[order[0]];
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(logits[order[i]] - top);
  for (double& p : probs) p /= sum;
  if (o.top_p < 1.0) {
    // The smallest prefix whose mass reaches top_p (at least one token).
    double cum = 0.0;
    size_t n = 0;
    while (n < keep && cum < o.top_p) cum += probs[n++];
    keep = std::max<size_t>(n, 1);
    probs.resize(keep);
    sum = 0.0;
    for (double p : probs) sum += p;
    for (double& p : probs) p /= sum;
  }
  const double u = uniform01(rng_state);
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return order[i];
  }
  return order[keep - 1];
}

namespace {

// The batch laid out for decoding: prompts left-padded so that row r's
// prompt sits at [pad_r, p_len), RoPE tables gathered at each row's own
// positions, and one KV cache per layer sized for prompt + new tokens.
struct DecodeBatch {
  int64_t rows = 0;
  int64_t p_len = 0;
  int64_t t_max = 0;
  at::Tensor ids;                                  // [B, P] prompt ids, on the device
  at::Tensor valid;                                // [B, Tmax] false on pads
  at::Tensor index;                                // [Tmax] 0..Tmax-1
  at::Tensor positions;                            // [B, Tmax] each row's RoPE positions
  at::Tensor cos, sin, cos_local, sin_local;       // [B, 1, Tmax, rotary dims]; *_local for sliding layers
  std::vector<KvCache> caches;                     // one per layer
};

// RoPE tables gathered at each row's positions, for forwards of `rope_len`
// tokens (LongRoPE picks its factors by the length of a forward).
void build_rope_tables(DecodeBatch& d, const ModelConfig& c, at::ScalarType dtype, at::Device device,
                       int64_t rope_len) {
  auto per_row = [&](const at::Tensor& table) {
    return table.index_select(0, d.positions.reshape({-1})).view({d.rows, 1, d.t_max, table.size(1)});
  };
  const LayerContext tables = make_layer_context(c, d.t_max, dtype, device, rope_len);
  d.cos = per_row(tables.cos);
  d.sin = per_row(tables.sin);
  d.cos_local = tables.cos_local.defined() ? per_row(tables.cos_local) : at::Tensor();
  d.sin_local = tables.sin_local.defined() ? per_row(tables.sin_local) : at::Tensor();
}

// The longest prompt's length, or an error naming the first bad prompt.
Result<int64_t> longest_prompt(const std::vector<std::vector<int32_t>>& prompts, int64_t vocab_size) {
  int64_t p_len = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return Status::invalid_argument("generate: prompt " + std::to_string(i) + " is empty");
    for (int32_t id : prompts[i]) {
      if (id < 0 || id >= vocab_size) {
        return Status::invalid_argument("generate: prompt " + std::to_string(i) + " has token id " +
                                        std::to_string(id) + " outside the vocabulary (" + std::to_string(vocab_size) +
                                        ")");
      }
    }
    p_len = std::max<int64_t>(p_len, static_cast<int64_t>(prompts[i].size()));
  }
  return p_len;
}

DecodeBatch layout_batch(const std::vector<std::vector<int32_t>>& prompts, int64_t p_len, int64_t t_max,
                         const ModelConfig& c, at::ScalarType dtype, at::Device device) {
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  DecodeBatch d;
  d.rows = static_cast<int64_t>(prompts.size());
  d.p_len = p_len;
  d.t_max = t_max;
  at::Tensor ids = at::zeros({d.rows, p_len}, long_cpu);
  at::Tensor valid = at::ones({d.rows, t_max}, at::TensorOptions().dtype(at::kBool));
  at::Tensor positions = at::zeros({d.rows, t_max}, long_cpu);
  for (int64_t r = 0; r < d.rows; ++r) {
    const auto& pr = prompts[static_cast<size_t>(r)];
    const int64_t pad = p_len - static_cast<int64_t>(pr.size());
    for (size_t j = 0; j < pr.size(); ++j) ids[r][pad + static_cast<int64_t>(j)] = static_cast<int64_t>(pr[j]);
    if (pad > 0) valid[r].narrow(0, 0, pad).fill_(false);
    positions[r] = at::clamp_min(at::arange(t_max, long_cpu) - pad, 0);
  }
  d.ids = ids.to(device);
  d.valid = valid.to(device);
  d.positions = positions.to(device);
  build_rope_tables(d, c, dtype, device, p_len);
  d.index = at::arange(t_max, long_cpu.device(device));
  d.caches.resize(static_cast<size_t>(c.n_layers));
  for (auto& kv : d.caches) {
    kv.k = at::zeros({d.rows, c.n_kv_heads, t_max, c.head_dim}, at::TensorOptions().dtype(dtype).device(device));
    kv.v = at::zeros_like(kv.k);
  }
  return d;
}

// The decoder's context for the T positions offset..offset+T: causal over
// the cache, never a pad (a pad query may see itself so no row is all -inf),
// sliding layers only the last `window` keys (index differences equal
// position differences between a row's real tokens).
LayerContext step_context(const DecodeBatch& d, const ModelConfig& c, int64_t offset, int64_t t) {
  const at::Tensor qi = d.index.narrow(0, offset, t).view({t, 1});      // [T, 1]
  const at::Tensor kj = d.index.narrow(0, 0, offset + t).view({1, -1});  // [1, S]
  const at::Tensor causal = (kj <= qi).unsqueeze(0) & d.valid.narrow(1, 0, offset + t).unsqueeze(1);
  const at::Tensor self = (kj == qi).unsqueeze(0);
  LayerContext ctx;
  ctx.config = &c;
  ctx.allowed = (causal | self).unsqueeze(1);  // [B, 1, T, S]
  if (c.sliding_window > 0) ctx.allowed_local = ((causal & (kj > qi - c.sliding_window).unsqueeze(0)) | self).unsqueeze(1);
  ctx.cos = d.cos.narrow(2, offset, t);
  ctx.sin = d.sin.narrow(2, offset, t);
  if (d.cos_local.defined()) {
    ctx.cos_local = d.cos_local.narrow(2, offset, t);
    ctx.sin_local = d.sin_local.narrow(2, offset, t);
  }
  ctx.cache_offset = offset;
  return ctx;
}

// Runs `x` [B, T, H] (positions offset..offset+T) through every layer, each
// appending to its cache; returns the last position's logits [B, V].
Result<at::Tensor> forward_step(LayerSource& source, const std::vector<LayerLora>& loras, DecodeBatch& d, at::Tensor x,
                                int64_t offset) {
  const ModelConfig& c = source.config();
  const int64_t t = x.size(1);
  LayerContext ctx = step_context(d, c, offset, t);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (l + 1 < c.n_layers) source.prefetch(l + 1);
    LEMA_ASSIGN_OR_RETURN(LayerWeights w, source.acquire(l));
    ctx.layer = l;
    ctx.cache = &d.caches[static_cast<size_t>(l)];
    x = decoder_layer_forward(x, w, loras[static_cast<size_t>(l)], ctx);
    source.release(l);
  }
  return head_logits(x.narrow(1, t - 1, 1), source.head(), c).squeeze(1);
}

// After a token was added to g: cuts the text at the first stop string
// (ending the row) and streams what is ready. A decoder may render an
// incomplete byte sequence as U+FFFD: that is held back until it completes.
void update_text(Generation& g, bool& done, bool last_step, int64_t row, const Tokenizer& tokenizer,
                 const GenerateOptions& options, const TextCallback& on_text, size_t& emitted) {
  g.text = tokenizer.decode(g.tokens, /*skip_special=*/true);
  size_t cut = std::string::npos;
  for (const std::string& stop : options.stop_strings) {
    const size_t at = g.text.find(stop);
    if (at != std::string::npos) cut = std::min(cut, at + stop.size());
  }
  if (cut != std::string::npos && !done) {
    g.text.resize(cut);
    g.stop = StopReason::kStopString;
    done = true;
  }
  if (!on_text) return;
  size_t ready = done || last_step ? g.text.size() : complete_utf8_prefix(g.text);
  if (!done && ends_with(g.text.substr(0, ready), "\xEF\xBF\xBD")) ready -= 3;
  if (ready > emitted) {
    on_text(row, g.text.substr(emitted, ready - emitted));
    emitted = ready;
  }
}

}  // namespace

Result<std::vector<Generation>> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                    const GenerateOptions& options, const TextCallback& on_text) {
  const ModelConfig& c = source_.config();
  const auto b = static_cast<int64_t>(prompts.size());
  std::vector<Generation> out(static_cast<size_t>(b));
  if (b == 0) return out;
  LEMA_ASSIGN_OR_RETURN(const int64_t p_len, longest_prompt(prompts, c.vocab_size));
  if (options.max_new_tokens <= 0) return out;
  if (!options.stop_strings.empty() && tokenizer_ == nullptr) {
    return Status::invalid_argument("generate: stop strings need a tokenizer");
  }
  std::vector<int32_t> eos = options.eos_ids;
  if (eos.empty() && tokenizer_ != nullptr && tokenizer_->eos_id() >= 0) eos.push_back(tokenizer_->eos_id());

  try {
    at::NoGradGuard no_grad;
    const at::Device device = source_.device();
    const at::ScalarType dtype = source_.dtype();
    DecodeBatch batch = layout_batch(prompts, p_len, p_len + options.max_new_tokens, c, dtype, device);
    // LongRoPE (Phi-3) picks its factors by the length of each forward: a
    // sequence longer than original_max_position_embeddings takes the long
    // factors at every position. So when the sequence first outgrows it, the
    // cache (keys rotated with the short factors) is recomputed with the long
    // ones (below), and each token equals the model's uncached forward over
    // the whole sequence: tests/gpu/hf_parity.py checks that against
    // transformers (its generate departs from its own forward there).
    const Rope rope(c);
    bool long_rope = rope.long_context(p_len);
    at::Tensor fed = batch.ids.cpu();  // [B, P + steps]: every token run so far (a LongRoPE recompute runs them again)
    std::vector<LayerLora> loras(static_cast<size_t>(c.n_layers));
    if (adapter_ != nullptr) {
      for (int64_t l = 0; l < c.n_layers; ++l) loras[static_cast<size_t>(l)] = adapter_->layer(l, dtype, false);
    }
    std::vector<std::vector<int32_t>> context(prompts);  // prompt + generated ids, for the repetition penalty
    std::vector<uint64_t> rng(static_cast<size_t>(b));
    for (int64_t r = 0; r < b; ++r) rng[static_cast<size_t>(r)] = mix_seed(options.sampling.seed, static_cast<uint64_t>(r));
    std::vector<bool> done(static_cast<size_t>(b), false);
    std::vector<size_t> emitted(static_cast<size_t>(b), 0);
    int64_t n_done = 0;

    LEMA_ASSIGN_OR_RETURN(at::Tensor logits,
                          forward_step(source_, loras, batch, embed_tokens(batch.ids, source_.head(), c), 0));
    for (int64_t s = 0; s < options.max_new_tokens; ++s) {
      const bool last_step = s + 1 == options.max_new_tokens;
      const at::Tensor logits_cpu = logits.to(at::kCPU, at::kFloat);  // [B, V]
      at::Tensor next = at::zeros({b, 1}, at::TensorOptions().dtype(at::kLong));
      for (int64_t r = 0; r < b; ++r) {
        const auto ri = static_cast<size_t>(r);
        if (done[ri]) continue;
        Generation& g = out[ri];
        const int32_t tok = sample_token(logits_cpu[r], context[ri], options.sampling, rng[ri]);
        next[r][0] = static_cast<int64_t>(tok);
        if (std::find(eos.begin(), eos.end(), tok) != eos.end()) {
          g.stop = StopReason::kEos;
          done[ri] = true;
        } else {
          g.tokens.push_back(tok);
          context[ri].push_back(tok);
        }
        if (tokenizer_ != nullptr) {
          bool row_done = done[ri];
          update_text(g, row_done, last_step, r, *tokenizer_, options, on_text, emitted[ri]);
          done[ri] = row_done;
        }
        if (done[ri]) ++n_done;
      }
      if (n_done == b || last_step) break;
      fed = at::cat({fed, next}, 1);
      if (!long_rope && rope.long_context(p_len + s + 1)) {
        long_rope = true;
        build_rope_tables(batch, c, dtype, device, p_len + s + 1);
        LEMA_ASSIGN_OR_RETURN(logits,
                              forward_step(source_, loras, batch, embed_tokens(fed.to(device), source_.head(), c), 0));
        continue;
      }
      LEMA_ASSIGN_OR_RETURN(logits,
                            forward_step(source_, loras, batch, embed_tokens(next.to(device), source_.head(), c), p_len + s));
    }
    return out;
  } catch (const std::exception& e) {
    return Status::internal(std::string("generate: ") + e.what());
  }
}

}  // namespace lema::engine
