// One decoder layer with LoRA against an independent, loop-by-loop
// implementation of Hugging Face's formulas written here (fp64), and the
// RoPE frequencies against HF's rope-init functions computed in scalars.
#include "engine/llama_model.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/formats/model_presets.h"
#include "engine/layer_source.h"

namespace lema::engine {
namespace {

// HF rope init (default / linear / llama3) with plain doubles.
std::vector<double> reference_inv_freq(const ModelConfig& c) {
  std::vector<double> out;
  const RopeScaling& s = c.rope_scaling;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(i) / c.head_dim);
    if (s.type == RopeScalingType::kLinear) f /= s.factor;
    if (s.type == RopeScalingType::kLlama3) {
      const double wavelen = 2 * M_PI / f;
      const double low = s.original_max_position_embeddings / s.low_freq_factor;
      const double high = s.original_max_position_embeddings / s.high_freq_factor;
      if (wavelen > low) {
        f = f / s.factor;
      } else if (wavelen >= high) {
        const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    out.push_back(f);
  }
  return out;
}

ModelConfig config_with(RopeScalingType rope) {
  ModelConfig c;
  c.hidden_size = 48;
  c.intermediate_size = 40;
  c.n_layers = 1;
  c.n_heads = 3;
  c.n_kv_heads = 1;  // GQA, 3 query heads per kv head
  c.head_dim = 16;
  c.vocab_size = 10;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.initializer_range = 0.3;
  c.rope_scaling.type = rope;
  c.rope_scaling.factor = rope == RopeScalingType::kLinear ? 4.0 : 8.0;
  c.rope_scaling.original_max_position_embeddings = 64;
  return c;
}

TEST(Rope, InvFreqMatchesHfFormulas) {
  for (auto type : {RopeScalingType::kNone, RopeScalingType::kLinear, RopeScalingType::kLlama3}) {
    const ModelConfig c = config_with(type);
    const Rope rope(c);
    const auto ref = reference_inv_freq(c);
    ASSERT_EQ(rope.inv_freq().numel(), static_cast<int64_t>(ref.size()));
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_NEAR(rope.inv_freq()[i].item<double>(), ref[i], 1e-6 * ref[i]) << "i=" << i;
    }
  }
  // llama3 with these numbers scales the low band, keeps the high band and smooths between.
  const auto plain = reference_inv_freq(config_with(RopeScalingType::kNone));
  const auto l3 = reference_inv_freq(config_with(RopeScalingType::kLlama3));
  EXPECT_EQ(l3.front(), plain.front());
  EXPECT_NEAR(l3.back(), plain.back() / 8.0, 1e-15);
  bool smoothed = false;
  for (size_t i = 0; i < l3.size(); ++i) smoothed |= (l3[i] != plain[i] && std::abs(l3[i] - plain[i] / 8) > 1e-12);
  EXPECT_TRUE(smoothed);
}

// Plain loops: x [T, H] of one sequence, weights as [out, in] matrices.
at::Tensor ref_linear(const at::Tensor& x, const at::Tensor& w, const LoraPair& lora) {
  at::Tensor y = at::zeros({x.size(0), w.size(0)}, at::kDouble);
  for (int64_t t = 0; t < x.size(0); ++t)
    for (int64_t o = 0; o < w.size(0); ++o) y[t][o] = (x[t] * w[o]).sum();
  if (lora.defined()) {
    const at::Tensor ax = at::mm(x, lora.a.t());
    y = y + at::mm(ax, lora.b.t()) * lora.scale;
  }
  return y;
}

at::Tensor ref_rms(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor out = at::empty_like(x);
  for (int64_t t = 0; t < x.size(0); ++t) {
    const double ms = (x[t] * x[t]).sum().item<double>() / x.size(1);
    out[t] = x[t] / std::sqrt(ms + eps) * w;
  }
  return out;
}

at::Tensor ref_decoder_layer(const at::Tensor& x, const LayerWeights& w, const LayerLora& lora, const ModelConfig& c) {
  const int64_t T = x.size(0), hd = c.head_dim, half = hd / 2, n_rep = c.n_heads / c.n_kv_heads;
  const auto inv_freq = reference_inv_freq(c);
  auto rope = [&](at::Tensor v, int64_t pos) {  // v [hd]
    at::Tensor out = at::empty_like(v);
    for (int64_t j = 0; j < hd; ++j) {
      const double ang = pos * inv_freq[j % half];
      const double rot = j < half ? -v[j + half].item<double>() : v[j - half].item<double>();
      out[j] = v[j].item<double>() * std::cos(ang) + rot * std::sin(ang);
    }
    return out;
  };
  const at::Tensor h = ref_rms(x, w.input_norm, c.rms_norm_eps);
  const at::Tensor q = ref_linear(h, w.q_proj, lora[LoraTarget::kQ]);
  const at::Tensor k = ref_linear(h, w.k_proj, lora[LoraTarget::kK]);
  const at::Tensor v = ref_linear(h, w.v_proj, lora[LoraTarget::kV]);
  at::Tensor attn = at::zeros({T, c.n_heads * hd}, at::kDouble);
  for (int64_t head = 0; head < c.n_heads; ++head) {
    const int64_t kvh = head / n_rep;  // GQA: heads share kv heads in groups
    for (int64_t i = 0; i < T; ++i) {
      const at::Tensor qi = rope(q[i].narrow(0, head * hd, hd), i);
      std::vector<double> scores;
      double mx = -1e300;
      for (int64_t j = 0; j <= i; ++j) {  // causal
        const double s = (qi * rope(k[j].narrow(0, kvh * hd, hd), j)).sum().item<double>() / std::sqrt(double(hd));
        scores.push_back(s);
        mx = std::max(mx, s);
      }
      double z = 0;
      for (double& s : scores) z += (s = std::exp(s - mx));
      for (int64_t j = 0; j <= i; ++j) attn[i].narrow(0, head * hd, hd) += scores[j] / z * v[j].narrow(0, kvh * hd, hd);
    }
  }
  const at::Tensor x1 = x + ref_linear(attn, w.o_proj, lora[LoraTarget::kO]);
  const at::Tensor h2 = ref_rms(x1, w.post_norm, c.rms_norm_eps);
  const at::Tensor g = ref_linear(h2, w.gate_proj, lora[LoraTarget::kGate]);
  const at::Tensor act = g / (1 + at::exp(-g)) * ref_linear(h2, w.up_proj, lora[LoraTarget::kUp]);
  return x1 + ref_linear(act, w.down_proj, lora[LoraTarget::kDown]);
}

TEST(DecoderLayer, MatchesLoopReference) {
  for (auto type : {RopeScalingType::kNone, RopeScalingType::kLinear, RopeScalingType::kLlama3}) {
    ModelConfig c = config_with(type);
    auto tensors = make_random_model(c, 4, at::kDouble);
    at::Generator gen = at::detail::createCPUGenerator(9);
    // Non-trivial norm weights.
    tensors["model.layers.0.input_layernorm.weight"] = at::empty({c.hidden_size}, at::kDouble).uniform_(0.5, 1.5, gen);
    tensors["model.layers.0.post_attention_layernorm.weight"] = at::empty({c.hidden_size}, at::kDouble).uniform_(0.5, 1.5, gen);
    auto src = InMemoryLayerSource::create(c, tensors, at::kDouble, at::kCPU).value();
    LoraConfig lc;
    lc.r = 3;
    lc.alpha = 5;
    lc.targets = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kO, LoraTarget::kUp, LoraTarget::kDown};
    LoraAdapter adapter = LoraAdapter::init(c, lc, 1, at::kDouble, at::kCPU);
    {
      at::NoGradGuard ng;
      for (at::Tensor& p : adapter.parameters()) if (p.size(1) == lc.r) p.normal_(0, 0.2, gen);
    }
    at::NoGradGuard no_grad;
    const LayerLora lora = adapter.layer(0, at::kDouble, false);
    const LayerWeights w = src->acquire(0).value();
    const int64_t T = 20;  // positions beyond the 16-wide bands exercise the rope scaling
    const at::Tensor x = at::empty({2, T, c.hidden_size}, at::kDouble).normal_(0, 1, gen);
    LayerContext ctx;
    ctx.config = &c;
    std::tie(ctx.cos, ctx.sin) = Rope(c).cos_sin(T, at::kDouble, at::kCPU);
    const at::Tensor y = decoder_layer_forward(x, w, lora, ctx);
    for (int64_t b = 0; b < 2; ++b) {
      const at::Tensor ref = ref_decoder_layer(x[b], w, lora, c);
      const double diff = (y[b] - ref).abs().max().item<double>();
      // RoPE angles are float32 in HF (and here); the reference uses doubles.
      EXPECT_LT(diff, 2e-5) << "rope type " << static_cast<int>(type);
      EXPECT_GT((y[b] - x[b]).abs().max().item<double>(), 0.1);  // the layer does something
    }
  }
}

TEST(Lora, InitIsPeftKaimingUniformAndZeroB) {
  ModelConfig c = config_with(RopeScalingType::kNone);
  LoraConfig lc;
  lc.r = 8;
  lc.alpha = 16;
  LoraAdapter adapter = LoraAdapter::init(c, lc, 3, at::kFloat, at::kCPU);
  const at::Tensor a = adapter.a(0, LoraTarget::kDown);  // in = intermediate_size
  const double bound = 1.0 / std::sqrt(static_cast<double>(c.intermediate_size));
  EXPECT_EQ(a.sizes(), at::IntArrayRef({8, c.intermediate_size}));
  EXPECT_LE(a.abs().max().item<double>(), bound);
  EXPECT_GT(a.abs().max().item<double>(), 0.9 * bound);
  EXPECT_EQ(adapter.b(0, LoraTarget::kDown).abs().max().item<double>(), 0.0);
  EXPECT_EQ(adapter.b(0, LoraTarget::kQ).sizes(), at::IntArrayRef({c.n_heads * c.head_dim, 8}));
  EXPECT_DOUBLE_EQ(lc.scale(), 2.0);
  lc.use_rslora = true;
  EXPECT_DOUBLE_EQ(lc.scale(), 16.0 / std::sqrt(8.0));
  EXPECT_EQ(adapter.parameter_names()[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(adapter.parameter_names().back(), "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
}

TEST(Lora, ParseTargets) {
  const ModelConfig llama = model_preset("tiny").value();
  auto t = parse_lora_targets("v_proj, q_proj", llama);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(lora_targets_to_string(*t), "q_proj,v_proj");
  EXPECT_EQ(parse_lora_targets("all", llama)->size(), 7u);
  auto bad = parse_lora_targets("q_proj,qkv", llama);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'qkv'"), std::string::npos);
  // The fused names are Phi-3's; the Llama layout refuses them and back.
  bad = parse_lora_targets("qkv_proj", llama);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("llama"), std::string::npos) << bad.status().message();
  const ModelConfig phi = model_preset("tiny-phi3").value();
  EXPECT_EQ(lora_targets_to_string(parse_lora_targets("all", phi).value()), "qkv_proj,o_proj,gate_up_proj,down_proj");
  EXPECT_EQ(lora_targets_to_string(parse_lora_targets("gate_up_proj,qkv_proj", phi).value()), "qkv_proj,gate_up_proj");
  bad = parse_lora_targets("q_proj,v_proj", phi);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'q_proj'"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("qkv_proj"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("phi3"), std::string::npos) << bad.status().message();
  // Without a model any family's names parse; the model's check refuses the others.
  const auto names = parse_lora_target_names("qkv_proj,q_proj").value();
  EXPECT_FALSE(check_lora_targets(phi, names).ok());
  EXPECT_FALSE(check_lora_targets(llama, names).ok());
  EXPECT_TRUE(check_lora_targets(phi, parse_lora_target_names("qkv_proj,down_proj").value()).ok());
  // The fused shapes: one pair over the whole fused output.
  EXPECT_EQ(lora_target_shape(phi, LoraTarget::kQkv), std::make_pair(phi.q_dim() + 2 * phi.kv_dim(), phi.hidden_size));
  EXPECT_EQ(lora_target_shape(phi, LoraTarget::kGateUp), std::make_pair(2 * phi.intermediate_size, phi.hidden_size));
}

}  // namespace
}  // namespace lema::engine
