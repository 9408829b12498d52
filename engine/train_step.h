// The layer-wise forward and backward of one optimizer step (docs/ENGINE.md
// "The layer-wise step"): forward layer by layer without autograd keeping each layer's
// input, the chunked loss head, then backward from the last layer,
// recomputing each layer from its saved input with autograd on. Where memory
// allows, the first layers keep their forward graph instead and skip the
// recompute (a quarter of a layer's work). Only the LoRA masters receive
// gradients; base weights never require grad.
//
// Thread-safety: one caller at a time per LayerSource / LoraAdapter.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "common/base/status.h"
#include "engine/batch.h"
#include "engine/layer_source.h"
#include "engine/lora.h"

namespace lema::engine {

struct StepOptions {
  int64_t loss_chunk_tokens = 1024;  // rows of logits alive at once in the head
  bool dropout = true;               // false: LoRA dropout off (evaluation, tests)
  // Boundary activations between forward and backward in pinned host
  // memory instead of device memory (the memory plan decides; CUDA only:
  // on the CPU they are host memory already).
  bool activations_on_host = false;
  // Layers 0..K-1 keep their forward autograd graph (every micro-batch's)
  // until the backward instead of recomputing it; only layers the source
  // keeps resident qualify. The memory plan sizes K (MemoryPlan::kept_graph_layers).
  int64_t kept_graph_layers = 0;
};

// Accumulates d loss / d master into each LoRA master's .grad() (call
// adapter.zero_grad() first), where loss = sum over every label token of
// every micro-batch / their total count: M micro-batches give the gradient
// of one batch holding them all. dropout_seed: one per optimizer step.
Result<StepLoss> layerwise_forward_backward(LayerSource& source, LoraAdapter& adapter,
                                            const std::vector<MicroBatch>& micro_batches, uint64_t dropout_seed,
                                            const StepOptions& options);

// The dropout seed of (step seed, micro-batch, layer): shared with any
// reference implementation that wants the same masks.
uint64_t layer_dropout_seed(uint64_t step_seed, int64_t micro_batch, int64_t layer);


}  // namespace lema::engine
