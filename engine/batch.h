// The unit of training data and of its result: a right-padded micro-batch
// and the loss of a step. Apart from the training step so that the data
// loader, the trainer and the tests use them without the step itself.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace lema::engine {

// One micro-batch, right-padded.
struct MicroBatch {
  at::Tensor input_ids;  // [B, T] int64
  at::Tensor labels;     // [B, T] int64, HF style: unshifted, -100 = no loss
};

struct StepLoss {
  double loss = 0.0;        // sum of token losses / n_label_tokens
  int64_t n_label_tokens = 0;
  int64_t n_input_tokens = 0;  // every position of every micro-batch, padding included
};

}  // namespace lema::engine
