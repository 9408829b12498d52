// Copies between host memory and the compute device for state that lives in
// host memory and visits the device (LoRA state on the host, boundary
// activations on the host; docs/STREAMING.md). One place for the pinned
// allocation rule and for the stream ordering of such copies; the layer
// ring (layer_store.h) has its own loader thread and stream.
//
// DeviceCopier owns one side stream (CUDA) and is used by one thread (the
// trainer's). On the CPU every copy is a plain synchronous copy, so the
// same code paths run in the CPU tests.
#pragma once

#include <ATen/ATen.h>

#include <memory>

namespace lema::engine {

// An empty host tensor, pinned when `device` is a CUDA device (so that
// copies from and to it can be asynchronous); plain memory otherwise.
at::Tensor empty_host(at::IntArrayRef sizes, at::ScalarType dtype, at::Device device);

// Queues a copy of device tensor `t` into a new pinned host tensor on the
// compute stream (ordered after the kernel that wrote `t`); the host tensor
// is readable after the compute stream has run that far. On the CPU: `t`.
at::Tensor offload_to_host(const at::Tensor& t);

class DeviceCopier {
 public:
  explicit DeviceCopier(at::Device device);
  ~DeviceCopier();
  DeviceCopier(const DeviceCopier&) = delete;
  DeviceCopier& operator=(const DeviceCopier&) = delete;

  at::Device device() const { return device_; }

  // A host -> device copy in flight: `device_tensor` may be read by the
  // compute stream only after wait().
  struct Pending {
    at::Tensor device_tensor;
    std::shared_ptr<void> done;  // CUDA event recorded after the copy; null on the CPU
  };
  // Starts copying `host` (pinned on CUDA) to a new device tensor on the
  // side stream, which first waits for the compute stream's work queued so
  // far (the new tensor's memory may have been freed by that work).
  // The copy overlaps the compute queued after this call. On the CPU: a
  // copy made now (a new tensor, never `host` itself).
  // REQUIRES: `host` is not written until the copy has been waited for.
  Pending to_device(const at::Tensor& host);
  // Makes the compute stream wait for the copy; returns the device tensor.
  at::Tensor wait(Pending& pending);

  // Queues device -> host copies on the compute stream (after the kernels
  // that produced `src`); `dst` (pinned on CUDA) is readable after
  // synchronize(). On the CPU: copied now.
  void to_host(const at::Tensor& src, at::Tensor& dst);
  // Waits until the compute stream's queued work, copies to host included,
  // has finished (CPU: nothing to wait for).
  void synchronize();

 private:
  at::Device device_;
  std::shared_ptr<void> stream_;  // c10::cuda::CUDAStream on CUDA builds with a CUDA device
};

}  // namespace lema::engine
