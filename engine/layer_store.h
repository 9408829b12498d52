// A LayerSource that streams the frozen base model through a small number of
// device slots (docs/STREAMING.md):
//
//   disk (pread of each layer's byte range)  -> host tier  -> device slots
//
// Host tier: either every streamed layer in (pinned) host memory, read once
// at creation ("ram" mode), or a ring of `host_slots` (pinned) buffers that a
// loader thread refills from disk on every pass ("disk" mode). Device tier:
// `resident_layers` layers (0..R-1) stay on the device for the store's
// lifetime; the others rotate through `device_slots` buffers. The loader
// thread reads and (on CUDA) enqueues host->device copies on a side stream;
// a CUDA event recorded on the copy stream orders the compute stream after
// the copy, and an event recorded on the compute stream at release() orders
// the next copy into that slot after the compute that read it. On CPU the
// device tier is ordinary memory and the same ring/thread logic runs.
//
// The store predicts the trainer's access order (forward 0..N-1, backward
// N-1..0, repeated; or forward only) and keeps `prefetch_depth` upcoming
// streamed layers in flight. A slot keeps its layer until it is needed for
// another, so the last forward layer starts the backward without a reload.
//
// A quantized base (engine/dequant.h): slots and host buffers hold each
// layer's stored bytes (what crosses PCIe is the quantized layer); acquire()
// dequantizes it on the compute stream into a work buffer in the compute
// dtype, whose views stay valid until release(). One work buffer: one layer
// is held at a time (acquiring a held layer again returns it again), and
// no layer stays_resident (its views are the shared work buffer's).
//
// Thread-safety: one trainer thread calls the LayerSource methods; the store
// owns its loader thread.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/formats/layer_file.h"
#include "engine/dequant.h"
#include "engine/layer_readers.h"
#include "engine/layer_source.h"
#include "engine/memory_planner.h"

namespace lema::engine {

enum class StoreMode { kResident, kRam, kDisk };
const char* store_mode_name(StoreMode mode);

struct LayerStoreOptions {
  StoreMode mode = StoreMode::kRam;
  int64_t resident_layers = 0;  // layers 0..R-1 stay on the device (kResident: all)
  int64_t device_slots = 2;     // ring for the streamed layers (>= 2 when any layer streams)
  int64_t host_slots = 2;       // kDisk: pinned ring buffers (>= 1)
  int64_t prefetch_depth = 1;   // streamed layers in flight ahead of the one in use (1 .. device_slots-1)
  bool forward_only = false;    // access order 0..N-1 repeated (generation) instead of forward+backward
  bool pin_host = true;         // pinned host memory (CUDA devices only)
  std::chrono::microseconds read_delay{0};  // tests: every disk read sleeps this long first
};

// Counters since the last take_stats().
struct LayerStoreStats {
  int64_t acquires = 0;
  int64_t device_loads = 0;     // host->device layer copies
  int64_t disk_reads = 0;       // layer reads by the loader thread
  int64_t misses = 0;           // acquire() of a layer that was not yet requested
  uint64_t bytes_h2d = 0;
  uint64_t bytes_read = 0;
  double read_s = 0.0;          // loader thread time in reads
  double copy_s = 0.0;          // host->device copy time (CUDA events; CPU: memcpy time)
  double stall_s = 0.0;         // compute waited for copies (CUDA events; CPU: blocked in acquire)
  // Share of copy time that compute did not wait for (1 when nothing was copied).
  double hidden_fraction() const { return copy_s > 0 ? std::max(0.0, 1.0 - stall_s / copy_s) : 1.0; }
  double h2d_gb_per_s() const { return copy_s > 0 ? static_cast<double>(bytes_h2d) / copy_s / 1e9 : 0.0; }
};

class LayerStore : public LayerSource {
 public:
  // Allocates every buffer once (pinned allocation is slow), loads the
  // resident layers and, in kRam mode, every streamed layer into host
  // memory, then starts the loader thread.
  // `quant`: the stored layout of a quantized base (the reader then fills
  // [stored_bytes] uint8 buffers); nullptr: layers in the compute dtype.
  static Result<std::unique_ptr<LayerStore>> create(const ModelConfig& config, HeadWeights head, LayerReader reader,
                                                    at::ScalarType dtype, at::Device device,
                                                    const LayerStoreOptions& options,
                                                    std::shared_ptr<const QuantLayerFormat> quant = nullptr);
  ~LayerStore() override;
  LayerStore(const LayerStore&) = delete;
  LayerStore& operator=(const LayerStore&) = delete;

  const ModelConfig& config() const override { return config_; }
  at::ScalarType dtype() const override { return dtype_; }
  at::Device device() const override { return device_; }
  const HeadWeights& head() override { return head_; }
  // Waits for the layer's copy (host side on CPU; on CUDA the compute stream
  // waits on the copy event). Acquiring a held layer again returns it again.
  Result<LayerWeights> acquire(int64_t layer) override;
  void release(int64_t layer) override;
  void prefetch(int64_t layer) override;
  bool stays_resident(int64_t layer) const override { return is_resident(layer) && !quant_; }
  bool quantized() const override { return quant_ != nullptr; }

  const LayerStoreOptions& options() const { return options_; }
  // Bytes of one layer as held in host memory and slots (and copied).
  uint64_t layer_bytes() const { return buffer_numel_ * static_cast<uint64_t>(at::elementSize(buffer_type_)); }
  // Returns and resets the counters; on CUDA waits for the copies it timed.
  LayerStoreStats take_stats();

 private:
  struct DeviceSlot;
  struct HostSlot;
  LayerStore(const ModelConfig& config, HeadWeights head, LayerReader reader, at::ScalarType dtype,
             at::Device device, const LayerStoreOptions& options);
  Status init();
  // A quantized layer's weights, dequantized from `bytes` into the work
  // buffer unless it already holds them. Trainer thread only.
  Result<LayerWeights> ready_quantized(int64_t layer, const at::Tensor& bytes);
  void loader_main();
  Status load_into(DeviceSlot& slot, int64_t layer);
  void advance_cursor_locked(int64_t layer);
  void schedule_locked();
  int64_t find_slot_locked(int64_t layer) const;
  int64_t pick_victim_locked(const std::vector<int64_t>& keep) const;
  void request_locked(int64_t slot, int64_t layer, bool urgent);
  bool is_resident(int64_t layer) const { return layer < resident_count_; }

  ModelConfig config_;
  HeadWeights head_;
  LayerReader reader_;
  at::ScalarType dtype_;
  at::Device device_;
  LayerStoreOptions options_;
  int64_t layer_numel_ = 0;
  std::unique_ptr<QuantLayerFormat> quant_;  // null: unquantized
  at::ScalarType buffer_type_;               // of host buffers and slots: dtype_, or uint8 when quantized
  int64_t buffer_numel_ = 0;
  int64_t resident_count_ = 0;
  bool use_cuda_ = false;

  std::vector<at::Tensor> resident_buffers_;     // [R] each [numel] on device
  std::vector<LayerWeights> resident_views_;
  std::vector<at::Tensor> host_layers_;          // kRam: [layer] -> [numel] host (resident entries undefined)
  std::vector<std::unique_ptr<HostSlot>> host_ring_;  // kDisk
  size_t next_host_ = 0;                         // loader thread only
  std::vector<std::unique_ptr<DeviceSlot>> slots_;
  // Quantized base: the dequantized layer (trainer thread only).
  at::Tensor work_;            // [layer_numel] compute dtype on the device
  LayerWeights work_views_;
  int64_t work_layer_ = -1;    // whose weights work_ holds
  bool work_held_ = false;

  std::vector<int64_t> order_;  // predicted access order (one optimizer step)
  size_t cursor_ = 0;           // position in order_ of the last acquire

  std::mutex mu_;
  std::condition_variable cv_;  // slot became ready, job queued, or stop
  std::deque<int64_t> jobs_;    // slot indices to load
  bool stop_ = false;
  LayerStoreStats stats_;
  std::thread loader_;

#ifdef LEMA_WITH_CUDA
  struct CopyTiming;
  std::vector<std::shared_ptr<CopyTiming>> timings_;  // awaiting take_stats()
#endif
  std::shared_ptr<void> copy_stream_;  // c10::cuda::CUDAStream on CUDA builds
};

// The store `plan` asks for (mode, resident layers, slots, prefetch depth),
// streaming the layers of a layer file: what `lema train --vram/--ram`,
// `lema bench-step` and (forward_only) `lema eval --vram/--ram` run on.
Result<std::unique_ptr<LayerStore>> open_planned_store(std::shared_ptr<const LayerFile> file, const MemoryPlan& plan,
                                                       at::ScalarType dtype, at::Device device,
                                                       bool forward_only = false);

// The planner's view of a quantized file (PlanRequest, InferenceRequest):
// one layer's stored bytes and the quantization's name; unchanged when the
// file is not quantized.
template <class Request>
void set_stored_layers(Request& request, const LayerFile& file) {
  if (file.quant() == QuantType::kNone) return;
  request.stored_layer_bytes = file.layer_range(0).nbytes;
  request.quant = quant_name(file.quant());
}

// PlanRequest::device_memory for `device`: a GPU's total memory; on the CPU
// half the physical RAM (kept graphs must leave the rest to everything else).
uint64_t plannable_device_memory(at::Device device);

// Peak bytes the CUDA caching allocator has handed out on `device` (the
// figure a --vram budget bounds; the CUDA context comes on top); on the CPU
// the process's peak RSS.
uint64_t peak_device_memory(at::Device device);

}  // namespace lema::engine
