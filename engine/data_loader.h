// Training data for the engine: JSONL -> tokenized examples -> each
// optimizer step's right-padded micro-batches as tensors.
//
// load_training_data accepts every dataset format of docs/DATASET.md
// (common/data/dataset_format.h; JSONL or a JSON array), tokenized by the
// dataset module (common/data/training_example.h): conversations through
// the tokenizer directory's chat template when it has one (loss on each
// assistant turn), else lema's chat format (loss on the reply and EOS);
// or pre-tokenized lines {"input_ids":[...], "labels":[...]} (labels
// optional: every token trained).
//
// DataLoader wraps lema::Batcher (seeded per-epoch shuffle, cursor) and cuts
// each batch into micro-batches, each trimmed to its own longest row. With
// packing it first packs the examples, in the order given, into rows of
// seq_len (pack_examples): the rows are then what the batcher shuffles and
// a batch holds, and the micro-batches carry segment and position ids.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/data/training_example.h"
#include "engine/batch.h"

namespace lema::engine {

// True when the first line of a JSONL text is a pre-tokenized example
// ({"input_ids": [...]}): the whole file is then read as such.
bool is_pretokenized(const std::string& jsonl_text);

// Pre-tokenized JSONL; errors name the file and line.
Result<std::vector<TokenizedExample>> read_tokenized_jsonl(const std::string& path);
Status write_tokenized_jsonl(const std::string& path, const std::vector<TokenizedExample>& examples);

struct TrainDataOptions {
  DataFormat format = DataFormat::kAuto;  // kAuto: detected from the file's first record
  bool skip_bad = false;  // skip bad records (counted by reason in the summary) instead of failing
};

// Text records are tokenized with the tokenizer at `tokenizer_path` (a
// tokenizer file or a directory holding one, whose chat template is used);
// pre-tokenized JSONL needs none. Examples longer than seq_len are cut to
// seq_len. An empty result is an error naming `path`. `summary` (may be
// null) receives a one-line description for the log.
Result<std::vector<TokenizedExample>> load_training_data(const std::string& path, const std::string& tokenizer_path,
                                                         int64_t seq_len, const TrainDataOptions& options,
                                                         std::string* summary);

class DataLoader {
 public:
  // REQUIRES: examples non-empty, each at most seq_len long; 1 <= micro_batch <= batch.
  DataLoader(std::vector<TokenizedExample> examples, uint64_t seed, int64_t batch, int64_t micro_batch,
             int64_t seq_len, int32_t pad_id, bool pack = false);

  // The next optimizer step's micro-batches (ceil(batch / micro_batch)).
  std::vector<MicroBatch> next_step();
  DataCursor cursor() const { return batcher_->cursor(); }
  void set_cursor(const DataCursor& cursor) { batcher_->set_cursor(cursor); }
  // Rows of an epoch: the examples, or with packing the packed rows.
  int64_t size() const { return static_cast<int64_t>(batcher_->size()); }
  bool packed() const { return packed_; }
  const PackStats& pack_stats() const { return pack_stats_; }  // packed() only

 private:
  std::unique_ptr<Batcher> batcher_;
  int64_t micro_batch_;
  bool packed_;
  PackStats pack_stats_;
};

}  // namespace lema::engine
