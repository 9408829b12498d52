#include "worker/stage_runner.h"

#include <utility>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/protocol/job_paths.h"

namespace lema::worker {

namespace {
// Every stage kind this worker runs, in pipeline order.
const std::pair<const char*, StageRunner> kRunners[] = {
    {"dataset", run_dataset_stage},
    {"train", run_train_stage},
    {"eval", run_eval_stage},
    {"merge", run_merge_stage},
    {"export", run_export_stage},
};
}  // namespace

std::vector<std::string> stage_kinds() {
  std::vector<std::string> kinds;
  for (const auto& entry : kRunners) kinds.emplace_back(entry.first);
  return kinds;
}

std::string resolve_work_dir(const std::string& work_dir, const std::string& base_dir) {
  if (work_dir.empty() || work_dir[0] == '/' || base_dir.empty()) return work_dir;
  return path_join(base_dir, work_dir);
}

std::string job_data_dir(const std::string& work_dir) { return path_join(work_dir, "data"); }
std::string job_train_dir(const std::string& work_dir) { return path_join(work_dir, "train"); }
std::string job_adapter_dir(const std::string& work_dir) { return path_join(job_train_dir(work_dir), "adapter"); }
std::string job_eval_dir(const std::string& work_dir) { return path_join(work_dir, "eval"); }
std::string job_merged_dir(const std::string& work_dir) { return path_join(work_dir, "merged"); }
std::string job_gguf_path(const std::string& work_dir, const std::string& type) {
  return path_join(work_dir, "model." + type + ".gguf");
}

std::string stage_device(const std::string& spec_device, const StageEnv& env) {
  if (spec_device == "auto") return env.device;
  if (spec_device == "cuda" && env.device.rfind("cuda", 0) == 0) return env.device;  // this worker's GPU
  return spec_device;
}

bool is_retryable(const Status& status) {
  const Status::Code c = status.code();
  return c != Status::Code::kInvalidArgument && c != Status::Code::kUnsupported && c != Status::Code::kCorruption;
}

Result<StageAssignment> confine_assignment(const StageAssignment& a, const StageEnv& env) {
  PathRoots roots = PathRoots::make(env.base_dir, env.allowed_roots);
  StageAssignment out = a;
  LEMA_ASSIGN_OR_RETURN(out.work_dir, confine_work_dir(a.work_dir, roots));
  nlohmann::json spec = nlohmann::json::parse(a.spec_json, nullptr, false);
  if (!spec.is_object()) return Status::invalid_argument("ASSIGN spec is not a JSON object");
  LEMA_RETURN_IF_ERROR(confine_spec_inputs(&spec, roots));
  if (spec.contains("job") && spec["job"].is_object()) spec["job"]["work_dir"] = out.work_dir;
  out.spec_json = spec.dump();
  if (!a.resume_checkpoint.empty()) {
    // A checkpoint the store recorded: it must lie in the job's directory.
    LEMA_ASSIGN_OR_RETURN(std::string ck, confine_path("resume_checkpoint", a.resume_checkpoint,
                                                       PathRoots::make(out.work_dir, {out.work_dir})));
    out.resume_checkpoint = ck;
  }
  return out;
}

std::optional<StageOutcome> fenced_outcome(StageReporter& reporter, const StageEnv& env) {
  Status s = reporter.wait_for_lease(env.stop);
  if (s.ok()) return std::nullopt;
  const bool stopped = env.stop && env.stop->load();
  return StageOutcome{s, "{}", stopped, stopped};
}

StageOutcome run_stage(const StageAssignment& a, const StageEnv& env, StageReporter& reporter) {
  const std::string work_dir = resolve_work_dir(a.work_dir, env.base_dir);
  if (work_dir.empty()) {
    return {Status::invalid_argument("ASSIGN has an empty work_dir"), "{}", false};
  }
  if (Status s = make_dirs(work_dir); !s.ok()) {
    // A shared directory that is not mounted here: another worker may see it.
    return {s.with_context("job directory (is the shared directory mounted on this machine?)"), "{}", true};
  }
  reporter.log("info", str_printf("stage %s (job %lld, attempt %lld) on %s in %s", a.kind.c_str(),
                                  static_cast<long long>(a.job_id), static_cast<long long>(a.attempt),
                                  env.device.c_str(), work_dir.c_str()));
  // Nothing starts from an ASSIGN whose lease cannot be shown (one read
  // after this worker was frozen waits here for WELCOME's answer).
  if (std::optional<StageOutcome> fenced = fenced_outcome(reporter, env)) return *fenced;
  for (const auto& [kind, runner] : kRunners) {
    if (a.kind == kind) return runner(a, work_dir, env, reporter);
  }
  return {Status::invalid_argument("unknown stage kind '" + a.kind + "'"), "{}", false};
}

}  // namespace lema::worker
