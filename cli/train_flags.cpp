#include "cli/train_flags.h"

#include "cli/command.h"

namespace lema::cli {

void add_train_flags(CLI::App* cmd, engine::TrainOptions* o) {
  cmd->add_option("--model", o->model, "HF model directory or layer file")->required();
  cmd->add_option("--data", o->data, "training data: JSONL or a JSON array (docs/DATASET.md)")->required();
  cmd->add_option("--format", o->format,
                  "auto | lema | messages | sharegpt | alpaca | prompt-completion | text | tokenized")
      ->capture_default_str();
  cmd->add_flag("--skip-bad", o->skip_bad, "skip bad records (counted by reason in the summary) instead of failing");
  cmd->add_option("--out", o->out, "run directory (checkpoints/, adapter/, metrics.jsonl)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer file or directory (default: the model's directory)");
  cmd->add_flag("--full", o->full,
                "train every weight instead of a LoRA adapter (models that fit in memory); writes <out>/model");
  cmd->add_option("--resume", o->resume, "run directory (newest checkpoint) or a checkpoint step-N directory");
  cmd->add_option("--seed", o->seed, "seed of every random draw")->capture_default_str();
  auto* steps = cmd->add_option("--steps", o->steps, "optimizer steps");
  cmd->add_option("--epochs", o->epochs, "epochs (when --steps is not given)")->excludes(steps)->capture_default_str();
  cmd->add_option("--stop-after", o->stop_after, "stop this process after this step (the schedule still spans --steps)");
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--schedule", o->schedule, "constant | linear | cosine")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "warmup steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per optimizer step")->capture_default_str();
  cmd->add_option("--micro-batch", o->micro_batch,
                  "sequences per micro-batch (0: the --vram/--ram plan's split, else --batch)")
      ->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "longest sequence; longer examples are cut")->capture_default_str();
  cmd->add_flag("--packing", o->packing,
                "pack short examples into rows of --seq-len (attention within each example); --batch counts rows");
  cmd->add_option("--lora-r", o->lora_r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-alpha", o->lora_alpha, "LoRA alpha (scale = alpha / r)")->capture_default_str();
  cmd->add_option("--lora-dropout", o->lora_dropout, "LoRA dropout")->capture_default_str();
  cmd->add_flag("--rslora", o->use_rslora, "scale = alpha / sqrt(r)");
  cmd->add_option("--targets", o->targets, "projections with LoRA, comma-separated, or 'all'")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "auto | fp32 | bf16 | fp16")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu | cuda | cuda:N | auto")->capture_default_str();
  cmd->add_option("--checkpoint-every", o->checkpoint_every, "steps between checkpoints (0: only at the end)")
      ->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  cmd->add_option("--max-grad-norm", o->max_grad_norm, "global gradient-norm clip (0: off)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (default: all cores)");
  add_bytes_option(cmd, "--vram", o->vram_budget,
                   "device memory budget, e.g. 4GiB: stream the base model (a layer file) within it");
  add_bytes_option(cmd, "--ram", o->ram_budget, "host memory budget for weights and activations, e.g. 8GiB");
  cmd->add_flag("--lora-host", o->force_lora_on_host,
                "keep the LoRA state (masters, gradients, AdamW moments) in pinned host memory, each layer's on the "
                "device with the layer (the plan does so by itself when the device cannot hold it)");
  cmd->add_flag("--quiet", o->quiet, "no per-step lines");
}

}  // namespace lema::cli
