// `lema model init --preset tiny|mini|compact|small --out DIR [--seed N] [--vocab N]`:
// writes a randomly initialised Hugging Face Llama directory; with
// `--quant nf4|nf4-dq|int8 [--dtype bf16|fp16|fp32]` it writes the same model
// straight into a quantized layer file at --out, one tensor at a time.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/formats/model_presets.h"

namespace {

struct InitArgs {
  std::string preset;
  std::string out;
  uint64_t seed = 0;
  int64_t vocab = 0;
  bool force = false;
  std::string quant = "none";
  std::string dtype;  // with --quant: the unquantized tensors' dtype (default bf16)
};

lema::Status run_init(const InitArgs& a) {
  using namespace lema;
  LEMA_ASSIGN_OR_RETURN(ModelConfig c, model_preset(a.preset));
  if (a.vocab > 0) c.vocab_size = a.vocab;
  LEMA_ASSIGN_OR_RETURN(QuantType quant, parse_quant(a.quant, "--quant"));
  if (quant != QuantType::kNone) {
    LEMA_ASSIGN_OR_RETURN(DType dtype, parse_dtype_alias(a.dtype.empty() ? "bf16" : a.dtype));
    if (!a.force && path_exists(a.out)) return Status::invalid_argument(a.out + ": already exists (use --force to overwrite)");
    if (is_directory(a.out)) return Status::invalid_argument(a.out + ": is a directory; with --quant, --out is the layer file");
    LEMA_RETURN_IF_ERROR(write_random_layer_file(c, a.out, a.seed, quant, dtype));
    std::printf("wrote %s: preset %s, %lld layers, %s projections, other tensors %s, seed %llu\n", a.out.c_str(),
                a.preset.c_str(), static_cast<long long>(c.n_layers), quant_name(quant), dtype_name(dtype),
                static_cast<unsigned long long>(a.seed));
    return Status();
  }
  if (!a.dtype.empty()) return Status::invalid_argument("--dtype needs --quant (the HF directory is written in fp32)");
  if (!a.force && path_exists(path_join(a.out, "model.safetensors"))) {
    return Status::invalid_argument(a.out + ": already holds a model.safetensors (use --force to overwrite)");
  }
  LEMA_RETURN_IF_ERROR(write_random_hf_model(c, a.out, a.seed));
  std::printf("wrote %s: preset %s, hidden %lld, %lld layers, %lld heads (%lld kv), vocab %lld, seed %llu\n",
              a.out.c_str(), a.preset.c_str(), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.vocab_size),
              static_cast<unsigned long long>(a.seed));
  return Status();
}

void setup_model_init(CLI::App& app) {
  auto args = std::make_shared<InitArgs>();
  CLI::App* model = lema::cli::group(app, "model", "Create and train small models");
  CLI::App* cmd = model->add_subcommand("init", "Write a random Hugging Face Llama model of a preset size");
  cmd->add_option("--preset", args->preset, "tiny or small")
      ->required()
      ->check(CLI::IsMember(lema::model_preset_names()));
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--seed", args->seed, "Seed of the weights (default 0)");
  cmd->add_option("--vocab", args->vocab, "Vocabulary size (default: the preset's)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_flag("--force", args->force, "Overwrite an existing model in --out");
  cmd->add_option("--quant", args->quant,
                  "nf4 | nf4-dq | int8: write a quantized layer file (--out is its path) instead of an HF directory")
      ->check(CLI::IsMember({"none", "nf4", "nf4-dq", "int8"}));
  cmd->add_option("--dtype", args->dtype, "With --quant: bf16 | fp16 | fp32 for norms, embedding and head (default bf16)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->callback([args] { lema::cli::finish(run_init(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_model_init);
