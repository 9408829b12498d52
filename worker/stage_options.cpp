#include "worker/stage_options.h"

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/dtype.h"
#include "engine/evaluator.h"
#include "engine/gguf_export.h"
#include "engine/merge.h"
#include "engine/torch_types.h"

namespace lema::worker {

namespace {
std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}
}  // namespace

Result<JobSpec> assignment_spec(const StageAssignment& a) {
  nlohmann::json j = nlohmann::json::parse(a.spec_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument("ASSIGN spec is not JSON");
  return JobSpec::from_json(j, "ASSIGN spec");
}

engine::TrainOptions train_options(const JobSpec& spec, const std::string& work_dir, const StageEnv& env) {
  const JobSpec::Train& t = spec.train;
  engine::TrainOptions o;
  o.model = spec.model.path;
  // Text JSONL (what the dataset stage writes) is tokenized by the engine's
  // data loader, as `lema train --tokenizer` does: with model.tokenizer, or
  // the tokenizer.json / tokenizer.model next to the model when it is empty.
  o.tokenizer = spec.model.tokenizer;
  o.data = path_join(job_data_dir(work_dir), "train.jsonl");
  o.out = job_train_dir(work_dir);
  o.seed = static_cast<uint64_t>(t.seed);
  o.steps = t.steps;
  o.epochs = static_cast<double>(t.epochs);
  o.lr = t.lr;
  o.schedule = t.schedule;
  o.warmup = t.warmup;
  o.batch = t.batch;
  o.micro_batch = t.micro_batch;
  o.seq_len = t.seq_len;
  o.packing = t.packing;
  o.lora_r = t.lora_r;
  o.lora_alpha = t.lora_alpha;
  o.lora_dropout = t.lora_dropout;
  o.targets = join(t.targets);
  o.dtype = t.dtype;  // the engine reads the spec's names (fp32, bf16, fp16)
  o.device = stage_device(t.device, env);
  o.checkpoint_every = t.checkpoint_every;
  // The engine streams the base (a layer file) within them, as
  // `lema train --vram/--ram`.
  o.vram_budget = t.vram_bytes;
  o.ram_budget = t.ram_bytes;
  o.threads = env.threads;
  o.quiet = true;  // PROGRESS carries the steps
  return o;
}

engine::EvalOptions eval_options(const JobSpec& spec, const std::string& work_dir, const StageEnv& env) {
  engine::EvalOptions o;
  o.model = spec.model.path;
  o.tokenizer = spec.model.tokenizer;
  o.adapter = job_adapter_dir(work_dir);
  o.data = path_join(job_data_dir(work_dir), "eval.jsonl");
  o.out = job_eval_dir(work_dir);
  o.metrics = path_join(job_train_dir(work_dir), "metrics.jsonl");
  o.questions = spec.eval.questions;
  o.max_new_tokens = spec.eval.max_new_tokens;
  // The loss sees examples cut as training saw them, and the base streams
  // within the budgets that training had.
  o.seq_len = spec.train.seq_len;
  o.device = stage_device(spec.train.device, env);
  o.dtype = spec.train.dtype;
  o.vram_budget = spec.train.vram_bytes;
  o.ram_budget = spec.train.ram_bytes;
  o.threads = env.threads;
  o.show_progress = false;  // PROGRESS carries it
  return o;
}

Result<engine::MergeOptions> merge_options(const JobSpec& spec, const std::string& work_dir) {
  engine::MergeOptions o;
  o.base = spec.model.path;
  o.tokenizer = spec.model.tokenizer;
  o.adapter = job_adapter_dir(work_dir);
  o.out = job_merged_dir(work_dir);
  Result<DType> dtype = parse_dtype_alias(spec.merge.dtype);
  if (!dtype.ok()) return dtype.status().with_context("merge.dtype");
  o.dtype = dtype.value();
  o.shard_bytes = spec.merge.shard_size_bytes;
  o.show_progress = false;  // PROGRESS carries it
  return o;
}

engine::GgufExportOptions export_options(const JobSpec& spec, const std::string& work_dir) {
  engine::GgufExportOptions o;
  o.model = job_merged_dir(work_dir);
  o.type = spec.export_.gguf;
  o.out = job_gguf_path(work_dir, spec.export_.gguf);
  o.name = spec.job.name;
  o.show_progress = false;  // PROGRESS carries it
  return o;
}

}  // namespace lema::worker
