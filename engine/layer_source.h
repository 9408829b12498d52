// Where the trainer gets each decoder layer's weights. The trainer asks for
// layer i, runs it, and releases it; prefetch() says which layer comes next
// so a streaming implementation (pinned-RAM / VRAM ring, next issue) can
// start copying early. InMemoryLayerSource keeps every layer resident.
//
// Thread-safety: one trainer thread calls a LayerSource.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/formats/model_config.h"
#include "common/base/status.h"
#include "engine/llama_model.h"
#include "engine/torch_types.h"

namespace lema::engine {

class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual at::ScalarType dtype() const = 0;  // compute dtype of every weight
  virtual at::Device device() const = 0;
  // Embedding, final norm, lm_head: resident for the source's lifetime.
  virtual const HeadWeights& head() = 0;
  // Layer `layer`'s weights on device(); the views stay valid until release(layer).
  virtual Result<LayerWeights> acquire(int64_t layer) = 0;
  virtual void release(int64_t layer) {}
  // A hint: `layer` will be acquired soon.
  virtual void prefetch(int64_t layer) {}
  // True when `layer`'s views stay valid after release() (the layer never
  // leaves the device): an autograd graph may keep them until the backward.
  virtual bool stays_resident(int64_t layer) const { return false; }
  // True when the base is stored quantized (engine/dequant.h): its weights
  // are a dequantized copy, fit for LoRA but not for training in full.
  virtual bool quantized() const { return false; }
};

// Named HF tensors ("model.layers.0.self_attn.q_proj.weight", ...), any dtype, CPU.
using TensorMap = std::map<std::string, at::Tensor>;

// Every layer resident: each layer packed into one contiguous buffer (the
// LayerWeights are views into it), converted once to dtype on device.
class InMemoryLayerSource : public LayerSource {
 public:
  // Checks every tensor is present with its shape; errors name the tensor.
  static Result<std::unique_ptr<InMemoryLayerSource>> create(const ModelConfig& config, const TensorMap& tensors,
                                                             at::ScalarType dtype, at::Device device);
  // Layers whose bytes already form one buffer each (a layer file's byte
  // ranges, tensors in layer_tensor_names() order): a buffer already in
  // dtype on the CPU is used as it is (views into the file map), any other
  // is converted once, whole. `tensors` must hold the head tensors; the
  // buffers must outlive the source.
  static Result<std::unique_ptr<InMemoryLayerSource>> create_from_layer_buffers(
      const ModelConfig& config, const TensorMap& tensors, const std::vector<at::Tensor>& buffers,
      at::ScalarType dtype, at::Device device);
  // A layer whose bytes already form one buffer (a layer file's byte range):
  // `buffer` [numel] in the compute dtype; its views are used as they are.
  static Result<LayerWeights> views_of_buffer(const ModelConfig& config, const at::Tensor& buffer);

  const ModelConfig& config() const override { return config_; }
  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override { return device_; }
  const HeadWeights& head() override { return head_; }
  Result<LayerWeights> acquire(int64_t layer) override;
  bool stays_resident(int64_t) const override { return true; }

 private:
  InMemoryLayerSource(const ModelConfig& config, at::ScalarType dtype, at::Device device)
      : config_(config), dtype_(dtype), device_(device) {}
  Status load_head(const TensorMap& tensors);
  ModelConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  HeadWeights head_;
  std::vector<at::Tensor> buffers_;      // [layer] -> [numel] one buffer per layer
  std::vector<LayerWeights> layers_;     // views into buffers_
};

// A model with random weights as HF initialises LlamaForCausalLM (normal
// with std initializer_range, norms = 1), drawn from `seed`: tests and demos.
TensorMap make_random_model(const ModelConfig& config, uint64_t seed, at::ScalarType dtype);


}  // namespace lema::engine
