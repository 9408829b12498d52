// The engine options of each stage, from the typed job spec: the one place
// where a spec key becomes an engine option, so a stage runs as the
// standalone command with the same flags does (`lema train`, `lema eval`,
// `lema merge`), and the defaults are the spec's alone.
//
// Thread-safety: free functions on values.
#pragma once

#include <string>

#include "common/base/status.h"
#include "common/protocol/job_spec.h"
#include "engine/train_options.h"
#include "worker/stage_runner.h"

namespace lema::engine {
struct EvalOptions;   // engine/evaluator.h
struct MergeOptions;  // engine/merge.h
struct GgufExportOptions;  // engine/gguf_export.h
}  // namespace lema::engine

namespace lema::worker {

// ASSIGN's spec (the scheduler's normalised JSON), checked as a submitted
// spec is. Errors are kInvalidArgument: the spec fails again anywhere.
Result<JobSpec> assignment_spec(const StageAssignment& assignment);

// `lema train` on <work_dir>/data/train.jsonl into <work_dir>/train, resuming
// from the assignment's checkpoint when it names one (set by the caller:
// o.resume). Device and threads come from this worker (stage_device).
engine::TrainOptions train_options(const JobSpec& spec, const std::string& work_dir, const StageEnv& env);

// `lema eval` of the base and base + <work_dir>/train/adapter on
// <work_dir>/data/eval.jsonl, with training's seq_len, dtype and budgets.
engine::EvalOptions eval_options(const JobSpec& spec, const std::string& work_dir, const StageEnv& env);

// `lema merge` of <work_dir>/train/adapter into <work_dir>/merged with the
// spec's [merge] dtype and shard size.
Result<engine::MergeOptions> merge_options(const JobSpec& spec, const std::string& work_dir);

// `lema export <work_dir>/merged --type <[export] gguf> --out
// <work_dir>/model.<type>.gguf` (the merged directory holds the tokenizer).
engine::GgufExportOptions export_options(const JobSpec& spec, const std::string& work_dir);

}  // namespace lema::worker
