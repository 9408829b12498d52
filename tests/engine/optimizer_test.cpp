// AdamW against a scalar re-statement of torch.optim.AdamW, schedules
// against HF's formulas, clipping against a hand-computed norm.
#include "engine/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace lema::engine {
namespace {

TEST(AdamW, MatchesScalarReference) {
  at::Tensor p = at::tensor({0.5, -1.0, 2.0}, at::kDouble).requires_grad_(true);
  const std::vector<std::vector<double>> grads = {{0.1, -0.2, 0.3}, {0.0, 0.5, -1.0}, {2.0, 0.1, 0.0}};
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt({p}, o);
  std::vector<double> ref = {0.5, -1.0, 2.0}, m(3, 0.0), v(3, 0.0);
  const double lr = 0.01;
  for (int step = 1; step <= 3; ++step) {
    p.mutable_grad() = at::tensor(grads[step - 1], at::kDouble);
    opt.step(lr);
    for (int i = 0; i < 3; ++i) {
      const double g = grads[step - 1][i];
      ref[i] *= 1 - lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double mhat = m[i] / (1 - std::pow(o.beta1, step));
      const double vhat = v[i] / (1 - std::pow(o.beta2, step));
      ref[i] -= lr * mhat / (std::sqrt(vhat) + o.eps * 1.0);
    }
  }
  // Torch folds the bias corrections differently (eps is added before the
  // bias-correction-1 division): equal within rounding, not bit-for-bit.
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i].item<double>(), ref[i], 1e-9);
  EXPECT_EQ(opt.step_count(), 3);
}

TEST(LrSchedule, WarmupThenDecay) {
  LrSchedule s{LrScheduleKind::kLinear, 1.0, 10, 110};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(60), 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(110), 0.0);
  s.kind = LrScheduleKind::kCosine;
  EXPECT_NEAR(s.lr_at(60), 0.5, 1e-12);
  EXPECT_NEAR(s.lr_at(35), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  s.kind = LrScheduleKind::kConstant;
  EXPECT_DOUBLE_EQ(s.lr_at(100), 1.0);
  EXPECT_FALSE(parse_lr_schedule("step").ok());
}

TEST(ClipGradNorm, ScalesToMaxNorm) {
  at::Tensor a = at::zeros({2}, at::kDouble).requires_grad_(true);
  at::Tensor b = at::zeros({1}, at::kDouble).requires_grad_(true);
  a.mutable_grad() = at::tensor({3.0, 0.0}, at::kDouble);
  b.mutable_grad() = at::tensor({4.0}, at::kDouble);
  EXPECT_DOUBLE_EQ(clip_grad_norm({a, b}, 1.0), 5.0);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 / (5.0 + 1e-6), 1e-15);
  EXPECT_NEAR(b.grad()[0].item<double>(), 4.0 / (5.0 + 1e-6), 1e-15);
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 1.0, 1e-6);  // below max: unchanged
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 / (5.0 + 1e-6), 1e-15);
}

}  // namespace
}  // namespace lema::engine
