// The built-in "lema-reply" dataset: templated questions over fact tables
// plus computed math, all categories and confidence levels, split into
// train/eval like imported data. See docs/DATASET.md.
//
// Free functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/data/dataset_builder.h"

namespace lema {

// Category names of the lema-reply builder, in report order.
const std::vector<std::string>& lema_reply_categories();

struct BuildOptions {
  int64_t examples = 5000;      // train + eval
  uint64_t seed = 42;
  double eval_fraction = 0.05;  // of every template family, rounded
};

// The built-in set. Every question is distinct; a question's template
// family decides its category; math and other computed answers are
// recomputed from the question text by an independent parser and the
// build fails on any mismatch. Same options -> same bytes.
// Errors: examples < 10 or more than the families can supply; fraction
// outside [0, 0.5].
Result<BuiltDataset> build_lema_reply(const BuildOptions& options);

// Recomputes the answer of a computed question ("What is 12 plus 30?",
// "How many grams are in 3 kilograms?", ...). Returns false when the
// question is not of a computed form; `expected` gets the answer text.
bool recompute_answer(const std::string& question, std::string* expected);

}  // namespace lema
