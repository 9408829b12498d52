#include "engine/optimizer.h"

#include <cmath>

#include "engine/device_copy.h"

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

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options, std::vector<HostParamGroup> host_groups,
             at::Device update_device)
    : params_(std::move(params)), options_(options), host_groups_(std::move(host_groups)),
      update_device_(update_device) {
  int64_t next = 0;
  for (const HostParamGroup& g : host_groups_) {
    LEMA_CHECK_MSG(g.begin == next && g.end >= g.begin, "host groups must cover the parameters in order");
    next = g.end;
    host_exp_avg_.push_back(empty_host(g.master.sizes(), g.master.scalar_type(), update_device_).zero_());
    host_exp_avg_sq_.push_back(empty_host(g.master.sizes(), g.master.scalar_type(), update_device_).zero_());
    int64_t offset = 0;
    for (int64_t i = g.begin; i < g.end; ++i) {
      const at::Tensor& p = params_[static_cast<size_t>(i)];
      exp_avg_.push_back(host_exp_avg_.back().narrow(0, offset, p.numel()).view(p.sizes()));
      exp_avg_sq_.push_back(host_exp_avg_sq_.back().narrow(0, offset, p.numel()).view(p.sizes()));
      offset += p.numel();
    }
    LEMA_CHECK_MSG(offset == g.master.numel(), "a host group's parameters must fill its flat buffer");
  }
  LEMA_CHECK_MSG(next == static_cast<int64_t>(params_.size()), "host groups must cover every parameter");
}

namespace {

struct AdamWStep {
  double lr, weight_decay, b1, b2, eps, step_size, bias_correction2_sqrt;
};

// torch.optim.adamw._single_tensor_adamw, op for op: the one update both
// placements run, so a parameter gets the same bits wherever it lives.
void adamw_update(at::Tensor& p, const at::Tensor& g, at::Tensor& exp_avg, at::Tensor& exp_avg_sq, const AdamWStep& s) {
  p.mul_(1.0 - s.lr * s.weight_decay);
  exp_avg.lerp_(g, 1.0 - s.b1);
  exp_avg_sq.mul_(s.b2).addcmul_(g, g, 1.0 - s.b2);
  const at::Tensor denom = (exp_avg_sq.sqrt() / s.bias_correction2_sqrt).add_(s.eps);
  p.addcdiv_(exp_avg, denom, -s.step_size);
}

}  // namespace

void AdamW::step(double lr) {
  if (!host_groups_.empty()) return step_host_groups(lr);
  at::NoGradGuard no_grad;
  ++step_count_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const AdamWStep s{lr, options_.weight_decay, b1, b2, options_.eps,
                    lr / (1.0 - std::pow(b1, static_cast<double>(step_count_))),
                    std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_count_)))};
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i];
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    adamw_update(p, g, exp_avg_[i], exp_avg_sq_[i], s);
  }
}

// Host groups: the update runs on the device, one group (a layer's LoRA
// state) at a time: its master, gradient and moments come over in four
// copies (the next group's on the side stream while this one updates),
// the per-parameter operations run on views of them, and master and
// moments go back. On the device rather than on the host because the
// host's AdamW over a 13B model's LoRA (63M parameters, ~10 passes) costs
// about as much as the copies take ten times over, and because the same
// kernels on the same values give the resident path's bits.
void AdamW::step_host_groups(double lr) {
  at::NoGradGuard no_grad;
  ++step_count_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const AdamWStep s{lr, options_.weight_decay, b1, b2, options_.eps,
                    lr / (1.0 - std::pow(b1, static_cast<double>(step_count_))),
                    std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_count_)))};
  DeviceCopier copier(update_device_);
  // [group] -> master, grad, exp_avg, exp_avg_sq on their way to the device
  auto start = [&](size_t gi) {
    const HostParamGroup& g = host_groups_[gi];
    return std::vector<DeviceCopier::Pending>{copier.to_device(g.master), copier.to_device(g.grad),
                                              copier.to_device(host_exp_avg_[gi]),
                                              copier.to_device(host_exp_avg_sq_[gi])};
  };
  std::vector<DeviceCopier::Pending> next = host_groups_.empty() ? std::vector<DeviceCopier::Pending>{} : start(0);
  for (size_t gi = 0; gi < host_groups_.size(); ++gi) {
    std::vector<DeviceCopier::Pending> cur = std::move(next);
    if (gi + 1 < host_groups_.size()) next = start(gi + 1);
    at::Tensor master = copier.wait(cur[0]), grad = copier.wait(cur[1]);
    at::Tensor m = copier.wait(cur[2]), v = copier.wait(cur[3]);
    const HostParamGroup& g = host_groups_[gi];
    int64_t offset = 0;
    for (int64_t i = g.begin; i < g.end; ++i) {
      const at::Tensor& host_p = params_[static_cast<size_t>(i)];
      const int64_t n = host_p.numel();
      at::Tensor p = master.narrow(0, offset, n).view(host_p.sizes());
      at::Tensor pm = m.narrow(0, offset, n).view(host_p.sizes());
      at::Tensor pv = v.narrow(0, offset, n).view(host_p.sizes());
      const at::Tensor pg = grad.narrow(0, offset, n).view(host_p.sizes());
      offset += n;
      if (!host_p.grad().defined()) continue;
      adamw_update(p, pg, pm, pv, s);
    }
    copier.to_host(master, host_groups_[gi].master);
    copier.to_host(m, host_exp_avg_[gi]);
    copier.to_host(v, host_exp_avg_sq_[gi]);
  }
  copier.synchronize();  // the host buffers are read next (checkpoints, the next step's staging)
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

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm, const std::vector<at::Tensor>& grad_norms) {
  at::NoGradGuard no_grad;
  LEMA_CHECK(grad_norms.empty() || grad_norms.size() == params.size());
  std::vector<at::Tensor> norms;
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].grad().defined()) norms.push_back(grad_norms.empty() ? params[i].grad().norm(2) : grad_norms[i]);
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
