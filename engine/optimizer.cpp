#include "engine/optimizer.h"

#include <cmath>

namespace lema::engine {

Result<LrScheduleKind> parse_lr_schedule(const std::string& text) {
  if (text == "constant") return LrScheduleKind::kConstant;
  if (text == "linear") return LrScheduleKind::kLinear;
  if (text == "cosine") return LrScheduleKind::kCosine;
  return Status::invalid_argument("schedule '" + text + "' is not one of constant, linear, cosine");
}

const char* lr_schedule_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant: return "constant";
    case LrScheduleKind::kLinear: return "linear";
    case LrScheduleKind::kCosine: return "cosine";
  }
  return "?";
}

double LrSchedule::lr_at(int64_t s) const {
  // transformers.optimization: get_{constant,linear,cosine}_schedule_with_warmup.
  if (s < warmup_steps) return lr * static_cast<double>(s) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  if (kind == LrScheduleKind::kConstant) return lr;
  const double progress = static_cast<double>(s - warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == LrScheduleKind::kLinear) return lr * std::max(0.0, 1.0 - progress);
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
}

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const at::Tensor& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous).detach());
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous).detach());
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_count_));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step_count_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i];
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    // torch.optim.adamw._single_tensor_adamw, op for op.
    p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].lerp_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    const at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

Status AdamW::load_state(int64_t step_count, const std::vector<at::Tensor>& exp_avg,
                         const std::vector<at::Tensor>& exp_avg_sq) {
  if (exp_avg.size() != params_.size() || exp_avg_sq.size() != params_.size()) {
    return Status::invalid_argument("optimizer state holds " + std::to_string(exp_avg.size()) + " moments, the adapter has " +
                                    std::to_string(params_.size()) + " parameters");
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (exp_avg[i].sizes() != params_[i].sizes() || exp_avg_sq[i].sizes() != params_[i].sizes()) {
      return Status::invalid_argument("optimizer state: moment " + std::to_string(i) + " has the wrong shape");
    }
    at::NoGradGuard no_grad;
    exp_avg_[i].copy_(exp_avg[i]);
    exp_avg_sq_[i].copy_(exp_avg_sq[i]);
  }
  step_count_ = step_count;
  return Status();
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().norm(2));
  }
  if (norms.empty()) return 0.0;
  const at::Tensor total = at::stack(norms).norm(2);
  const double total_norm = total.item<double>();
  if (max_norm > 0.0) {
    const double coef = max_norm / (total_norm + 1e-6);
    if (coef < 1.0) {
      for (const at::Tensor& p : params) {
        if (p.grad().defined()) p.grad().mul_(coef);
      }
    }
  }
  return total_norm;
}

}  // namespace lema::engine
