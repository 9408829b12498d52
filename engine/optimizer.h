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

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);
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
};

// Scales every gradient by max_norm / (total_norm + 1e-6) when the global L2
// norm exceeds max_norm (torch.nn.utils.clip_grad_norm_); max_norm <= 0
// disables clipping. Returns the norm before clipping.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace lema::engine
