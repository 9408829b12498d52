// The merge stage: engine::merge_adapter, the code of `lema merge`, folding
// the train stage's adapter (<work_dir>/train/adapter) into the job's base
// model with the job's [merge] dtype and shard size. Output: the HF
// directory <work_dir>/merged (built in a temp dir and renamed by the merge,
// so it exists only complete). Reports PROGRESS in tensors, stops on CANCEL
// or SIGTERM between two tensors.
#include <nlohmann/json.hpp>

#include "common/base/attempt_publish.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "engine/merge.h"
#include "worker/stage_options.h"
#include "worker/stage_runner.h"

namespace lema::worker {

StageOutcome run_merge_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                             StageReporter& reporter) {
  Result<JobSpec> spec = assignment_spec(a);
  if (!spec.ok()) return {spec.status(), "{}", false};
  Result<engine::MergeOptions> options = merge_options(spec.value(), work_dir);
  if (!options.ok()) return {options.status(), "{}", false};
  engine::MergeOptions& o = options.value();
  const std::string& dtype_name = spec->merge.dtype;
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
  Result<AttemptFence> fence = AttemptFence::claim(work_dir, a.kind, a.attempt);
  if (!fence.ok()) return {fence.status(), "{}", false};
  // Merged under the attempt's temp name, published whole.
  const std::string final_dir = o.out;
  o.out = fence->temp_path(final_dir);
  if (Status s = remove_all(o.out); !s.ok()) return {s, "{}", true};
  Result<engine::MergeStats> stats = engine::merge_adapter(o);
  if (stopped) return {stats.status(), "{}", true, true};
  if (cancelled) return {stats.status(), "{}", false};
  if (!stats.ok()) return {stats.status(), "{}", is_retryable(stats.status())};
  if (Status marked = mark_owned(o.out); !marked.ok()) return {marked, "{}", true};
  if (std::optional<StageOutcome> fenced = fenced_outcome(reporter, env)) {
    (void)remove_all(o.out);
    return *fenced;
  }
  if (Status s = fence->publish_dir(o.out, final_dir); !s.ok()) return {s, "{}", is_retryable(s)};
  o.out = final_dir;
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
