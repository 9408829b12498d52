#include "engine/layer_source.h"

#include <ATen/CPUGeneratorImpl.h>

#include "common/base/log.h"

namespace lema::engine {

namespace {
int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<at::Tensor> get_tensor(const TensorMap& tensors, const std::string& name, const std::vector<int64_t>& shape) {
  auto it = tensors.find(name);
  if (it == tensors.end()) return Status::not_found("model tensor '" + name + "' is missing");
  if (it->second.sizes() != at::IntArrayRef(shape)) {
    return Status::invalid_argument("model tensor '" + name + "' has shape " + shape_str(it->second.sizes()) +
                                    ", the config says " + shape_str(shape));
  }
  return it->second;
}
}  // namespace

Status InMemoryLayerSource::load_head(const TensorMap& tensors) {
  // The head is copied (contiguous, own memory) so it outlives any file map.
  const auto opts = at::TensorOptions().dtype(dtype_).device(device_);
  const int64_t v = config_.vocab_size, h = config_.hidden_size;
  LEMA_ASSIGN_OR_RETURN(at::Tensor embed, get_tensor(tensors, "model.embed_tokens.weight", {v, h}));
  LEMA_ASSIGN_OR_RETURN(at::Tensor norm, get_tensor(tensors, "model.norm.weight", {h}));
  head_.embed = at::empty({v, h}, opts).copy_(embed);
  head_.final_norm = at::empty({h}, opts).copy_(norm);
  if (config_.tie_word_embeddings) {
    head_.lm_head = head_.embed;
  } else {
    LEMA_ASSIGN_OR_RETURN(at::Tensor lm_head, get_tensor(tensors, "lm_head.weight", {v, h}));
    head_.lm_head = at::empty({v, h}, opts).copy_(lm_head);
  }
  return Status();
}

Result<LayerWeights> InMemoryLayerSource::views_of_buffer(const ModelConfig& config, const at::Tensor& buffer) {
  const auto shapes = layer_tensor_shapes(config);
  int64_t total = 0;
  for (const auto& s : shapes) total += numel_of(s);
  if (buffer.dim() != 1 || buffer.numel() != total) {
    return Status::invalid_argument("layer buffer holds " + std::to_string(buffer.numel()) + " elements, the config needs " +
                                    std::to_string(total));
  }
  std::vector<at::Tensor> views;
  int64_t offset = 0;
  for (const auto& s : shapes) {
    views.push_back(buffer.narrow(0, offset, numel_of(s)).view(s));
    offset += numel_of(s);
  }
  return layer_weights_from(config, views);
}

Result<std::unique_ptr<InMemoryLayerSource>> InMemoryLayerSource::create(const ModelConfig& config,
                                                                         const TensorMap& tensors,
                                                                         at::ScalarType dtype, at::Device device) {
  std::unique_ptr<InMemoryLayerSource> src(new InMemoryLayerSource(config, dtype, device));
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  LEMA_RETURN_IF_ERROR(src->load_head(tensors));
  const auto shapes = layer_tensor_shapes(config);
  int64_t total = 0;
  for (const auto& s : shapes) total += numel_of(s);
  for (int64_t layer = 0; layer < config.n_layers; ++layer) {
    const auto names = layer_tensor_names(config, layer);
    at::Tensor buffer = at::empty({total}, opts);
    int64_t offset = 0;
    for (size_t k = 0; k < names.size(); ++k) {
      LEMA_ASSIGN_OR_RETURN(at::Tensor t, get_tensor(tensors, names[k], shapes[k]));
      buffer.narrow(0, offset, t.numel()).copy_(t.reshape({-1}));
      offset += t.numel();
    }
    LEMA_ASSIGN_OR_RETURN(LayerWeights w, views_of_buffer(config, buffer));
    src->buffers_.push_back(buffer);
    src->layers_.push_back(w);
  }
  return src;
}

Result<std::unique_ptr<InMemoryLayerSource>> InMemoryLayerSource::create_from_layer_buffers(
    const ModelConfig& config, const TensorMap& tensors, const std::vector<at::Tensor>& buffers, at::ScalarType dtype,
    at::Device device) {
  std::unique_ptr<InMemoryLayerSource> src(new InMemoryLayerSource(config, dtype, device));
  LEMA_RETURN_IF_ERROR(src->load_head(tensors));
  if (static_cast<int64_t>(buffers.size()) != config.n_layers) {
    return Status::invalid_argument("got " + std::to_string(buffers.size()) + " layer buffers for " +
                                    std::to_string(config.n_layers) + " layers");
  }
  for (int64_t layer = 0; layer < config.n_layers; ++layer) {
    at::Tensor buffer = buffers[layer];
    if (buffer.scalar_type() != dtype || buffer.device() != device) buffer = buffer.to(device, dtype);
    LEMA_ASSIGN_OR_RETURN(LayerWeights w, views_of_buffer(config, buffer));
    src->buffers_.push_back(buffer);
    src->layers_.push_back(w);
  }
  return src;
}

Result<LayerWeights> InMemoryLayerSource::acquire(int64_t layer) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size())) {
    return Status::invalid_argument("layer " + std::to_string(layer) + " out of range");
  }
  return layers_[layer];
}

TensorMap make_random_model(const ModelConfig& config, uint64_t seed, at::ScalarType dtype) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  const double std_dev = config.initializer_range;
  auto normal = [&](std::vector<int64_t> shape) { return at::empty(shape, opts).normal_(0.0, std_dev, gen).to(dtype); };
  TensorMap m;
  m["model.embed_tokens.weight"] = normal({config.vocab_size, config.hidden_size});
  m["model.norm.weight"] = at::ones({config.hidden_size}, opts.dtype(dtype));
  if (!config.tie_word_embeddings) m["lm_head.weight"] = normal({config.vocab_size, config.hidden_size});
  const auto shapes = layer_tensor_shapes(config);
  for (int64_t layer = 0; layer < config.n_layers; ++layer) {
    const auto names = layer_tensor_names(config, layer);
    for (size_t k = 0; k < names.size(); ++k) {
      const bool bias = names[k].size() > 5 && names[k].compare(names[k].size() - 5, 5, ".bias") == 0;
      m[names[k]] = shapes[k].size() == 1 && !bias ? at::ones(shapes[k], opts.dtype(dtype)) : normal(shapes[k]);
    }
  }
  return m;
}

}  // namespace lema::engine
