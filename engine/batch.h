// The unit of training data and of its result: a right-padded micro-batch
// and the loss of a step. Apart from the training step so that the data
// loader, the trainer and the tests use them without the step itself.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace lema::engine {

// One micro-batch, right-padded. Rows of packed examples (`--packing`)
// also carry which example each token belongs to and its position in it;
// the forward then attends within each example only and takes RoPE at
// those positions (llama_model.h micro_batch_context). Undefined for rows
// of one example each: the forward is plain causal over 0..T-1.
struct MicroBatch {
  at::Tensor input_ids;     // [B, T] int64
  at::Tensor labels;        // [B, T] int64, HF style: unshifted, -100 = no loss
  at::Tensor segment_ids;   // [B, T] int64 packed only: 1, 2, ... per example of the row, 0 = padding
  at::Tensor position_ids;  // [B, T] int64 packed only: 0.. within each example, 0 on padding
};

struct StepLoss {
  double loss = 0.0;        // sum of token losses / n_label_tokens
  int64_t n_label_tokens = 0;
  int64_t n_input_tokens = 0;  // every position of every micro-batch, padding included
};

}  // namespace lema::engine
