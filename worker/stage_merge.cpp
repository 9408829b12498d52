// The merge stage: engine::merge_adapter, the code of `lema merge`, folding
// the train stage's adapter (<work_dir>/train/adapter) into the job's base
// model with the job's [merge] dtype and shard size. Output: the HF
// directory <work_dir>/merged (built in a temp dir and renamed by the merge,
// so it exists only complete). Reports PROGRESS in tensors, stops on CANCEL
// or SIGTERM between two tensors.
#include <nlohmann/json.hpp>

#include "common/formats/dtype.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "engine/merge.h"
#include "worker/stage_runner.h"

namespace lema::worker {

StageOutcome run_merge_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                             StageReporter& reporter) {
  nlohmann::json spec = nlohmann::json::parse(a.spec_json, nullptr, false);
  if (!spec.is_object() || !spec.contains("model") || !spec["model"].is_object()) {
    return {Status::invalid_argument("ASSIGN spec has no [model] section"), "{}", false};
  }
  const nlohmann::json merge = spec.contains("merge") && spec["merge"].is_object() ? spec["merge"]
                                                                                    : nlohmann::json::object();
  engine::MergeOptions o;
  o.base = spec["model"].value("path", std::string());
  o.tokenizer = spec["model"].value("tokenizer", std::string());
  o.adapter = job_adapter_dir(work_dir);
  o.out = job_merged_dir(work_dir);
  o.show_progress = false;
  if (o.base.empty()) return {Status::invalid_argument("model.path is empty in the job spec"), "{}", false};
  const std::string dtype_name = merge.value("dtype", std::string("bf16"));
  Result<DType> dtype = parse_dtype_alias(dtype_name);
  if (!dtype.ok()) return {dtype.status().with_context("merge.dtype"), "{}", false};
  o.dtype = dtype.value();
  o.shard_bytes = merge.value("shard_size", uint64_t{2} << 30);
  if (!path_exists(path_join(o.adapter, "adapter_model.safetensors"))) {
    // The train stage succeeded, so its adapter exists somewhere: the shared
    // directory is missing on this machine; another worker may see it.
    return {Status::not_found("adapter " + o.adapter + " (the train stage's output) is not visible on this worker"),
            "{}", true};
  }
  if (path_exists(o.out)) {
    // An earlier attempt renamed its output into place but its DONE was lost;
    // the adapter may have changed since (a retried job), so merge again.
    // Only a directory an earlier merge made (its marker): a spec must never
    // make a worker delete a merged/ that lema did not create.
    reporter.log("info", "replacing " + o.out + " left by an earlier attempt");
    if (Status s = remove_owned_dir(o.out); !s.ok()) {
      return {s, "{}", s.code() != Status::Code::kInvalidArgument};
    }
  }

  bool cancelled = false, stopped = false;
  uint64_t last_reported = 0;
  o.on_tensor = [&](uint64_t done, uint64_t total) -> Status {
    // About 20 reports per merge, whatever the model size.
    if (done == total || (done - last_reported) * 20 >= total) {
      reporter.progress(static_cast<int64_t>(done), static_cast<int64_t>(total), "{}");
      last_reported = done;
    }
    if (reporter.cancel_requested()) {
      cancelled = true;
      return Status::cancelled("merge cancelled");
    }
    if (env.stop && env.stop->load()) {
      stopped = true;
      return Status::cancelled("worker stopping during the merge");
    }
    return Status();
  };
  reporter.log("info", "merging " + o.adapter + " into " + o.base + " -> " + o.out + " (" + dtype_name + ", shards <= " +
                           format_bytes(o.shard_bytes) + ")");
  Result<engine::MergeStats> stats = engine::merge_adapter(o);
  if (stopped) return {stats.status(), "{}", true, true};
  if (cancelled) return {stats.status(), "{}", false};
  if (!stats.ok()) return {stats.status(), "{}", is_retryable(stats.status())};
  if (Status marked = mark_owned(o.out); !marked.ok()) return {marked, "{}", true};
  reporter.log("info", str_printf("merged %lld projections: %d shard(s), %s of tensors",
                                  static_cast<long long>(stats->n_merged), stats->n_shards,
                                  format_bytes(stats->total_bytes).c_str()));
  nlohmann::json result = {{"dir", o.out},
                           {"dtype", dtype_name},
                           {"shards", stats->n_shards},
                           {"bytes", stats->total_bytes},
                           {"merged_projections", stats->n_merged}};
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
