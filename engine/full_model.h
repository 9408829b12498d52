// Full-parameter training of models that fit in memory (`lema train --full`,
// `lema model pretrain`): every weight (embeddings, norms, projections,
// lm_head) is a trainable master. No streaming: the forward keeps the whole
// autograd graph, which is what makes it only for small models. LoRA and the
// layer-wise step stay the default for everything else.
//
// FullModel owns the masters (fp32, or fp64 for tests) and their gradients.
// Not thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
#include "common/base/status.h"
#include "engine/layer_source.h"
#include "engine/train_step.h"

namespace lema::engine {

class FullModel {
 public:
  // Copies every weight of `source` into a master of `master_dtype` on the
  // source's device. A tied lm_head stays one tensor with the embedding.
  static Result<FullModel> from_source(LayerSource& source, at::ScalarType master_dtype);

  const ModelConfig& config() const { return config_; }
  at::Device device() const { return embed_.device(); }
  // HF names ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
  // ..., "model.norm.weight", then "lm_head.weight" unless tied), in the
  // order of parameters().
  std::vector<std::string> parameter_names() const;
  std::vector<at::Tensor> parameters() const;  // masters, requires_grad
  int64_t parameter_count() const;
  void zero_grad();

  // Compute-dtype copies of the weights; with grad mode on they stay in the
  // autograd graph, so gradients reach the masters (a no-op cast when the
  // dtypes agree).
  LayerWeights layer(int64_t layer, at::ScalarType dtype) const;
  HeadWeights head(at::ScalarType dtype) const;

  // A Hugging Face directory: config.json (torch_dtype = `dtype`) and
  // model.safetensors with the weights cast to `dtype`. Atomic per file.
  Status save_hf(const std::string& dir, at::ScalarType dtype) const;

 private:
  ModelConfig config_;
  at::Tensor embed_, final_norm_, lm_head_;  // lm_head_ is embed_ when tied
  std::vector<std::vector<at::Tensor>> layers_;  // [layer][tensor in layer_tensor_names() order]
};

// One optimizer step's forward and backward over every weight: the loss is
// the mean over the label tokens of all micro-batches (as in the layer-wise
// step), the head is the same chunked loss head, and the masters accumulate
// their gradients (call zero_grad() first). Computes in `dtype`.
Result<StepLoss> full_forward_backward(FullModel& model, const std::vector<MicroBatch>& micro_batches,
                                       at::ScalarType dtype, const StepOptions& options);

}  // namespace lema::engine
