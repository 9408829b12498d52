// Fencing on disk (issue 19): every write a job's stage makes is tied to its
// attempt, so an attempt the scheduler has given up on (a worker that was
// SIGSTOPped past its lease, then continued) cannot replace what the
// current attempt wrote.
//
// - An attempt writes under attempt-scoped temp names,
//   `NAME.tmp.a<attempt>.<pid>`; a crash leaves only such names.
// - A stage claims its directory for its attempt when it starts: the
//   directory's record `.attempt-<stage>` holds the newest attempt that
//   claimed it, and a claim by an older attempt is refused.
// - Publishing (the rename of a temp file or directory into place) runs
//   under an exclusive flock of `<dir>/.publish.lock` and is refused unless
//   the record still names this attempt and the published directory's own
//   ATTEMPT file (written into every published directory) is not newer.
// Attempt 0 is not a job (`lema train` by hand): no claim, no checks, no
// ATTEMPT file; the temp names and the lock stay.
//
// Thread-safety: an AttemptFence is a value (directory, stage, attempt);
// each call takes the lock itself, so several threads and processes may
// publish into one directory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/base/status.h"

namespace lema {

// The file inside every published directory that names the attempt that
// published it.
constexpr const char* kAttemptFileName = "ATTEMPT";

class AttemptFence {
 public:
  // Claims `dir` (created if missing) for `attempt` of `stage` ("train",
  // "eval", ...): kCancelled naming both attempts when a newer attempt has
  // claimed it. Attempt 0 (not a job's) gets unfenced(dir). REQUIRES: stage
  // a plain name.
  static Result<AttemptFence> claim(const std::string& dir, const std::string& stage, int64_t attempt);
  // Writes into `dir` outside any job (attempt 0): never refused.
  static AttemptFence unfenced(const std::string& dir);

  int64_t attempt() const { return attempt_; }
  const std::string& dir() const { return dir_; }

  // "<final_path>.tmp.a<attempt>.<pid>"
  std::string temp_path(const std::string& final_path) const;

  // Runs `fn` under the lock once the claim is shown to be still this
  // attempt's; kCancelled (and fn not run) otherwise. For writes that are
  // not a rename, such as appending a metrics line.
  Status run_locked(const std::function<Status()>& fn) const;
  // Writes ATTEMPT into `temp_dir`, then, under the lock and still current,
  // replaces `final_dir` by it (the old one renamed aside, then removed).
  // Refused when final_dir's ATTEMPT names a newer attempt. The temp
  // directory is removed when refused.
  Status publish_dir(const std::string& temp_dir, const std::string& final_dir) const;
  // Renames a finished file (written and fsynced under temp_path(final) by
  // a library call) to `final_path` under the lock, still current; the temp
  // file is removed when refused.
  Status publish_file(const std::string& temp_file, const std::string& final_path) const;
  // A whole file at once: temp name, fsync, then the rename of publish_file.
  Status write_file(const std::string& final_path, const std::string& data) const;

 private:
  AttemptFence(std::string dir, std::string stage, int64_t attempt)
      : dir_(std::move(dir)), stage_(std::move(stage)), attempt_(attempt) {}
  Status check_current() const;  // REQUIRES: the lock held
  // `data` to temp_path(final_path), then renamed over final_path without
  // any check. REQUIRES: the lock held (claim's record).
  Status rename_into_place(const std::string& final_path, const std::string& data) const;

  std::string dir_;
  std::string stage_;
  int64_t attempt_ = 0;
};

// The attempt named by `dir`/ATTEMPT: 0 when there is none (written outside
// a job, or before fencing); kCorruption when it is not a number.
Result<int64_t> published_attempt(const std::string& dir);

}  // namespace lema
