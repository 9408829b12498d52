// Dataset builders: the built-in "lema-reply" set (templated questions over
// fact tables plus computed math, all categories and confidence levels) and
// the import of user JSONL; both end in a train/eval split written as
// train.jsonl, eval.jsonl and stats.json (atomic writes). See docs/DATASET.md.
//
// Free functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset.h"
#include "common/status.h"

namespace lema {

// Category names of the lema-reply builder, in report order.
const std::vector<std::string>& lema_reply_categories();

struct BuildOptions {
  int64_t examples = 5000;      // train + eval
  uint64_t seed = 42;
  double eval_fraction = 0.05;  // of every template family, rounded
};

struct BuiltDataset {
  std::vector<Example> train;
  std::vector<Example> eval;
  std::string builder;  // "lema-reply" or "jsonl"
  uint64_t seed = 0;
  // Import figures (jsonl only): lines, bad lines by reason, duplicates.
  ImportResult import;
  bool imported = false;
};

// The built-in set. Every question is distinct; a question's template
// family decides its category; math and other computed answers are
// recomputed from the question text by an independent parser and the
// build fails on any mismatch. Same options -> same bytes.
// Errors: examples < 10 or more than the families can supply; fraction
// outside [0, 0.5].
Result<BuiltDataset> build_lema_reply(const BuildOptions& options);

// Splits imported examples: all examples sharing a question key go to the
// same side, so no eval question appears in train. eval gets
// round(fraction * distinct questions) questions, chosen by `seed`.
Result<BuiltDataset> split_imported(ImportResult imported, double eval_fraction, uint64_t seed);

// Recomputes the answer of a computed question ("What is 12 plus 30?",
// "How many grams are in 3 kilograms?", ...). Returns false when the
// question is not of a computed form; `expected` gets the answer text.
bool recompute_answer(const std::string& question, std::string* expected);

// stats.json content: counts of both splits, per category and confidence,
// distinct questions, and import figures with every bad line.
std::string dataset_stats_json(const BuiltDataset& d);

// Writes DIR/train.jsonl, DIR/eval.jsonl, DIR/stats.json (creates DIR).
Status write_dataset(const BuiltDataset& d, const std::string& dir);

}  // namespace lema
