#include "engine/run_metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <utility>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema::engine {

namespace {

int64_t int_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

// The kept lines of `text` (see the header), in step order.
std::string kept_lines(const std::string& text, int64_t last_step, int64_t accepted_attempt) {
  std::map<int64_t, std::pair<int64_t, std::string>> by_step;  // step -> (attempt, line)
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t end = text.find('\n', begin);
    if (end == std::string::npos) break;  // torn last line
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    const nlohmann::json m = nlohmann::json::parse(line, nullptr, false);
    if (!m.is_object()) continue;
    const int64_t step = int_field(m, "step");
    const int64_t attempt = int_field(m, "attempt");  // 0: written outside a job
    if (step < 1 || step > last_step) continue;
    if (accepted_attempt > 0 && attempt > accepted_attempt) continue;
    auto it = by_step.find(step);
    // Newest attempt wins; within one attempt the later line (a step redone
    // by the same attempt cannot happen, but a copy must not duplicate it).
    if (it == by_step.end() || attempt >= it->second.first) by_step[step] = {attempt, line};
  }
  std::string kept;
  for (const auto& [step, entry] : by_step) kept += entry.second + "\n";
  return kept;
}

}  // namespace

Result<RunMetrics> RunMetrics::open(const std::string& path, const AttemptFence& fence, int64_t stage_id,
                                    int64_t resume_step, int64_t resume_attempt) {
  RunMetrics metrics(path, fence, stage_id);
  if (!path_exists(path)) return metrics;
  LEMA_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  const std::string kept = kept_lines(text, resume_step, resume_attempt);
  if (kept == text) return metrics;
  log_info("metrics: %s: kept one line per step for steps 1..%lld (attempts up to %lld)", path.c_str(),
           static_cast<long long>(resume_step), static_cast<long long>(resume_attempt));
  LEMA_RETURN_IF_ERROR(fence.write_file(path, kept));
  return metrics;
}

Status RunMetrics::append(nlohmann::json fields) const {
  if (fence_.attempt() > 0) {
    fields["attempt"] = fence_.attempt();
    fields["stage_id"] = stage_id_;
  }
  const std::string data = fields.dump() + "\n";
  // Under the fence's lock: a superseded attempt appends nothing, and no
  // append interleaves with a rewrite by the attempt that took over.
  return fence_.run_locked([&]() -> Status {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return status_from_errno("opening " + path_, errno);
    const ssize_t n = ::write(fd, data.data(), data.size());
    const int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(data.size())) return status_from_errno("appending to " + path_, err);
    return Status();
  });
}

}  // namespace lema::engine
