#include "common/protocol/job_paths.h"

#include "common/protocol/job_spec.h"

namespace lema {
namespace {

// The input fields of a spec, by (section, key).
constexpr const char* kInputs[][2] = {{"model", "path"}, {"model", "tokenizer"}, {"data", "jsonl"}, {"data", "path"}};

Status check_one(const std::string& what, const std::string& path, const PathRoots& roots) {
  if (path.empty()) return Status();
  if (path[0] != '/') {
    // The scheduler cannot see the worker's --workdir; it can see a climb.
    const std::string n = normalize_path(path);
    if (n == ".." || n.rfind("../", 0) == 0) {
      return Status::invalid_argument(what + " '" + path +
                                      "' climbs out of the work directory with '..'; use a path inside it");
    }
    return Status();
  }
  return confine_path(what, path, roots).status();
}

}  // namespace

Status check_submitted_paths(const JobSpec& spec, const std::vector<std::string>& allowed_roots) {
  PathRoots roots = PathRoots::make("/", allowed_roots);
  LEMA_RETURN_IF_ERROR(check_one("job.work_dir", spec.job.work_dir, roots));
  LEMA_RETURN_IF_ERROR(check_one("model.path", spec.model.path, roots));
  LEMA_RETURN_IF_ERROR(check_one("model.tokenizer", spec.model.tokenizer, roots));
  LEMA_RETURN_IF_ERROR(check_one("data.jsonl", spec.data.jsonl, roots));
  return Status();
}

Result<std::string> confine_work_dir(const std::string& work_dir, const PathRoots& roots) {
  return confine_path("job.work_dir", work_dir, roots);
}

Status confine_spec_inputs(nlohmann::json* spec, const PathRoots& roots) {
  for (const auto& field : kInputs) {
    if (!spec->contains(field[0]) || !(*spec)[field[0]].is_object()) continue;
    nlohmann::json& section = (*spec)[field[0]];
    if (!section.contains(field[1]) || !section[field[1]].is_string()) continue;
    const std::string path = section[field[1]].get<std::string>();
    if (path.empty()) continue;
    Result<std::string> resolved = confine_path(std::string(field[0]) + "." + field[1], path, roots);
    if (!resolved.ok()) return resolved.status();
    section[field[1]] = *resolved;
  }
  return Status();
}

}  // namespace lema
