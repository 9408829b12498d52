// Training examples -> optimizer-step batches. DataLoader owns the
// examples, shuffles them per epoch with a seeded generator of its own (the
// order depends only on seed and epoch, never on the standard library), and
// cuts each step's `batch` examples into right-padded micro-batches. Its
// cursor (epoch, position) is all a checkpoint needs to continue exactly.
//
// read_training_jsonl is the interim data path of the engine issue: it reads
// pre-tokenized lines {"input_ids":[...], "labels":[...]} (labels optional:
// all tokens trained). Text lines ({"question",...} / {"messages":[...]})
// are rendered and tokenized by the dataset module (common/dataset.h) when it
// lands; until then they are refused with a clear message.
//
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/engine/train_step.h"

namespace lema::engine {

struct TrainingExample {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;  // same length; -100 = no loss (HF style, unshifted)
};

// Reads pre-tokenized JSONL; errors name the file and line.
Result<std::vector<TrainingExample>> read_training_jsonl(const std::string& path);
// Writes pre-tokenized JSONL (tests, `lema` tools).
Status write_training_jsonl(const std::string& path, const std::vector<TrainingExample>& examples);

struct DataCursor {
  int64_t epoch = 0;
  int64_t position = 0;  // index into the epoch's shuffled order
};

class DataLoader {
 public:
  // REQUIRES: examples non-empty; batch >= 1; 1 <= micro_batch <= batch.
  // Examples longer than seq_len are cut to seq_len tokens.
  DataLoader(std::vector<TrainingExample> examples, uint64_t seed, int64_t batch, int64_t micro_batch,
             int64_t seq_len, int32_t pad_id);

  // The next optimizer step's micro-batches (ceil(batch / micro_batch) of
  // them); wraps into the next epoch (reshuffled) as needed.
  std::vector<MicroBatch> next_step();
  const DataCursor& cursor() const { return cursor_; }
  void set_cursor(const DataCursor& cursor);
  int64_t size() const { return static_cast<int64_t>(examples_.size()); }

 private:
  void shuffle_epoch();
  MicroBatch collate(const std::vector<int64_t>& indices) const;
  std::vector<TrainingExample> examples_;
  uint64_t seed_;
  int64_t batch_, micro_batch_, seq_len_;
  int32_t pad_id_;
  DataCursor cursor_;
  std::vector<int64_t> order_;  // shuffled order of cursor_.epoch
};

}  // namespace lema::engine
