#include "engine/merge.h"
#include "engine/torch_types.h"

#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <vector>

#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/formats/safetensors.h"
#include "engine/peft_adapter.h"

namespace lema::engine {
namespace {


// Removes the temp directory unless the merge got to the rename.
class TempDirGuard {
 public:
  explicit TempDirGuard(std::string path) : path_(std::move(path)) {}
  ~TempDirGuard() {
    if (!path_.empty()) (void)remove_all(path_);
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Which projection (and so which LoRA pair) a layer tensor suffix is, or -1.
int target_of_suffix(const std::string& suffix) {
  for (int t = 0; t < kNumLoraTargets; ++t) {
    const auto target = static_cast<LoraTarget>(t);
    if (suffix == std::string(lora_target_module(target)) + "." + lora_target_name(target) + ".weight") return t;
  }
  return -1;
}

struct PlannedTensor {
  TensorSpec spec;
  HfModel::TensorRef ref;
  int64_t layer = -1;
  int target = -1;  // LoraTarget or -1
  at::ScalarType type = at::kFloat;  // of the stored tensor
};

// The base model: an HF directory or a layer file, both read through mapped
// safetensors files.
struct BaseModel {
  ModelConfig config;
  nlohmann::json config_json;  // written as config.json (torch_dtype replaced)
  std::string files_dir;       // where its tokenizer and generation files sit
  std::unique_ptr<HfModel> hf;
  std::unique_ptr<SafetensorsReader> layer_file;

  std::optional<HfModel::TensorRef> find(const std::string& name) const {
    if (hf) {
      const HfModel::TensorRef* ref = hf->find(name);
      return ref ? std::optional<HfModel::TensorRef>(*ref) : std::nullopt;
    }
    const TensorInfo* info = layer_file->find(name);
    return info ? std::optional<HfModel::TensorRef>(HfModel::TensorRef{layer_file.get(), *info}) : std::nullopt;
  }
};

Result<BaseModel> open_base(const std::string& path) {
  BaseModel b;
  if (is_directory(path)) {
    LEMA_ASSIGN_OR_RETURN(b.hf, HfModel::open(path));
    b.config = b.hf->config();
    const std::string config_path = path_join(path, "config.json");
    LEMA_ASSIGN_OR_RETURN(std::string text, read_file(config_path));
    b.config_json = nlohmann::json::parse(text, nullptr, false);
    if (b.config_json.is_discarded() || !b.config_json.is_object()) {
      return Status::invalid_argument(config_path + ": not a JSON object");
    }
    b.files_dir = path;
    return b;
  }
  if (!path_exists(path)) return Status::not_found("merge: base '" + path + "': no such directory or layer file");
  // LayerFile checks the names, order and shapes against the config in its
  // metadata; the reader maps the tensors.
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> checked, LayerFile::open(path, /*map_file=*/false));
  // Merging into dequantized weights would bake the quantization error into
  // every projection: QLoRA merges into the unquantized base (docs/MERGE.md).
  if (checked->quant() != QuantType::kNone) {
    return Status::invalid_argument("merge: base '" + path + "' is quantized (" + quant_name(checked->quant()) +
                                    "); merge into the unquantized model it was converted from (the HF directory, "
                                    "or a layer file converted without --quant): the adapter fits it as it is");
  }
  b.config = checked->config();
  b.config_json = nlohmann::json::parse(model_config_to_json(b.config), nullptr, false);
  LEMA_CHECK(b.config_json.is_object());
  LEMA_ASSIGN_OR_RETURN(b.layer_file, SafetensorsReader::open(path));
  b.files_dir = path_dirname(path).empty() ? "." : path_dirname(path);
  return b;
}


}  // namespace

Result<MergeStats> merge_adapter(const MergeOptions& o) {
  const bool to_sink = static_cast<bool>(o.tensor_sink);
  if (!to_sink) {
    if (o.out.empty()) return Status::invalid_argument("merge: --out is empty");
    if (path_exists(o.out)) return Status::invalid_argument(o.out + ": already exists (merge writes a new directory)");
    if (o.shard_bytes == 0) return Status::invalid_argument("merge: shard size must be > 0");
    if (!o.tokenizer.empty() && !path_exists(o.tokenizer)) {
      return Status::not_found("merge: tokenizer '" + o.tokenizer + "': no such file or directory");
    }
  }
  LEMA_ASSIGN_OR_RETURN(BaseModel model, open_base(o.base));
  const ModelConfig& config = model.config;
  auto adapter_or = load_peft_adapter(o.adapter, config, at::kFloat, at::kCPU);
  if (!adapter_or.ok()) return adapter_or.status().with_context("merge: adapter does not fit base " + o.base);
  std::unique_ptr<LoraAdapter> adapter = std::move(adapter_or).value();
  const LoraConfig& lc = adapter->config();
  const double scale = lc.scale();

  // Plan: every tensor in HF order with its output size, then the shards.
  std::vector<PlannedTensor> plan;
  DType base_dtype = DType::kF32;
  for (const TensorSpec& spec : model_tensor_specs(config)) {
    PlannedTensor p;
    p.spec = spec;
    std::optional<HfModel::TensorRef> ref = model.find(spec.name);
    if (!ref) return Status::not_found(o.base + ": tensor '" + spec.name + "' is missing");
    p.ref = *ref;
    LEMA_ASSIGN_OR_RETURN(p.type, scalar_type_of(p.ref.info.dtype, o.base + ": tensor '" + spec.name + "'"));
    base_dtype = p.ref.info.dtype;
    const std::string prefix = "model.layers.";
    if (spec.name.compare(0, prefix.size(), prefix) == 0) {
      const size_t dot = spec.name.find('.', prefix.size());
      p.layer = std::stoll(spec.name.substr(prefix.size(), dot - prefix.size()));
      const int t = target_of_suffix(spec.name.substr(dot + 1));
      if (t >= 0 && lc.has_target(static_cast<LoraTarget>(t))) p.target = t;
    }
    plan.push_back(p);
  }
  // One tensor of the plan in fp32 with its adapter folded in:
  // W' = W + scale * B @ A, [out, r] @ [r, in] -> [out, in].
  auto merged_fp32 = [&](const PlannedTensor& p) -> at::Tensor {
    const TensorInfo& info = p.ref.info;
    const at::Tensor src = at::from_blob(const_cast<uint8_t*>(p.ref.data()), info.shape,
                                         at::TensorOptions().dtype(p.type));
    at::Tensor w = src.to(at::kFloat);  // a copy when the source is fp32 too
    if (w.data_ptr() == src.data_ptr()) w = w.clone();
    if (p.target >= 0) {
      const auto target = static_cast<LoraTarget>(p.target);
      w.add_(at::matmul(adapter->b(p.layer, target).detach(), adapter->a(p.layer, target).detach()), scale);
    }
    return w.contiguous();
  };
  if (to_sink) {
    MergeStats stats;
    try {
      at::NoGradGuard no_grad;
      std::unique_ptr<Progress> progress;
      if (o.show_progress) progress = std::make_unique<Progress>("merge", plan.size(), "tensors");
      uint64_t done = 0;
      for (const PlannedTensor& p : plan) {
        const at::Tensor w = merged_fp32(p);
        if (p.target >= 0) ++stats.n_merged;
        LEMA_RETURN_IF_ERROR(o.tensor_sink(p.spec.name, p.spec.shape, w.data_ptr<float>()));
        p.ref.file->release(p.ref.info.offset, p.ref.info.nbytes);
        stats.total_bytes += static_cast<uint64_t>(w.nbytes());
        ++done;
        if (progress) progress->update(done);
        if (o.on_tensor) LEMA_RETURN_IF_ERROR(o.on_tensor(done, plan.size()));
      }
      if (progress) progress->finish();
    } catch (const std::exception& e) {
      return Status::internal(std::string("merge: ") + e.what());
    }
    return stats;
  }
  const DType out_dtype = o.dtype.value_or(base_dtype);
  if (!dtype_is_float(out_dtype) || out_dtype == DType::kF64) {
    return Status::invalid_argument(std::string("merge: output dtype ") + dtype_name(out_dtype) +
                                    " (use fp32, bf16 or fp16)");
  }
  LEMA_ASSIGN_OR_RETURN(const at::ScalarType out_type, scalar_type_of(out_dtype, "merge: output"));
  std::vector<std::vector<size_t>> shards(1);
  std::vector<uint64_t> shard_size(1, 0);
  uint64_t total = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : plan[i].spec.shape) numel *= d;
    const uint64_t nbytes = static_cast<uint64_t>(numel) * dtype_size(out_dtype);
    if (!shards.back().empty() && shard_size.back() + nbytes > o.shard_bytes) {
      shards.emplace_back();
      shard_size.push_back(0);
    }
    shards.back().push_back(i);
    shard_size.back() += nbytes;
    total += nbytes;
  }
  const int n_shards = static_cast<int>(shards.size());
  auto shard_name = [&](int k) {
    if (n_shards == 1) return std::string("model.safetensors");
    char buf[64];
    std::snprintf(buf, sizeof(buf), "model-%05d-of-%05d.safetensors", k + 1, n_shards);
    return std::string(buf);
  };

  const std::string tmp = o.out + ".tmp." + std::to_string(::getpid());
  (void)remove_all(tmp);
  LEMA_RETURN_IF_ERROR(make_dirs(tmp));
  TempDirGuard guard(tmp);
  MergeStats stats;
  stats.n_shards = n_shards;
  stats.total_bytes = total;
  nlohmann::json weight_map = nlohmann::json::object();
  try {
    at::NoGradGuard no_grad;
    std::unique_ptr<Progress> progress;
    if (o.show_progress) progress = std::make_unique<Progress>("merge", plan.size(), "tensors");
    uint64_t done = 0;  // tensors written
    for (int k = 0; k < n_shards; ++k) {
      SafetensorsWriter writer;
      for (size_t i : shards[static_cast<size_t>(k)]) {
        LEMA_RETURN_IF_ERROR(writer.add_tensor(plan[i].spec.name, out_dtype, plan[i].spec.shape));
        weight_map[plan[i].spec.name] = shard_name(k);
      }
      writer.set_metadata("format", "pt");
      LEMA_RETURN_IF_ERROR(writer.open(path_join(tmp, shard_name(k))));
      for (size_t i : shards[static_cast<size_t>(k)]) {
        const PlannedTensor& p = plan[i];
        const TensorInfo& info = p.ref.info;
        const at::Tensor w = merged_fp32(p);  // [out, in] fp32
        if (p.target >= 0) ++stats.n_merged;
        const at::Tensor out = w.to(out_type).contiguous();
        LEMA_RETURN_IF_ERROR(writer.write_tensor(p.spec.name, out.data_ptr(), out.nbytes()));
        p.ref.file->release(info.offset, info.nbytes);
        ++done;
        if (progress) progress->update(done);
        if (o.on_tensor) LEMA_RETURN_IF_ERROR(o.on_tensor(done, plan.size()));
      }
      LEMA_RETURN_IF_ERROR(writer.commit());
    }
    if (progress) progress->finish();
  } catch (const std::exception& e) {
    return Status::internal(std::string("merge: ") + e.what());
  }

  if (n_shards > 1) {
    nlohmann::json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "model.safetensors.index.json"), index.dump(2) + "\n"));
  }
  // config.json: the base's own (a layer file's from its metadata), with
  // torch_dtype set to what was written.
  nlohmann::json cfg = model.config_json;
  cfg["torch_dtype"] = dtype_torch_name(out_dtype);
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "config.json"), cfg.dump(2) + "\n"));
  LEMA_RETURN_IF_ERROR(copy_hf_side_files(model.files_dir, tmp));
  if (!o.tokenizer.empty()) LEMA_RETURN_IF_ERROR(copy_hf_side_files(o.tokenizer, tmp));
  if (!path_exists(path_join(tmp, "generation_config.json"))) {
    nlohmann::json gen;
    if (cfg.contains("bos_token_id")) gen["bos_token_id"] = cfg["bos_token_id"];
    if (cfg.contains("eos_token_id")) gen["eos_token_id"] = cfg["eos_token_id"];
    gen["_from_model_config"] = true;
    LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "generation_config.json"), gen.dump(2) + "\n"));
  }
  LEMA_RETURN_IF_ERROR(fsync_path(tmp));
  if (std::rename(tmp.c_str(), o.out.c_str()) != 0) {
    return Status::io_error(tmp + " -> " + o.out + ": rename failed: " + std::strerror(errno));
  }
  guard.release();
  (void)fsync_path(path_dirname(o.out).empty() ? "." : path_dirname(o.out));
  return stats;
}

}  // namespace lema::engine
