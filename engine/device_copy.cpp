#include "engine/device_copy.h"

#ifdef LEMA_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lema::engine {

at::Tensor empty_host(at::IntArrayRef sizes, at::ScalarType dtype, at::Device device) {
  return at::empty(sizes, at::TensorOptions().dtype(dtype).pinned_memory(device.is_cuda()));
}

at::Tensor offload_to_host(const at::Tensor& t) {
  if (!t.is_cuda()) return t;
  at::Tensor host = empty_host(t.sizes(), t.scalar_type(), t.device());
  host.copy_(t, /*non_blocking=*/true);
  return host;
}

#ifdef LEMA_WITH_CUDA
namespace {
c10::DeviceIndex index_of(at::Device device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
}  // namespace
#endif

DeviceCopier::DeviceCopier(at::Device device) : device_(device) {
#ifdef LEMA_WITH_CUDA
  // A stream of its own from the pool: the layer ring's stream is driven by
  // its loader thread, these copies by the trainer's; both overlap compute.
  if (device_.is_cuda()) {
    stream_ = std::make_shared<c10::cuda::CUDAStream>(c10::cuda::getStreamFromPool(false, index_of(device_)));
  }
#endif
}

DeviceCopier::~DeviceCopier() {
#ifdef LEMA_WITH_CUDA
  if (stream_) static_cast<c10::cuda::CUDAStream*>(stream_.get())->synchronize();
#endif
}

DeviceCopier::Pending DeviceCopier::to_device(const at::Tensor& host) {
  Pending p;
#ifdef LEMA_WITH_CUDA
  if (stream_) {
    const auto& side = *static_cast<c10::cuda::CUDAStream*>(stream_.get());
    const c10::cuda::CUDAStream compute = c10::cuda::getCurrentCUDAStream(index_of(device_));
    // Allocated on the compute stream: the caching allocator may hand out a
    // block whose last reader is still queued there, so the copy waits.
    p.device_tensor = at::empty(host.sizes(), host.options().device(device_).pinned_memory(false));
    at::cuda::CUDAEvent queued;
    queued.record(compute);
    queued.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      p.device_tensor.copy_(host, /*non_blocking=*/true);
    }
    auto done = std::make_shared<at::cuda::CUDAEvent>();
    done->record(side);
    p.done = done;
    return p;
  }
#endif
  p.device_tensor = host.to(device_, /*non_blocking=*/false, /*copy=*/true);
  return p;
}

at::Tensor DeviceCopier::wait(Pending& pending) {
#ifdef LEMA_WITH_CUDA
  if (pending.done) {
    static_cast<at::cuda::CUDAEvent*>(pending.done.get())->block(c10::cuda::getCurrentCUDAStream(index_of(device_)));
    pending.done.reset();
  }
#endif
  return pending.device_tensor;
}

void DeviceCopier::to_host(const at::Tensor& src, at::Tensor& dst) {
  dst.copy_(src, /*non_blocking=*/src.is_cuda());
}

void DeviceCopier::synchronize() {
#ifdef LEMA_WITH_CUDA
  if (stream_) c10::cuda::getCurrentCUDAStream(index_of(device_)).synchronize();
#endif
}

}  // namespace lema::engine
