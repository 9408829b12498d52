// The paths of a job spec, checked where they are used (docs/SECURITY.md):
//  - at submit, by the scheduler: a relative job.work_dir (or input) may not
//    climb out with "..", an absolute one must lie under one of the
//    scheduler's --allow-path roots; refused with the reason otherwise.
//  - on the worker, before a stage runs: every path is resolved (symlinks
//    included) against the worker's --workdir and its --allow-path roots, and
//    the spec the stage sees carries the resolved paths, so the stage reads
//    exactly what was checked.
//
// Thread-safety: free functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/path_policy.h"
#include "common/base/status.h"

namespace lema {

struct JobSpec;

// Scheduler side. `allowed_roots` as given to --allow-path (resolved here).
Status check_submitted_paths(const JobSpec& spec, const std::vector<std::string>& allowed_roots);

// Worker side: the job directory of an ASSIGN, resolved and confined.
Result<std::string> confine_work_dir(const std::string& work_dir, const PathRoots& roots);
// Worker side: checks model.path, model.tokenizer and data.jsonl of the
// spec (normalised JSON) and rewrites them to their resolved form.
Status confine_spec_inputs(nlohmann::json* spec, const PathRoots& roots);

}  // namespace lema
