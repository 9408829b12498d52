// Tokenization of chat examples for training, and the batcher that feeds
// `lema train`. No LibTorch: batches are flat row-major std::vectors that
// the engine wraps as tensors.
//
//   input_ids = [BOS] + encode(prompt) + encode(reply) + [EOS]
//   labels    = -100 on BOS and the prompt, the token ids on reply and EOS
//
// The prompt (up to and including "<|assistant|>\n") and the reply are
// encoded separately, without special tokens, so the boundary is exact and
// the prompt's tokens are the ones generation will see for the same text.
// BOS/EOS are added only when the tokenizer has them (id >= 0).
// labels are aligned with input_ids (Hugging Face convention): the loss at
// position t predicts labels[t + 1] from logits[t], the shift is the
// trainer's.
//
// With the model's chat template (tokenize_dataset with a ChatTemplate),
// conversations and question examples are rendered by the template
// instead (common/text/chat_template.h): input_ids = the rendered text's
// ids, labels on every assistant turn's content and end-of-turn token
// (tokenize_chat's mask), no BOS/EOS added beyond what the template writes.
// Raw examples (prompt-completion, text) never use the template.
//
// Thread-safety: functions are pure; a Batcher has one owner.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"

namespace lema {

inline constexpr int32_t kIgnoreLabel = -100;

struct TokenizedExample {
  std::vector<int32_t> input_ids;  // [len]
  std::vector<int32_t> labels;     // [len]; kIgnoreLabel where no loss
  bool truncated = false;          // cut to seq_len on the right
  // A packed row (pack_examples) only; empty for one example.
  std::vector<int32_t> segment_ids;   // [len] 1, 2, ...: which of the row's examples each token belongs to
  std::vector<int32_t> position_ids;  // [len] 0.. within each example
};

// REQUIRES: seq_len >= 2. Longer sequences are cut to seq_len from the right
// (the reply's end and EOS are lost: such an example is counted as
// truncated; one whose whole reply is cut has no label and is dropped by
// tokenize_examples).
TokenizedExample tokenize_example(const Tokenizer& tok, const Example& e, int32_t seq_len);

struct TokenizeStats {
  int64_t examples = 0;           // kept
  int64_t truncated = 0;          // kept but cut to seq_len
  int64_t dropped_no_labels = 0;  // prompt alone filled seq_len
  int64_t tokens = 0;             // over kept examples
  int64_t label_tokens = 0;       // tokens with a label (reply + EOS)
  int32_t max_len = 0;            // before truncation
  // Template only: conversations whose earlier turns the template renders
  // differently from a cut conversation (e.g. Qwen3's reasoning), trained
  // on their last assistant turn alone.
  int64_t last_turn_only = 0;
};

std::vector<TokenizedExample> tokenize_examples(const Tokenizer& tok, const std::vector<Example>& examples,
                                                int32_t seq_len, TokenizeStats* stats);

// The conversation a template renders for `e`: its messages, or for the
// question schema [user: question, assistant: render_reply(...)] (the
// template supplies its own system prompt). REQUIRES: !e.is_raw().
nlohmann::ordered_json example_template_messages(const Example& e);

// tokenize_chat over every assistant turn, or, when the template renders
// history differently from a cut conversation, over the last assistant
// turn alone (*last_turn_only set): what training and `lema template
// render --mask` use.
Result<ChatTokens> tokenize_conversation(const ChatTemplate& chat_template, const Tokenizer& tok,
                                         const nlohmann::ordered_json& messages, bool* last_turn_only);

// tokenize_examples, through `chat_template` when it is non-null (see the
// header comment). Errors name the example's line (Example::line).
Result<std::vector<TokenizedExample>> tokenize_dataset(const Tokenizer& tok, const ChatTemplate* chat_template,
                                                       const std::vector<Example>& examples, int32_t seq_len,
                                                       TokenizeStats* stats);

// Packing (`lema train --packing`): the examples laid back to back into
// rows of at most seq_len tokens, in the order given, each into the current
// row when it fits there, else into a new row (an example of seq_len
// tokens, cut so by tokenization, fills a row alone). Each row carries
// segment_ids and position_ids (TokenizedExample), from which the engine
// builds the block-diagonal causal mask and the RoPE positions, so every
// token sees exactly what it sees in its own unpacked row. The first label
// of every packed example is kIgnoreLabel: with HF's shift, the last token
// of one example would otherwise be trained to predict the next example's
// first token (unpacked, that first label is never a target either).
// REQUIRES: every example non-empty and at most seq_len long.
struct PackStats {
  int64_t examples = 0;
  int64_t rows = 0;
  int64_t tokens = 0;  // real tokens over every row (the rest of rows * seq_len is padding)
};
std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int32_t seq_len,
                                            PackStats* stats);

// Where the batcher is: the next example is order(epoch)[index]. Store it
// in a checkpoint to resume the exact data order.
struct DataCursor {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const DataCursor& o) const { return epoch == o.epoch && index == o.index; }
};

struct BatcherOptions {
  int32_t batch_size = 8;  // rows per batch (B)
  int32_t seq_len = 256;   // the longest row allowed
  uint64_t seed = 0;       // shuffle seed; each epoch has its own order
  bool shuffle = true;
  int32_t pad_id = 0;  // input id on padding (use the tokenizer's pad, or EOS, or 0)
};

// One batch, row-major [B, T], T = its longest row. Each row is one
// example, or one packed row (pack_examples) whose segment_ids and
// position_ids it keeps; for one example they are 1 and 0, 1, ....
// Padding is on the right: ids pad_id, labels kIgnoreLabel,
// attention_mask 0, segment_ids 0, position_ids 0.
struct Batch {
  int32_t batch_size = 0;                // B
  int32_t seq_len = 0;                   // T
  std::vector<int32_t> input_ids;        // [B, T]
  std::vector<int32_t> labels;           // [B, T]
  std::vector<int32_t> attention_mask;   // [B, T] 1 = real token
  std::vector<int32_t> segment_ids;      // [B, T] 1.. per example in a row, 0 = pad
  std::vector<int32_t> position_ids;     // [B, T] 0.. within each example
  int32_t examples = 0;                  // examples in this batch (a packed row counts each of its)
  int64_t label_tokens = 0;              // labels != kIgnoreLabel
};

// Endless, deterministic stream of batches over a tokenized set (examples
// or packed rows, each a row of the batch): the order
// of epoch e is a SplitMix64 shuffle seeded by (seed, e); batches run
// across epoch ends without a gap. Owns a copy of the examples.
class Batcher {
 public:
  // REQUIRES: !examples.empty(), batch_size >= 1, every example no longer
  // than seq_len (tokenize_examples guarantees it).
  Batcher(std::vector<TokenizedExample> examples, BatcherOptions options);

  Batch next();
  DataCursor cursor() const { return cursor_; }
  // Resume: the next batch is the one that followed `cursor` before.
  void set_cursor(const DataCursor& cursor);
  size_t size() const { return examples_.size(); }

 private:
  size_t take();  // the next example's index; advances the cursor
  void build_order();
  std::vector<TokenizedExample> examples_;
  BatcherOptions options_;
  DataCursor cursor_;
  std::vector<size_t> order_;  // permutation for cursor_.epoch
  int64_t order_epoch_ = -1;
};

}  // namespace lema
