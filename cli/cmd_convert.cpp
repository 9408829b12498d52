// `lema convert HF_DIR -o OUT.lema.safetensors [--dtype bf16|fp16|fp32] [--quant nf4|nf4-dq|int8|fp8]`:
// streams a Hugging Face model into a layer file (docs/FORMATS.md) and
// prints the peak RSS it reached.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/formats/layer_file.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "engine/torch_types.h"

namespace {

struct ConvertArgs {
  std::string hf_dir;
  std::string out;
  std::string dtype = "keep";
  std::string quant = "none";
};

lema::Status run_convert(const ConvertArgs& a) {
  using namespace lema;
  ConvertOptions opt;
  if (a.dtype != "keep") {
    LEMA_ASSIGN_OR_RETURN(DType d, parse_dtype_alias(a.dtype));
    if (d != DType::kBF16 && d != DType::kF16 && d != DType::kF32) {
      return Status::invalid_argument("--dtype must be bf16, fp16, fp32 or keep");
    }
    opt.target = d;
  }
  LEMA_ASSIGN_OR_RETURN(opt.quant, parse_quant(a.quant, "--quant"));
  if (is_directory(a.out))
    return Status::invalid_argument(a.out + ": is a directory; give the output file path");
  std::unique_ptr<Progress> bar;
  int shift = 20;
  uint64_t shown = ~0ull;
  opt.progress = [&](uint64_t done, uint64_t total) {
    if (!bar) {
      shift = total >= (64ull << 20) ? 20 : 10;  // MiB for real models, KiB for tiny ones
      bar = std::make_unique<Progress>("convert", total >> shift, shift == 20 ? "MiB" : "KiB");
    }
    if ((done >> shift) != shown) {  // the callback comes per chunk; redraw only on change
      shown = done >> shift;
      bar->update(shown);
    }
  };
  LEMA_ASSIGN_OR_RETURN(ConvertStats st, convert_hf_to_layer_file(a.hf_dir, a.out, opt));
  if (bar) bar->finish();
  LEMA_ASSIGN_OR_RETURN(auto lf, LayerFile::open(a.out, false));
  // A quantized file's codes are U8/I8: lema.dtype names the other tensors' dtype.
  const auto meta = lf->header().metadata.find(kLayerFileMetaDType);
  const std::string stored_dtype = meta != lf->header().metadata.end() ? meta->second : "mixed";
  std::printf("wrote %s: %lld layers, %s, dtype %s, quantization %s, largest layer %s\n", a.out.c_str(),
              static_cast<long long>(lf->n_layers()), format_bytes(st.bytes_written).c_str(),
              stored_dtype.c_str(), quant_name(lf->quant()),
              format_bytes(st.largest_layer_bytes).c_str());
  uint64_t rss = peak_rss_bytes();
  std::printf("peak RSS: %s (%llu bytes)\n", format_bytes(rss).c_str(), static_cast<unsigned long long>(rss));
  return Status();
}

void setup_convert(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a Hugging Face Llama directory into a layer file");
  cmd->add_option("hf_dir", args->hf_dir, "Hugging Face model directory (config.json + *.safetensors)")
      ->required();
  cmd->add_option("-o,--out", args->out, "Output layer file (*.lema.safetensors)")->required();
  cmd->add_option("--dtype", args->dtype, "fp32 | bf16 | fp16: cast the weights (default: keep)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32", "keep"}));
  cmd->add_option("--quant", args->quant,
                  "nf4 | nf4-dq | int8 | fp8: store the seven projection weights quantized (docs/FORMATS.md); "
                  "norms, embedding and head keep --dtype (default: none)")
      ->check(CLI::IsMember({"none", "nf4", "nf4-dq", "int8", "fp8"}));
  cmd->callback([args] { lema::cli::finish(run_convert(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_convert);
