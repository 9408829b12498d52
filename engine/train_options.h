// Every option of a training run, named as the job spec names them (seed,
// steps, epochs, lr, schedule, warmup, batch, micro_batch, seq_len, packing, lora_r,
// lora_alpha, lora_dropout, targets, dtype, device, checkpoint_every), so
// the CLI and the worker fill the same struct. The defaults are the job
// spec's (common/protocol/job_spec.h): `lema train` with no flag trains as a
// job with no [train] key does (tests/worker/stage_options_test.cpp checks
// it). No LibTorch here.
#pragma once

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace lema::engine {

struct TrainOptions {
  std::string model;   // HF model directory or layer file
  std::string data;    // training data: JSONL or a JSON array (docs/DATASET.md)
  std::string format = "auto";  // the data's format (common/data/dataset_format.h); auto: detected
  bool skip_bad = false;        // skip bad records, counted by reason in the summary, instead of failing
  std::string out;     // run directory: checkpoints/, adapter/, metrics.jsonl
  std::string tokenizer;  // tokenizer file or directory; empty: the model directory (or the layer file's)
  std::string resume;  // run directory or step-N directory; empty: fresh start
  bool full = false;   // train every weight (small models; full_model.h); output <out>/model

  uint64_t seed = 0;
  int64_t steps = 0;        // optimizer steps; 0: derived from epochs
  double epochs = 1.0;      // used when steps == 0
  int64_t stop_after = 0;   // stop this process after this global step (0: run to the end); the
                            // schedule still spans `steps` (resume tests, preemption drills)
  double lr = 2e-4;
  std::string schedule = "cosine";    // constant | linear | cosine
  int64_t warmup = 0;                 // warmup steps
  int64_t batch = 8;                  // sequences per optimizer step
  int64_t micro_batch = 1;            // sequences per micro-batch; 0: the memory plan's split
                                      // (with budgets), else = batch
  int64_t seq_len = 512;              // longer examples are cut
  bool packing = false;               // examples packed into rows of seq_len (data_loader.h); batch counts rows
  int64_t lora_r = 16;
  double lora_alpha = 32.0;
  double lora_dropout = 0.05;
  bool use_rslora = false;
  std::string targets = "q_proj,k_proj,v_proj,o_proj";  // comma-separated, or "all"
  std::string dtype = "auto";  // auto | fp32 | bf16 | fp16 (auto: fp32 on cpu, bf16 on cuda)
  std::string device = "auto";  // cpu | cuda | cuda:N | auto (cuda when present)
  int64_t checkpoint_every = 100;  // 0: only at the end
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;    // 0: no clipping
  int64_t loss_chunk_tokens = 1024;
  // Memory budgets (0: none). Either one streams the base model (a layer
  // file) through a LayerStore as the memory planner decides; the plan is
  // printed and a run that cannot fit is refused before it starts.
  uint64_t vram_budget = 0;
  uint64_t ram_budget = 0;
  // The LoRA state (masters, grads, AdamW moments) in pinned host memory,
  // each layer's visiting the device with the layer, even when the plan
  // would keep it on the device (--lora-host). Same results either way.
  bool force_lora_on_host = false;
  int64_t threads = 0;           // CPU intra-op threads; 0: all cores
  bool quiet = false;            // no per-step lines on stdout
  // The job stage and attempt writing (each metrics line names both; the
  // run's directory is fenced for the attempt: common/base/attempt_publish.h);
  // 0: not a job.
  int64_t attempt = 0;
  int64_t stage_id = 0;
};

// Checks ranges and names; errors name the option.
Status validate_train_options(const TrainOptions& options);

}  // namespace lema::engine
