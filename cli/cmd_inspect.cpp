// `lema inspect PATH [--json]`: what a Hugging Face model directory, a
// safetensors file or a layer file holds: config, tensors, dtypes, sizes,
// layer byte ranges. Validates everything on the way (non-zero exit on damage).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_family.h"
#include "common/formats/model_layout.h"
#include "common/base/log.h"

namespace {

using lema::Status;
using ojson = nlohmann::ordered_json;

struct InspectArgs {
  std::string path;
  bool json = false;
};

ojson tensor_json(const lema::TensorInfo& t, const std::string& file) {
  ojson j;
  j["name"] = t.name;
  j["dtype"] = lema::dtype_name(t.dtype);
  j["shape"] = t.shape;
  j["offset"] = t.offset;
  j["nbytes"] = t.nbytes;
  if (!file.empty()) j["file"] = file;
  return j;
}

std::string config_line(const lema::ModelConfig& c) {
  const char* rope = c.rope_scaling.type == lema::RopeScalingType::kNone     ? "none"
                     : c.rope_scaling.type == lema::RopeScalingType::kLinear ? "linear"
                     : c.rope_scaling.type == lema::RopeScalingType::kLongrope ? "longrope"
                                                                             : "llama3";
  std::string window = "none";
  if (c.sliding_window > 0) {
    int64_t n = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) n += c.is_sliding(l) ? 1 : 0;
    window = lema::str_printf("%lld on %lld of %lld layers", (long long)c.sliding_window, (long long)n,
                              (long long)c.n_layers);
  }
  return lema::str_printf(
      "%s family (%s): hidden %lld, intermediate %lld, layers %lld, heads %lld (kv %lld), head_dim %lld, vocab %lld, "
      "rope_theta %g, rope_scaling %s, sliding window %s, tied %s, max_position %lld, torch_dtype %s",
      lema::family_info(c.family).name, c.architecture.c_str(), (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.n_layers,
      (long long)c.n_heads, (long long)c.n_kv_heads, (long long)c.head_dim, (long long)c.vocab_size,
      c.rope_theta, rope, window.c_str(), c.tie_word_embeddings ? "yes" : "no", (long long)c.max_position_embeddings,
      c.torch_dtype.c_str());
}

lema::Result<ojson> describe(const std::string& path, std::string* config_text) {
  using namespace lema;
  ojson doc;
  doc["path"] = path;
  ojson tensors = ojson::array();
  uint64_t total = 0;
  if (is_directory(path)) {
    LEMA_ASSIGN_OR_RETURN(auto m, HfModel::open(path));
    doc["kind"] = "hf-dir";
    doc["config"] = ojson::parse(model_config_to_json(m->config()));
    *config_text = config_line(m->config());
    ojson files = ojson::array();
    for (const auto& s : m->shards()) files.push_back(path_basename(s->path()));
    doc["files"] = files;
    for (const auto& t : m->tensors()) {
      tensors.push_back(tensor_json(t.info, path_basename(t.file->path())));
      total += t.info.nbytes;
    }
    doc["ignored_tensors"] = m->ignored();
  } else {
    LEMA_ASSIGN_OR_RETURN(SafetensorsHeader h, read_safetensors_header(path));
    auto fmt = h.metadata.find("lema.format");
    if (fmt != h.metadata.end()) {
      LEMA_ASSIGN_OR_RETURN(auto lf, LayerFile::open(path, false));
      doc["kind"] = "layer-file";
      doc["version"] = h.metadata.at("lema.version");
      doc["config"] = ojson::parse(model_config_to_json(lf->config()));
      *config_text = config_line(lf->config());
      // A quantized file's other tensors share the dtype lema.dtype names.
      const auto meta_dtype = h.metadata.find("lema.dtype");
      doc["dtype"] = lf->dtype() ? dtype_name(*lf->dtype())
                     : meta_dtype != h.metadata.end() ? meta_dtype->second : "mixed";
      doc["quant"] = quant_name(lf->quant());
      doc["tied"] = lf->tied();
      ojson layers = ojson::array();
      for (int64_t i = 0; i < lf->n_layers(); ++i) {
        ojson l;
        l["index"] = i;
        l["offset"] = lf->layer_range(i).offset;
        l["nbytes"] = lf->layer_range(i).nbytes;
        layers.push_back(l);
      }
      doc["layers"] = layers;
    } else {
      doc["kind"] = "safetensors";
      ojson md = ojson::object();
      for (const auto& [k, v] : h.metadata) md[k] = v;
      doc["metadata"] = md;
    }
    doc["data_start"] = h.data_start;
    doc["file_size"] = h.file_size;
    for (const auto& t : h.tensors) {
      tensors.push_back(tensor_json(t, ""));
      total += t.nbytes;
    }
  }
  doc["total_tensor_bytes"] = total;
  doc["tensors"] = tensors;
  return doc;
}

// What a layer file's quantization means, in one line.
std::string quant_description(const std::string& quant) {
  if (quant == "nf4") return "nf4: the seven projections as NF4 codes, blocks of 64, fp32 absmax per block";
  if (quant == "nf4-dq") {
    return "nf4-dq: the seven projections as NF4 codes, blocks of 64, absmax as int8 in blocks of 256 "
           "(fp32 scale per block, fp32 mean offset)";
  }
  if (quant == "int8") return "int8: the seven projections as int8 per output row, fp32 scale (absmax / 127) per row";
  if (quant == "fp8") {
    return "fp8: the seven projections as FP8 E4M3 per output row, fp32 scale (absmax / 448) per row";
  }
  return quant + " (every tensor as stored)";
}

Status run_inspect(const InspectArgs& a) {
  std::string config_text;
  LEMA_ASSIGN_OR_RETURN(ojson doc, describe(a.path, &config_text));
  if (a.json) {
    std::printf("%s\n", doc.dump(2).c_str());
    return Status();
  }
  using lema::format_bytes;
  std::printf("%s: %s\n", doc["path"].get<std::string>().c_str(), doc["kind"].get<std::string>().c_str());
  if (!config_text.empty()) std::printf("config: %s\n", config_text.c_str());
  if (doc.contains("dtype")) {
    std::printf("dtype: %s, tied embeddings: %s, layer file version %s\n",
                doc["dtype"].get<std::string>().c_str(), doc["tied"].get<bool>() ? "yes" : "no",
                doc["version"].get<std::string>().c_str());
  }
  if (doc.contains("quant")) std::printf("quantization: %s\n", quant_description(doc["quant"].get<std::string>()).c_str());
  if (doc.contains("metadata")) {
    for (auto it = doc["metadata"].begin(); it != doc["metadata"].end(); ++it) {
      std::printf("metadata %s = %s\n", it.key().c_str(), it->get<std::string>().c_str());
    }
  }
  if (doc.contains("layers")) {
    std::printf("layers (byte ranges):\n");
    for (const auto& l : doc["layers"]) {
      uint64_t off = l["offset"].get<uint64_t>(), n = l["nbytes"].get<uint64_t>();
      std::printf("  %3lld  [%llu, %llu)  %s%s\n", static_cast<long long>(l["index"].get<int64_t>()),
                  static_cast<unsigned long long>(off), static_cast<unsigned long long>(off + n),
                  format_bytes(n).c_str(), off % lema::kLayerFileAlignment == 0 ? "" : "  (unaligned)");
    }
  }
  const ojson& ts = doc["tensors"];
  std::printf("tensors: %zu, %s\n", ts.size(),
              format_bytes(doc["total_tensor_bytes"].get<uint64_t>()).c_str());
  for (const auto& t : ts) {
    std::printf("  %-48s %-5s %-16s %10s%s%s\n", t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(),
                lema::shape_to_string(t["shape"].get<std::vector<int64_t>>()).c_str(),
                format_bytes(t["nbytes"].get<uint64_t>()).c_str(), t.contains("file") ? "  " : "",
                t.contains("file") ? t["file"].get<std::string>().c_str() : "");
  }
  return Status();
}

void setup_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd =
      app.add_subcommand("inspect", "Show the config, tensors and layer ranges of a model file or directory");
  cmd->add_option("path", args->path, "HF model directory, .safetensors file or layer file")->required();
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] { lema::cli::finish(run_inspect(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_inspect);
