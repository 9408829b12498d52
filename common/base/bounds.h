// The bounds of every number a training run or a job spec takes (steps,
// batch, micro_batch, seq_len, lr, lora_r, lora_alpha, sizes, counts), in one
// table, named by the job spec's key. The spec parser (common/protocol/
// job_spec.cpp) and the engine's option check (validate_train_options, which
// `lema train` and the worker's train stage both run) ask this table, so a
// value the spec refuses is refused by `lema train` too, and no number that
// reaches a tensor shape or an int32 can overflow or abort the process.
//
// Thread-safety: pure functions over a constant table.
#pragma once

#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace lema {

// Checks `value` against the bounds of `key` ("steps", "batch", "lr", "vram",
// ...). The message names neither key nor location: "must be in [1, 65536]
// (got 0)"; the caller adds the file and line, the key or the flag. An unknown key is a bug
// (LEMA_CHECK), not a user error.
Status check_bound(const std::string& key, double value);
Status check_bound(const std::string& key, int64_t value);
Status check_bound(const std::string& key, uint64_t value);

// The tokens of one optimizer step (batch x seq_len) must fit an int32, the
// index type of the batch tensors; micro_batch is 0 (the memory plan's
// split) or divides batch. The message names the keys.
Status check_batch_shape(int64_t batch, int64_t micro_batch, int64_t seq_len);

// A name or path a user gives (job name, work_dir, model path): not empty
// when `required`, no control characters (they would garble logs, the
// terminal and file names).
Status check_name(const std::string& value, bool required);

}  // namespace lema
