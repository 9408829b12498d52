// Small model shapes and batches shared by the engine tests.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>

#include "common/base/status.h"
#include "common/formats/model_config.h"
#include "engine/layer_source.h"
#include "engine/lora.h"
#include "engine/lora_targets.h"
#include "engine/train_step.h"

namespace lema::engine::test_models {

// Hidden 32, 4 heads over 2 kv heads (GQA), head_dim 8: the smallest shape
// that exercises every path of the decoder. Callers set what their test needs.
inline ModelConfig tiny_gqa_config(int64_t n_layers, int64_t vocab_size, double initializer_range) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 56;
  c.n_layers = n_layers;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = vocab_size;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.initializer_range = initializer_range;
  return c;
}

// Random right-padded micro-batch [b, t]: lengths vary by row, labels -100
// on a prompt prefix and on padding. REQUIRES: t >= 4.
inline MicroBatch random_padded_batch(const ModelConfig& c, int64_t b, int64_t t, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  MicroBatch mb;
  mb.input_ids = at::randint(0, c.vocab_size, {b, t}, gen, at::TensorOptions().dtype(at::kLong));
  mb.labels = mb.input_ids.clone();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t len = t - (i * 3) % (t / 2);  // right padding from len on
    const int64_t prompt = 1 + i % 3;
    mb.labels[i].narrow(0, 0, prompt).fill_(-100);
    if (len < t) {
      mb.labels[i].narrow(0, len, t - len).fill_(-100);
      mb.input_ids[i].narrow(0, len, t - len).fill_(0);
    }
  }
  return mb;
}

// B starts at zero (PEFT): give every B (the [out, r] masters) values drawn
// from `seed`, so the A gradients and the LoRA outputs are not all zero.
inline void randomize_lora_b(LoraAdapter& adapter, int64_t r, double std, uint64_t seed) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  for (at::Tensor& p : adapter.parameters()) {
    if (p.size(1) == r) p.normal_(0.0, std, gen);
  }
}

// Random fp64 weights of `c` with every 1-D tensor (norms, biases)
// non-trivial, resident on the CPU: the family tests' model.
inline TensorMap random_family_tensors(const ModelConfig& c, uint64_t seed) {
  TensorMap tensors = make_random_model(c, seed, at::kDouble);
  at::Generator gen = at::detail::createCPUGenerator(seed + 1);
  for (auto& [name, t] : tensors) {
    if (t.dim() != 1) continue;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    t = bias ? at::empty_like(t).normal_(0, 0.3, gen) : at::empty_like(t).uniform_(0.5, 1.5, gen);
  }
  return tensors;
}

inline std::unique_ptr<InMemoryLayerSource> random_source(const ModelConfig& c, uint64_t seed) {
  auto src = InMemoryLayerSource::create(c, random_family_tensors(c, seed), at::kDouble, at::kCPU);
  LEMA_CHECK_MSG(src.ok(), src.status().to_string());
  return std::move(src).value();
}

// r 3 on the family's every projection, B non-zero (fp64 masters).
inline LoraAdapter random_adapter(const ModelConfig& c) {
  LoraConfig lc;
  lc.r = 3;
  lc.alpha = 5;
  lc.targets = family_lora_targets(c);
  LoraAdapter adapter = LoraAdapter::init(c, lc, 1, at::kDouble, at::kCPU);
  randomize_lora_b(adapter, lc.r, 0.2, 9);
  return adapter;
}

}  // namespace lema::engine::test_models
