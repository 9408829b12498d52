// AdamW on the fp32 LoRA masters, written out so every run computes the
// same bits (PyTorch's single-tensor AdamW formula), plus learning-rate
// schedules and global gradient-norm clipping.
//
// AdamW owns the moments; the parameters belong to the caller (LoraAdapter).
// Not thread-safe.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard, at::AutoGradMode (not in ATen.h on LibTorch 2.x)

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema::engine {

enum class LrScheduleKind { kConstant, kLinear, kCosine };
Result<LrScheduleKind> parse_lr_schedule(const std::string& text);
const char* lr_schedule_name(LrScheduleKind kind);

// Hugging Face's get_scheduler: the update of optimizer step s (0-based)
// uses lr * factor(s); linear warmup over `warmup_steps` first.
struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  double lr = 2e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double lr_at(int64_t step_index) const;
};

// Parameters that live in host memory and are updated on a device (LoRA
// state on the host, issue 20): params[begin, end) are consecutive views of
// the flat `master`, their gradients consecutive views of the flat `grad`.
struct HostParamGroup {
  int64_t begin = 0;
  int64_t end = 0;
  at::Tensor master;  // [n] host (pinned when the update device is CUDA)
  at::Tensor grad;    // [n] host
};

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);
  // Host groups: every parameter in one group, in order; the moments are
  // flat host buffers per group too, and step() brings each group (master,
  // gradient, moments) to `update_device`, updates it there with the same
  // operations, and copies master and moments back.
  AdamW(std::vector<at::Tensor> params, AdamWOptions options, std::vector<HostParamGroup> host_groups,
        at::Device update_device);
  // One update with learning rate `lr` from each parameter's .grad()
  // (a parameter without grad is skipped, as torch does).
  void step(double lr);
  int64_t step_count() const { return step_count_; }
  // Moments in parameter order: exp_avg[i], exp_avg_sq[i].
  const std::vector<at::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<at::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  // Restores a saved state; shapes must match the parameters.
  Status load_state(int64_t step_count, const std::vector<at::Tensor>& exp_avg, const std::vector<at::Tensor>& exp_avg_sq);

 private:
  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  int64_t step_count_ = 0;
  std::vector<at::Tensor> exp_avg_;     // same shapes as params_
  std::vector<at::Tensor> exp_avg_sq_;
  std::vector<HostParamGroup> host_groups_;  // empty: parameters updated where they live
  std::vector<at::Tensor> host_exp_avg_, host_exp_avg_sq_;  // [group] -> [n] flat host moments
  at::Device update_device_ = at::kCPU;
  void step_host_groups(double lr);
};

// Scales every gradient by max_norm / (total_norm + 1e-6) when the global L2
// norm exceeds max_norm (torch.nn.utils.clip_grad_norm_); max_norm <= 0
// disables clipping. Returns the norm before clipping.
// grad_norms: each gradient's norm already taken (grad_norms[i] of
// params[i]; LoraAdapter::grad_norms() with the state on the host); empty:
// taken here.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm,
                      const std::vector<at::Tensor>& grad_norms = {});

}  // namespace lema::engine
