#include "worker/stage_runner.h"

#include <utility>

#include "common/file_util.h"
#include "common/log.h"

namespace lema::worker {

namespace {
// Every stage kind this worker runs. TODO(issue 6): add
// {"eval", run_eval_stage} when the evaluator lands (and drop the
// kUnsupported answer for "eval" in run_stage).
const std::pair<const char*, StageRunner> kRunners[] = {
    {"dataset", run_dataset_stage},
    {"train", run_train_stage},
    {"merge", run_merge_stage},
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
  for (const auto& [kind, runner] : kRunners) {
    if (a.kind == kind) return runner(a, work_dir, env, reporter);
  }
  if (a.kind == "eval") {
    return {Status::unsupported("stage 'eval' is not supported yet by this worker (its library code has not landed); "
                                "set eval.enabled = false in the job spec"),
            "{}", false};
  }
  return {Status::invalid_argument("unknown stage kind '" + a.kind + "'"), "{}", false};
}

}  // namespace lema::worker
