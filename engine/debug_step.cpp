#include "engine/debug_step.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/formats/safetensors.h"
#include "engine/checkpoint.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "engine/train_step.h"
#include "engine/torch_types.h"

namespace lema::engine {

namespace {

Result<at::Tensor> int_matrix(const nlohmann::json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || !j[key].is_array() || j[key].empty()) return Status::invalid_argument(path + ": '" + key + "' must be a non-empty list of lists");
  const int64_t b = static_cast<int64_t>(j[key].size());
  const int64_t t = static_cast<int64_t>(j[key][0].size());
  at::Tensor out = at::empty({b, t}, at::TensorOptions().dtype(at::kLong));
  for (int64_t i = 0; i < b; ++i) {
    const auto& row = j[key][i];
    if (!row.is_array() || static_cast<int64_t>(row.size()) != t) return Status::invalid_argument(path + ": '" + key + "' rows differ in length");
    for (int64_t k = 0; k < t; ++k) {
      if (!row[k].is_number_integer()) return Status::invalid_argument(path + ": '" + key + "' holds a non-integer");
      out[i][k] = row[k].get<int64_t>();
    }
  }
  return out;
}

Status dump(const std::string& path, const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors) {
  SafetensorsWriter writer;
  std::vector<at::Tensor> cpu;
  for (size_t i = 0; i < names.size(); ++i) {
    cpu.push_back(tensors[i].detach().to(at::kCPU).contiguous());
    const DType dt = cpu.back().scalar_type() == at::kDouble ? DType::kF64 : DType::kF32;
    LEMA_RETURN_IF_ERROR(writer.add_tensor(names[i], dt, std::vector<int64_t>(cpu.back().sizes().begin(), cpu.back().sizes().end())));
  }
  LEMA_RETURN_IF_ERROR(writer.open(path));
  for (size_t i = 0; i < names.size(); ++i) LEMA_RETURN_IF_ERROR(writer.write_tensor(names[i], cpu[i].data_ptr(), cpu[i].nbytes()));
  return writer.commit();
}

Status debug_step(const DebugStepOptions& o) {
  LEMA_ASSIGN_OR_RETURN(at::Device device, parse_device(o.device));
  LEMA_ASSIGN_OR_RETURN(at::ScalarType dtype, parse_dtype(o.dtype));
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerSource> source, open_model_source(o.model, dtype, device));
  const ModelConfig& config = source->config();

  LoraConfig lora;
  lora.r = o.lora_r;
  lora.alpha = o.lora_alpha;
  if (!o.adapter.empty()) {
    LEMA_ASSIGN_OR_RETURN(lora, read_adapter_config(o.adapter));
    LEMA_RETURN_IF_ERROR(check_lora_targets(config, lora.targets).with_context(o.adapter));
  } else {
    LEMA_ASSIGN_OR_RETURN(lora.targets, parse_lora_targets(o.targets, config));
  }
  lora.dropout = 0.0;  // parity runs compare without dropout
  const at::ScalarType master = dtype == at::kDouble ? at::kDouble : at::kFloat;
  LoraAdapter adapter = LoraAdapter::init(config, lora, o.seed, master, device);
  if (!o.adapter.empty()) LEMA_RETURN_IF_ERROR(load_adapter_weights(o.adapter, adapter));

  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(o.batch));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::invalid_argument(o.batch + ": not JSON");
  MicroBatch mb;
  LEMA_ASSIGN_OR_RETURN(mb.input_ids, int_matrix(j, "input_ids", o.batch));
  LEMA_ASSIGN_OR_RETURN(mb.labels, int_matrix(j, "labels", o.batch));
  if (mb.labels.sizes() != mb.input_ids.sizes()) return Status::invalid_argument(o.batch + ": labels and input_ids differ in shape");
  if (j.contains("segment_ids") || j.contains("position_ids")) {  // packed rows (tests/gpu/packing_parity.py)
    LEMA_ASSIGN_OR_RETURN(mb.segment_ids, int_matrix(j, "segment_ids", o.batch));
    LEMA_ASSIGN_OR_RETURN(mb.position_ids, int_matrix(j, "position_ids", o.batch));
    if (mb.segment_ids.sizes() != mb.input_ids.sizes() || mb.position_ids.sizes() != mb.input_ids.sizes())
      return Status::invalid_argument(o.batch + ": segment_ids and position_ids must have input_ids' shape");
    if ((mb.position_ids < 0).any().item<bool>() || (mb.position_ids >= mb.input_ids.size(1)).any().item<bool>())
      return Status::invalid_argument(o.batch + ": position_ids must lie in [0, T)");
  }

  // Logits of the whole batch, no autograd.
  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    LayerContext ctx = micro_batch_context(config, mb, dtype, device);
    at::Tensor x = embed_tokens(mb.input_ids.to(device), source->head(), config);
    for (int64_t layer = 0; layer < config.n_layers; ++layer) {
      LEMA_ASSIGN_OR_RETURN(LayerWeights w, source->acquire(layer));
      ctx.layer = layer;
      x = decoder_layer_forward(x, w, adapter.layer(layer, dtype, false), ctx);
      source->release(layer);  // a quantized base dequantizes one layer at a time
    }
    logits = head_logits(x, source->head(), config).to(at::kFloat);
  }

  // One layer-wise step's loss and LoRA gradients.
  StepOptions step_options;
  step_options.dropout = false;
  adapter.zero_grad();
  LEMA_ASSIGN_OR_RETURN(StepLoss loss, layerwise_forward_backward(*source, adapter, {mb}, o.seed, step_options));
  std::vector<std::string> names = {"logits", "loss"};
  std::vector<at::Tensor> tensors = {logits, at::full({1}, loss.loss, at::TensorOptions().dtype(at::kDouble))};
  const auto keys = adapter.parameter_names();
  const auto params = adapter.parameters();
  for (size_t i = 0; i < keys.size(); ++i) {
    names.push_back("grad." + keys[i]);
    tensors.push_back(params[i].grad().defined() ? params[i].grad().to(at::kFloat) : at::zeros_like(params[i]).to(at::kFloat));
  }
  if (o.generate > 0) {
    const auto it = j.find("prompt_ids");
    if (it == j.end() || !it->is_array() || it->empty()) {
      return Status::invalid_argument(o.batch + ": --generate needs 'prompt_ids', a non-empty list of lists");
    }
    std::vector<std::vector<int32_t>> prompts;
    for (const auto& row : *it) {
      if (!row.is_array()) return Status::invalid_argument(o.batch + ": 'prompt_ids' holds a non-list");
      std::vector<int32_t> ids;
      for (const auto& v : row) {
        if (!v.is_number_integer()) return Status::invalid_argument(o.batch + ": 'prompt_ids' holds a non-integer");
        ids.push_back(v.get<int32_t>());
      }
      prompts.push_back(std::move(ids));
    }
    GenerateOptions go;
    go.max_new_tokens = o.generate;
    go.eos_ids = {-1};  // never stops early: the reference runs the same length
    Generator generator(*source, &adapter, nullptr);
    LEMA_ASSIGN_OR_RETURN(std::vector<Generation> out, generator.generate(prompts, go));
    for (size_t r = 0; r < out.size(); ++r) {
      std::vector<double> ids(out[r].tokens.begin(), out[r].tokens.end());
      names.push_back("generated." + std::to_string(r));
      tensors.push_back(at::tensor(ids, at::TensorOptions().dtype(at::kDouble)));
    }
  }
  LEMA_RETURN_IF_ERROR(dump(o.out, names, tensors));
  log_info("debug step: loss %.6f over %lld label tokens, %zu LoRA tensors -> %s", loss.loss,
           static_cast<long long>(loss.n_label_tokens), keys.size(), o.out.c_str());
  return Status();
}

}  // namespace

Status run_debug_step(const DebugStepOptions& options) {
  try {
    return debug_step(options);
  } catch (const std::exception& e) {
    return status_from_exception(e, "debug step");
  }
}

}  // namespace lema::engine
