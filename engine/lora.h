// LoRA adapters on the projections of every decoder layer, the way PEFT
// builds them: A [r, in] kaiming-uniform (a = sqrt 5), B [out, r] zeros,
// y = x W^T + scale * dropout(x) A^T B^T with scale = alpha / r (or
// alpha / sqrt r with rsLoRA).
//
// LoraAdapter owns the master weights (fp32, or fp64 when the model computes
// in fp64) and their gradients: on the compute device, or (state on the
// host, issue 20) in host memory, one flat buffer per layer, visiting the
// device one or two layers at a time (docs/STREAMING.md "LoRA state on the
// host"). Not thread-safe; copies share the masters.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard, at::AutoGradMode (not in ATen.h on LibTorch 2.x)

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
#include "common/base/status.h"
#include "engine/lora_targets.h"
#include "engine/optimizer.h"

namespace lema::engine {


struct LoraConfig {
  int64_t r = 16;
  double alpha = 32.0;
  double dropout = 0.0;
  bool use_rslora = false;
  // The Llama layout's seven; family_lora_targets(model) for a fused family.
  std::vector<LoraTarget> targets = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV, LoraTarget::kO,
                                     LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};
  double scale() const;
  bool has_target(LoraTarget target) const;
};

// One projection's LoRA pair in the compute dtype, plus how to apply it.
struct LoraPair {
  at::Tensor a;  // [r, in]
  at::Tensor b;  // [out, r]
  double scale = 1.0;
  double dropout = 0.0;  // 0: no dropout (eval, or dropout disabled)
  bool defined() const { return a.defined(); }
};

// The LoRA pairs of one layer, indexed by LoraTarget; undefined where the
// projection has no adapter.
struct LayerLora {
  std::array<LoraPair, kNumLoraTargets> pairs;
  const LoraPair& operator[](LoraTarget t) const { return pairs[static_cast<int>(t)]; }
};

// y = x W^T + scale * dropout(x) A^T B^T. The dropout mask comes from a
// generator seeded with `dropout_seed`, so a recompute draws the same mask.
// x: [..., in], w: [out, in] -> [..., out]
at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const LoraPair& lora, uint64_t dropout_seed);

class LoraAdapter {
 public:
  // Initialises every pair as PEFT does; the draws come from one generator
  // seeded with `seed`, layer by layer, target by target (A only; B = 0).
  // master_dtype: kFloat (kDouble for fp64 tests); lives on `device`.
  // REQUIRES: check_lora_targets(model, config.targets) is OK.
  // state_on_host: the masters and their gradients live in host memory
  // (pinned when `device` is CUDA), one flat buffer per layer, and layer()
  // computes on `device` from the device copies stage() makes; the same
  // draws, so both placements start from the same bits.
  static LoraAdapter init(const ModelConfig& model, const LoraConfig& config, uint64_t seed,
                          at::ScalarType master_dtype, at::Device device, bool state_on_host = false);

  const LoraConfig& config() const { return config_; }
  int64_t n_layers() const { return n_layers_; }
  // REQUIRES: config().has_target(target)
  at::Tensor& a(int64_t layer, LoraTarget target);  // [r, in], requires grad
  at::Tensor& b(int64_t layer, LoraTarget target);  // [out, r], requires grad
  // Every master in a fixed order (layer, target, A then B).
  std::vector<at::Tensor> parameters() const;
  // The PEFT key of each entry of parameters(), same order:
  // base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
  std::vector<std::string> parameter_names() const;
  int64_t parameter_count() const;

  // Compute-dtype copies of layer `layer`'s pairs. When grad mode is on the
  // copies stay in the autograd graph, so gradients reach the masters
  // (state on the host: the staged device masters, see unstage()).
  // dropout: false for evaluation.
  LayerLora layer(int64_t layer, at::ScalarType dtype, bool dropout) const;

  // Drops every gradient (and, state on the host, every staged layer).
  void zero_grad();

  // State on the host; the calls below do nothing when it is not.
  bool state_on_host() const { return host_ != nullptr; }
  // Starts copying layer `layer`'s masters to the device (on a side stream:
  // the copy overlaps the compute queued after this call); layer() waits
  // for it. Staging a staged layer does nothing.
  void stage(int64_t layer) const;
  // Drops the staged device masters of `layer`; keep_grad: first queues
  // the gradient they accumulated (starting from the parameters' own, when
  // they had one) to the host gradient buffer, which the parameters'
  // .grad() then view.
  // The host gradients are readable after finish_grads().
  void unstage(int64_t layer, bool keep_grad) const;
  void finish_grads() const;
  // Each parameter's gradient norm (parameters() order; 0-dim, on the
  // device), taken by unstage() before the gradient left the device, so
  // clipping sees the bits the state on the device gives; empty when the
  // state is not on the host.
  std::vector<at::Tensor> grad_norms() const;
  // The layers' flat host buffers, for an optimizer that updates them on
  // the device (AdamW with host groups): parameters() of layer i are
  // consecutive views of group i's master and (after unstage) grad.
  std::vector<HostParamGroup> host_param_groups() const;

 private:
  LoraConfig config_;
  int64_t n_layers_ = 0;
  // [layer][target] -> A, B masters (undefined where no adapter)
  std::vector<std::array<at::Tensor, kNumLoraTargets>> a_;
  std::vector<std::array<at::Tensor, kNumLoraTargets>> b_;
  struct HostState;
  std::shared_ptr<HostState> host_;  // null: the masters live on the compute device
};

// Mixes integers into a dropout seed (splitmix64): one seed per
// (run seed, step, micro-batch, layer), one more mix per target.
uint64_t mix_seed(uint64_t a, uint64_t b);

}  // namespace lema::engine
