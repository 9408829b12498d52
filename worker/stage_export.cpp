// The export stage: engine::export_gguf_model, the code of `lema export`,
// writing the merge stage's model (<work_dir>/merged) as a GGUF file of the
// job's [export] gguf type: <work_dir>/model.<type>.gguf, written as a temp
// file and renamed, so it exists only complete. Reports PROGRESS in tensors,
// stops on CANCEL or SIGTERM between two tensors (no file left).
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/base/attempt_publish.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/gguf_export.h"
#include "worker/stage_options.h"
#include "worker/stage_runner.h"

namespace lema::worker {
namespace {

// Whether `path` starts with GGUF's magic: a file an export wrote.
bool is_gguf_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

}  // namespace

StageOutcome run_export_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                              StageReporter& reporter) {
  Result<JobSpec> spec = assignment_spec(a);
  if (!spec.ok()) return {spec.status(), "{}", false};
  engine::GgufExportOptions o = export_options(spec.value(), work_dir);
  if (!path_exists(path_join(o.model, "config.json"))) {
    // The merge stage succeeded, so its output exists somewhere: the shared
    // directory is missing on this machine; another worker may see it.
    return {Status::not_found("merged model " + o.model + " (the merge stage's output) is not visible on this worker"),
            "{}", true};
  }
  if (path_exists(o.out)) {
    // An earlier attempt renamed its file into place but its DONE was lost;
    // the merged model may have changed since (a retried job), so export
    // again. Only a GGUF file: a spec must never make a worker delete a file
    // lema did not write.
    if (!is_gguf_file(o.out)) {
      return {Status::invalid_argument(o.out + " exists and is not a GGUF file; not replacing it"), "{}", false};
    }
    reporter.log("info", "replacing " + o.out + " left by an earlier attempt");
    if (Status s = remove_all(o.out); !s.ok()) return {s, "{}", true};
  }

  bool cancelled = false, stopped = false;
  uint64_t last_reported = 0;
  o.on_tensor = [&](uint64_t done, uint64_t total) -> Status {
    // About 20 reports per export, whatever the model size.
    if (done == total || (done - last_reported) * 20 >= total) {
      reporter.progress(static_cast<int64_t>(done), static_cast<int64_t>(total), "{}");
      last_reported = done;
    }
    if (reporter.cancel_requested()) {
      cancelled = true;
      return Status::cancelled("export cancelled");
    }
    if (env.stop && env.stop->load()) {
      stopped = true;
      return Status::cancelled("worker stopping during the export");
    }
    return Status();
  };
  reporter.log("info", "exporting " + o.model + " -> " + o.out + " (GGUF " + o.type + ")");
  Result<AttemptFence> fence = AttemptFence::claim(work_dir, a.kind, a.attempt);
  if (!fence.ok()) return {fence.status(), "{}", false};
  // Exported under the attempt's temp name, published by a rename.
  const std::string final_path = o.out;
  o.out = fence->temp_path(final_path);
  if (Status s = remove_all(o.out); !s.ok()) return {s, "{}", true};
  Result<engine::GgufExportStats> stats = engine::export_gguf_model(o);
  if (stopped) return {stats.status(), "{}", true, true};
  if (cancelled) return {stats.status(), "{}", false};
  if (!stats.ok()) return {stats.status(), "{}", is_retryable(stats.status())};
  if (std::optional<StageOutcome> fenced = fenced_outcome(reporter, env)) {
    (void)remove_all(o.out);
    return *fenced;
  }
  if (Status s = fence->publish_file(o.out, final_path); !s.ok()) return {s, "{}", is_retryable(s)};
  o.out = final_path;
  reporter.log("info", str_printf("wrote %s: GGUF %s, %s, %zu tensors, %s", o.out.c_str(), stats->arch.c_str(),
                                  stats->type.c_str(), stats->n_tensors, format_bytes(stats->bytes).c_str()));
  nlohmann::json result = {{"file", o.out}, {"type", stats->type}, {"arch", stats->arch}, {"bytes", stats->bytes}};
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
