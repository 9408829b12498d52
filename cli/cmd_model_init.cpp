// `lema model init --preset tiny|mini|compact|small --out DIR [--seed N] [--vocab N]`:
// writes a randomly initialised Hugging Face Llama directory.
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
};

lema::Status run_init(const InitArgs& a) {
  using namespace lema;
  LEMA_ASSIGN_OR_RETURN(ModelConfig c, model_preset(a.preset));
  if (a.vocab > 0) c.vocab_size = a.vocab;
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
  cmd->callback([args] { lema::cli::finish(run_init(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_model_init);
