// JobSpec: the TOML job description a user submits (docs/SCHEDULER.md "Job
// spec"). Parsing checks every key and type (errors name the key and line),
// fills defaults, and to_json() gives the normalised form the scheduler stores
// next to the submitted text and sends to workers in ASSIGN; from_json() reads
// that form back with the same checks, so a worker gets the typed spec and
// never reads the JSON by key. These defaults are the only ones: the engine's
// TrainOptions and `lema train` use the same (tests/worker/stage_options_test.cpp).
//
// Thread-safety: a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"

namespace lema {

// The names of common/data/dataset_format.h's formats: the protocol does not
// link the data library; tests/worker/data_format_spec_test.cpp checks
// that both lists agree.
inline constexpr const char* kDataFormatNames[] = {"auto", "lema", "messages", "sharegpt", "alpaca",
                                                   "prompt-completion", "text", "tokenized"};

struct JobSpec {
  struct Job {
    std::string name = "job";
    int64_t priority = 0;  // higher runs first
    std::string work_dir;  // default: runs/<name>
    int64_t max_attempts = 3;
  } job;
  struct Model {
    std::string path;  // required: HF dir or *.lema.safetensors
    std::string tokenizer;  // optional
  } model;
  struct Data {
    std::string builder = "lema-reply";  // empty when jsonl is set
    std::string jsonl;  // the user's own data file (TOML key `path` or `jsonl`): JSONL or a JSON array
    // The user file's record format (common/data/dataset_format.h names;
    // kDataFormatNames), "auto": detected from its first record.
    std::string format = "auto";
    bool skip_bad = false;  // skip bad records (counted in stats.json) instead of failing the stage
    int64_t examples = 200;
    int64_t seed = 0;
    double eval_fraction = 0.1;
  } data;
  struct Train {
    int64_t seed = 0;
    int64_t steps = 0;  // 0: run `epochs` epochs
    int64_t epochs = 1;
    double lr = 2e-4;
    std::string schedule = "cosine";  // constant | linear | cosine
    int64_t warmup = 0;
    int64_t batch = 8;
    int64_t micro_batch = 1;  // 0: the memory plan's split (with budgets), else = batch
    int64_t seq_len = 512;
    bool packing = false;  // short examples packed into rows of seq_len, attention kept within each
    int64_t lora_r = 16;
    double lora_alpha = 32;
    double lora_dropout = 0.05;
    std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
    std::string dtype = "auto";   // auto | fp32 | bf16 | fp16 (auto: fp32 on CPU, bf16 on CUDA)
    std::string device = "auto";  // cpu | cuda | auto
    int64_t checkpoint_every = 100;
    uint64_t vram_bytes = 0;  // 0: no limit
    uint64_t ram_bytes = 0;   // 0: no limit
  } train;
  struct Eval {
    bool enabled = true;
    int64_t questions = 20;
    int64_t max_new_tokens = 128;
  } eval;
  struct Merge {
    bool enabled = true;
    std::string dtype = "bf16";
    uint64_t shard_size_bytes = 2ull << 30;
  } merge;
  // An export stage after merge: <work_dir>/model.<gguf>.gguf from the merged
  // model (engine/gguf_export.h). Empty: no export stage.
  struct Export {
    std::string gguf;  // a GGUF file type that `lema export --type` builds
  } export_;  // `export` is a C++ keyword
  // How often a stage may fail in ways that are not its input's fault.
  struct Retry {
    // A stage whose process crashed (signal, OOM kill, exit without a
    // result) this many times fails the job instead of being handed to
    // another worker (issue 19).
    int64_t max_crashes = 2;
  } retry;
  struct Resources {
    uint64_t gpu_memory_bytes = 0;  // VRAM a worker must have for train/eval/merge
    bool cpu_ok = true;             // may run on a CPU-only worker
  } resources;

  // Parses TOML text. `source` names the file in error messages.
  static Result<JobSpec> parse(const std::string& toml_text, const std::string& source = "spec");
  // The normalised form (to_json) back; keys may be missing (defaults), any
  // other error is reported as parse() reports it, naming `source`.
  static Result<JobSpec> from_json(const nlohmann::json& j, const std::string& source = "spec");
  // Normalised form: every section, every key, defaults filled, sizes in bytes.
  nlohmann::json to_json() const;
};

}  // namespace lema
