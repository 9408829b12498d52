#include "engine/full_model.h"

#include "common/base/file_util.h"
#include "engine/checkpoint.h"

namespace lema::engine {

namespace {

at::Tensor master_of(const at::Tensor& t, at::ScalarType dtype) {
  return t.detach().to(dtype).clone().contiguous().requires_grad_(true);
}

}  // namespace

Result<FullModel> FullModel::from_source(LayerSource& source, at::ScalarType master_dtype) {
  at::NoGradGuard no_grad;
  FullModel m;
  m.config_ = source.config();
  const HeadWeights& head = source.head();
  m.embed_ = master_of(head.embed, master_dtype);
  m.final_norm_ = master_of(head.final_norm, master_dtype);
  m.lm_head_ = m.config_.tie_word_embeddings ? m.embed_ : master_of(head.lm_head, master_dtype);
  for (int64_t layer = 0; layer < m.config_.n_layers; ++layer) {
    LEMA_ASSIGN_OR_RETURN(LayerWeights w, source.acquire(layer));
    std::vector<at::Tensor> masters;
    for (const at::Tensor& t : layer_weights_list(m.config_, w)) masters.push_back(master_of(t, master_dtype));
    source.release(layer);
    m.layers_.push_back(std::move(masters));
  }
  return m;
}

std::vector<std::string> FullModel::parameter_names() const {
  std::vector<std::string> names = {"model.embed_tokens.weight"};
  for (int64_t layer = 0; layer < config_.n_layers; ++layer) {
    for (std::string& n : layer_tensor_names(config_, layer)) names.push_back(std::move(n));
  }
  names.push_back("model.norm.weight");
  if (!config_.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

std::vector<at::Tensor> FullModel::parameters() const {
  std::vector<at::Tensor> params = {embed_};
  for (const auto& layer : layers_) params.insert(params.end(), layer.begin(), layer.end());
  params.push_back(final_norm_);
  if (!config_.tie_word_embeddings) params.push_back(lm_head_);
  return params;
}

int64_t FullModel::parameter_count() const {
  int64_t n = 0;
  for (const at::Tensor& p : parameters()) n += p.numel();
  return n;
}

void FullModel::zero_grad() {
  for (at::Tensor& p : parameters()) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

LayerWeights FullModel::layer(int64_t layer, at::ScalarType dtype) const {
  std::vector<at::Tensor> t;
  for (const at::Tensor& master : layers_[layer]) t.push_back(master.to(dtype));
  return layer_weights_from(config_, t);
}

HeadWeights FullModel::head(at::ScalarType dtype) const {
  HeadWeights h;
  h.embed = embed_.to(dtype);
  h.final_norm = final_norm_.to(dtype);
  h.lm_head = config_.tie_word_embeddings ? h.embed : lm_head_.to(dtype);
  return h;
}

Status FullModel::save_hf(const std::string& dir, at::ScalarType dtype) const {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  ModelConfig c = config_;
  c.torch_dtype = dtype_name(dtype);  // "float32", "bfloat16": transformers' names
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "config.json"), model_config_to_json(c)));
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> cast;
  for (const at::Tensor& p : parameters()) cast.push_back(p.detach().to(dtype));
  return write_tensors(path_join(dir, "model.safetensors"), parameter_names(), cast, {{"format", "pt"}});
}

Result<StepLoss> full_forward_backward(FullModel& model, const std::vector<MicroBatch>& micro_batches,
                                       at::ScalarType dtype, const StepOptions& options) {
  const ModelConfig& config = model.config();
  const at::Device device = model.device();
  StepLoss result;
  for (const MicroBatch& mb : micro_batches) {
    result.n_label_tokens += (shift_labels(mb.labels) != -100).sum().item<int64_t>();
    result.n_input_tokens += mb.input_ids.numel();
  }
  if (result.n_label_tokens == 0) return Status::invalid_argument("the batch has no label tokens (every label is -100)");

  at::AutoGradMode grad_on(true);
  double loss_sum = 0.0;
  for (const MicroBatch& mb : micro_batches) {
    // Each micro-batch builds and frees its own graph: memory holds one
    // micro-batch's activations, the masters accumulate over all of them.
    const HeadWeights head = model.head(dtype);
    LayerContext ctx = micro_batch_context(config, mb, dtype, device);
    at::Tensor x = embed_tokens(mb.input_ids.to(device), head, config);  // [B, T, H]
    for (int64_t layer = 0; layer < config.n_layers; ++layer) {
      ctx.layer = layer;
      x = decoder_layer_forward(x, model.layer(layer, dtype), LayerLora{}, ctx);
    }
    // The chunked head backpropagates into final norm and lm_head (they
    // require grad here) and returns the gradient of its input.
    HeadLossResult h = head_loss_backward(x, mb.labels, head, config, static_cast<double>(result.n_label_tokens),
                                          options.loss_chunk_tokens);
    loss_sum += h.loss_sum;
    x.backward(h.grad_hidden);
  }
  result.loss = loss_sum / static_cast<double>(result.n_label_tokens);
  return result;
}

}  // namespace lema::engine
