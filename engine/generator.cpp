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

Result<std::vector<Generation>> Generator::generate(const std::vector<std::vector<int32_t>>& prompts,
                                                    const GenerateOptions& options, const TextCallback& on_text) {
  const ModelConfig& c = source_.config();
  const auto b = static_cast<int64_t>(prompts.size());
  std::vector<Generation> out(static_cast<size_t>(b));
  if (b == 0) return out;
  int64_t p_len = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return Status::invalid_argument("generate: prompt " + std::to_string(i) + " is empty");
    for (int32_t id : prompts[i]) {
      if (id < 0 || id >= c.vocab_size) {
        return Status::invalid_argument("generate: prompt " + std::to_string(i) + " has token id " +
                                        std::to_string(id) + " outside the vocabulary (" +
                                        std::to_string(c.vocab_size) + ")");
      }
    }
    p_len = std::max<int64_t>(p_len, static_cast<int64_t>(prompts[i].size()));
  }
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
    const int64_t t_max = p_len + options.max_new_tokens;
    const auto long_cpu = at::TensorOptions().dtype(at::kLong);

    // Left padding: row r's prompt sits at [pad_r, p_len).
    at::Tensor ids = at::zeros({b, p_len}, long_cpu);           // [B, P]
    at::Tensor valid = at::ones({b, t_max}, at::TensorOptions().dtype(at::kBool));  // [B, Tmax]
    at::Tensor positions = at::zeros({b, t_max}, long_cpu);     // [B, Tmax]
    std::vector<std::vector<int32_t>> context(static_cast<size_t>(b));
    for (int64_t r = 0; r < b; ++r) {
      const auto& pr = prompts[static_cast<size_t>(r)];
      const int64_t pad = p_len - static_cast<int64_t>(pr.size());
      for (size_t j = 0; j < pr.size(); ++j) ids[r][pad + static_cast<int64_t>(j)] = static_cast<int64_t>(pr[j]);
      if (pad > 0) valid[r].narrow(0, 0, pad).fill_(false);
      positions[r] = at::clamp_min(at::arange(t_max, long_cpu) - pad, 0);
      context[static_cast<size_t>(r)] = pr;
    }
    valid = valid.to(device);
    positions = positions.to(device);
    // RoPE tables gathered at each row's positions: [B, 1, Tmax, hd].
    auto per_row = [&](const at::Tensor& table) {
      return table.index_select(0, positions.reshape({-1})).view({b, 1, t_max, table.size(1)});
    };
    // LongRoPE (Phi-3) picks its factors by the length of each forward; when
    // the sequence first outgrows original_max_position_embeddings,
    // transformers drops the cache and recomputes every position with the
    // long factors (Phi3ForCausalLM.prepare_inputs_for_generation), and so
    // does this loop (below). rope_len: the forward length the tables serve.
    const Rope rope(c);
    at::Tensor cos_all, sin_all, cos_local, sin_local;
    auto build_tables = [&](int64_t rope_len) {
      const LayerContext tables = make_layer_context(c, t_max, dtype, device, rope_len);
      cos_all = per_row(tables.cos);
      sin_all = per_row(tables.sin);
      cos_local = tables.cos_local.defined() ? per_row(tables.cos_local) : at::Tensor();
      sin_local = tables.sin_local.defined() ? per_row(tables.sin_local) : at::Tensor();
    };
    build_tables(p_len);
    bool long_rope = rope.long_context(p_len);
    at::Tensor fed = ids;  // [B, P + steps]: every token run so far (a LongRoPE recompute runs them again)
    const at::Tensor index = at::arange(t_max, long_cpu.device(device));  // [Tmax]

    std::vector<LayerLora> loras(static_cast<size_t>(c.n_layers));
    if (adapter_ != nullptr) {
      for (int64_t l = 0; l < c.n_layers; ++l) loras[static_cast<size_t>(l)] = adapter_->layer(l, dtype, false);
    }
    std::vector<KvCache> caches(static_cast<size_t>(c.n_layers));
    for (auto& kv : caches) {
      kv.k = at::zeros({b, c.n_kv_heads, t_max, c.head_dim}, at::TensorOptions().dtype(dtype).device(device));
      kv.v = at::zeros_like(kv.k);
    }

    // Runs `x` [B, T, H] (positions offset..offset+T) through every layer
    // (the one decoder forward, appending to each layer's cache); returns
    // the last position's logits [B, V].
    auto run_layers = [&](at::Tensor x, int64_t offset) -> Result<at::Tensor> {
      const int64_t t = x.size(1);
      const at::Tensor qi = index.narrow(0, offset, t).view({t, 1});      // [T, 1]
      const at::Tensor kj = index.narrow(0, 0, offset + t).view({1, -1});  // [1, S]
      // Causal and not a pad; a pad query may see itself so no row is all -inf.
      const at::Tensor causal = (kj <= qi).unsqueeze(0) & valid.narrow(1, 0, offset + t).unsqueeze(1);
      const at::Tensor self = (kj == qi).unsqueeze(0);
      LayerContext ctx;
      ctx.config = &c;
      ctx.allowed = (causal | self).unsqueeze(1);  // [B, 1, T, S]
      // Sliding layers: only the last `window` keys (index differences equal
      // position differences between a row's real tokens).
      if (c.sliding_window > 0) ctx.allowed_local = ((causal & (kj > qi - c.sliding_window).unsqueeze(0)) | self).unsqueeze(1);
      ctx.cos = cos_all.narrow(2, offset, t);
      ctx.sin = sin_all.narrow(2, offset, t);
      if (cos_local.defined()) {
        ctx.cos_local = cos_local.narrow(2, offset, t);
        ctx.sin_local = sin_local.narrow(2, offset, t);
      }
      ctx.cache_offset = offset;
      for (int64_t l = 0; l < c.n_layers; ++l) {
        if (l + 1 < c.n_layers) source_.prefetch(l + 1);
        LEMA_ASSIGN_OR_RETURN(LayerWeights w, source_.acquire(l));
        ctx.layer = l;
        ctx.cache = &caches[static_cast<size_t>(l)];
        x = decoder_layer_forward(x, w, loras[static_cast<size_t>(l)], ctx);
        source_.release(l);
      }
      return head_logits(x.narrow(1, t - 1, 1), source_.head(), c).squeeze(1);
    };

    std::vector<uint64_t> rng(static_cast<size_t>(b));
    for (int64_t r = 0; r < b; ++r) rng[static_cast<size_t>(r)] = mix_seed(options.sampling.seed, static_cast<uint64_t>(r));
    std::vector<bool> done(static_cast<size_t>(b), false);
    std::vector<size_t> emitted(static_cast<size_t>(b), 0);
    int64_t n_done = 0;

    LEMA_ASSIGN_OR_RETURN(at::Tensor logits, run_layers(embed_tokens(ids.to(device), source_.head(), c), 0));
    for (int64_t s = 0; s < options.max_new_tokens; ++s) {
      const at::Tensor logits_cpu = logits.to(at::kCPU, at::kFloat);  // [B, V]
      at::Tensor next = at::zeros({b, 1}, long_cpu);
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
          g.text = tokenizer_->decode(g.tokens, /*skip_special=*/true);
          size_t cut = std::string::npos;
          for (const std::string& stop : options.stop_strings) {
            const size_t at = g.text.find(stop);
            if (at != std::string::npos) cut = std::min(cut, at + stop.size());
          }
          if (cut != std::string::npos && !done[ri]) {
            g.text.resize(cut);
            g.stop = StopReason::kStopString;
            done[ri] = true;
          }
          if (on_text) {
            size_t ready = done[ri] || s + 1 == options.max_new_tokens ? g.text.size() : complete_utf8_prefix(g.text);
            // A decoder may render an incomplete byte sequence as U+FFFD: hold it back.
            if (!done[ri] && ends_with(g.text.substr(0, ready), "\xEF\xBF\xBD")) ready -= 3;
            if (ready > emitted[ri]) {
              on_text(r, g.text.substr(emitted[ri], ready - emitted[ri]));
              emitted[ri] = ready;
            }
          }
        }
        if (done[ri]) ++n_done;
      }
      if (n_done == b || s + 1 == options.max_new_tokens) break;
      fed = at::cat({fed, next}, 1);
      if (!long_rope && rope.long_context(p_len + s + 1)) {
        long_rope = true;
        build_tables(p_len + s + 1);
        LEMA_ASSIGN_OR_RETURN(logits, run_layers(embed_tokens(fed.to(device), source_.head(), c), 0));
        continue;
      }
      LEMA_ASSIGN_OR_RETURN(logits, run_layers(embed_tokens(next.to(device), source_.head(), c), p_len + s));
    }
    return out;
  } catch (const std::exception& e) {
    return Status::internal(std::string("generate: ") + e.what());
  }
}

}  // namespace lema::engine
