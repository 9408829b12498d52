// Every family of the table (common/formats/model_family.h) through the one
// decoder, in fp64 on the tiny-<family> presets (each family's features on:
// q/k/v bias, q/k norms, Gemma's four (1 + w) norms, scaled embeddings,
// tanh-GELU, soft-capping, query_pre_attn_scalar, sliding windows shorter
// than the sequence, Gemma 3's local RoPE base, Phi-3's fused qkv/gate_up
// projections with one LoRA pair each, LongRoPE on both sides of
// original_max_position_embeddings and a partial rotary factor):
//   * one decoder layer against a loop-by-loop implementation of Hugging
//     Face's formulas written here;
//   * the whole model: the head (embedding scale, final norm, soft-capping)
//     against the reference, and the layer-wise training step's loss and
//     LoRA gradients against plain autograd;
//   * greedy generation with the KV cache against full recomputation, with
//     prompts longer than the window.
// Exactness against transformers itself is tests/gpu/hf_parity.py.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/formats/model_family.h"
#include "common/formats/model_presets.h"
#include "engine/generator.h"
#include "engine/layer_source.h"
#include "engine/llama_model.h"
#include "engine/train_step.h"
#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

const std::vector<std::string> kPresets = {"tiny", "tiny-mistral", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2",
                                           "tiny-gemma3", "tiny-phi3"};

ModelConfig preset(const std::string& name) {
  auto c = model_preset(name);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  ModelConfig config = *c;
  config.initializer_range = 0.2;  // large enough that every layer matters
  return config;
}

using test_models::random_adapter;
using test_models::random_source;

// ---- The reference: Hugging Face's formulas in loops, plain doubles.

// long_context: LongRoPE's long list (a sequence past original_max_position_embeddings).
std::vector<double> ref_inv_freq(const ModelConfig& c, bool local, bool long_context) {
  std::vector<double> out;
  const int64_t rd = c.rotary_dim();
  for (int64_t i = 0; i < rd; i += 2) {
    const double base = local ? c.rope_local_base_freq : c.rope_theta;
    double f = 1.0 / std::pow(base, static_cast<double>(i) / rd);
    if (!local && c.rope_scaling.type == RopeScalingType::kLinear) f /= c.rope_scaling.factor;
    if (c.rope_scaling.type == RopeScalingType::kLongrope)
      f /= (long_context ? c.rope_scaling.long_factor : c.rope_scaling.short_factor)[static_cast<size_t>(i / 2)];
    out.push_back(f);
  }
  return out;
}

// LongRoPE's scale of cos and sin: sqrt(1 + ln(s) / ln(L)), s = max / L.
double ref_rope_scaling(const ModelConfig& c) {
  if (c.rope_scaling.type != RopeScalingType::kLongrope) return 1.0;
  const double orig = static_cast<double>(c.rope_scaling.original_max_position_embeddings);
  const double s = static_cast<double>(c.max_position_embeddings) / orig;
  return s <= 1 ? 1.0 : std::sqrt(1 + std::log(s) / std::log(orig));
}

// RMSNorm of one vector: HF's LlamaRMSNorm, or Gemma's with (1 + w).
at::Tensor ref_norm(const at::Tensor& v, const at::Tensor& w, const ModelConfig& c) {
  const double ms = (v * v).sum().item<double>() / v.size(0);
  const at::Tensor n = v / std::sqrt(ms + c.rms_norm_eps);
  return c.unit_offset_norm() ? n * (1.0 + w) : n * w;
}

at::Tensor ref_norm_rows(const at::Tensor& x, const at::Tensor& w, const ModelConfig& c) {
  at::Tensor out = at::empty_like(x);
  for (int64_t t = 0; t < x.size(0); ++t) out[t] = ref_norm(x[t], w, c);
  return out;
}

at::Tensor ref_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const LoraPair& lora) {
  at::Tensor y = at::zeros({x.size(0), w.size(0)}, at::kDouble);
  for (int64_t t = 0; t < x.size(0); ++t)
    for (int64_t o = 0; o < w.size(0); ++o) y[t][o] = (x[t] * w[o]).sum();
  if (bias.defined()) y = y + bias;
  if (lora.defined()) y = y + at::mm(at::mm(x, lora.a.t()), lora.b.t()) * lora.scale;
  return y;
}

double ref_gelu_tanh(double g) {
  return 0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
}

// One sequence x [T, H] through layer `layer`.
at::Tensor ref_layer(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora, const ModelConfig& c,
                     int64_t layer) {
  const int64_t T = x.size(0), hd = c.head_dim, rd = c.rotary_dim(), half = rd / 2, n_rep = c.n_heads / c.n_kv_heads;
  const bool sliding = c.is_sliding(layer);
  const bool long_context =
      c.rope_scaling.type == RopeScalingType::kLongrope && T > c.rope_scaling.original_max_position_embeddings;
  const auto inv_freq = ref_inv_freq(c, sliding && c.rope_local_base_freq > 0, long_context);
  const double rope_scale = ref_rope_scaling(c);
  auto rope = [&](const at::Tensor& v, int64_t pos) {
    at::Tensor out = v.clone();  // dimensions past rd pass unrotated
    for (int64_t j = 0; j < rd; ++j) {
      // HF computes the angle in float32.
      const double ang = static_cast<float>(static_cast<float>(pos) * static_cast<float>(inv_freq[j % half]));
      const double rot = j < half ? -v[j + half].item<double>() : v[j - half].item<double>();
      out[j] = (v[j].item<double>() * std::cos(ang) + rot * std::sin(ang)) * rope_scale;
    }
    return out;
  };
  const at::Tensor h = ref_norm_rows(x, w.input_norm, c);
  at::Tensor q, k, v;
  if (c.fused_projections()) {  // one projection and one LoRA pair, split by rows afterwards
    const at::Tensor qkv = ref_linear(h, w.qkv_proj, {}, lora[LoraTarget::kQkv]);
    q = qkv.narrow(1, 0, c.q_dim());
    k = qkv.narrow(1, c.q_dim(), c.kv_dim());
    v = qkv.narrow(1, c.q_dim() + c.kv_dim(), c.kv_dim());
  } else {
    q = ref_linear(h, w.q_proj, w.q_bias, lora[LoraTarget::kQ]);
    k = ref_linear(h, w.k_proj, w.k_bias, lora[LoraTarget::kK]);
    v = ref_linear(h, w.v_proj, w.v_bias, lora[LoraTarget::kV]);
  }
  const double scale = 1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : double(hd));
  at::Tensor attn = at::zeros({T, c.n_heads * hd}, at::kDouble);
  for (int64_t head = 0; head < c.n_heads; ++head) {
    const int64_t kvh = head / n_rep;
    auto key = [&](int64_t j) {
      at::Tensor kj = k[j].narrow(0, kvh * hd, hd);
      if (c.qk_norm()) kj = ref_norm(kj, w.k_norm, c);
      return rope(kj, j);
    };
    for (int64_t i = 0; i < T; ++i) {
      at::Tensor qi = q[i].narrow(0, head * hd, hd);
      if (c.qk_norm()) qi = ref_norm(qi, w.q_norm, c);
      qi = rope(qi, i);
      std::vector<double> scores;
      std::vector<int64_t> keys;
      double mx = -1e300;
      for (int64_t j = 0; j <= i; ++j) {
        if (sliding && i - j >= c.sliding_window) continue;  // keys (i - window, i]
        double s = (qi * key(j)).sum().item<double>() * scale;
        if (c.attn_logit_softcapping > 0) s = std::tanh(s / c.attn_logit_softcapping) * c.attn_logit_softcapping;
        scores.push_back(s);
        keys.push_back(j);
        mx = std::max(mx, s);
      }
      double z = 0;
      for (double& s : scores) z += (s = std::exp(s - mx));
      for (size_t n = 0; n < keys.size(); ++n)
        attn[i].narrow(0, head * hd, hd) += scores[n] / z * v[keys[n]].narrow(0, kvh * hd, hd);
    }
  }
  at::Tensor o = ref_linear(attn, w.o_proj, {}, lora[LoraTarget::kO]);
  if (c.sandwich_norms()) o = ref_norm_rows(o, w.post_norm, c);
  const at::Tensor x1 = x + o;
  const at::Tensor h2 = ref_norm_rows(x1, c.sandwich_norms() ? w.pre_ffn_norm : w.post_norm, c);
  at::Tensor g, up;
  if (c.fused_projections()) {
    const at::Tensor gate_up = ref_linear(h2, w.gate_up_proj, {}, lora[LoraTarget::kGateUp]);
    g = gate_up.narrow(1, 0, c.intermediate_size);
    up = gate_up.narrow(1, c.intermediate_size, c.intermediate_size);
  } else {
    g = ref_linear(h2, w.gate_proj, {}, lora[LoraTarget::kGate]);
    up = ref_linear(h2, w.up_proj, {}, lora[LoraTarget::kUp]);
  }
  at::Tensor act = at::empty_like(g);
  for (int64_t t = 0; t < g.size(0); ++t)
    for (int64_t n = 0; n < g.size(1); ++n) {
      const double gv = g[t][n].item<double>();
      act[t][n] = c.hidden_act == "silu" ? gv / (1 + std::exp(-gv)) : ref_gelu_tanh(gv);
    }
  at::Tensor m = ref_linear(act * up, w.down_proj, {}, lora[LoraTarget::kDown]);
  if (c.sandwich_norms()) m = ref_norm_rows(m, w.post_ffn_norm, c);
  return x1 + m;
}

// ---- Tests

TEST(ModelFamily, PresetsSwitchOnTheirFeatures) {
  EXPECT_TRUE(preset("tiny-qwen2").attention_bias);
  EXPECT_TRUE(preset("tiny-qwen3").qk_norm());
  EXPECT_TRUE(preset("tiny-gemma3").sandwich_norms());
  EXPECT_TRUE(preset("tiny-gemma3").unit_offset_norm());
  EXPECT_TRUE(preset("tiny-gemma2").final_logit_softcapping > 0);
  const ModelConfig phi = preset("tiny-phi3");
  EXPECT_TRUE(phi.fused_projections());
  EXPECT_EQ(phi.rope_scaling.type, RopeScalingType::kLongrope);
  EXPECT_EQ(phi.rotary_dim(), 12);  // partial: 12 of 16 dimensions rotate
  EXPECT_EQ(family_lora_targets(phi),
            (std::vector<LoraTarget>{LoraTarget::kQkv, LoraTarget::kO, LoraTarget::kGateUp, LoraTarget::kDown}));
  for (const std::string& name : kPresets) {
    const ModelConfig c = preset(name);
    if (name == "tiny") continue;
    bool any = false;
    for (int64_t l = 0; l < c.n_layers; ++l) any = any || c.is_sliding(l);
    EXPECT_TRUE(any) << name << ": no sliding layer";
  }
}

TEST(ModelFamily, DecoderLayerMatchesLoopReference) {
  for (const std::string& name : kPresets) {
    const ModelConfig c = preset(name);
    auto src = random_source(c, 4);
    LoraAdapter adapter = random_adapter(c);
    at::NoGradGuard no_grad;
    at::Generator gen = at::detail::createCPUGenerator(9);
    // 24: longer than the window (16); 18 as well where LongRoPE switches
    // lists at 20 (tiny-phi3): the short and the long factors.
    std::vector<int64_t> lengths = {24};
    if (c.rope_scaling.type == RopeScalingType::kLongrope) lengths.push_back(18);
    for (const int64_t T : lengths) {
    const at::Tensor x = at::empty({2, T, c.hidden_size}, at::kDouble).normal_(0, 1, gen);
    LayerContext ctx = make_layer_context(c, T, at::kDouble, at::kCPU);
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
      ctx.layer = layer;
      const LayerWeights w = src->acquire(layer).value();
      const LayerLora lora = adapter.layer(layer, at::kDouble, false);
      const at::Tensor y = decoder_layer_forward(x, w, lora, ctx);
      for (int64_t b = 0; b < 2; ++b) {
        const at::Tensor ref = ref_layer(x[b], w, lora, c, layer);
        // RoPE angles are float32 in HF (and here); the reference takes their cos in doubles.
        EXPECT_LT((y[b] - ref).abs().max().item<double>(), 2e-5) << name << " layer " << layer;
        EXPECT_GT((y[b] - x[b]).abs().max().item<double>(), 0.1) << name;
      }
    }
    }
  }
}

TEST(ModelFamily, LongRopeTablesAsTransformers) {
  const ModelConfig c = preset("tiny-phi3");
  const Rope rope(c);
  EXPECT_FALSE(rope.long_context(20));  // transformers: seq_len > original_max
  EXPECT_TRUE(rope.long_context(21));
  const auto [cos_s, sin_s] = rope.cos_sin(24, at::kDouble, at::kCPU, false);
  const auto [cos_l, sin_l] = rope.cos_sin(24, at::kDouble, at::kCPU, true);
  ASSERT_EQ(cos_s.sizes(), at::IntArrayRef({24, 12}));
  // Position 0: cos = the attention factor sqrt(1 + ln(512 / 20) / ln 20), in float32.
  const double scale = std::sqrt(1 + std::log(512.0 / 20.0) / std::log(20.0));
  EXPECT_NEAR(cos_s[0][0].item<double>(), scale, 1e-6);
  EXPECT_NEAR(cos_l[0][5].item<double>(), scale, 1e-6);
  // Position 23, pair 5: inv_freq = 1 / (factor * 10000^(10/12)).
  for (bool is_long : {false, true}) {
    const double f = is_long ? 32.0 : 4.0;
    const double ang = 23.0 / (f * std::pow(10000.0, 10.0 / 12.0));
    EXPECT_NEAR((is_long ? sin_l : sin_s)[23][11].item<double>(), std::sin(ang) * scale, 1e-6) << is_long;
  }
  EXPECT_GT((cos_s - cos_l).abs().max().item<double>(), 0.1);
  // The context picks the list: 20 positions short, 24 long.
  EXPECT_TRUE(at::equal(make_layer_context(c, 20, at::kDouble, at::kCPU).cos, cos_s.narrow(0, 0, 20)));
  EXPECT_TRUE(at::equal(make_layer_context(c, 24, at::kDouble, at::kCPU).cos, cos_l));
}

TEST(ModelFamily, HeadMatchesReference) {
  for (const std::string& name : kPresets) {
    const ModelConfig c = preset(name);
    auto src = random_source(c, 5);
    at::NoGradGuard no_grad;
    const at::Tensor ids = at::arange(7, at::TensorOptions().dtype(at::kLong)).view({1, 7}) * 31 % c.vocab_size;
    const at::Tensor x = embed_tokens(ids, src->head(), c)[0];
    const double emb_scale = c.scaled_embedding() ? std::sqrt(static_cast<double>(c.hidden_size)) : 1.0;
    EXPECT_LT((x - src->head().embed.index_select(0, ids[0]) * emb_scale).abs().max().item<double>(), 1e-12) << name;
    const at::Tensor logits = head_logits(x.unsqueeze(0), src->head(), c)[0];
    at::Tensor ref = at::mm(ref_norm_rows(x, src->head().final_norm, c), src->head().lm_head.t());
    if (c.final_logit_softcapping > 0)
      ref = at::tanh(ref / c.final_logit_softcapping) * c.final_logit_softcapping;
    EXPECT_LT((logits - ref).abs().max().item<double>(), 1e-10) << name;
  }
}

TEST(ModelFamily, LayerwiseStepEqualsFullAutograd) {
  for (const std::string& name : kPresets) {
    const ModelConfig c = preset(name);
    auto src = random_source(c, 7);
    LoraAdapter adapter = random_adapter(c);
    const std::vector<MicroBatch> mbs = {test_models::random_padded_batch(c, 2, 24, 1),
                                         test_models::random_padded_batch(c, 1, 20, 2)};
    // Reference: plain autograd through the whole model, full logits.
    adapter.zero_grad();
    double ref_loss = 0;
    {
      at::AutoGradMode grad_on(true);
      int64_t total = 0;
      for (const auto& mb : mbs) total += (shift_labels(mb.labels) != -100).sum().item<int64_t>();
      at::Tensor loss = at::zeros({}, at::kDouble);
      for (const MicroBatch& mb : mbs) {
        LayerContext ctx = make_layer_context(c, mb.input_ids.size(1), at::kDouble, at::kCPU);
        at::Tensor x = embed_tokens(mb.input_ids, src->head(), c);
        for (int64_t l = 0; l < c.n_layers; ++l) {
          ctx.layer = l;
          x = decoder_layer_forward(x, src->acquire(l).value(), adapter.layer(l, at::kDouble, false), ctx);
        }
        const at::Tensor logits = head_logits(x, src->head(), c).reshape({-1, c.vocab_size});
        loss = loss + at::cross_entropy_loss(logits, shift_labels(mb.labels).reshape({-1}), {}, at::Reduction::Sum,
                                             -100, 0.0);
      }
      loss = loss / static_cast<double>(total);
      loss.backward();
      ref_loss = loss.item<double>();
    }
    std::vector<at::Tensor> ref_grads;
    for (const at::Tensor& p : adapter.parameters()) ref_grads.push_back(p.grad().clone());
    adapter.zero_grad();
    StepOptions opts;
    opts.dropout = false;
    opts.loss_chunk_tokens = 5;
    auto r = layerwise_forward_backward(*src, adapter, mbs, 3, opts);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_NEAR(r->loss, ref_loss, 1e-9 * ref_loss) << name;
    const auto params = adapter.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      const double scale = ref_grads[i].abs().max().item<double>();
      EXPECT_GT(scale, 1e-8) << name << " parameter " << i;
      EXPECT_LT((params[i].grad() - ref_grads[i]).abs().max().item<double>(), 1e-9 * scale) << name;
    }
  }
}

// A source whose head streams (HeadWeights::vocab_chunk): the same tensors,
// lm_head taken `chunk` vocabulary rows at a time.
class StreamedHeadSource : public LayerSource {
 public:
  StreamedHeadSource(LayerSource& inner, int64_t chunk) : inner_(inner), head_(inner.head()) { head_.vocab_chunk = chunk; }
  const ModelConfig& config() const override { return inner_.config(); }
  at::ScalarType dtype() const override { return inner_.dtype(); }
  at::Device device() const override { return inner_.device(); }
  const HeadWeights& head() override { return head_; }
  Result<LayerWeights> acquire(int64_t layer) override { return inner_.acquire(layer); }
  bool stays_resident(int64_t layer) const override { return inner_.stays_resident(layer); }

 private:
  LayerSource& inner_;
  HeadWeights head_;
};

// The streamed head (one pass over vocabulary chunks: online log-sum-exp
// with the gradient accumulated alongside) gives the loss and every LoRA gradient of the resident
// head, for chunks that divide the vocabulary, that do not, and one row;
// its logits are the resident head's.
TEST(ModelFamily, StreamedHeadEqualsResidentHead) {
  for (const std::string& name : kPresets) {
    const ModelConfig c = preset(name);
    auto src = random_source(c, 11);
    LoraAdapter adapter = random_adapter(c);
    const std::vector<MicroBatch> mbs = {test_models::random_padded_batch(c, 2, 24, 3),
                                         test_models::random_padded_batch(c, 1, 20, 4)};
    StepOptions opts;
    opts.dropout = false;
    opts.loss_chunk_tokens = 5;
    adapter.zero_grad();
    auto ref = layerwise_forward_backward(*src, adapter, mbs, 3, opts);
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    std::vector<at::Tensor> ref_grads;
    for (const at::Tensor& p : adapter.parameters()) ref_grads.push_back(p.grad().clone());
    for (int64_t chunk : {int64_t{1}, int64_t{7}, c.vocab_size / 4, c.vocab_size}) {
      StreamedHeadSource streamed(*src, chunk);
      adapter.zero_grad();
      auto r = layerwise_forward_backward(streamed, adapter, mbs, 3, opts);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_NEAR(r->loss, ref->loss, 1e-12 * ref->loss) << name << " chunk " << chunk;
      const auto params = adapter.parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        const double scale = ref_grads[i].abs().max().item<double>();
        EXPECT_LT((params[i].grad() - ref_grads[i]).abs().max().item<double>(), 1e-11 * scale)
            << name << " chunk " << chunk << " parameter " << i;
      }
      at::NoGradGuard no_grad;
      const at::Tensor x = embed_tokens(mbs[0].input_ids, src->head(), c);
      EXPECT_TRUE(at::equal(embed_tokens(mbs[0].input_ids, streamed.head(), c), x)) << name;
      EXPECT_LT((head_logits(x, streamed.head(), c) - head_logits(x, src->head(), c)).abs().max().item<double>(), 1e-12)
          << name << " chunk " << chunk;
    }
  }
}

// The streamed head over several micro-batches at once (one of them without
// a label, one long enough that the running max grows many times) equals
// the resident head run on each: losses, label counts and the hidden
// states' gradients in fp64, the evaluation loss too; in bf16 the same
// within bf16 rounding (each chunk's product is rounded, the resident
// GEMM rounds once). Then two steps of gradient accumulation through the
// whole model: the LoRA gradients summed over both equal the resident ones.
TEST(ModelFamily, StreamedHeadAccumulatesOverMicroBatches) {
  for (const std::string& name : kPresets) {
    ModelConfig c = preset(name);
    c.initializer_range = 0.3;  // peaky logits: the running max moves between chunks
    auto src = random_source(c, 21);
    std::vector<MicroBatch> mbs = {test_models::random_padded_batch(c, 2, 24, 5),
                                   test_models::random_padded_batch(c, 1, 9, 6),
                                   test_models::random_padded_batch(c, 3, 16, 7),
                                   test_models::random_padded_batch(c, 1, 12, 8)};
    mbs[1].labels.fill_(-100);  // no label: no loss, a zero gradient
    at::Generator gen = at::detail::createCPUGenerator(31);
    std::vector<at::Tensor> hidden, labels;
    for (const MicroBatch& m : mbs) {
      hidden.push_back(at::randn({m.input_ids.size(0), m.input_ids.size(1), c.hidden_size}, gen,
                                 at::TensorOptions().dtype(at::kDouble)));
      labels.push_back(m.labels);
    }
    const double denominator = 37.0;
    double worst[2] = {0, 0};  // fp64, bf16: the largest gradient difference relative to its scale
    for (at::ScalarType dtype : {at::kDouble, at::kBFloat16}) {
      HeadWeights resident = src->head();
      for (at::Tensor* t : {&resident.embed, &resident.final_norm, &resident.lm_head}) *t = t->to(dtype);
      std::vector<at::Tensor> x;
      for (const at::Tensor& h : hidden) x.push_back(h.to(dtype));
      for (int64_t chunk : {int64_t{1}, int64_t{7}, c.vocab_size / 3 + 1}) {
        HeadWeights streamed = resident;
        streamed.vocab_chunk = chunk;
        const std::vector<HeadLossResult> all = head_loss_backward_all(x, labels, streamed, c, denominator, 5);
        ASSERT_EQ(all.size(), mbs.size());
        for (size_t m = 0; m < mbs.size(); ++m) {
          const std::string where = name + " " + std::string(c10::toString(dtype)) + " chunk " +
                                    std::to_string(chunk) + " micro-batch " + std::to_string(m);
          const HeadLossResult ref = head_loss_backward(x[m], labels[m], resident, c, denominator, 5);
          EXPECT_EQ(all[m].n_valid, ref.n_valid) << where;
          ASSERT_TRUE(all[m].grad_hidden.defined()) << where;
          EXPECT_EQ(all[m].grad_hidden.sizes(), x[m].sizes()) << where;
          const double scale = ref.grad_hidden.abs().max().item<double>();
          const double diff = (all[m].grad_hidden - ref.grad_hidden).abs().max().item<double>();
          const double eval_loss = head_loss(x[m], labels[m], streamed, c, 5).loss_sum;
          if (m == 1) {
            EXPECT_EQ(all[m].n_valid, 0) << where;
            EXPECT_EQ(all[m].loss_sum, 0.0) << where;
            EXPECT_EQ(diff, 0.0) << where;
            continue;
          }
          EXPECT_GT(scale, 0.0) << where;
          double& w = worst[dtype == at::kDouble ? 0 : 1];
          w = std::max(w, diff / scale);
          if (dtype == at::kDouble) {
            EXPECT_NEAR(all[m].loss_sum, ref.loss_sum, 1e-12 * ref.loss_sum) << where;
            EXPECT_NEAR(eval_loss, ref.loss_sum, 1e-12 * ref.loss_sum) << where;
            EXPECT_LT(diff, 1e-12 * scale) << where;
          } else {
            EXPECT_NEAR(all[m].loss_sum, ref.loss_sum, 1e-4 * ref.loss_sum) << where;
            EXPECT_NEAR(eval_loss, ref.loss_sum, 1e-4 * ref.loss_sum) << where;
            EXPECT_LT(diff, 3e-2 * scale) << where;
          }
        }
      }
    }

    std::printf("%s: streamed vs resident head, worst hidden-state gradient difference / scale: fp64 %.2g, bf16 %.2g\n",
                name.c_str(), worst[0], worst[1]);

    // Two steps' gradients accumulated (no zero_grad between them).
    LoraAdapter adapter = random_adapter(c);
    StepOptions opts;
    opts.dropout = false;
    opts.loss_chunk_tokens = 5;
    auto two_steps = [&](LayerSource& source) {
      adapter.zero_grad();
      for (int step = 0; step < 2; ++step) {
        auto r = layerwise_forward_backward(source, adapter, mbs, 3 + step, opts);
        EXPECT_TRUE(r.ok()) << r.status().to_string();
      }
      std::vector<at::Tensor> grads;
      for (const at::Tensor& p : adapter.parameters()) grads.push_back(p.grad().clone());
      return grads;
    };
    const std::vector<at::Tensor> ref_grads = two_steps(*src);
    StreamedHeadSource streamed(*src, 7);
    const std::vector<at::Tensor> grads = two_steps(streamed);
    for (size_t i = 0; i < grads.size(); ++i) {
      const double scale = ref_grads[i].abs().max().item<double>();
      EXPECT_GT(scale, 1e-8) << name << " parameter " << i;
      EXPECT_LT((grads[i] - ref_grads[i]).abs().max().item<double>(), 1e-11 * scale) << name << " parameter " << i;
    }
  }
}

TEST(ModelFamily, KvCacheGenerationEqualsRecomputation) {
  for (const std::string& name : kPresets) {
    ModelConfig c = preset(name);
    c.initializer_range = 0.3;  // peaky logits: no constant token
    auto src = random_source(c, 3);
    LoraAdapter adapter = random_adapter(c);
    // Prompts of different lengths (left padding in the batch), both longer
    // than the window once generation runs.
    const std::vector<std::vector<int32_t>> prompts = {
        {5, 9, 14, 200, 3, 77, 101, 8, 64, 33, 12, 90, 45, 7, 300, 11, 2, 19},
        {42, 17, 250, 6, 9}};
    GenerateOptions go;
    go.max_new_tokens = 12;
    go.eos_ids = {-1};
    Generator gen(*src, &adapter, nullptr);
    std::vector<Generation> generated;
    if (c.rope_scaling.type == RopeScalingType::kLongrope) {
      // LongRoPE picks its list by the batch's padded length (as transformers
      // does), so a prompt alone matches its recomputation: one at a time.
      // The 18-token prompt crosses original_max (20) while generating.
      for (const auto& p : prompts) {
        auto one = gen.generate({p}, go);
        ASSERT_TRUE(one.ok()) << one.status().to_string();
        generated.push_back((*one)[0]);
      }
    } else {
      auto all = gen.generate(prompts, go);
      ASSERT_TRUE(all.ok()) << all.status().to_string();
      generated = *all;
    }
    const std::vector<Generation>* out = &generated;
    at::NoGradGuard no_grad;
    for (size_t p = 0; p < prompts.size(); ++p) {
      std::vector<int32_t> seq = prompts[p];
      for (int64_t s = 0; s < go.max_new_tokens; ++s) {
        const int64_t t = static_cast<int64_t>(seq.size());
        const at::Tensor ids = at::tensor(std::vector<int64_t>(seq.begin(), seq.end()), at::kLong).view({1, t});
        LayerContext ctx = make_layer_context(c, t, at::kDouble, at::kCPU);
        at::Tensor x = embed_tokens(ids, src->head(), c);
        for (int64_t l = 0; l < c.n_layers; ++l) {
          ctx.layer = l;
          x = decoder_layer_forward(x, src->acquire(l).value(), adapter.layer(l, at::kDouble, false), ctx);
        }
        seq.push_back(static_cast<int32_t>(head_logits(x, src->head(), c)[0][t - 1].argmax().item<int64_t>()));
      }
      const std::vector<int32_t> want(seq.begin() + static_cast<int64_t>(prompts[p].size()), seq.end());
      EXPECT_EQ((*out)[p].tokens, want) << name << " prompt " << p;
    }
  }
}

}  // namespace
}  // namespace lema::engine
