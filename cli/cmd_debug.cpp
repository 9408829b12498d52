// `lema debug step`: dumps one forward/backward (logits, loss, LoRA
// gradients) for parity checks against Hugging Face + PEFT.
#include <memory>

#include "cli/command.h"
#include "engine/debug_step.h"

namespace {

void setup_debug(CLI::App& app) {
  CLI::App* debug = lema::cli::group(app, "debug", "Developer tools: numeric dumps for parity checks");
  auto o = std::make_shared<lema::engine::DebugStepOptions>();
  CLI::App* cmd = debug->add_subcommand("step", "Logits, loss and LoRA gradients of one batch, as safetensors");
  cmd->add_option("--model", o->model, "HF model directory or layer file")->required();
  cmd->add_option("--adapter", o->adapter, "PEFT adapter directory with the LoRA weights to use");
  cmd->add_option("--batch", o->batch, "JSON {\"input_ids\": [[...]], \"labels\": [[...]]}")->required();
  cmd->add_option("--out", o->out, "output safetensors")->required();
  cmd->add_option("--dtype", o->dtype, "fp32 | bf16 | fp16 (also fp64, for parity checks)")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--lora-r", o->lora_r, "rank when no --adapter")->capture_default_str();
  cmd->add_option("--lora-alpha", o->lora_alpha, "alpha when no --adapter")->capture_default_str();
  cmd->add_option("--targets", o->targets, "targets when no --adapter")->capture_default_str();
  cmd->add_option("--seed", o->seed, "LoRA init seed when no --adapter")->capture_default_str();
  cmd->add_option("--generate", o->generate, "also greedy-generate N tokens from the batch's prompt_ids (KV cache)");
  cmd->callback([o] { lema::cli::finish(lema::engine::run_debug_step(*o)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_debug);
