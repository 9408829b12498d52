// The flags of `lema train`, one per TrainOptions field, named as the job
// spec's [train] keys (with dashes): kept apart from cmd_train.cpp so that a
// test can parse a command line and compare it with the worker's train stage
// options (tests/worker/stage_options_test.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include "engine/train_options.h"

namespace lema::cli {

// Adds every flag of `lema train` to `cmd`, parsing into `*o`, whose values
// are the defaults shown. `o` must outlive parsing.
void add_train_flags(CLI::App* cmd, engine::TrainOptions* o);

}  // namespace lema::cli
