#include "engine/train_step.h"

#include <algorithm>

#include "common/base/log.h"
#include "engine/device_copy.h"

namespace lema::engine {

uint64_t layer_dropout_seed(uint64_t step_seed, int64_t micro_batch, int64_t layer) {
  return mix_seed(mix_seed(step_seed, static_cast<uint64_t>(micro_batch)), static_cast<uint64_t>(layer) + 0x10000);
}

Result<StepLoss> layerwise_forward_backward(LayerSource& source, LoraAdapter& adapter,
                                            const std::vector<MicroBatch>& micro_batches, uint64_t dropout_seed,
                                            const StepOptions& options) {
  const ModelConfig& config = source.config();
  const at::ScalarType dtype = source.dtype();
  const at::Device device = source.device();
  const int64_t n_layers = config.n_layers;
  const int64_t n_micro = static_cast<int64_t>(micro_batches.size());
  const HeadWeights& head = source.head();

  // The loss is a mean over the label tokens of the whole step, so every
  // micro-batch's loss is divided by the same total.
  StepLoss result;
  std::vector<at::Tensor> ids(n_micro);
  std::vector<LayerContext> contexts(n_micro);
  for (int64_t m = 0; m < n_micro; ++m) {
    const MicroBatch& mb = micro_batches[m];
    ids[m] = mb.input_ids.to(device);
    result.n_label_tokens += (shift_labels(mb.labels) != -100).sum().item<int64_t>();
    result.n_input_tokens += mb.input_ids.numel();
    contexts[m] = micro_batch_context(config, mb, dtype, device);  // packed rows: their mask, built once
  }
  if (result.n_label_tokens == 0) return Status::invalid_argument("the batch has no label tokens (every label is -100)");

  // boundary[i][m]: the input of layer i for micro-batch m ([B, T, H]);
  // boundary[n_layers][m] is the last layer's output. With
  // activations_on_host they wait for the backward in pinned host memory:
  // the copies are queued on the compute stream (non_blocking), so each
  // is ordered after the kernel that wrote it and before the one that
  // reads it back, and the device buffer returns to the allocator at once.
  auto offload = [&](const at::Tensor& t) { return options.activations_on_host ? offload_to_host(t) : t; };
  auto bring_back = [&](const at::Tensor& t) { return t.device() == device ? t : t.to(device, /*non_blocking=*/true); };
  std::vector<std::vector<at::Tensor>> boundary(n_layers + 1, std::vector<at::Tensor>(n_micro));

  // 1. Forward, layer by layer: each layer is fetched once and runs every
  //    micro-batch; without autograd, except in the layers that keep their
  //    graph (kept[layer]), whose input and output wait for the backward.
  std::vector<bool> kept(n_layers, false);
  for (int64_t layer = 0; layer < std::min(options.kept_graph_layers, n_layers); ++layer) {
    kept[layer] = source.stays_resident(layer);
  }
  std::vector<std::vector<at::Tensor>> kept_in(n_layers), kept_out(n_layers);  // [layer][m]: [B, T, H]
  {
    std::vector<at::Tensor> current(n_micro);  // [B, T, H] on the device: the next layer's input
    {
      at::NoGradGuard no_grad;
      for (int64_t m = 0; m < n_micro; ++m) {
        current[m] = embed_tokens(ids[m], head, config);
        if (!kept[0]) boundary[0][m] = offload(current[m]);
      }
    }
    // LoRA state on the host: each layer's masters come to the device with
    // the layer (staged one layer ahead, the copy overlapping this layer's
    // compute) and leave after it; a layer that keeps its graph keeps them
    // until its backward.
    adapter.stage(0);
    for (int64_t layer = 0; layer < n_layers; ++layer) {
      LEMA_ASSIGN_OR_RETURN(LayerWeights w, source.acquire(layer));
      if (layer + 1 < n_layers) {
        source.prefetch(layer + 1);
        adapter.stage(layer + 1);
      }
      at::AutoGradMode grad_mode(kept[layer]);
      if (kept[layer]) {
        kept_in[layer].resize(n_micro);
        kept_out[layer].resize(n_micro);
      }
      const LayerLora shared_lora = kept[layer] ? LayerLora{} : adapter.layer(layer, dtype, options.dropout);
      for (int64_t m = 0; m < n_micro; ++m) {
        contexts[m].layer = layer;
        contexts[m].dropout_seed = layer_dropout_seed(dropout_seed, m, layer);
        if (kept[layer]) {
          // Its own compute copies per micro-batch, as in the backward below.
          const LayerLora lora = adapter.layer(layer, dtype, options.dropout);
          kept_in[layer][m] = current[m].detach().requires_grad_(layer > 0);
          kept_out[layer][m] = decoder_layer_forward(kept_in[layer][m], w, lora, contexts[m]);
          current[m] = kept_out[layer][m].detach();
        } else {
          current[m] = decoder_layer_forward(current[m], w, shared_lora, contexts[m]);
        }
        // The last layer's output goes straight into the head; a kept layer
        // holds its own input.
        if (layer + 1 == n_layers) {
          boundary[layer + 1][m] = current[m];
        } else if (!kept[layer + 1]) {
          boundary[layer + 1][m] = offload(current[m]);
        }
      }
      // The last layer stays: backward starts with it.
      if (layer + 1 < n_layers) {
        source.release(layer);
        if (!kept[layer]) adapter.unstage(layer, /*keep_grad=*/false);
      }
    }
  }

  // 2. Head: final norm, lm_head, cross-entropy in chunks; gives the
  //    gradient flowing into the last layer's output.
  std::vector<at::Tensor> grad(n_micro);  // [B, T, H] d loss / d boundary
  double loss_sum = 0.0;
  if (head.vocab_chunk > 0) {
    // A streamed head takes every micro-batch at once: each lm_head chunk
    // crosses to the device once per pass, not once per micro-batch.
    std::vector<at::Tensor> labels(n_micro);
    for (int64_t m = 0; m < n_micro; ++m) labels[m] = micro_batches[m].labels;
    std::vector<HeadLossResult> h = head_loss_backward_all(boundary[n_layers], labels, head, config,
                                                           static_cast<double>(result.n_label_tokens),
                                                           options.loss_chunk_tokens);
    for (int64_t m = 0; m < n_micro; ++m) {
      loss_sum += h[m].loss_sum;
      grad[m] = h[m].grad_hidden;
      boundary[n_layers][m].reset();
    }
  } else {
    for (int64_t m = 0; m < n_micro; ++m) {
      HeadLossResult h = head_loss_backward(boundary[n_layers][m], micro_batches[m].labels, head, config,
                                            static_cast<double>(result.n_label_tokens), options.loss_chunk_tokens);
      loss_sum += h.loss_sum;
      grad[m] = h.grad_hidden;
      boundary[n_layers][m].reset();
    }
  }
  result.loss = loss_sum / static_cast<double>(result.n_label_tokens);

  // 3. Backward, last layer first: recompute each layer from its saved input
  //    with autograd on, backpropagate the incoming gradient; the LoRA masters
  //    accumulate their gradients, the input gradient goes down a layer.
  {
    at::AutoGradMode grad_on(true);
    for (int64_t layer = n_layers - 1; layer >= 0; --layer) {
      LEMA_ASSIGN_OR_RETURN(LayerWeights w, source.acquire(layer));
      if (layer > 0) {
        source.prefetch(layer - 1);
        adapter.stage(layer - 1);
      }
      for (int64_t m = 0; m < n_micro; ++m) {
        if (kept[layer]) {
          kept_out[layer][m].backward(grad[m]);
          grad[m] = layer > 0 ? kept_in[layer][m].grad() : at::Tensor();
          kept_out[layer][m].reset();
          kept_in[layer][m].reset();
          continue;
        }
        // Fresh compute copies per micro-batch: each backward frees its graph.
        const LayerLora lora = adapter.layer(layer, dtype, options.dropout);
        // Layer 0's input is the embedding, which has no LoRA: no input grad needed.
        const at::Tensor x = bring_back(boundary[layer][m]).detach().requires_grad_(layer > 0);
        contexts[m].layer = layer;
        contexts[m].dropout_seed = layer_dropout_seed(dropout_seed, m, layer);
        const at::Tensor y = decoder_layer_forward(x, w, lora, contexts[m]);
        y.backward(grad[m]);
        grad[m] = layer > 0 ? x.grad() : at::Tensor();
        boundary[layer][m].reset();
      }
      source.release(layer);
      // LoRA state on the host: the layer's gradient (every micro-batch's)
      // goes back to host memory; its device masters are dropped.
      adapter.unstage(layer, /*keep_grad=*/true);
    }
  }
  adapter.finish_grads();
  return result;
}

}  // namespace lema::engine
