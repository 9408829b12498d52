// `lema train`: LoRA fine-tuning of a base model on one device, layer by
// layer (engine/trainer.h). The flags are in cli/train_flags.cpp.
#include <memory>

#include "cli/command.h"
#include "cli/train_flags.h"
#include "engine/trainer.h"

namespace {

void setup_train(CLI::App& app) {
  auto o = std::make_shared<lema::engine::TrainOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Fine-tune a model with LoRA, layer by layer");
  lema::cli::add_train_flags(cmd, o.get());
  cmd->callback([o] { lema::cli::finish(lema::engine::run_training(*o)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_train);
