// `lema export MODEL --format gguf --type f32|f16|bf16|q8_0|q4_0 --out model.gguf [--adapter DIR]`
// `lema export BASE --format gguf-lora --adapter DIR --out adapter.gguf`
// Writes a GGUF v3 file for llama.cpp and Ollama (docs/EXPORT.md): the
// model from an HF directory or a layer file, streamed tensor by tensor
// torch-free, or base + PEFT adapter merged on the way (engine/merge.h's
// tensor sink); or the adapter alone as a GGUF LoRA. Family metadata, tensor
// names and the Q/K permutation come from common/formats/gguf_arch.h, the
// tokenizer from common/text. The file appears only when complete
// (GgufWriter commits atomically).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/progress.h"
#include "common/formats/dtype.h"
#include "common/formats/gguf_arch.h"
#include "common/formats/gguf_quant.h"
#include "common/formats/gguf_writer.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/tokenizer.h"
#include "engine/merge.h"
#include "engine/peft_adapter.h"

namespace {

using json = nlohmann::json;
using lema::Result;
using lema::Status;

struct ExportArgs {
  std::string model, adapter, out, tokenizer, tokenizer_pre, name;
  std::string format = "gguf", type = "f16";
};

// ---------------------------------------------------------------------------
// The source model: config plus, for the torch-free path, mapped tensors.

struct Source {
  lema::ModelConfig config;
  json config_json;
  std::string config_source;  // names config.json (or the layer file) in errors
  std::string files_dir;      // where tokenizer files are looked for
  std::unique_ptr<lema::HfModel> hf;
  std::unique_ptr<lema::SafetensorsReader> layer_file;

  // The tensor `name` as stored (dtype, shape, bytes); nullptr when absent.
  const lema::SafetensorsReader* find(const std::string& name, lema::TensorInfo* info) const {
    if (hf) {
      const lema::HfModel::TensorRef* ref = hf->find(name);
      if (!ref) return nullptr;
      *info = ref->info;
      return ref->file;
    }
    const lema::TensorInfo* t = layer_file->find(name);
    if (!t) return nullptr;
    *info = *t;
    return layer_file.get();
  }
};

Result<Source> open_source(const std::string& path) {
  Source s;
  if (lema::is_directory(path)) {
    LEMA_ASSIGN_OR_RETURN(s.hf, lema::HfModel::open(path));
    s.config = s.hf->config();
    s.config_source = lema::path_join(path, "config.json");
    LEMA_ASSIGN_OR_RETURN(std::string text, lema::read_file(s.config_source));
    s.config_json = json::parse(text, nullptr, false);
    s.files_dir = path;
  } else {
    if (!lema::path_exists(path)) return Status::not_found("export: '" + path + "': no such directory or layer file");
    LEMA_ASSIGN_OR_RETURN(std::unique_ptr<lema::LayerFile> checked, lema::LayerFile::open(path, /*map_file=*/false));
    // GGUF quantizes on its own terms; exporting NF4 codes dequantized would
    // ship the quantization error (docs/EXPORT.md).
    if (checked->quant() != lema::QuantType::kNone) {
      return Status::invalid_argument("export: '" + path + "' is quantized (" + lema::quant_name(checked->quant()) +
                                      "); export the unquantized model it was converted from (the HF directory, "
                                      "or a layer file converted without --quant)");
    }
    s.config = checked->config();
    s.config_json = json::parse(lema::model_config_to_json(s.config), nullptr, false);
    s.config_source = path;
    LEMA_ASSIGN_OR_RETURN(s.layer_file, lema::SafetensorsReader::open(path));
    s.files_dir = lema::path_dirname(path).empty() ? "." : lema::path_dirname(path);
  }
  if (!s.config_json.is_object()) return Status::invalid_argument(s.config_source + ": not a JSON object");
  return s;
}

std::string model_type(const Source& s) {
  if (s.config_json.contains("model_type") && s.config_json["model_type"].is_string()) {
    return s.config_json["model_type"].get<std::string>();
  }
  return lema::model_type_of(s.config);
}

// ---------------------------------------------------------------------------
// The tokenizer as GGUF stores it.

bool has_step(const std::vector<lema::TextStep>& steps, lema::TextStep::Kind kind) {
  for (const auto& st : steps) {
    if (st.kind == kind) return true;
  }
  return false;
}

// llama.cpp's names for the byte-level pre-tokenizer regexes it knows
// (tokenizer.ggml.pre). The text is that of tokenizer.json's Split step.
std::string pre_tokenizer_name(const lema::BpeSpec& spec) {
  static const std::vector<std::pair<std::string, std::string>> known = {
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       "llama-bpe"},
      {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
       "qwen2"},
  };
  bool split = false;
  for (const auto& st : spec.pre_tokenizer) {
    if (st.kind != lema::TextStep::Kind::kSplit) continue;
    split = true;
    for (const auto& [pattern, name] : known) {
      if (st.text == pattern) return name;
    }
  }
  // ByteLevel alone (use_regex) is GPT-2's own pattern.
  return split ? std::string() : std::string("gpt-2");
}

std::string read_chat_template(const std::string& dir) {
  auto text = lema::read_file(lema::path_join(dir, "tokenizer_config.json"));
  if (!text.ok()) return "";
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("chat_template")) return "";
  const json& t = j["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const json& e : t) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
        return e["template"].get<std::string>();
      }
    }
  }
  return "";
}

Result<lema::GgufVocab> vocab_from_tokenizer(const std::string& path, const std::string& pre_override) {
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<lema::Tokenizer> tok, lema::Tokenizer::load(path));
  const auto* bpe = dynamic_cast<const lema::BpeTokenizer*>(tok.get());
  if (bpe == nullptr) return Status::unsupported("export: " + path + ": not a BPE tokenizer");
  const lema::BpeSpec& spec = bpe->spec();
  const std::string dir = lema::is_directory(path) ? path : lema::path_dirname(path);
  lema::GgufVocab v;
  v.tokens = spec.pieces;
  v.bos_id = tok->bos_id();
  v.eos_id = tok->eos_id();
  v.pad_id = tok->pad_id();
  v.unk_id = spec.unk_id;
  auto contains = [](const std::vector<int32_t>& ids, int32_t id) {
    return id >= 0 && std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  v.add_bos = contains(spec.prefix_ids, v.bos_id);
  v.add_eos = contains(spec.suffix_ids, v.eos_id);
  v.chat_template = read_chat_template(dir.empty() ? "." : dir);
  const size_t n = spec.pieces.size();

  using Kind = lema::TextStep::Kind;
  const bool metaspace = has_step(spec.pre_tokenizer, Kind::kMetaspace) || has_step(spec.normalizer, Kind::kPrepend);
  if (spec.mode == lema::BpeSpec::Mode::kSentencePiece) {
    v.model = "llama";
    v.pre = "default";
    v.scores = spec.scores;
    v.types.assign(spec.types.begin(), spec.types.end());
    v.add_space_prefix = spec.spm_add_dummy_prefix;
    return v;
  }
  if (metaspace) {
    // A SentencePiece vocabulary in tokenizer.json: llama.cpp merges by piece
    // score. Take the scores from tokenizer.model when it sits alongside,
    // else rank them by the merges (the earliest merge scores highest).
    v.model = "llama";
    v.pre = "default";
    v.add_space_prefix = true;
    for (const auto& st : spec.pre_tokenizer) {
      if (st.kind == Kind::kMetaspace && st.prepend_scheme == 2) v.add_space_prefix = false;
    }
    const std::string spm = lema::path_join(dir.empty() ? "." : dir, "tokenizer.model");
    std::unique_ptr<lema::Tokenizer> spm_tok;
    if (lema::path_exists(spm)) {
      LEMA_ASSIGN_OR_RETURN(spm_tok, lema::Tokenizer::load(spm));
    }
    const auto* spm_bpe = dynamic_cast<const lema::BpeTokenizer*>(spm_tok.get());
    if (spm_bpe != nullptr && spm_bpe->spec().pieces.size() <= n &&
        std::equal(spm_bpe->spec().pieces.begin(), spm_bpe->spec().pieces.end(), spec.pieces.begin())) {
      v.scores = spm_bpe->spec().scores;
      v.types.assign(spm_bpe->spec().types.begin(), spm_bpe->spec().types.end());
    } else {
      v.scores.assign(n, 0.0f);
      v.types.assign(n, 1);
      std::vector<int64_t> rank(n, -1);
      for (const auto& [pair, rank_and_id] : spec.merges) {
        const auto id = static_cast<size_t>(rank_and_id.second);
        if (rank[id] < 0 || rank_and_id.first < rank[id]) rank[id] = rank_and_id.first;
      }
      for (size_t id = 0; id < n; ++id) {
        if (rank[id] >= 0) v.scores[id] = -static_cast<float>(rank[id]);
        const std::string& p = spec.pieces[id];
        if (spec.byte_fallback && p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') v.types[id] = 6;
      }
      if (v.unk_id >= 0) v.types[static_cast<size_t>(v.unk_id)] = 2;
    }
    // Added tokens past the SentencePiece pieces (and their kinds).
    v.scores.resize(n, 0.0f);
    v.types.resize(n, 1);
  } else if (has_step(spec.pre_tokenizer, Kind::kByteLevel)) {
    v.model = "gpt2";
    v.pre = pre_override.empty() ? pre_tokenizer_name(spec) : pre_override;
    if (v.pre.empty()) {
      return Status::unsupported("export: " + path + ": the pre-tokenizer regex is not one llama.cpp names here; "
                                 "pass --tokenizer-pre NAME (llama.cpp's tokenizer.ggml.pre)");
    }
    v.types.assign(n, 1);
    std::vector<std::string> merges(spec.merges.size());
    for (const auto& [pair, rank_and_id] : spec.merges) {
      const auto left = static_cast<size_t>(pair >> 32), right = static_cast<size_t>(pair & 0xFFFFFFFFu);
      const auto rank = static_cast<size_t>(rank_and_id.first);
      if (rank >= merges.size() || left >= n || right >= n) {
        return Status::corruption("export: " + path + ": merge ranks are not 0..N-1");
      }
      merges[rank] = spec.pieces[left] + " " + spec.pieces[right];
    }
    v.merges = std::move(merges);
  } else {
    return Status::unsupported("export: " + path +
                               ": GGUF export knows SentencePiece (Metaspace) and byte-level BPE tokenizers");
  }
  for (const lema::AddedToken& t : spec.added_tokens) {
    if (t.id >= 0 && static_cast<size_t>(t.id) < n) v.types[static_cast<size_t>(t.id)] = t.special ? 3 : 4;
  }
  return v;
}

// ---------------------------------------------------------------------------
// Tensors: HF name -> GGUF name, type, permutation; then encode and write.

struct PlannedTensor {
  std::string hf_name;
  std::string gguf_name;
  std::vector<int64_t> shape;  // row-major, as HF
  lema::GgmlType type = lema::GgmlType::kF32;
  int64_t permute_heads = 0;  // rows permuted for llama.cpp's rotary layout; 0: none
};

// Permutes (when asked), encodes and writes one tensor given in fp32.
class TensorEmitter {
 public:
  TensorEmitter(lema::GgufWriter* writer, const std::vector<PlannedTensor>& plan) : writer_(writer), plan_(plan) {}

  Status emit(const std::string& hf_name, const std::vector<int64_t>& shape, const float* data) {
    if (next_ >= plan_.size() || plan_[next_].hf_name != hf_name) {
      return Status::internal("export: tensor '" + hf_name + "' arrived out of order");
    }
    const PlannedTensor& p = plan_[next_++];
    if (shape != p.shape) {
      return Status::invalid_argument("export: tensor '" + hf_name + "' has shape " + lema::shape_to_string(shape) +
                                      ", expected " + lema::shape_to_string(p.shape));
    }
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const float* src = data;
    if (p.permute_heads > 0) {
      permuted_.resize(static_cast<size_t>(numel));
      lema::permute_rope_rows(data, shape[0], numel / shape[0], p.permute_heads, sizeof(float), permuted_.data());
      src = permuted_.data();
    }
    encoded_.resize(lema::ggml_nbytes(p.type, numel));
    lema::gguf_encode(p.type, src, numel, encoded_.data());
    return writer_->write_tensor(p.gguf_name, encoded_.data(), encoded_.size());
  }

 private:
  lema::GgufWriter* writer_;
  const std::vector<PlannedTensor>& plan_;
  size_t next_ = 0;
  std::vector<float> permuted_;
  std::vector<uint8_t> encoded_;
};

// general.name when --name is not given: the model's directory or file name.
std::string default_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::string name = lema::path_basename(path);
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
  if (lema::path_exists(out)) return Status::invalid_argument("export: " + out + " already exists");
  return Status();
}

// The source's GGUF mapping, refused unless llama.cpp has checked it: an
// unchecked mapping can load and answer wrongly (Gemma's norms, for one, need
// 1 + w), and a wrong model is worse than none.
lema::Result<const lema::GgufArch*> exportable_arch(const Source& src) {
  LEMA_ASSIGN_OR_RETURN(const lema::GgufArch* arch, lema::find_gguf_arch(model_type(src)));
  if (!arch->verified) {
    return Status::unsupported("lema export: the " + arch->model_type +
                               " mapping to GGUF is not verified against llama.cpp yet; supported: " +
                               lema::gguf_arch_list());
  }
  return arch;
}

Status export_model(const ExportArgs& a) {
  LEMA_RETURN_IF_ERROR(check_out(a.out));
  LEMA_ASSIGN_OR_RETURN(lema::GgufFileType file_type, lema::parse_gguf_file_type(a.type));
  LEMA_ASSIGN_OR_RETURN(Source src, open_source(a.model));
  LEMA_ASSIGN_OR_RETURN(const lema::GgufArch* arch, exportable_arch(src));
  const lema::ModelConfig& c = src.config;
  const std::string tok_path = a.tokenizer.empty() ? src.files_dir : a.tokenizer;
  auto vocab_or = vocab_from_tokenizer(tok_path, a.tokenizer_pre);
  if (!vocab_or.ok()) {
    return vocab_or.status().with_context("export: a GGUF model needs its tokenizer (--tokenizer FILE|DIR)");
  }
  lema::GgufVocab vocab = std::move(vocab_or).value();
  LEMA_RETURN_IF_ERROR(lema::pad_gguf_vocab(c.vocab_size, &vocab));

  lema::GgufWriter writer;
  writer.set("general.architecture", lema::GgufValue::string(arch->name));
  writer.set("general.type", lema::GgufValue::string("model"));
  writer.set("general.name", lema::GgufValue::string(a.name.empty() ? default_name(a.model) : a.name));
  LEMA_RETURN_IF_ERROR(lema::add_gguf_model_metadata(*arch, c, src.config_json, src.config_source, file_type, &writer));
  lema::add_gguf_vocab_metadata(vocab, &writer);

  const std::vector<float> rope_factors = lema::llama3_rope_factors(c);
  if (!rope_factors.empty()) {
    LEMA_RETURN_IF_ERROR(writer.add_tensor("rope_freqs.weight", lema::GgmlType::kF32,
                                           {static_cast<int64_t>(rope_factors.size())}));
  }
  std::vector<PlannedTensor> plan;
  for (const lema::TensorSpec& spec : lema::model_tensor_specs(c)) {
    PlannedTensor p;
    p.hf_name = spec.name;
    p.shape = spec.shape;
    LEMA_ASSIGN_OR_RETURN(p.gguf_name, lema::gguf_tensor_name(*arch, spec.name));
    p.type = lema::gguf_tensor_type(file_type, p.gguf_name, p.shape);
    p.permute_heads = lema::gguf_rope_permute_heads(*arch, c, spec.name);
    LEMA_RETURN_IF_ERROR(writer.add_tensor(p.gguf_name, p.type, p.shape));
    plan.push_back(std::move(p));
  }
  LEMA_RETURN_IF_ERROR(writer.open(a.out));
  if (!rope_factors.empty()) {
    LEMA_RETURN_IF_ERROR(writer.write_tensor("rope_freqs.weight", rope_factors.data(), rope_factors.size() * 4));
  }
  TensorEmitter emitter(&writer, plan);

  if (!a.adapter.empty()) {
    // Merged on the way: engine/merge.h folds each projection in fp32.
    lema::engine::MergeOptions o;
    o.base = a.model;
    o.adapter = a.adapter;
    o.tensor_sink = [&](const std::string& name, const std::vector<int64_t>& shape, const float* data) {
      return emitter.emit(name, shape, data);
    };
    LEMA_ASSIGN_OR_RETURN(lema::engine::MergeStats stats, lema::engine::merge_adapter(o));
    std::printf("merged %lld projections\n", static_cast<long long>(stats.n_merged));
  } else {
    lema::Progress progress("export", plan.size(), "tensors");
    std::vector<float> fp32;
    uint64_t done = 0;
    for (const PlannedTensor& p : plan) {
      lema::TensorInfo info;
      const lema::SafetensorsReader* file = src.find(p.hf_name, &info);
      if (file == nullptr) return Status::not_found(a.model + ": tensor '" + p.hf_name + "' is missing");
      if (!lema::dtype_is_float(info.dtype)) {
        return Status::invalid_argument(a.model + ": tensor '" + p.hf_name + "' is not a float tensor");
      }
      fp32.resize(static_cast<size_t>(info.numel()));
      LEMA_RETURN_IF_ERROR(lema::convert_dtype(info.dtype, file->data(info), lema::DType::kF32, fp32.data(),
                                               fp32.size()));
      LEMA_RETURN_IF_ERROR(emitter.emit(p.hf_name, info.shape, fp32.data()));
      file->release(info.offset, info.nbytes);
      progress.update(++done);
    }
    progress.finish();
  }
  LEMA_RETURN_IF_ERROR(writer.commit());
  std::printf("wrote %s: GGUF %s, %s, %zu tensors, %s (peak RSS %s)\n", a.out.c_str(), arch->name.c_str(),
              lema::gguf_file_type_name(file_type), writer.tensors().size(),
              lema::format_bytes(writer.bytes_written()).c_str(), lema::format_bytes(lema::peak_rss_bytes()).c_str());
  return Status();
}

// ---------------------------------------------------------------------------
// The adapter alone: llama.cpp's LoRA GGUF (general.type = adapter).

Status export_lora(const ExportArgs& a) {
  LEMA_RETURN_IF_ERROR(check_out(a.out));
  if (a.adapter.empty()) return Status::invalid_argument("export: --format gguf-lora needs --adapter DIR");
  LEMA_ASSIGN_OR_RETURN(lema::GgufFileType file_type, lema::parse_gguf_file_type(a.type));
  if (file_type != lema::GgufFileType::kF32 && file_type != lema::GgufFileType::kF16) {
    return Status::unsupported("export: a GGUF LoRA is written as f32 or f16 (not " + a.type + ")");
  }
  const lema::GgmlType type = file_type == lema::GgufFileType::kF32 ? lema::GgmlType::kF32 : lema::GgmlType::kF16;
  LEMA_ASSIGN_OR_RETURN(Source src, open_source(a.model));
  LEMA_ASSIGN_OR_RETURN(const lema::GgufArch* arch, exportable_arch(src));
  const lema::ModelConfig& c = src.config;
  auto adapter_or = lema::engine::load_peft_adapter(a.adapter, c, at::kFloat, at::kCPU);
  if (!adapter_or.ok()) return adapter_or.status().with_context("export: adapter does not fit base " + a.model);
  std::unique_ptr<lema::engine::LoraAdapter> adapter = std::move(adapter_or).value();
  const lema::engine::LoraConfig& lc = adapter->config();

  lema::GgufWriter writer;
  writer.set("general.architecture", lema::GgufValue::string(arch->name));
  writer.set("general.type", lema::GgufValue::string("adapter"));
  writer.set("general.name", lema::GgufValue::string(a.name.empty() ? default_name(a.adapter) : a.name));
  writer.set("adapter.type", lema::GgufValue::string("lora"));
  // llama.cpp scales by alpha / rank (the rank read from each lora_a); this
  // alpha makes that equal lema's scale, rsLoRA's alpha / sqrt(r) included.
  writer.set("adapter.lora.alpha", lema::GgufValue::f32(static_cast<float>(lc.scale() * static_cast<double>(lc.r))));

  struct Pair {
    std::string hf_name, gguf_name;
    int64_t layer;
    lema::engine::LoraTarget target;
    int64_t permute_heads;
  };
  std::vector<Pair> pairs;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int t = 0; t < lema::engine::kNumLoraTargets; ++t) {
      const auto target = static_cast<lema::engine::LoraTarget>(t);
      if (!lc.has_target(target)) continue;
      Pair p{lema::layer_tensor_name(l, std::string(lema::engine::lora_target_module(target)) + "." +
                                            lema::engine::lora_target_name(target) + ".weight"),
             "", l, target, 0};
      LEMA_ASSIGN_OR_RETURN(p.gguf_name, lema::gguf_tensor_name(*arch, p.hf_name));
      p.permute_heads = lema::gguf_rope_permute_heads(*arch, c, p.hf_name);
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
      lema::permute_rope_rows(data, x.size(0), numel / x.size(0), permute_heads, sizeof(float), permuted.data());
      data = permuted.data();
    }
    encoded.resize(lema::ggml_nbytes(type, numel));
    lema::gguf_encode(type, data, numel, encoded.data());
    return writer.write_tensor(name, encoded.data(), encoded.size());
  };
  for (const Pair& p : pairs) {
    LEMA_RETURN_IF_ERROR(write(p.gguf_name + ".lora_a", adapter->a(p.layer, p.target), 0));
    LEMA_RETURN_IF_ERROR(write(p.gguf_name + ".lora_b", adapter->b(p.layer, p.target), p.permute_heads));
  }
  LEMA_RETURN_IF_ERROR(writer.commit());
  std::printf("wrote %s: GGUF LoRA for %s, %zu tensor pairs, rank %lld, alpha %g, %s\n", a.out.c_str(),
              arch->name.c_str(), pairs.size(), static_cast<long long>(lc.r), lc.scale() * static_cast<double>(lc.r),
              lema::format_bytes(writer.bytes_written()).c_str());
  return Status();
}

Status run_export(const ExportArgs& a) {
  if (a.format == "gguf") return export_model(a);
  if (a.format == "gguf-lora") return export_lora(a);
  return Status::unsupported("export: format '" + a.format + "' is not built (known: gguf, gguf-lora)");
}

void setup_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand("export", "Export a model (or a LoRA adapter) as GGUF for llama.cpp and Ollama");
  cmd->add_option("model", a->model, "HF model directory or layer file (the base, with --adapter)")->required();
  cmd->add_option("--format", a->format, "gguf (the model) | gguf-lora (the adapter alone)")->capture_default_str();
  cmd->add_option("--type", a->type, "f32 | f16 | bf16 | q8_0 | q4_0 (gguf-lora: f32 | f16)")->capture_default_str();
  cmd->add_option("--out", a->out, "output .gguf file (must not exist)")->required();
  cmd->add_option("--adapter", a->adapter, "PEFT adapter directory: merged in (gguf) or exported (gguf-lora)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model's directory)");
  cmd->add_option("--tokenizer-pre", a->tokenizer_pre,
                  "llama.cpp pre-tokenizer name for a byte-level BPE it is not detected for");
  cmd->add_option("--name", a->name, "general.name (default: the model's file name)");
  cmd->callback([a] { lema::cli::finish(run_export(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_export);
