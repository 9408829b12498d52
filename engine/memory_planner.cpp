#include "engine/memory_planner.h"

#include "common/formats/model_layout.h"
#include "common/formats/quant.h"

#include <algorithm>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema::engine {

namespace {
// Allocator fragmentation and the CUDA context's own use, kept free.
constexpr uint64_t kSlackBytes = 384ull << 20;
constexpr double kSlackFraction = 0.06;

uint64_t u(int64_t v) { return static_cast<uint64_t>(std::max<int64_t>(v, 0)); }

// What a budget leaves for the plan: the CUDA context and the caching
// allocator's fragmentation take their share of a GPU budget; the CPU
// "device" is plain memory.
uint64_t usable_device_bytes(uint64_t budget, bool cuda) {
  const uint64_t slack = cuda ? kSlackBytes : 0;
  const double slack_fraction = cuda ? kSlackFraction : 0.0;
  return budget > slack ? static_cast<uint64_t>((budget - slack) * (1.0 - slack_fraction)) : 0;
}

// Host side of a streaming plan: every streamed layer in pinned RAM (kRam)
// when the RAM budget holds them with `host_acts`, else a disk ring.
Status plan_host_tier(MemoryPlan& p, int64_t n_layers, uint64_t ram_budget, bool force_disk, uint64_t host_acts) {
  if (p.mode == PlanMode::kResident) return Status();
  const uint64_t streamed = u(n_layers - p.resident_layers);
  const uint64_t ram = ram_budget == 0 ? UINT64_MAX : ram_budget;
  if (!force_disk && streamed * p.layer_bytes + host_acts <= ram) {
    p.mode = PlanMode::kRam;
    p.host_slots = static_cast<int64_t>(streamed);
  } else {
    if (host_acts + 2 * p.layer_bytes > ram) {
      return Status::invalid_argument("memory plan: --ram " + format_bytes(ram_budget) + " cannot hold 2 host slots (" +
                                      format_bytes(2 * p.layer_bytes) + ")" +
                                      (host_acts ? " plus the activations in host memory (" + format_bytes(host_acts) + ")"
                                                 : std::string()) +
                                      ". Raise --ram or --vram.");
    }
    p.mode = PlanMode::kDisk;
    p.host_slots = static_cast<int64_t>(std::min<uint64_t>(4, (ram - host_acts) / p.layer_bytes));
  }
  p.host_bytes = u(p.host_slots) * p.layer_bytes + host_acts;
  return Status();
}

// A streamed head's vocabulary chunk: its logits (every row, fp32 and
// compute-dtype copies) and its lm_head rows (RowStream's two buffers: one
// in use, the next being copied) within
// `budget` bytes (a layer's own working memory, so that streaming the head
// does not raise the peak), in multiples of 64 rows.
int64_t streamed_vocab_chunk(const ModelConfig& c, uint64_t rows, uint64_t budget, uint64_t e) {
  const uint64_t per_vocab_row = rows * (4 * 3 + 2 * e) + 2 * u(c.hidden_size) * e;
  const auto chunk = static_cast<int64_t>(budget / std::max<uint64_t>(per_vocab_row, 1)) / 64 * 64;
  return std::min<int64_t>(c.vocab_size, std::max<int64_t>(256, chunk));
}

// Streamed slots and resident layers in `left` bytes (after 2 slots): a
// third slot first (a deeper prefetch hides copy jitter), then resident
// layers; enough for all but the slots is as good as resident.
void fill_device(MemoryPlan& p, int64_t n_layers, uint64_t left) {
  int64_t slots = 2;
  if (left >= p.layer_bytes) {
    slots = 3;
    left -= p.layer_bytes;
  }
  int64_t resident = static_cast<int64_t>(std::min<uint64_t>(left / p.layer_bytes, u(n_layers)));
  if (resident + slots >= n_layers) resident = n_layers;
  p.resident_layers = resident;
  p.mode = resident == n_layers ? PlanMode::kResident : PlanMode::kRam;
  p.device_slots = resident == n_layers ? 0 : slots;
  p.prefetch_depth = resident == n_layers ? 0 : slots - 1;
}
// Where the parts that need not stay on the device go, in the order the
// planner tries them: everything on the device; the head streamed; the
// LoRA state on the host; both. kHost: the last two; kDevice: the first two.
struct Placement {
  bool stream_head = false;
  bool lora_on_host = false;
};
std::vector<Placement> placements(LoraPlacement lora) {
  std::vector<Placement> out;
  for (bool lora_on_host : {false, true}) {
    if ((lora == LoraPlacement::kHost && !lora_on_host) || (lora == LoraPlacement::kDevice && lora_on_host)) continue;
    for (bool stream_head : {false, true}) out.push_back({stream_head, lora_on_host});
  }
  return out;
}

// The LoRA state's device bytes: all of it, or, kept on the host, two
// layers' worth (the layer computing and the next one's copy in flight;
// the optimizer's current and next group of master, grad and moments).
uint64_t lora_device_bytes(uint64_t lora_bytes, int64_t n_layers, bool on_host) {
  return on_host ? 2 * lora_bytes / u(n_layers) : lora_bytes;
}
}  // namespace

const char* plan_mode_name(PlanMode mode) {
  switch (mode) {
    case PlanMode::kResident: return "resident";
    case PlanMode::kRam: return "ram";
    case PlanMode::kDisk: return "disk";
  }
  return "?";
}

uint64_t layer_weight_bytes(const ModelConfig& c, int64_t dtype_bytes) {
  // The family's own tensors (biases, extra norms) count too.
  int64_t numel = 0;
  for (const std::string& s : layer_tensor_suffixes(c)) {
    int64_t n = 1;
    for (int64_t d : layer_tensor_shape(c, s)) n *= d;
    numel += n;
  }
  return u(numel * dtype_bytes);
}

uint64_t dequant_work_bytes(const ModelConfig& c, int64_t dtype_bytes) {
  const int64_t largest = std::max(c.q_dim(), c.intermediate_size) * c.hidden_size;
  return layer_weight_bytes(c, dtype_bytes) +
         u(std::min<int64_t>(largest, kDequantChunkElements) * kDequantTempBytesPerWeight);
}

uint64_t head_weight_bytes(const ModelConfig& c, int64_t dtype_bytes) {
  const uint64_t h = u(c.hidden_size);
  return (u(c.vocab_size) * h * (c.tie_word_embeddings ? 1 : 2) + h) * u(dtype_bytes);
}

uint64_t lora_parameter_count(const ModelConfig& c, int64_t r, int64_t targets) {
  // in + out of each projection of the family (Phi-3's fused ones whole);
  // a subset scales by its share.
  const std::vector<LoraTarget> family = family_lora_targets(c);
  int64_t all = 0;
  for (LoraTarget t : family) {
    const auto [out, in] = lora_target_shape(c, t);
    all += out + in;
  }
  const auto n = static_cast<int64_t>(family.size());
  return u(c.n_layers * r * all * std::min<int64_t>(targets, n) / n);
}

std::string MemoryPlan::to_string() const {
  std::string s = str_printf("memory plan: mode %s, %lld resident layers, %lld device slots, prefetch %lld",
                             plan_mode_name(mode), static_cast<long long>(resident_layers),
                             static_cast<long long>(device_slots), static_cast<long long>(prefetch_depth));
  if (mode == PlanMode::kDisk) s += str_printf(", %lld host slots", static_cast<long long>(host_slots));
  s += str_printf("\n  micro-batch %lld x %lld, boundary activations in %s, %lld layers keep their graph (no recompute)\n",
                  static_cast<long long>(micro_batch), static_cast<long long>(n_micro),
                  activations_on_host ? "pinned host memory" : "device memory", static_cast<long long>(kept_graph_layers));
  if (vocab_chunk > 0) {
    s += str_printf("  head streamed: embedding and lm_head in pinned host memory, %lld vocabulary rows at a time\n",
                    static_cast<long long>(vocab_chunk));
  }
  s += "  layer " + format_bytes(layer_bytes);
  if (!quant.empty()) s += " (" + quant + " as stored; dequantized on the device into a work buffer of " + format_bytes(dequant_bytes) + ")";
  s += ", head " + format_bytes(head_bytes) + ", LoRA state " + format_bytes(lora_bytes);
  if (lora_on_host) s += " in pinned host memory (" + format_bytes(lora_device_bytes) + " of it on the device: two layers')";
  s += ", activations " + format_bytes(activation_bytes) + ", working " + format_bytes(working_bytes) + "\n";
  s += "  planned device peak " + format_bytes(device_bytes) + ", host " + format_bytes(host_bytes);
  return s;
}

namespace {

// Layers as host memory and slots hold them: in the compute dtype, or as a
// quantized file stores them plus the device's dequantization buffer.
void set_layer_bytes(MemoryPlan& p, const ModelConfig& c, int64_t dtype_bytes, uint64_t stored_layer_bytes,
                     const std::string& quant) {
  if (stored_layer_bytes == 0) {
    p.layer_bytes = layer_weight_bytes(c, dtype_bytes);
    return;
  }
  p.layer_bytes = stored_layer_bytes;
  p.quant = quant;
  p.dequant_bytes = dequant_work_bytes(c, dtype_bytes);
}

}  // namespace

Result<MemoryPlan> plan_memory(const PlanRequest& r) {
  const ModelConfig& c = r.config;
  if (r.batch < 1 || r.seq_len < 1 || r.dtype_bytes < 1 || c.n_layers < 1) {
    return Status::invalid_argument("memory plan: batch, seq_len and the model must be positive");
  }
  if (r.micro_batch < 0 || r.micro_batch > r.batch) {
    return Status::invalid_argument("memory plan: micro_batch must be in 0..batch");
  }
  const uint64_t e = u(r.dtype_bytes);
  const uint64_t n = u(c.n_layers), h = u(c.hidden_size), im = u(c.intermediate_size), t = u(r.seq_len);
  MemoryPlan p;
  set_layer_bytes(p, c, r.dtype_bytes, r.stored_layer_bytes, r.quant);
  p.head_bytes = head_weight_bytes(c, r.dtype_bytes);
  p.lora_bytes = lora_parameter_count(c, r.lora_r, r.lora_targets) * 16;  // fp32 master, grad, 2 moments
  const uint64_t vram = r.vram_budget;
  const uint64_t usable = vram == 0 ? UINT64_MAX : usable_device_bytes(vram, r.cuda);

  // Autograd's saved tensors and temporaries of one layer's forward with
  // graph and its backward (fp32 norms, q/k/v/o, MLP gate/up/act/product,
  // dropout masks, their grads), for `rows` tokens.
  auto layer_graph_bytes = [&](uint64_t seqs) {
    const uint64_t rows = seqs * t;
    uint64_t bytes = rows * (16 * h + 6 * im) * e + rows * h * 8;
    // Gemma's two more norms per block, each with fp32 input, normalised
    // value and (1 + w) product kept for the backward; q/k norms likewise
    // over q and k.
    if (c.sandwich_norms()) bytes += 2 * rows * h * 4 * 3 + 4 * rows * h * 4;
    if (c.qk_norm()) bytes += rows * u(c.q_dim() + c.kv_dim()) * 4 * 3;
    if (!r.flash_attention) bytes += seqs * u(c.n_heads) * t * t * 4 * 3;  // [T x T] scores materialised
    return bytes;
  };

  // Largest micro-batch (a divisor of batch) first: fewer, larger GEMMs;
  // for each, the head resident, else streamed from pinned host memory
  // (only its final norm and two lm_head chunks in flight on the device).
  std::string why = "nothing";
  for (int64_t mb = r.micro_batch > 0 ? r.micro_batch : r.batch; mb >= 1 && p.micro_batch == 0; --mb) {
    if (r.batch % mb != 0) continue;
    const uint64_t rows = u(mb) * t;
    const uint64_t layer_work = layer_graph_bytes(u(mb));
    const uint64_t chunk = std::min<uint64_t>(u(r.loss_chunk_tokens), rows);
    // A loss chunk: logits in the compute dtype and in fp32, log-softmax
    // and its gradient in fp32, the gradient back in the compute dtype. A
    // streamed head holds every row's logits over vocab_chunk columns.
    const uint64_t head_work = chunk * u(c.vocab_size) * (4 * 3 + 2 * e) + rows * h * 4 * 2;
    const int64_t vocab_chunk = streamed_vocab_chunk(c, rows, layer_work, e);
    // Every micro-batch at once (the one-pass head, llama_model.cpp
    // streamed_head_loss): its normed rows, their target's lm_head row
    // (compute dtype) and their fp32 gradient accumulator.
    const uint64_t streamed_work =
        rows * u(vocab_chunk) * (4 * 3 + 2 * e) + rows * h * 4 * 2 + u(r.batch) * t * h * (2 * e + 4);
    const uint64_t boundary = u(r.batch) * t * h * e;    // one layer's input, every micro-batch
    const uint64_t all_acts = (n + 1) * boundary + boundary;  // every boundary + the incoming gradient
    const uint64_t host_acts_device = 3 * boundary;           // in, out, gradient in flight
    for (const Placement placement : placements(r.lora_placement)) {
      const bool stream_head = placement.stream_head;
      const uint64_t work = std::max(layer_work, stream_head ? streamed_work : head_work);
      const uint64_t head_device = stream_head ? h * e + 2 * u(vocab_chunk) * h * e : p.head_bytes;
      const uint64_t lora_device = lora_device_bytes(p.lora_bytes, c.n_layers, placement.lora_on_host);
      const uint64_t fixed = head_device + lora_device + p.dequant_bytes;
      // 1. Everything resident.
      if (fixed + n * p.layer_bytes + all_acts + work <= usable) {
        p.mode = PlanMode::kResident;
        p.resident_layers = c.n_layers;
        p.activations_on_host = false;
        p.activation_bytes = all_acts;
        p.working_bytes = work;
        p.micro_batch = mb;
        p.vocab_chunk = stream_head ? vocab_chunk : 0;
        p.lora_on_host = placement.lora_on_host;
        p.lora_device_bytes = lora_device;
        p.device_bytes = fixed + n * p.layer_bytes + all_acts + work;
        break;
      }
      // 2. Streaming: at least 2 slots. Boundary activations on the device or
      //    in pinned host memory, whichever leaves more resident layers (ties:
      //    the device, no extra copies); each option alone is monotone in the
      //    budget, so the better of the two is too.
      const uint64_t min_stream = fixed + work + 2 * p.layer_bytes;
      bool found = false, host_acts = false;
      MemoryPlan best = p;
      for (bool on_host : {false, true}) {
        const uint64_t acts_dev = on_host ? std::min(host_acts_device, all_acts) : all_acts;
        if (min_stream + acts_dev > usable) continue;
        MemoryPlan trial = p;
        fill_device(trial, c.n_layers, usable - (min_stream + acts_dev));
        if (!found || trial.resident_layers > best.resident_layers) {
          found = true;
          host_acts = on_host;
          best = trial;
        }
      }
      if (!found) {
        why = "micro-batch " + std::to_string(mb) + " needs " + format_bytes(min_stream + host_acts_device) +
              " on the device (head " + (stream_head ? "streamed " : "") + format_bytes(head_device) +
              ", LoRA state " + (placement.lora_on_host ? "on the host, two layers' " : "") +
              format_bytes(lora_device) + ", 2 layer slots " + format_bytes(2 * p.layer_bytes) +
              (p.dequant_bytes > 0 ? ", dequantization " + format_bytes(p.dequant_bytes) : std::string()) +
              ", working " + format_bytes(work) + ")";
        continue;
      }
      const uint64_t acts_dev = host_acts ? std::min(host_acts_device, all_acts) : all_acts;
      p.mode = best.mode;
      p.resident_layers = best.resident_layers;
      p.device_slots = best.device_slots;
      p.prefetch_depth = best.prefetch_depth;
      p.activations_on_host = host_acts;
      p.activation_bytes = all_acts;
      p.working_bytes = work;
      p.micro_batch = mb;
      p.vocab_chunk = stream_head ? vocab_chunk : 0;
      p.lora_on_host = placement.lora_on_host;
      p.lora_device_bytes = lora_device;
      p.device_bytes = fixed + work + acts_dev + u(p.device_slots + p.resident_layers) * p.layer_bytes;
      break;
    }
  }
  if (p.micro_batch == 0) {
    return Status::invalid_argument("memory plan: no plan fits in --vram " + format_bytes(vram) + ": at the smallest " +
                                    why + ", beyond the usable " + format_bytes(usable) +
                                    " (budget less allocator slack). Raise --vram or shorten --seq-len.");
  }
  p.n_micro = r.batch / p.micro_batch;

  // Kept graphs: what the budget (or, without one, the device) leaves after
  // the plan holds graphs of the first resident layers, each skipping its
  // recompute in the backward.
  // A quantized base's layers share one work buffer: none can keep a graph.
  p.graph_bytes = r.stored_layer_bytes > 0 ? 0 : layer_graph_bytes(u(r.batch));
  const uint64_t graph_limit = vram != 0 ? usable : usable_device_bytes(r.device_memory, r.cuda);
  if (graph_limit > p.device_bytes && p.graph_bytes > 0) {
    p.kept_graph_layers = static_cast<int64_t>(
        std::min<uint64_t>((graph_limit - p.device_bytes) / p.graph_bytes, u(p.resident_layers)));
    p.device_bytes += u(p.kept_graph_layers) * p.graph_bytes;
  }

  // Host memory beside the layers: boundary activations moved there, a
  // streamed head's tables and LoRA state kept there.
  const uint64_t host_extra = (p.activations_on_host ? p.activation_bytes : 0) + (p.vocab_chunk > 0 ? p.head_bytes : 0) +
                              (p.lora_on_host ? p.lora_bytes : 0);
  LEMA_RETURN_IF_ERROR(plan_host_tier(p, c.n_layers, r.ram_budget, r.force_disk, host_extra));
  if (p.mode == PlanMode::kResident) p.host_bytes = host_extra;
  // On the CPU the "device" tier is host memory too: with --ram alone it
  // bounds both, or the run would plan everything resident and ignore --ram.
  // (--vram with --ram on the CPU lays out the tiers as on a GPU: tests.)
  if (!r.cuda && r.vram_budget == 0 && r.ram_budget > 0 && p.device_bytes + p.host_bytes > r.ram_budget) {
    return Status::invalid_argument("memory plan: on the CPU the device tier is host memory too; the plan needs " +
                                    format_bytes(p.device_bytes + p.host_bytes) + " of host memory (device tier " +
                                    format_bytes(p.device_bytes) + ", host tier " + format_bytes(p.host_bytes) +
                                    "), over --ram " + format_bytes(r.ram_budget) + ". Raise --ram or lower --vram.");
  }
  return p;
}

Result<MemoryPlan> plan_inference_memory(const InferenceRequest& r) {
  const ModelConfig& c = r.config;
  if (r.batch < 1 || r.kv_tokens < 0 || r.forward_tokens < 1 || r.dtype_bytes < 1 || c.n_layers < 1) {
    return Status::invalid_argument("memory plan: batch, tokens and the model must be positive");
  }
  const uint64_t e = u(r.dtype_bytes);
  const uint64_t n = u(c.n_layers), h = u(c.hidden_size), im = u(c.intermediate_size), kv_t = u(r.kv_tokens);
  MemoryPlan p;
  set_layer_bytes(p, c, r.dtype_bytes, r.stored_layer_bytes, r.quant);
  p.head_bytes = head_weight_bytes(c, r.dtype_bytes);
  // fp32 A and B, and their compute-dtype copies.
  p.lora_bytes = r.lora_r > 0 ? lora_parameter_count(c, r.lora_r, r.lora_targets) * (4 + e) : 0;
  const uint64_t usable = r.vram_budget == 0 ? UINT64_MAX : usable_device_bytes(r.vram_budget, r.cuda);
  std::string why;
  // One forward of `seqs` x `tokens` without a graph: a layer's input, fp32
  // norm, q/k/v/o and the attention output, MLP gate/up/product ([T x T]
  // scores without flash attention), or the head: a loss chunk's fp32
  // logits and softmax (a streamed head: every row over vocab_chunk
  // columns, as many bytes).
  auto layer_forward_work = [&](uint64_t seqs, uint64_t tokens) {
    const uint64_t rows = seqs * tokens;
    uint64_t layer = rows * (6 * h + 3 * im) * e + rows * h * 4;
    if (!r.flash_attention) layer += seqs * u(c.n_heads) * tokens * tokens * 4 * 2;
    return layer;
  };
  auto forward_work = [&](uint64_t seqs, uint64_t tokens, int64_t vocab_chunk) {
    const uint64_t rows = seqs * tokens;
    const uint64_t chunk = vocab_chunk > 0 ? rows : std::min<uint64_t>(u(r.loss_chunk_tokens), rows);
    const uint64_t columns = vocab_chunk > 0 ? u(vocab_chunk) : u(c.vocab_size);
    return std::max(layer_forward_work(seqs, tokens), chunk * columns * 4 * 3 + rows * h * 4 * 2);
  };
  // The head resident, else streamed (as for training), at each batch.
  for (int64_t b = r.batch; b >= 1 && p.micro_batch == 0; --b) {
    for (bool stream_head : {false, true}) {
      const uint64_t tokens = std::max(kv_t, u(r.forward_tokens));
      const int64_t vocab_chunk =
          stream_head ? streamed_vocab_chunk(c, u(b) * tokens, layer_forward_work(u(b), tokens), e) : 0;
      const uint64_t head_device = stream_head ? h * e + 2 * u(vocab_chunk) * h * e : p.head_bytes;
      const uint64_t fixed = head_device + p.lora_bytes + p.dequant_bytes;
      const uint64_t kv = u(b) * kv_t * n * 2 * u(c.n_kv_heads) * u(c.head_dim) * e;
      // Generation holds its KV cache while it runs a prefill; the loss
      // forwards hold no cache: the peak is the larger of the two.
      const uint64_t gen = kv_t > 0 ? kv + forward_work(u(b), kv_t, vocab_chunk) : 0;
      const uint64_t loss = forward_work(u(b), u(r.forward_tokens), vocab_chunk);
      const uint64_t transient = std::max(gen, loss);
      const uint64_t min_stream = fixed + transient + 2 * p.layer_bytes;
      if (fixed + transient + n * p.layer_bytes > usable && min_stream > usable) {
        if (b == r.batch && stream_head) {  // the largest batch, the head streamed: the least it needs
          why = "batch " + std::to_string(b) + " needs " + format_bytes(min_stream) + " on the device (head " +
                (stream_head ? "streamed " : "") + format_bytes(head_device) + ", adapter " +
                format_bytes(p.lora_bytes) + ", KV cache " + format_bytes(kv) + " for " +
                std::to_string(r.kv_tokens) + " tokens and working memory, " + format_bytes(transient) +
                " together; 2 layer slots " + format_bytes(2 * p.layer_bytes) + ")";
        }
        continue;
      }
      p.micro_batch = b;
      p.n_micro = 1;
      p.vocab_chunk = vocab_chunk;
      p.activation_bytes = kv;
      p.working_bytes = transient - (gen >= loss ? kv : 0);
      if (fixed + transient + n * p.layer_bytes <= usable) {
        p.mode = PlanMode::kResident;
        p.resident_layers = c.n_layers;
      } else {
        fill_device(p, c.n_layers, usable - min_stream);
      }
      p.device_bytes = fixed + transient + u(p.device_slots + p.resident_layers) * p.layer_bytes;
      break;
    }
  }
  if (p.micro_batch == 0) {
    return Status::invalid_argument("memory plan: inference does not fit in --vram " + format_bytes(r.vram_budget) +
                                    ": " + why + ", beyond the usable " + format_bytes(usable) +
                                    " (budget less allocator slack). Raise --vram or use fewer tokens.");
  }
  const uint64_t host_head = p.vocab_chunk > 0 ? p.head_bytes : 0;
  LEMA_RETURN_IF_ERROR(plan_host_tier(p, c.n_layers, r.ram_budget, false, host_head));
  if (p.mode == PlanMode::kResident && host_head > 0) p.host_bytes = host_head;
  return p;
}

}  // namespace lema::engine
