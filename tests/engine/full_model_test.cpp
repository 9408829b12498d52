// Full-parameter training (issue 10): the step's loss and the gradient of
// every weight against plain autograd of the whole model with full logits
// (fp64), micro-batches included; the masters round-trip through save_hf.
#include "engine/full_model.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <unistd.h>

#include "common/base/file_util.h"
#include "engine/checkpoint.h"
#include "engine/model_loader.h"

#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

using test_models::random_padded_batch;
using test_models::tiny_gqa_config;

FullModel make_model(const ModelConfig& c) {
  auto src = InMemoryLayerSource::create(c, make_random_model(c, 3, at::kDouble), at::kDouble, at::kCPU);
  EXPECT_TRUE(src.ok()) << src.status().to_string();
  auto m = FullModel::from_source(**src, at::kDouble);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return std::move(m).value();
}

// The reference: one autograd graph over every micro-batch, full logits,
// one backward of the mean loss.
double plain_autograd(FullModel& m, const std::vector<MicroBatch>& mbs) {
  at::AutoGradMode grad_on(true);
  const ModelConfig& c = m.config();
  const Rope rope(c);
  int64_t total = 0;
  for (const auto& mb : mbs) total += (shift_labels(mb.labels) != -100).sum().item<int64_t>();
  at::Tensor loss = at::zeros({}, at::kDouble);
  for (const auto& mb : mbs) {
    LayerContext ctx;
    ctx.config = &c;
    std::tie(ctx.cos, ctx.sin) = rope.cos_sin(mb.input_ids.size(1), at::kDouble, at::kCPU);
    const HeadWeights head = m.head(at::kDouble);
    at::Tensor x = embed_tokens(mb.input_ids, head, c);
    for (int64_t l = 0; l < c.n_layers; ++l) x = decoder_layer_forward(x, m.layer(l, at::kDouble), LayerLora{}, ctx);
    const at::Tensor logits = head_logits(x, head, c).reshape({-1, c.vocab_size});
    loss = loss + at::cross_entropy_loss(logits, shift_labels(mb.labels).reshape({-1}), {}, at::Reduction::Sum, -100, 0.0);
  }
  loss = loss / static_cast<double>(total);
  loss.backward();
  return loss.item<double>();
}

std::vector<at::Tensor> grads(const FullModel& m) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  return out;
}

void check_against_autograd(bool tied) {
  ModelConfig c = tiny_gqa_config(3, 53, 0.2);
  c.tie_word_embeddings = tied;
  FullModel m = make_model(c);
  const std::vector<MicroBatch> mbs = {random_padded_batch(c, 3, 12, 1), random_padded_batch(c, 2, 9, 2)};

  m.zero_grad();
  const double ref_loss = plain_autograd(m, mbs);
  const auto ref = grads(m);

  m.zero_grad();
  StepOptions opts;
  opts.loss_chunk_tokens = 7;  // several chunks per micro-batch
  auto r = full_forward_backward(m, mbs, at::kDouble, opts);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const auto got = grads(m);

  EXPECT_GT(ref_loss, 1.0);
  EXPECT_NEAR(r->loss, ref_loss, 1e-9 * ref_loss);
  const auto names = m.parameter_names();
  ASSERT_EQ(names.size(), got.size());
  EXPECT_EQ(names.size(), static_cast<size_t>(1 + 9 * c.n_layers + 1 + (tied ? 0 : 1)));
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(ref[i].defined() && got[i].defined()) << names[i] << " has no gradient";
    const double scale = ref[i].abs().max().item<double>();
    EXPECT_GT(scale, 1e-8) << names[i];  // every weight matters, so a zero would be a bug
    const double rel = (got[i] - ref[i]).abs().max().item<double>() / scale;
    EXPECT_LT(rel, 1e-9) << names[i];
  }
}

TEST(FullModel, GradientsOfEveryWeightEqualPlainAutograd) { check_against_autograd(false); }
TEST(FullModel, TiedEmbeddingGetsBothGradients) { check_against_autograd(true); }

TEST(FullModel, SaveHfRoundTripsThroughTheModelLoader) {
  ModelConfig c = tiny_gqa_config(2, 40, 0.2);
  c.architecture = "LlamaForCausalLM";
  FullModel m = make_model(c);
  const std::string dir = "/tmp/lema_full_model_test_" + std::to_string(getpid());
  ASSERT_TRUE(m.save_hf(dir, at::kFloat).ok());
  auto src = open_model_source(dir, at::kFloat, at::kCPU);
  ASSERT_TRUE(src.ok()) << src.status().to_string();
  auto again = FullModel::from_source(**src, at::kFloat);
  ASSERT_TRUE(again.ok());
  const auto a = m.parameters(), b = again->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].to(at::kFloat), b[i])) << m.parameter_names()[i];
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema::engine
