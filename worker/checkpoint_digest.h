// The digest a worker reports for a checkpoint (CHECKPOINT's sha256, stored
// by the scheduler) and its check before a resume (issue 19, F3): one
// sha256 over a manifest of every file of the directory, so a torn or
// corrupted optimizer state or trainer_state.json is caught as surely as a
// corrupted adapter.
//
// Thread-safety: free functions over the file system.
#pragma once

#include <string>

#include "common/base/status.h"

namespace lema::worker {

// "files:" + sha256 of the lines "<sha256 of the file>  <name>\n", one per
// regular file of `dir` in name order (subdirectories are not part of a
// checkpoint and are refused).
Result<std::string> checkpoint_digest(const std::string& dir);

// OK when `dir` is a finished checkpoint (DONE present) whose digest is
// `recorded`. `recorded` may be the older form, the adapter file's bare hex,
// or empty (nothing recorded: only DONE is checked). The error says what
// is wrong: missing, unfinished, or which digest differs.
Status verify_checkpoint(const std::string& dir, const std::string& recorded);

}  // namespace lema::worker
