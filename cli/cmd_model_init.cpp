// `lema model init --preset tiny|mini|compact|small|tiny-<family>|llama2-70b --out DIR
// [--seed N] [--vocab N | --tokenizer FILE|DIR] [--init-std X]`: writes a
// randomly initialised Hugging Face directory; with --tokenizer the model's
// vocabulary and special ids are the tokenizer's, and its files (with the
// chat template) are copied beside the weights, so that a tiny model trains
// and chats through a real model's tokenizer and template; with
// `--quant nf4|nf4-dq|int8|fp8 [--dtype bf16|fp16|fp32]` it writes the same model
// straight into a quantized layer file at --out, one tensor at a time.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/progress.h"
#include "common/formats/hf_model.h"
#include "common/formats/model_presets.h"
#include "common/text/tokenizer.h"

namespace {

struct InitArgs {
  std::string preset;
  std::string out;
  uint64_t seed = 0;
  int64_t vocab = 0;
  std::string tokenizer;  // a tokenizer file or directory whose vocabulary the model gets
  double init_std = 0;    // 0: the preset's initializer_range
  bool force = false;
  std::string quant = "none";
  std::string dtype;  // with --quant: the unquantized tensors' dtype (default bf16)
};

lema::Status run_init(const InitArgs& a) {
  using namespace lema;
  LEMA_ASSIGN_OR_RETURN(ModelConfig c, model_preset(a.preset));
  if (a.vocab > 0) c.vocab_size = a.vocab;
  if (a.init_std > 0) c.initializer_range = a.init_std;
  if (!a.tokenizer.empty()) {
    if (a.vocab > 0) return Status::invalid_argument("--vocab and --tokenizer: the tokenizer gives the vocabulary size");
    if (a.quant != "none")
      return Status::invalid_argument("--tokenizer writes the tokenizer files into the HF directory; not with --quant");
    LEMA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::load(a.tokenizer));
    c.vocab_size = tok->vocab_size();
    c.bos_token_id = tok->bos_id();
    c.eos_token_ids.clear();
    if (tok->eos_id() >= 0) c.eos_token_ids.push_back(tok->eos_id());
    c.pad_token_id = tok->pad_id();
  }
  LEMA_ASSIGN_OR_RETURN(QuantType quant, parse_quant(a.quant, "--quant"));
  if (quant != QuantType::kNone) {
    LEMA_ASSIGN_OR_RETURN(DType dtype, parse_dtype_alias(a.dtype.empty() ? "bf16" : a.dtype));
    if (!a.force && path_exists(a.out)) return Status::invalid_argument(a.out + ": already exists (use --force to overwrite)");
    if (is_directory(a.out)) return Status::invalid_argument(a.out + ": is a directory; with --quant, --out is the layer file");
    std::unique_ptr<Progress> bar;
    LEMA_RETURN_IF_ERROR(write_random_layer_file(c, a.out, a.seed, quant, dtype, [&](uint64_t done, uint64_t total) {
      if (!bar) bar = std::make_unique<Progress>("model init", total >> 20, "MiB");
      bar->update(done >> 20);
    }));
    if (bar) bar->finish();
    std::printf("wrote %s: preset %s, %lld layers, %s projections, other tensors %s, seed %llu\n", a.out.c_str(),
                a.preset.c_str(), static_cast<long long>(c.n_layers), quant_name(quant), dtype_name(dtype),
                static_cast<unsigned long long>(a.seed));
    return Status();
  }
  if (!a.dtype.empty()) return Status::invalid_argument("--dtype needs --quant (the HF directory is written in fp32)");
  if (model_preset_is_large(a.preset)) {
    return Status::invalid_argument("--preset " + a.preset +
                                    " is written only as a quantized layer file: add --quant nf4|nf4-dq|int8|fp8 "
                                    "(in fp32 it would take hundreds of GB)");
  }
  if (!a.force && path_exists(path_join(a.out, "model.safetensors"))) {
    return Status::invalid_argument(a.out + ": already holds a model.safetensors (use --force to overwrite)");
  }
  if (!a.tokenizer.empty()) {
    // Copied first: the model's own generation_config.json (written below)
    // wins over one in a tokenizer directory taken from another model.
    LEMA_RETURN_IF_ERROR(make_dirs(a.out));
    LEMA_RETURN_IF_ERROR(copy_hf_side_files(a.tokenizer, a.out));
  }
  LEMA_RETURN_IF_ERROR(write_random_hf_model(c, a.out, a.seed));
  std::printf("wrote %s: preset %s, hidden %lld, %lld layers, %lld heads (%lld kv), vocab %lld%s, seed %llu\n",
              a.out.c_str(), a.preset.c_str(), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.vocab_size),
              a.tokenizer.empty() ? "" : (" (tokenizer " + a.tokenizer + ")").c_str(),
              static_cast<unsigned long long>(a.seed));
  return Status();
}

void setup_model_init(CLI::App& app) {
  auto args = std::make_shared<InitArgs>();
  CLI::App* model = lema::cli::group(app, "model", "Create and train small models");
  CLI::App* cmd = model->add_subcommand("init", "Write a random Hugging Face Llama model of a preset size");
  cmd->add_option("--preset", args->preset,
                  "tiny, mini, compact, small, tiny-<family> (tiny-qwen3, ...), or llama2-70b (with --quant)")
      ->required()
      ->check(CLI::IsMember(lema::model_preset_names(true)));
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_option("--seed", args->seed, "Seed of the weights (default 0)");
  cmd->add_option("--vocab", args->vocab, "Vocabulary size (default: the preset's)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.json/tokenizer.model or a directory: the vocabulary and special ids come from it, and its "
                  "files (tokenizer_config.json, chat template) are copied into --out");
  cmd->add_option("--init-std", args->init_std, "standard deviation of the random weights (default: the preset's 0.02)")
      ->check(CLI::Range(1e-6, 10.0));
  cmd->add_flag("--force", args->force, "Overwrite an existing model in --out");
  cmd->add_option("--quant", args->quant,
                  "nf4 | nf4-dq | int8 | fp8: write a quantized layer file (--out is its path) instead of an HF directory")
      ->check(CLI::IsMember({"none", "nf4", "nf4-dq", "int8", "fp8"}));
  cmd->add_option("--dtype", args->dtype, "With --quant: bf16 | fp16 | fp32 for norms, embedding and head (default bf16)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->callback([args] { lema::cli::finish(run_init(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_model_init);
