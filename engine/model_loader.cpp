#include "engine/model_loader.h"
#include "engine/torch_types.h"

#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/base/log.h"
#include "engine/layer_store.h"
#include "engine/peft_adapter.h"

namespace lema::engine {

namespace {

Result<at::Tensor> blob(const uint8_t* data, DType dtype, const std::vector<int64_t>& shape, const std::string& name) {
  LEMA_ASSIGN_OR_RETURN(at::ScalarType type, scalar_type_of(dtype, "model tensor '" + name + "'"));
  return at::from_blob(const_cast<uint8_t*>(data), shape, at::TensorOptions().dtype(type));
}

// Keeps the file (and its map) alive as long as the source that views it.
class LayerFileSource : public LayerSource {
 public:
  LayerFileSource(std::unique_ptr<LayerFile> file, std::unique_ptr<InMemoryLayerSource> inner)
      : file_(std::move(file)), inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  at::ScalarType dtype() const override { return inner_->dtype(); }
  at::Device device() const override { return inner_->device(); }
  const HeadWeights& head() override { return inner_->head(); }
  Result<LayerWeights> acquire(int64_t layer) override { return inner_->acquire(layer); }

 private:
  std::unique_ptr<LayerFile> file_;
  std::unique_ptr<InMemoryLayerSource> inner_;
};

// A quantized base: every layer resident on the device as stored, each
// dequantized when acquired (the store's resident mode).
Result<std::unique_ptr<LayerSource>> open_quantized_layer_file(std::unique_ptr<LayerFile> opened, at::ScalarType dtype,
                                                               at::Device device) {
  std::shared_ptr<const LayerFile> file(std::move(opened));
  MemoryPlan plan;
  plan.mode = PlanMode::kResident;
  plan.resident_layers = file->n_layers();
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerStore> store, open_planned_store(file, plan, dtype, device));
  return std::unique_ptr<LayerSource>(std::move(store));
}

Result<std::unique_ptr<LayerSource>> open_layer_file(const std::string& path, at::ScalarType dtype, at::Device device) {
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> file, LayerFile::open(path, /*map_file=*/true));
  if (file->quant() != QuantType::kNone) return open_quantized_layer_file(std::move(file), dtype, device);
  const ModelConfig& config = file->config();
  TensorMap tensors;
  auto add = [&](const TensorInfo& info) -> Status {
    LEMA_ASSIGN_OR_RETURN(tensors[info.name], blob(file->data() + info.offset, info.dtype, info.shape, info.name));
    return Status();
  };
  LEMA_RETURN_IF_ERROR(add(file->embed()));
  LEMA_RETURN_IF_ERROR(add(file->final_norm()));
  if (file->lm_head()) LEMA_RETURN_IF_ERROR(add(*file->lm_head()));
  std::vector<at::Tensor> buffers;
  for (int64_t i = 0; i < config.n_layers; ++i) {
    const ByteRange range = file->layer_range(i);
    for (const LayerTensor& t : file->layer_tensors(i)) {
      const std::string name = "model.layers." + std::to_string(i) + "." + t.suffix;
      LEMA_ASSIGN_OR_RETURN(tensors[name], blob(file->data() + range.offset + t.offset, t.dtype, t.shape, name));
    }
    // One dtype for the whole file: the layer's byte range is one buffer.
    if (file->dtype()) {
      LEMA_ASSIGN_OR_RETURN(const at::ScalarType file_type, scalar_type_of(*file->dtype(), file->path()));
      const int64_t numel = static_cast<int64_t>(range.nbytes / dtype_size(*file->dtype()));
      buffers.push_back(at::from_blob(const_cast<uint8_t*>(file->data() + range.offset), {numel},
                                      at::TensorOptions().dtype(file_type)));
    }
  }
  std::unique_ptr<InMemoryLayerSource> inner;
  if (static_cast<int64_t>(buffers.size()) == config.n_layers) {
    LEMA_ASSIGN_OR_RETURN(inner, InMemoryLayerSource::create_from_layer_buffers(config, tensors, buffers, dtype, device));
  } else {
    LEMA_ASSIGN_OR_RETURN(inner, InMemoryLayerSource::create(config, tensors, dtype, device));
  }
  return std::unique_ptr<LayerSource>(new LayerFileSource(std::move(file), std::move(inner)));
}

Result<std::unique_ptr<LayerSource>> open_hf_dir(const std::string& dir, at::ScalarType dtype, at::Device device) {
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<HfModel> model, HfModel::open(dir));
  TensorMap tensors;
  for (const HfModel::TensorRef& ref : model->tensors()) {
    LEMA_ASSIGN_OR_RETURN(tensors[ref.info.name], blob(ref.data(), ref.info.dtype, ref.info.shape, ref.info.name));
  }
  // The source copies every tensor into its own per-layer buffers, so the
  // maps may close when this returns.
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<InMemoryLayerSource> src,
                        InMemoryLayerSource::create(model->config(), tensors, dtype, device));
  return std::unique_ptr<LayerSource>(std::move(src));
}

}  // namespace

Result<std::unique_ptr<LayerSource>> open_model_source(const std::string& path, at::ScalarType dtype, at::Device device) {
  try {
    if (is_directory(path)) return open_hf_dir(path, dtype, device);
    if (path_exists(path)) return open_layer_file(path, dtype, device);
    return Status::not_found("model '" + path + "': no such directory or layer file");
  } catch (const std::exception& e) {
    return Status::internal("loading model " + path + ": " + e.what());
  }
}

Result<std::unique_ptr<LayerSource>> open_inference_source(const std::string& path, const std::string& adapter_dir,
                                                           InferenceRequest request, at::ScalarType dtype,
                                                           at::Device device, int64_t* batch) {
  *batch = request.batch;
  if (request.vram_budget == 0 && request.ram_budget == 0) return open_model_source(path, dtype, device);
  if (is_directory(path)) {
    return Status::invalid_argument("--vram/--ram stream a layer file; convert " + path + " first: lema convert " +
                                    path + " --out MODEL.lema.safetensors");
  }
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> opened, LayerFile::open(path, /*map_file=*/false));
  std::shared_ptr<const LayerFile> file(std::move(opened));
  request.config = file->config();
  set_stored_layers(request, *file);
  request.dtype_bytes = static_cast<int64_t>(at::elementSize(dtype));
  request.cuda = device.is_cuda();
  request.flash_attention = device.is_cuda();
  if (!adapter_dir.empty()) {
    Result<LoraConfig> lora = read_peft_config(adapter_dir);
    if (!lora.ok()) return lora.status().with_context("adapter " + adapter_dir);
    request.lora_r = lora->r;
    request.lora_targets = static_cast<int64_t>(lora->targets.size());
  }
  LEMA_ASSIGN_OR_RETURN(MemoryPlan plan, plan_inference_memory(request));
  log_info("memory plan: mode %s, %lld resident layers, %lld device slots, batch %lld; layer %s, KV cache %s, "
           "working %s; planned device peak %s, host %s",
           plan_mode_name(plan.mode), static_cast<long long>(plan.resident_layers),
           static_cast<long long>(plan.device_slots), static_cast<long long>(plan.micro_batch),
           format_bytes(plan.layer_bytes).c_str(), format_bytes(plan.activation_bytes).c_str(),
           format_bytes(plan.working_bytes).c_str(), format_bytes(plan.device_bytes).c_str(),
           format_bytes(plan.host_bytes).c_str());
  if (!plan.quant.empty()) {
    log_info("  layers stored %s (%s each), dequantized on the device into a work buffer of %s", plan.quant.c_str(),
             format_bytes(plan.layer_bytes).c_str(), format_bytes(plan.dequant_bytes).c_str());
  }
  *batch = plan.micro_batch;
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerStore> store,
                        open_planned_store(file, plan, dtype, device, /*forward_only=*/true));
  return std::unique_ptr<LayerSource>(std::move(store));
}

}  // namespace lema::engine
