#include "engine/layer_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "engine/torch_types.h"

#ifdef LEMA_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace lema::engine {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

const char* store_mode_name(StoreMode mode) {
  switch (mode) {
    case StoreMode::kResident: return "resident";
    case StoreMode::kRam: return "ram";
    case StoreMode::kDisk: return "disk";
  }
  return "?";
}

#ifdef LEMA_WITH_CUDA
// Timing of one host->device copy: events on the copy stream around it, and
// (when a compute stream waited for it) an event recorded there just before
// the wait. stall = max(0, want -> done).
struct LayerStore::CopyTiming {
  at::cuda::CUDAEvent start{cudaEventDefault};
  at::cuda::CUDAEvent done{cudaEventDefault};
  at::cuda::CUDAEvent want{cudaEventDefault};
  bool has_want = false;
  uint64_t bytes = 0;
};
#endif

struct LayerStore::HostSlot {
  at::Tensor buffer;  // [numel] host
#ifdef LEMA_WITH_CUDA
  at::cuda::CUDAEvent copied;  // last copy out of this buffer finished
#endif
};

struct LayerStore::DeviceSlot {
  at::Tensor buffer;   // [numel] on the device
  LayerWeights views;  // into buffer
  int64_t layer = -1;  // content, or content being loaded
  bool loading = false;
  bool ready = false;  // CPU: copied; CUDA: copy enqueued (copy_done recorded)
  bool held = false;
  Status error;
#ifdef LEMA_WITH_CUDA
  at::cuda::CUDAEvent compute_done;  // recorded at release on the compute stream
  std::shared_ptr<CopyTiming> timing;
#endif
};

LayerStore::LayerStore(const ModelConfig& config, HeadWeights head, LayerReader reader, at::ScalarType dtype,
                       at::Device device, const LayerStoreOptions& options)
    : config_(config), head_(std::move(head)), reader_(std::move(reader)), dtype_(dtype), device_(device),
      options_(options), buffer_type_(dtype) {}

Result<std::unique_ptr<LayerStore>> LayerStore::create(const ModelConfig& config, HeadWeights head, LayerReader reader,
                                                       at::ScalarType dtype, at::Device device,
                                                       const LayerStoreOptions& options,
                                                       std::shared_ptr<const QuantLayerFormat> quant) {
  std::unique_ptr<LayerStore> store(new LayerStore(config, std::move(head), std::move(reader), dtype, device, options));
  if (quant) store->quant_ = std::make_unique<QuantLayerFormat>(*quant);
  try {
    LEMA_RETURN_IF_ERROR(store->init());
  } catch (const std::exception& e) {
    return status_from_exception(e, "layer store");
  }
  return store;
}

Status LayerStore::init() {
  const int64_t n = config_.n_layers;
  layer_numel_ = layer_numel(config_);
  use_cuda_ = device_.is_cuda();
#ifndef LEMA_WITH_CUDA
  if (use_cuda_) return Status::unsupported("layer store: this build has no CUDA");
#endif
  resident_count_ = options_.mode == StoreMode::kResident ? n : std::clamp<int64_t>(options_.resident_layers, 0, n);
  const int64_t streamed = n - resident_count_;
  if (streamed > 0) {
    if (options_.device_slots < 2) return Status::invalid_argument("layer store: device_slots must be >= 2 when layers stream");
    if (options_.prefetch_depth < 1 || options_.prefetch_depth > options_.device_slots - 1) {
      return Status::invalid_argument("layer store: prefetch_depth must be in 1..device_slots-1 (" +
                                      std::to_string(options_.device_slots - 1) + ")");
    }
    if (options_.mode == StoreMode::kDisk && options_.host_slots < 1) {
      return Status::invalid_argument("layer store: host_slots must be >= 1 in disk mode");
    }
  }
  buffer_type_ = quant_ ? at::kByte : dtype_;
  buffer_numel_ = quant_ ? quant_->stored_bytes : layer_numel_;
  if (quant_) {
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    quant_->nf4_code = at::from_blob(const_cast<float*>(nf4_code()), {16}, f32).to(device_);
    quant_->fp8_values = at::from_blob(const_cast<float*>(fp8_e4m3_values()), {256}, f32).to(device_);
    work_ = at::empty({layer_numel_}, at::TensorOptions().dtype(dtype_).device(device_));
  }
  const auto dev_opts = at::TensorOptions().dtype(buffer_type_).device(device_);
  const bool pin = use_cuda_ && options_.pin_host;
  const auto host_opts = at::TensorOptions().dtype(buffer_type_).pinned_memory(pin);

  // Resident layers: read through one pageable staging buffer.
  at::Tensor staging;
  if (resident_count_ > 0) staging = at::empty({buffer_numel_}, at::TensorOptions().dtype(buffer_type_));
  Progress progress("loading layers", static_cast<uint64_t>(resident_count_ + (options_.mode == StoreMode::kRam ? streamed : 0)),
                    "layers");
  uint64_t loaded = 0;
  for (int64_t i = 0; i < resident_count_; ++i) {
    LEMA_RETURN_IF_ERROR(reader_(i, staging));
    at::Tensor buf = at::empty({buffer_numel_}, dev_opts);
    buf.copy_(staging);
    LayerWeights w;
    if (!quant_) {
      LEMA_ASSIGN_OR_RETURN(w, InMemoryLayerSource::views_of_buffer(config_, buf));
    }
    resident_buffers_.push_back(buf);
    resident_views_.push_back(w);
    progress.update(++loaded);
  }
  if (streamed == 0) return Status();

  if (options_.mode == StoreMode::kRam) {
    host_layers_.resize(static_cast<size_t>(n));
    for (int64_t i = resident_count_; i < n; ++i) {
      at::Tensor buf = at::empty({buffer_numel_}, host_opts);
      LEMA_RETURN_IF_ERROR(reader_(i, buf));
      host_layers_[static_cast<size_t>(i)] = buf;
      progress.update(++loaded);
    }
  } else {
    for (int64_t k = 0; k < options_.host_slots; ++k) {
      auto slot = std::make_unique<HostSlot>();
      slot->buffer = at::empty({buffer_numel_}, host_opts);
      host_ring_.push_back(std::move(slot));
    }
  }
  progress.finish();
  for (int64_t k = 0; k < options_.device_slots; ++k) {
    auto slot = std::make_unique<DeviceSlot>();
    slot->buffer = at::empty({buffer_numel_}, dev_opts);
    if (!quant_) {
      LEMA_ASSIGN_OR_RETURN(slot->views, InMemoryLayerSource::views_of_buffer(config_, slot->buffer));
    }
    slots_.push_back(std::move(slot));
  }
  for (int64_t i = 0; i < n; ++i) order_.push_back(i);
  if (!options_.forward_only) {
    for (int64_t i = n - 2; i >= 0; --i) order_.push_back(i);
  }
  // The position of layer 0 that starts a step: the first load is layer 0.
  cursor_ = options_.forward_only ? 0 : order_.size() - 1;
#ifdef LEMA_WITH_CUDA
  if (use_cuda_) {
    const c10::DeviceIndex index = device_.has_index() ? device_.index() : c10::cuda::current_device();
    copy_stream_ = std::make_shared<c10::cuda::CUDAStream>(c10::cuda::getStreamFromPool(false, index));
  }
#endif
  loader_ = std::thread([this] { loader_main(); });
  std::lock_guard<std::mutex> lock(mu_);
  schedule_locked();  // the first layers start loading now
  return Status();
}

LayerStore::~LayerStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (loader_.joinable()) loader_.join();
#ifdef LEMA_WITH_CUDA
  if (copy_stream_) static_cast<c10::cuda::CUDAStream*>(copy_stream_.get())->synchronize();
#endif
}

void LayerStore::loader_main() {
#ifdef LEMA_WITH_CUDA
  std::unique_ptr<c10::cuda::CUDAStreamGuard> stream_guard;
  if (use_cuda_) stream_guard = std::make_unique<c10::cuda::CUDAStreamGuard>(*static_cast<c10::cuda::CUDAStream*>(copy_stream_.get()));
#endif
  for (;;) {
    int64_t slot_index = -1;
    int64_t layer = -1;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      slot_index = jobs_.front();
      jobs_.pop_front();
      layer = slots_[static_cast<size_t>(slot_index)]->layer;
    }
    DeviceSlot& slot = *slots_[static_cast<size_t>(slot_index)];
    Status st;
    try {
      st = load_into(slot, layer);
    } catch (const std::exception& e) {
      st = status_from_exception(e, "loading layer " + std::to_string(layer));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.loading = false;
      slot.ready = true;
      slot.error = st;
    }
    cv_.notify_all();
  }
}

// Loader thread, without the lock: the slot is neither held nor free while
// loading, so nobody else touches its buffer.
Status LayerStore::load_into(DeviceSlot& slot, int64_t layer) {
  at::Tensor src;
  HostSlot* host = nullptr;
  if (options_.mode == StoreMode::kRam) {
    src = host_layers_[static_cast<size_t>(layer)];
  } else {
    host = host_ring_[next_host_].get();
    next_host_ = (next_host_ + 1) % host_ring_.size();
#ifdef LEMA_WITH_CUDA
    if (use_cuda_) host->copied.synchronize();  // the previous copy out of it has finished
#endif
    if (options_.read_delay.count() > 0) std::this_thread::sleep_for(options_.read_delay);
    const auto t0 = Clock::now();
    LEMA_RETURN_IF_ERROR(reader_(layer, host->buffer));
    const double dt = seconds_since(t0);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.disk_reads += 1;
    stats_.bytes_read += layer_bytes();
    stats_.read_s += dt;
    src = host->buffer;
  }
#ifdef LEMA_WITH_CUDA
  if (use_cuda_) {
    const auto& stream = *static_cast<c10::cuda::CUDAStream*>(copy_stream_.get());
    auto timing = std::make_shared<CopyTiming>();
    timing->bytes = layer_bytes();
    slot.compute_done.block(stream);  // the compute that read this slot before has finished
    timing->start.record(stream);
    slot.buffer.copy_(src, /*non_blocking=*/true);
    timing->done.record(stream);
    if (host != nullptr) host->copied.record(stream);
    slot.timing = timing;
    std::lock_guard<std::mutex> lock(mu_);
    timings_.push_back(timing);
    stats_.device_loads += 1;
    stats_.bytes_h2d += timing->bytes;
    return Status();
  }
#endif
  const auto t0 = Clock::now();
  slot.buffer.copy_(src);
  const double dt = seconds_since(t0);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.device_loads += 1;
  stats_.bytes_h2d += layer_bytes();
  stats_.copy_s += dt;
  return Status();
}

void LayerStore::advance_cursor_locked(int64_t layer) {
  const size_t len = order_.size();
  for (size_t k = 0; k < len; ++k) {
    const size_t pos = (cursor_ + k) % len;
    if (order_[pos] == layer) {
      cursor_ = pos;
      return;
    }
  }
}

int64_t LayerStore::find_slot_locked(int64_t layer) const {
  for (size_t k = 0; k < slots_.size(); ++k) {
    const DeviceSlot& s = *slots_[k];
    if (s.layer == layer && (s.loading || s.ready)) return static_cast<int64_t>(k);
  }
  return -1;
}

// A slot that may be overwritten: not held, not loading, and not holding a
// layer in `keep`; among those the one whose layer is needed last.
int64_t LayerStore::pick_victim_locked(const std::vector<int64_t>& keep) const {
  int64_t best = -1;
  size_t best_dist = 0;
  const size_t len = order_.size();
  for (size_t k = 0; k < slots_.size(); ++k) {
    const DeviceSlot& s = *slots_[k];
    if (s.held || s.loading) continue;
    if (s.layer >= 0 && std::find(keep.begin(), keep.end(), s.layer) != keep.end()) continue;
    size_t dist = len + 1;  // empty or failed slots first
    if (s.layer >= 0 && s.error.ok()) {
      for (size_t d = 1; d <= len; ++d) {
        if (order_[(cursor_ + d) % len] == s.layer) {
          dist = d;
          break;
        }
      }
    }
    if (best < 0 || dist > best_dist) {
      best = static_cast<int64_t>(k);
      best_dist = dist;
    }
  }
  return best;
}

void LayerStore::request_locked(int64_t slot_index, int64_t layer, bool urgent) {
  DeviceSlot& s = *slots_[static_cast<size_t>(slot_index)];
  s.layer = layer;
  s.loading = true;
  s.ready = false;
  s.error = Status();
  if (urgent) {
    jobs_.push_front(slot_index);
  } else {
    jobs_.push_back(slot_index);
  }
  cv_.notify_all();
}

// Keeps the next prefetch_depth streamed layers of the predicted order
// loading or loaded.
void LayerStore::schedule_locked() {
  const size_t len = order_.size();
  std::vector<int64_t> window;  // [0]: the layer in use (or about to be)
  window.push_back(order_[cursor_]);
  for (size_t d = 1; d < len && static_cast<int64_t>(window.size()) <= options_.prefetch_depth; ++d) {
    const int64_t layer = order_[(cursor_ + d) % len];
    if (is_resident(layer) || std::find(window.begin(), window.end(), layer) != window.end()) continue;
    window.push_back(layer);
  }
  for (size_t k = 0; k < window.size(); ++k) {
    const int64_t layer = window[k];
    if (is_resident(layer) || find_slot_locked(layer) >= 0) continue;
    const int64_t victim = pick_victim_locked(window);
    if (victim < 0) return;  // every slot is busy: later
    request_locked(victim, layer, false);
  }
}

Result<LayerWeights> LayerStore::ready_quantized(int64_t layer, const at::Tensor& bytes) {
  if (work_layer_ == layer) {
    work_held_ = true;
    return work_views_;
  }
  if (work_held_) {
    return Status::internal("layer store: layer " + std::to_string(layer) + " acquired while layer " +
                            std::to_string(work_layer_) + " holds the dequantization buffer (release it first)");
  }
  work_layer_ = -1;
  try {
    LEMA_ASSIGN_OR_RETURN(work_views_, dequantize_layer(config_, *quant_, bytes, work_));
  } catch (const std::exception& e) {
    return status_from_exception(e, "dequantizing layer " + std::to_string(layer));
  }
  work_layer_ = layer;
  work_held_ = true;
  return work_views_;
}

Result<LayerWeights> LayerStore::acquire(int64_t layer) {
  if (layer < 0 || layer >= config_.n_layers) return Status::invalid_argument("layer " + std::to_string(layer) + " out of range");
  if (is_resident(layer)) {
    if (quant_) return ready_quantized(layer, resident_buffers_[static_cast<size_t>(layer)]);
    return resident_views_[static_cast<size_t>(layer)];
  }
  std::unique_lock<std::mutex> lock(mu_);
  stats_.acquires += 1;
  advance_cursor_locked(layer);
  int64_t index = find_slot_locked(layer);
  if (index < 0) {
    stats_.misses += 1;
    std::vector<int64_t> keep;
    index = pick_victim_locked(keep);
    if (index < 0) return Status::internal("layer store: no free device slot for layer " + std::to_string(layer));
    request_locked(index, layer, true);
  }
  schedule_locked();
  DeviceSlot& s = *slots_[static_cast<size_t>(index)];
  const auto t0 = Clock::now();
  cv_.wait(lock, [&] { return s.ready; });
  const bool waited_copy = !s.held;
  if (!use_cuda_) stats_.stall_s += seconds_since(t0);
  if (!s.error.ok()) {
    Status err = s.error;
    s.layer = -1;  // the next acquire retries
    s.ready = false;
    return err;
  }
  s.held = true;
#ifdef LEMA_WITH_CUDA
  if (use_cuda_ && waited_copy) {
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(device_.has_index() ? device_.index() : c10::cuda::current_device());
    if (s.timing && !s.timing->has_want) {
      s.timing->want.record(compute);
      s.timing->has_want = true;
    }
    if (s.timing) s.timing->done.block(compute);
  }
#else
  (void)waited_copy;
#endif
  if (!quant_) return s.views;
  // The slot is held: nobody else touches its buffer while the compute
  // stream dequantizes it (the loader may go on with other slots).
  const at::Tensor bytes = s.buffer;
  lock.unlock();
  return ready_quantized(layer, bytes);
}

void LayerStore::release(int64_t layer) {
  if (quant_ && layer == work_layer_) work_held_ = false;  // its weights stay in work_ until another layer needs it
  if (layer < 0 || layer >= config_.n_layers || is_resident(layer)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& slot : slots_) {
      DeviceSlot& s = *slot;
      if (s.layer != layer || !s.held) continue;
      s.held = false;
#ifdef LEMA_WITH_CUDA
      if (use_cuda_) {
        s.compute_done.record(c10::cuda::getCurrentCUDAStream(device_.has_index() ? device_.index() : c10::cuda::current_device()));
      }
#endif
    }
    schedule_locked();
  }
}

void LayerStore::prefetch(int64_t layer) {
  if (layer < 0 || layer >= config_.n_layers || is_resident(layer)) return;
  std::lock_guard<std::mutex> lock(mu_);
  schedule_locked();
}

LayerStoreStats LayerStore::take_stats() {
  std::lock_guard<std::mutex> lock(mu_);
#ifdef LEMA_WITH_CUDA
  for (const auto& t : timings_) {
    t->done.synchronize();
    stats_.copy_s += std::max(0.0f, t->start.elapsed_time(t->done)) / 1e3;
    if (t->has_want) {
      t->want.synchronize();
      stats_.stall_s += std::max(0.0f, t->want.elapsed_time(t->done)) / 1e3;
    }
  }
  timings_.clear();
#endif
  LayerStoreStats out = stats_;
  stats_ = LayerStoreStats();
  return out;
}

Result<std::unique_ptr<LayerStore>> open_planned_store(std::shared_ptr<const LayerFile> file, const MemoryPlan& plan,
                                                       at::ScalarType dtype, at::Device device, bool forward_only) {
  LayerStoreOptions so;
  so.forward_only = forward_only;
  so.mode = plan.mode == PlanMode::kResident ? StoreMode::kResident
            : plan.mode == PlanMode::kRam    ? StoreMode::kRam
                                             : StoreMode::kDisk;
  so.resident_layers = plan.resident_layers;
  so.device_slots = std::max<int64_t>(plan.device_slots, 2);
  so.prefetch_depth = std::max<int64_t>(plan.prefetch_depth, 1);
  so.host_slots = std::max<int64_t>(plan.host_slots, 1);
  LEMA_ASSIGN_OR_RETURN(HeadWeights head, load_head(*file, dtype, device, plan.vocab_chunk));
  LEMA_ASSIGN_OR_RETURN(LayerReader reader, layer_file_reader(file, dtype));
  std::shared_ptr<const QuantLayerFormat> quant;
  if (file->quant() != QuantType::kNone) {
    LEMA_ASSIGN_OR_RETURN(QuantLayerFormat format, quant_layer_format(*file));
    quant = std::make_shared<const QuantLayerFormat>(std::move(format));
  }
  return LayerStore::create(file->config(), head, reader, dtype, device, so, quant);
}

uint64_t peak_device_memory(at::Device device) {
#ifdef LEMA_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return static_cast<uint64_t>(stats.allocated_bytes[0].peak);
  }
#endif
  return peak_rss_bytes();
}

uint64_t plannable_device_memory(at::Device device) {
#ifdef LEMA_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device);
    size_t free_b = 0, total_b = 0;
    return cudaMemGetInfo(&free_b, &total_b) == cudaSuccess ? static_cast<uint64_t>(total_b) : 0;
  }
#endif
  if (device.is_cuda()) return 0;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 2 : 0;
}

}  // namespace lema::engine
