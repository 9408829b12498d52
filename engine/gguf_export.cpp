#include "engine/gguf_export.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/base/progress.h"
#include "common/formats/dtype.h"
#include "common/formats/gguf_arch.h"
#include "common/formats/gguf_quant.h"
#include "common/formats/gguf_writer.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/formats/quant.h"
#include "engine/gguf_vocab.h"
#include "engine/merge.h"
#include "engine/peft_adapter.h"

namespace lema::engine {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------
// The source model: config plus, for the torch-free path, mapped tensors.

struct Source {
  ModelConfig config;
  json config_json;
  std::string config_source;  // names config.json (or the layer file) in errors
  std::string files_dir;      // where tokenizer files are looked for
  std::unique_ptr<HfModel> hf;
  std::unique_ptr<SafetensorsReader> layer_file;

  // The tensor `name` as stored (dtype, shape, bytes); nullptr when absent.
  const SafetensorsReader* find(const std::string& name, TensorInfo* info) const {
    if (hf) {
      const HfModel::TensorRef* ref = hf->find(name);
      if (!ref) return nullptr;
      *info = ref->info;
      return ref->file;
    }
    const TensorInfo* t = layer_file->find(name);
    if (!t) return nullptr;
    *info = *t;
    return layer_file.get();
  }
};

Result<Source> open_source(const std::string& path) {
  Source s;
  if (is_directory(path)) {
    LEMA_ASSIGN_OR_RETURN(s.hf, HfModel::open(path));
    s.config = s.hf->config();
    s.config_source = path_join(path, "config.json");
    LEMA_ASSIGN_OR_RETURN(std::string text, read_file(s.config_source));
    s.config_json = json::parse(text, nullptr, false);
    s.files_dir = path;
  } else {
    if (!path_exists(path)) return Status::not_found("export: '" + path + "': no such directory or layer file");
    LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> checked, LayerFile::open(path, /*map_file=*/false));
    // GGUF quantizes on its own terms; exporting NF4 codes dequantized would
    // ship the quantization error (docs/EXPORT.md).
    if (checked->quant() != QuantType::kNone) {
      return Status::invalid_argument("export: '" + path + "' is quantized (" + quant_name(checked->quant()) +
                                      "); export the unquantized model it was converted from (the HF directory, "
                                      "or a layer file converted without --quant)");
    }
    s.config = checked->config();
    s.config_json = json::parse(model_config_to_json(s.config), nullptr, false);
    s.config_source = path;
    LEMA_ASSIGN_OR_RETURN(s.layer_file, SafetensorsReader::open(path));
    s.files_dir = path_dirname(path).empty() ? "." : path_dirname(path);
  }
  if (!s.config_json.is_object()) return Status::invalid_argument(s.config_source + ": not a JSON object");
  return s;
}

std::string model_type(const Source& s) {
  if (s.config_json.contains("model_type") && s.config_json["model_type"].is_string()) {
    return s.config_json["model_type"].get<std::string>();
  }
  return model_type_of(s.config);
}

// ---------------------------------------------------------------------------
// Tensors: HF name -> GGUF name, type, permutation; then encode and write.

struct PlannedTensor {
  std::string hf_name;
  std::string gguf_name;
  std::vector<int64_t> shape;  // row-major, as HF
  GgmlType type = GgmlType::kF32;
  int64_t permute_heads = 0;  // rows permuted for llama.cpp's rotary layout; 0: none
  bool plus_one = false;      // Gemma's norm: stored as 1 + w
};

// Permutes (when asked), encodes and writes one tensor given in fp32.
class TensorEmitter {
 public:
  TensorEmitter(GgufWriter* writer, const std::vector<PlannedTensor>& plan, const GgufExportOptions& o)
      : writer_(writer), plan_(plan), on_tensor_(o.on_tensor) {
    if (o.show_progress) progress_ = std::make_unique<Progress>("export", plan.size(), "tensors");
  }

  Status emit(const std::string& hf_name, const std::vector<int64_t>& shape, const float* data) {
    if (next_ >= plan_.size() || plan_[next_].hf_name != hf_name) {
      return Status::internal("export: tensor '" + hf_name + "' arrived out of order");
    }
    const PlannedTensor& p = plan_[next_++];
    if (shape != p.shape) {
      return Status::invalid_argument("export: tensor '" + hf_name + "' has shape " + shape_to_string(shape) +
                                      ", expected " + shape_to_string(p.shape));
    }
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const float* src = data;
    if (p.permute_heads > 0) {
      permuted_.resize(static_cast<size_t>(numel));
      permute_rope_rows(data, shape[0], numel / shape[0], p.permute_heads, sizeof(float), permuted_.data());
      src = permuted_.data();
    } else if (p.plus_one) {
      permuted_.resize(static_cast<size_t>(numel));
      for (int64_t i = 0; i < numel; ++i) permuted_[static_cast<size_t>(i)] = data[i] + 1.0f;
      src = permuted_.data();
    }
    encoded_.resize(ggml_nbytes(p.type, numel));
    gguf_encode(p.type, src, numel, encoded_.data());
    LEMA_RETURN_IF_ERROR(writer_->write_tensor(p.gguf_name, encoded_.data(), encoded_.size()));
    if (progress_) {
      progress_->update(next_);
      if (next_ == plan_.size()) progress_->finish();
    }
    return on_tensor_ ? on_tensor_(next_, plan_.size()) : Status();
  }

 private:
  GgufWriter* writer_;
  const std::vector<PlannedTensor>& plan_;
  size_t next_ = 0;
  const std::function<Status(uint64_t, uint64_t)>& on_tensor_;
  std::unique_ptr<Progress> progress_;
  std::vector<float> permuted_;
  std::vector<uint8_t> encoded_;
};

// general.name when --name is not given: the model's directory or file name.
std::string default_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::string name = path_basename(path);
  for (const char* ext : {".lema.safetensors", ".safetensors"}) {
    const std::string e = ext;
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0) {
      return name.substr(0, name.size() - e.size());
    }
  }
  return name;
}

Status check_out(const std::string& out) {
  if (out.empty()) return Status::invalid_argument("export: --out is empty");
  if (path_exists(out)) return Status::invalid_argument("export: " + out + " already exists");
  return Status();
}

// The source's GGUF mapping, refused unless llama.cpp has checked it, and
// the config refused where llama.cpp's graph cannot express it: either would
// load and answer wrongly, and a wrong model is worse than none.
Result<const GgufArch*> exportable_arch(const Source& src) {
  LEMA_ASSIGN_OR_RETURN(const GgufArch* arch, find_gguf_arch(model_type(src)));
  if (!arch->verified) {
    return Status::unsupported("lema export: the " + arch->model_type +
                               " mapping to GGUF is not verified against llama.cpp yet; supported: " +
                               gguf_arch_list());
  }
  LEMA_RETURN_IF_ERROR(check_gguf_config(*arch, src.config, src.config_source));
  return arch;
}

}  // namespace

Result<GgufExportStats> export_gguf_model(const GgufExportOptions& a) {
  LEMA_RETURN_IF_ERROR(check_out(a.out));
  LEMA_ASSIGN_OR_RETURN(GgufFileType file_type, parse_gguf_file_type(a.type));
  LEMA_ASSIGN_OR_RETURN(Source src, open_source(a.model));
  LEMA_ASSIGN_OR_RETURN(const GgufArch* arch, exportable_arch(src));
  const ModelConfig& c = src.config;
  const std::string tok_path = a.tokenizer.empty() ? src.files_dir : a.tokenizer;
  auto vocab_or = gguf_vocab_from_tokenizer(tok_path, a.tokenizer_pre);
  if (!vocab_or.ok()) {
    return vocab_or.status().with_context("export: a GGUF model needs its tokenizer (--tokenizer FILE|DIR)");
  }
  GgufVocab vocab = std::move(vocab_or).value();
  LEMA_RETURN_IF_ERROR(pad_gguf_vocab(c.vocab_size, &vocab));

  GgufWriter writer;
  writer.set("general.architecture", GgufValue::string(arch->name));
  writer.set("general.type", GgufValue::string("model"));
  writer.set("general.name", GgufValue::string(a.name.empty() ? default_name(a.model) : a.name));
  LEMA_RETURN_IF_ERROR(add_gguf_model_metadata(*arch, c, src.config_json, src.config_source, file_type, &writer));
  add_gguf_vocab_metadata(vocab, &writer);

  const std::vector<GgufRopeTensor> rope_tensors = gguf_rope_tensors(c);
  for (const GgufRopeTensor& t : rope_tensors) {
    LEMA_RETURN_IF_ERROR(writer.add_tensor(t.name, GgmlType::kF32, {static_cast<int64_t>(t.values.size())}));
  }
  std::vector<PlannedTensor> plan;
  for (const TensorSpec& spec : model_tensor_specs(c)) {
    PlannedTensor p;
    p.hf_name = spec.name;
    p.shape = spec.shape;
    LEMA_ASSIGN_OR_RETURN(p.gguf_name, gguf_tensor_name(*arch, spec.name));
    p.type = gguf_tensor_type(file_type, p.gguf_name, p.shape);
    p.permute_heads = gguf_rope_permute_heads(*arch, c, spec.name);
    p.plus_one = gguf_norm_plus_one(*arch, p.gguf_name);
    LEMA_RETURN_IF_ERROR(writer.add_tensor(p.gguf_name, p.type, p.shape));
    plan.push_back(std::move(p));
  }
  LEMA_RETURN_IF_ERROR(writer.open(a.out));
  for (const GgufRopeTensor& t : rope_tensors) {
    LEMA_RETURN_IF_ERROR(writer.write_tensor(t.name, t.values.data(), t.values.size() * sizeof(float)));
  }
  TensorEmitter emitter(&writer, plan, a);
  GgufExportStats stats;

  if (!a.adapter.empty()) {
    // Merged on the way: engine/merge.h folds each projection in fp32.
    MergeOptions o;
    o.base = a.model;
    o.adapter = a.adapter;
    o.show_progress = false;  // the emitter reports
    o.tensor_sink = [&](const std::string& name, const std::vector<int64_t>& shape, const float* data) {
      return emitter.emit(name, shape, data);
    };
    LEMA_ASSIGN_OR_RETURN(MergeStats merged, merge_adapter(o));
    stats.n_merged = merged.n_merged;
  } else {
    std::vector<float> fp32;
    for (const PlannedTensor& p : plan) {
      TensorInfo info;
      const SafetensorsReader* file = src.find(p.hf_name, &info);
      if (file == nullptr) return Status::not_found(a.model + ": tensor '" + p.hf_name + "' is missing");
      if (!dtype_is_float(info.dtype)) {
        return Status::invalid_argument(a.model + ": tensor '" + p.hf_name + "' is not a float tensor");
      }
      fp32.resize(static_cast<size_t>(info.numel()));
      LEMA_RETURN_IF_ERROR(convert_dtype(info.dtype, file->data(info), DType::kF32, fp32.data(),
                                               fp32.size()));
      LEMA_RETURN_IF_ERROR(emitter.emit(p.hf_name, info.shape, fp32.data()));
      file->release(info.offset, info.nbytes);
    }
  }
  LEMA_RETURN_IF_ERROR(writer.commit());
  stats.arch = arch->name;
  stats.type = gguf_file_type_name(file_type);
  stats.n_tensors = writer.tensors().size();
  stats.bytes = writer.bytes_written();
  return stats;
}

// ---------------------------------------------------------------------------
// The adapter alone: llama.cpp's LoRA GGUF (general.type = adapter).

Result<GgufExportStats> export_gguf_lora(const GgufExportOptions& a) {
  LEMA_RETURN_IF_ERROR(check_out(a.out));
  if (a.adapter.empty()) return Status::invalid_argument("export: --format gguf-lora needs --adapter DIR");
  LEMA_ASSIGN_OR_RETURN(GgufFileType file_type, parse_gguf_file_type(a.type));
  if (file_type != GgufFileType::kF32 && file_type != GgufFileType::kF16) {
    return Status::unsupported("export: a GGUF LoRA is written as f32 or f16 (not " + a.type + ")");
  }
  const GgmlType type = file_type == GgufFileType::kF32 ? GgmlType::kF32 : GgmlType::kF16;
  LEMA_ASSIGN_OR_RETURN(Source src, open_source(a.model));
  LEMA_ASSIGN_OR_RETURN(const GgufArch* arch, exportable_arch(src));
  const ModelConfig& c = src.config;
  auto adapter_or = load_peft_adapter(a.adapter, c, at::kFloat, at::kCPU);
  if (!adapter_or.ok()) return adapter_or.status().with_context("export: adapter does not fit base " + a.model);
  std::unique_ptr<LoraAdapter> adapter = std::move(adapter_or).value();
  const LoraConfig& lc = adapter->config();

  GgufWriter writer;
  writer.set("general.architecture", GgufValue::string(arch->name));
  writer.set("general.type", GgufValue::string("adapter"));
  writer.set("general.name", GgufValue::string(a.name.empty() ? default_name(a.adapter) : a.name));
  writer.set("adapter.type", GgufValue::string("lora"));
  // llama.cpp scales by alpha / rank (the rank read from each lora_a); this
  // alpha makes that equal lema's scale, rsLoRA's alpha / sqrt(r) included.
  writer.set("adapter.lora.alpha", GgufValue::f32(static_cast<float>(lc.scale() * static_cast<double>(lc.r))));

  struct Pair {
    std::string hf_name, gguf_name;
    int64_t layer;
    LoraTarget target;
    int64_t permute_heads;
  };
  std::vector<Pair> pairs;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const auto target = static_cast<LoraTarget>(t);
      if (!lc.has_target(target)) continue;
      Pair p{layer_tensor_name(l, std::string(lora_target_module(target)) + "." +
                                            lora_target_name(target) + ".weight"),
             "", l, target, 0};
      LEMA_ASSIGN_OR_RETURN(p.gguf_name, gguf_tensor_name(*arch, p.hf_name));
      p.permute_heads = gguf_rope_permute_heads(*arch, c, p.hf_name);
      const at::Tensor& A = adapter->a(l, target);  // [r, in]
      const at::Tensor& B = adapter->b(l, target);  // [out, r]
      LEMA_RETURN_IF_ERROR(writer.add_tensor(p.gguf_name + ".lora_a", type, A.sizes().vec()));
      LEMA_RETURN_IF_ERROR(writer.add_tensor(p.gguf_name + ".lora_b", type, B.sizes().vec()));
      pairs.push_back(std::move(p));
    }
  }
  LEMA_RETURN_IF_ERROR(writer.open(a.out));
  std::vector<float> permuted;
  std::vector<uint8_t> encoded;
  auto write = [&](const std::string& name, const at::Tensor& t, int64_t permute_heads) -> Status {
    const at::Tensor x = t.detach().to(at::kFloat).contiguous();
    const float* data = x.data_ptr<float>();
    const int64_t numel = x.numel();
    if (permute_heads > 0) {
      // B's rows are the projection's output rows: the same permutation as the weight.
      permuted.resize(static_cast<size_t>(numel));
      permute_rope_rows(data, x.size(0), numel / x.size(0), permute_heads, sizeof(float), permuted.data());
      data = permuted.data();
    }
    encoded.resize(ggml_nbytes(type, numel));
    gguf_encode(type, data, numel, encoded.data());
    return writer.write_tensor(name, encoded.data(), encoded.size());
  };
  uint64_t done = 0;
  for (const Pair& p : pairs) {
    LEMA_RETURN_IF_ERROR(write(p.gguf_name + ".lora_a", adapter->a(p.layer, p.target), 0));
    LEMA_RETURN_IF_ERROR(write(p.gguf_name + ".lora_b", adapter->b(p.layer, p.target), p.permute_heads));
    if (a.on_tensor) LEMA_RETURN_IF_ERROR(a.on_tensor(++done, pairs.size()));
  }
  LEMA_RETURN_IF_ERROR(writer.commit());
  GgufExportStats stats;
  stats.arch = arch->name;
  stats.type = gguf_file_type_name(file_type);
  stats.n_tensors = writer.tensors().size();
  stats.bytes = writer.bytes_written();
  stats.lora_rank = lc.r;
  stats.lora_alpha = lc.scale() * static_cast<double>(lc.r);
  return stats;
}

}  // namespace lema::engine
