// Decides, before a run, how a model trains within VRAM and RAM budgets
// (docs/STREAMING.md): resident layers, device/host slot counts, prefetch
// depth, where boundary activations live and the micro-batch split. The
// estimates are conservative byte counts from the model shape; no LibTorch.
//
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/formats/model_config.h"
#include "common/base/status.h"
#include "engine/lora_targets.h"

namespace lema::engine {

enum class LoraPlacement { kAuto, kDevice, kHost };

struct PlanRequest {
  ModelConfig config;
  int64_t batch = 1;          // sequences per optimizer step
  int64_t seq_len = 512;
  int64_t micro_batch = 0;    // 0: the planner picks the largest that fits
  int64_t lora_r = 16;
  int64_t lora_targets = kNumLoraTargets;  // projections with an adapter (>= the family's count: all)
  int64_t dtype_bytes = 2;    // compute dtype (bf16: 2)
  uint64_t vram_budget = 0;   // bytes; 0: no limit
  uint64_t ram_budget = 0;    // bytes of host memory for weights and activations; 0: no limit
  bool flash_attention = true;  // false: attention scores [T x T] are materialised
  bool cuda = true;             // false: the "device" is host memory (no CUDA context or allocator slack)
  int64_t loss_chunk_tokens = 1024;
  bool force_disk = false;    // stream from disk even when RAM would hold the model
  // Where the LoRA state (masters, grads, AdamW moments) may live: kAuto
  // puts it in pinned host memory only when keeping it on the device leaves
  // no plan; kHost always (--lora-host: tests, measurements); kDevice never.
  LoraPlacement lora_placement = LoraPlacement::kAuto;
  // A quantized base (set_stored_layers, layer_store.h): one layer's bytes
  // as stored, which host memory and device slots hold; each acquired layer
  // is dequantized into one work buffer in the compute dtype. 0: layers
  // are held in the compute dtype.
  uint64_t stored_layer_bytes = 0;
  std::string quant;          // its name, for the printed plan
  // Memory of the device (CUDA: its total; CPU: the share of RAM training
  // may fill). Without a VRAM budget it bounds the kept graphs; 0: unknown,
  // no graphs kept.
  uint64_t device_memory = 0;
};

enum class PlanMode { kResident, kRam, kDisk };
const char* plan_mode_name(PlanMode mode);

struct MemoryPlan {
  PlanMode mode = PlanMode::kResident;
  int64_t resident_layers = 0;
  int64_t device_slots = 0;
  int64_t host_slots = 0;       // kDisk ring; kRam: every streamed layer
  int64_t prefetch_depth = 0;
  bool activations_on_host = false;
  int64_t micro_batch = 0;
  int64_t n_micro = 0;
  // Layers 0..K-1 (resident ones) keep their forward graph for the backward
  // instead of recomputing it, in the memory the budget leaves over.
  int64_t kept_graph_layers = 0;
  // > 0: the head is streamed (HeadWeights::vocab_chunk): embedding and
  // lm_head in pinned host memory, lm_head on the device this many rows at
  // a time. Chosen only when the resident head leaves no plan.
  int64_t vocab_chunk = 0;
  // The LoRA state (lora_bytes) lives in pinned host memory; each layer's
  // comes to the device with the layer (lora_device_bytes: two layers' at a
  // time). Chosen when it on the device leaves no plan, after the streamed
  // head, or when forced.
  bool lora_on_host = false;
  // Estimates, bytes.
  uint64_t layer_bytes = 0;      // one layer as host memory and slots hold it (stored bytes when quantized)
  std::string quant;             // "" or the base's quantization
  uint64_t dequant_bytes = 0;    // quantized base: the work buffer + dequantization temporaries (device)
  uint64_t head_bytes = 0;
  uint64_t lora_bytes = 0;       // fp32 masters, grads, AdamW moments
  uint64_t lora_device_bytes = 0;  // of them on the device: all, or two layers' with lora_on_host
  uint64_t activation_bytes = 0; // every boundary of the step
  uint64_t working_bytes = 0;    // one layer's recompute + backward, or the loss head
  uint64_t graph_bytes = 0;      // one layer's kept graph, every micro-batch
  uint64_t device_bytes = 0;     // planned device peak
  uint64_t host_bytes = 0;       // planned host memory for weights and activations
  std::string to_string() const;  // multi-line, for the log
};

// What evaluation and generation ask of the planner: forward passes only
// (no autograd graph, no optimizer state), a KV cache for `kv_tokens` tokens
// per sequence, and the adapter's weights.
struct InferenceRequest {
  ModelConfig config;
  int64_t batch = 8;             // sequences per forward / generate call; the plan may choose fewer
  int64_t kv_tokens = 512;       // KV cache per sequence: longest prompt + new tokens (0: no generation)
  int64_t forward_tokens = 512;  // longest sequence of a forward without a cache (the loss's seq_len)
  int64_t lora_r = 0;        // adapter rank; 0: no adapter
  int64_t lora_targets = kNumLoraTargets;
  int64_t dtype_bytes = 2;
  uint64_t vram_budget = 0;  // bytes; 0: no limit
  uint64_t ram_budget = 0;   // bytes of host memory for streamed weights; 0: no limit
  bool flash_attention = true;
  bool cuda = true;
  int64_t loss_chunk_tokens = 1024;
  uint64_t stored_layer_bytes = 0;  // as PlanRequest
  std::string quant;
};

// Bytes of one decoder layer's weights / of the LoRA state (16 bytes per parameter).
uint64_t layer_weight_bytes(const ModelConfig& config, int64_t dtype_bytes);
// A quantized base's dequantization on the device: one layer in the
// compute dtype plus the temporaries of one chunk (engine/dequant.h).
uint64_t dequant_work_bytes(const ModelConfig& config, int64_t dtype_bytes);
// Bytes of the embedding, final norm and lm_head (once when tied).
uint64_t head_weight_bytes(const ModelConfig& config, int64_t dtype_bytes);
uint64_t lora_parameter_count(const ModelConfig& config, int64_t r, int64_t targets);

// The plan, or a clear error saying what does not fit and by how much.
Result<MemoryPlan> plan_memory(const PlanRequest& request);

// The same for inference: the largest batch (<= request.batch, in
// micro_batch; n_micro 1) whose peak (generation: KV cache in
// activation_bytes + a prefill's working memory; or a loss forward's working
// memory, whichever is larger) fits next to 2 streamed layer slots, then
// resident layers as for training. kept_graph_layers and
// activations_on_host stay 0.
Result<MemoryPlan> plan_inference_memory(const InferenceRequest& request);

}  // namespace lema::engine
