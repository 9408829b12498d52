// A built dataset: the train/eval split of imported user JSONL (or of a
// builder such as lema_reply/), written as train.jsonl, eval.jsonl and
// stats.json (atomic writes). See docs/DATASET.md.
//
// Free functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/data/dataset.h"
#include "common/base/status.h"

namespace lema {

struct BuiltDataset {
  std::vector<Example> train;
  std::vector<Example> eval;
  std::string builder;  // "lema-reply" or "jsonl"
  uint64_t seed = 0;
  // Import figures (jsonl only): lines, bad lines by reason, duplicates.
  ImportResult import;
  bool imported = false;
};

// Splits imported examples: all examples sharing a question key go to the
// same side, so no eval question appears in train. eval gets
// round(fraction * distinct questions) questions, chosen by `seed`.
Result<BuiltDataset> split_imported(ImportResult imported, double eval_fraction, uint64_t seed);

// stats.json content: counts of both splits, per category and confidence,
// distinct questions, and import figures with every bad line.
std::string dataset_stats_json(const BuiltDataset& d);

// Writes DIR/train.jsonl, DIR/eval.jsonl, DIR/stats.json (creates DIR).
Status write_dataset(const BuiltDataset& d, const std::string& dir);

}  // namespace lema
