#include "engine/row_stream.h"

#include <algorithm>

#include "common/base/status.h"

#ifdef LEMA_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lema::engine {

#ifdef LEMA_WITH_CUDA
// The side stream and, per buffer, the events that order it against the
// compute stream (the same pattern as LayerStore's slots).
struct RowStream::Cuda {
  explicit Cuda(c10::DeviceIndex index)
      : device_index(index), copy_stream(c10::cuda::getStreamFromPool(false, index)) {}
  c10::cuda::CUDAStream compute() const { return c10::cuda::getCurrentCUDAStream(device_index); }

  c10::DeviceIndex device_index;
  c10::cuda::CUDAStream copy_stream;
  at::cuda::CUDAEvent copied[2];    // the last copy into buffers_[i] finished
  at::cuda::CUDAEvent released[2];  // the compute that read buffers_[i] (or its allocation) finished
  bool waited[2] = {true, true};    // the compute stream is ordered after copied[i]
};
#else
struct RowStream::Cuda {};
#endif

RowStream::RowStream(const at::Tensor& table, int64_t chunk_rows, at::Device device, bool copy)
    : table_(table), chunk_rows_(chunk_rows) {
  LEMA_CHECK_MSG(table.dim() == 2 && chunk_rows >= 1, "row stream: a [V, H] table and chunk_rows >= 1");
  const int64_t rows = table.size(0);
  n_chunks_ = (rows + chunk_rows - 1) / chunk_rows;
  buffered_ = copy || table.device() != device;
  if (!buffered_ || n_chunks_ == 0) return;
  const auto options = at::TensorOptions().dtype(table.scalar_type()).device(device);
  for (at::Tensor& b : buffers_) b = at::empty({std::min(chunk_rows, rows), table.size(1)}, options);
  if (device.is_cuda()) {
#ifdef LEMA_WITH_CUDA
    cuda_ = std::make_unique<Cuda>(device.has_index() ? device.index() : c10::cuda::current_device());
    // The buffers were allocated on the compute stream: the first copy
    // into each waits for that.
    for (at::cuda::CUDAEvent& e : cuda_->released) e.record(cuda_->compute());
#else
    LEMA_CHECK_MSG(false, "row stream: a CUDA device in a build without CUDA");
#endif
  }
  start_copy(0);
}

RowStream::~RowStream() {
#ifdef LEMA_WITH_CUDA
  // A buffer returns to the caching allocator on the compute stream, which
  // may hand it out at once: a copy not yet waited for (chunks left unread)
  // must come first.
  if (cuda_) {
    try {
      for (int i = 0; i < 2; ++i) {
        if (!cuda_->waited[i]) cuda_->copied[i].block(cuda_->compute());
      }
    } catch (const std::exception&) {
      // A failing CUDA runtime reports itself at the next call.
    }
  }
#endif
}

void RowStream::start_copy(int64_t k) {
  const int64_t start = chunk_start(k), n = std::min(chunk_rows_, table_.size(0) - start);
  const at::Tensor src = table_.narrow(0, start, n);
  at::Tensor dst = buffers_[k % 2].narrow(0, 0, n);
#ifdef LEMA_WITH_CUDA
  if (cuda_) {
    const size_t i = static_cast<size_t>(k % 2);
    c10::cuda::CUDAStreamGuard guard(cuda_->copy_stream);
    cuda_->released[i].block(cuda_->copy_stream);
    dst.copy_(src, /*non_blocking=*/true);
    cuda_->copied[i].record(cuda_->copy_stream);
    cuda_->waited[i] = false;
    return;
  }
#endif
  dst.copy_(src);
}

at::Tensor RowStream::next() {
  LEMA_CHECK_MSG(next_ < n_chunks_, "row stream: every chunk was taken");
  const int64_t k = next_++;
  const int64_t start = chunk_start(k), n = std::min(chunk_rows_, table_.size(0) - start);
  if (!buffered_) return table_.narrow(0, start, n);
  const size_t i = static_cast<size_t>(k % 2);
#ifdef LEMA_WITH_CUDA
  // Every kernel that reads chunk k-1 is enqueued by now: its buffer may be
  // overwritten (by chunk k+1) once they have run.
  if (cuda_ && k >= 1) cuda_->released[1 - i].record(cuda_->compute());
#endif
  if (k + 1 < n_chunks_) start_copy(k + 1);
#ifdef LEMA_WITH_CUDA
  if (cuda_) {
    cuda_->copied[i].block(cuda_->compute());
    cuda_->waited[i] = true;
  }
#endif
  return buffers_[i].narrow(0, 0, n);
}

}  // namespace lema::engine
