// A tiny model trained with LoRA on an NF4 base learns as it does on the
// bf16 base: the same random model written as a bf16 layer file and as an
// NF4 one, the same adapter init, batches and steps; both loss curves are
// printed side by side. The NF4 run also streams (ram mode, 2 slots) and
// must equal its resident run bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/formats/model_presets.h"
#include "engine/layer_store.h"
#include "engine/model_loader.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"

#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

constexpr int kSteps = 40;

std::vector<double> train(LayerSource& source, const ModelConfig& c) {
  LoraConfig lc;
  lc.r = 8;
  lc.alpha = 16.0;
  LoraAdapter adapter = LoraAdapter::init(c, lc, 11, at::kFloat, at::kCPU);
  AdamW opt(adapter.parameters(), AdamWOptions{});
  // Two fixed batches, alternating: the adapter can fit them.
  const std::vector<MicroBatch> batches = {test_models::random_padded_batch(c, 4, 24, 1),
                                           test_models::random_padded_batch(c, 4, 24, 2)};
  StepOptions options;
  options.dropout = false;
  std::vector<double> losses;
  for (int step = 0; step < kSteps; ++step) {
    adapter.zero_grad();
    auto r = layerwise_forward_backward(source, adapter, {batches[step % 2]}, mix_seed(3, step), options);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    if (!r.ok()) return losses;
    losses.push_back(r.value().loss);
    clip_grad_norm(adapter.parameters(), 1.0);
    opt.step(1e-2);
  }
  return losses;
}

TEST(QuantTrain, Nf4BaseLearnsLikeTheBf16Base) {
  char tmpl[] = "/tmp/lema_qtrain_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  ModelConfig c = model_preset("tiny").value();
  c.initializer_range = 0.1;  // layers that matter, so quantization error shows in the loss
  const std::string bf16 = dir + "/bf16.lema.safetensors", nf4 = dir + "/nf4.lema.safetensors";
  ASSERT_TRUE(write_random_layer_file(c, bf16, 21, QuantType::kNone, DType::kBF16).ok());
  ASSERT_TRUE(write_random_layer_file(c, nf4, 21, QuantType::kNf4, DType::kBF16).ok());

  auto bf16_source = open_model_source(bf16, at::kFloat, at::kCPU);
  ASSERT_TRUE(bf16_source.ok()) << bf16_source.status().to_string();
  auto nf4_source = open_model_source(nf4, at::kFloat, at::kCPU);
  ASSERT_TRUE(nf4_source.ok()) << nf4_source.status().to_string();
  EXPECT_TRUE(nf4_source.value()->quantized());
  const std::vector<double> a = train(*bf16_source.value(), c);
  const std::vector<double> b = train(*nf4_source.value(), c);
  ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(b.size(), static_cast<size_t>(kSteps));
  std::printf("step  bf16 base  nf4 base\n");
  for (int s = 0; s < kSteps; ++s) std::printf("%4d  %9.4f  %8.4f\n", s + 1, a[s], b[s]);

  // Learns: the last two steps (one per batch) well below the first two.
  const double a_first = (a[0] + a[1]) / 2, a_last = (a[kSteps - 2] + a[kSteps - 1]) / 2;
  const double b_first = (b[0] + b[1]) / 2, b_last = (b[kSteps - 2] + b[kSteps - 1]) / 2;
  EXPECT_LT(a_last, 0.75 * a_first);
  EXPECT_LT(b_last, 0.75 * b_first);
  // A different base (the quantization changes the loss), yet the same learning.
  EXPECT_NE(a[0], b[0]);
  EXPECT_LT(std::abs(b_first - a_first), 0.05 * a_first);
  EXPECT_LT(std::abs(b_last - a_last), 0.15 * a_last + 0.05);

  // Streamed through two slots (quantized bytes in the ring, one
  // dequantization buffer): bit-identical to the resident NF4 run.
  auto file = std::shared_ptr<const LayerFile>(LayerFile::open(nf4, false).value());
  MemoryPlan plan;
  plan.mode = PlanMode::kRam;
  plan.resident_layers = 0;
  plan.device_slots = 2;
  plan.prefetch_depth = 1;
  auto streamed = open_planned_store(file, plan, at::kFloat, at::kCPU);
  ASSERT_TRUE(streamed.ok()) << streamed.status().to_string();
  const std::vector<double> s = train(*streamed.value(), c);
  EXPECT_EQ(s, b);
  const LayerStoreStats st = streamed.value()->take_stats();
  EXPECT_EQ(st.bytes_h2d, static_cast<uint64_t>(st.device_loads) * file->layer_range(0).nbytes);
  EXPECT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema::engine
