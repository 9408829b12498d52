// The layer-wise step against plain full autograd of the same model (fp64),
// micro-batching against one batch, padding invariance, bit-identical
// repeat runs, and kept forward graphs against recomputation.
#include "engine/train_step.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "engine/optimizer.h"

#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

using test_models::random_padded_batch;
using test_models::tiny_gqa_config;

ModelConfig tiny_config(RopeScalingType rope, bool tied) {
  ModelConfig c = tiny_gqa_config(3, 61, 0.2);  // init large enough that every layer matters
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = tied;
  c.rope_scaling.type = rope;
  if (rope == RopeScalingType::kLinear) c.rope_scaling.factor = 2.0;
  if (rope == RopeScalingType::kLlama3) {
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.original_max_position_embeddings = 16;  // puts frequencies in all three bands
  }
  return c;
}

struct Fixture {
  ModelConfig config;
  std::unique_ptr<InMemoryLayerSource> source;
  LoraAdapter adapter;
};

Fixture make_fixture(RopeScalingType rope, bool tied, double dropout, std::vector<LoraTarget> targets) {
  Fixture f;
  f.config = tiny_config(rope, tied);
  auto src = InMemoryLayerSource::create(f.config, make_random_model(f.config, 7, at::kDouble), at::kDouble, at::kCPU);
  EXPECT_TRUE(src.ok()) << src.status().to_string();
  f.source = std::move(src).value();
  LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.dropout = dropout;
  lc.targets = targets;
  f.adapter = LoraAdapter::init(f.config, lc, 11, at::kDouble, at::kCPU);
  test_models::randomize_lora_b(f.adapter, lc.r, 0.1, 5);
  return f;
}

// Plain autograd over the whole model with full logits: the reference.
double full_autograd_loss_backward(Fixture& f, const std::vector<MicroBatch>& mbs, uint64_t seed, bool dropout) {
  at::AutoGradMode grad_on(true);
  const ModelConfig& c = f.config;
  const Rope rope(c);
  int64_t total = 0;
  for (const auto& mb : mbs) total += (shift_labels(mb.labels) != -100).sum().item<int64_t>();
  at::Tensor loss = at::zeros({}, at::kDouble);
  for (size_t m = 0; m < mbs.size(); ++m) {
    LayerContext ctx;
    ctx.config = &c;
    std::tie(ctx.cos, ctx.sin) = rope.cos_sin(mbs[m].input_ids.size(1), at::kDouble, at::kCPU);
    at::Tensor x = embed_tokens(mbs[m].input_ids, f.source->head(), c);
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
      ctx.dropout_seed = layer_dropout_seed(seed, static_cast<int64_t>(m), layer);
      x = decoder_layer_forward(x, f.source->acquire(layer).value(), f.adapter.layer(layer, at::kDouble, dropout), ctx);
    }
    const at::Tensor logits = head_logits(x, f.source->head(), c).reshape({-1, c.vocab_size});
    loss = loss + at::cross_entropy_loss(logits, shift_labels(mbs[m].labels).reshape({-1}), {}, at::Reduction::Sum, -100, 0.0);
  }
  loss = loss / static_cast<double>(total);
  loss.backward();
  return loss.item<double>();
}

std::vector<at::Tensor> grads_of(LoraAdapter& adapter) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& p : adapter.parameters()) out.push_back(p.grad().clone());
  return out;
}

double max_rel_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(a[i].abs().max().item<double>(), 1e-300);
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

void check_layerwise_equals_autograd(RopeScalingType rope, bool tied, double dropout, std::vector<LoraTarget> targets,
                                     int64_t chunk) {
  Fixture f = make_fixture(rope, tied, dropout, targets);
  const std::vector<MicroBatch> mbs = {random_padded_batch(f.config, 3, 12, 1), random_padded_batch(f.config, 2, 9, 2)};
  const uint64_t seed = 99;

  f.adapter.zero_grad();
  const double ref_loss = full_autograd_loss_backward(f, mbs, seed, dropout > 0);
  const auto ref_grads = grads_of(f.adapter);

  f.adapter.zero_grad();
  StepOptions opts;
  opts.loss_chunk_tokens = chunk;
  auto r = layerwise_forward_backward(*f.source, f.adapter, mbs, seed, opts);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const auto grads = grads_of(f.adapter);

  EXPECT_NEAR(r->loss, ref_loss, 1e-9 * std::abs(ref_loss));
  EXPECT_GT(ref_loss, 1.0);
  const double rel = max_rel_diff(grads, ref_grads);
  EXPECT_LT(rel, 1e-9) << "max relative grad difference " << rel;
  // Every gradient is non-trivial (the check above would pass on zeros).
  for (const auto& g : ref_grads) EXPECT_GT(g.abs().max().item<double>(), 1e-8);
}

const std::vector<LoraTarget> kAll = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV, LoraTarget::kO,
                                      LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};

TEST(TrainStep, LayerwiseEqualsFullAutograd) {
  check_layerwise_equals_autograd(RopeScalingType::kNone, false, 0.0, kAll, 7);
}

TEST(TrainStep, LayerwiseEqualsFullAutogradLlama3RopeTiedDropout) {
  check_layerwise_equals_autograd(RopeScalingType::kLlama3, true, 0.1, kAll, 1000);
}

TEST(TrainStep, LayerwiseEqualsFullAutogradLinearRopeSubset) {
  check_layerwise_equals_autograd(RopeScalingType::kLinear, false, 0.0, {LoraTarget::kQ, LoraTarget::kV, LoraTarget::kDown}, 5);
}

TEST(TrainStep, MicroBatchesEqualOneBatch) {
  Fixture f = make_fixture(RopeScalingType::kNone, false, 0.0, kAll);
  const MicroBatch whole = random_padded_batch(f.config, 4, 10, 3);
  std::vector<MicroBatch> split;
  for (int64_t i = 0; i < 4; i += 2) {
    split.push_back({whole.input_ids.narrow(0, i, 2).clone(), whole.labels.narrow(0, i, 2).clone(), {}, {}});
  }
  f.adapter.zero_grad();
  auto one = layerwise_forward_backward(*f.source, f.adapter, {whole}, 1, StepOptions{});
  ASSERT_TRUE(one.ok());
  const auto g_one = grads_of(f.adapter);
  f.adapter.zero_grad();
  auto many = layerwise_forward_backward(*f.source, f.adapter, split, 1, StepOptions{});
  ASSERT_TRUE(many.ok());
  EXPECT_NEAR(one->loss, many->loss, 1e-12 * one->loss);
  EXPECT_EQ(one->n_label_tokens, many->n_label_tokens);
  EXPECT_LT(max_rel_diff(grads_of(f.adapter), g_one), 1e-9);
}

TEST(TrainStep, RightPaddingDoesNotChangeRealTokens) {
  Fixture f = make_fixture(RopeScalingType::kLlama3, false, 0.0, kAll);
  const ModelConfig& c = f.config;
  const Rope rope(c);
  at::NoGradGuard no_grad;
  auto run = [&](const at::Tensor& ids) {
    LayerContext ctx;
    ctx.config = &c;
    std::tie(ctx.cos, ctx.sin) = rope.cos_sin(ids.size(1), at::kDouble, at::kCPU);
    at::Tensor x = embed_tokens(ids, f.source->head(), c);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      x = decoder_layer_forward(x, f.source->acquire(l).value(), f.adapter.layer(l, at::kDouble, false), ctx);
    }
    return head_logits(x, f.source->head(), c);
  };
  const at::Tensor ids = at::arange(3, 10, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);  // [1, 7]
  const at::Tensor padded = at::cat({ids, at::zeros({1, 5}, ids.options())}, 1);          // [1, 12]
  const at::Tensor a = run(ids), b = run(padded).narrow(1, 0, 7);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-12);
}

TEST(TrainStep, RepeatRunsAreBitIdentical) {
  auto train = [](uint64_t seed) {
    ModelConfig c = tiny_config(RopeScalingType::kNone, false);
    auto src = InMemoryLayerSource::create(c, make_random_model(c, 3, at::kFloat), at::kFloat, at::kCPU).value();
    LoraConfig lc;
    lc.r = 4;
    lc.dropout = 0.1;
    LoraAdapter adapter = LoraAdapter::init(c, lc, seed, at::kFloat, at::kCPU);
    AdamW opt(adapter.parameters(), AdamWOptions{});
    for (int step = 0; step < 3; ++step) {
      adapter.zero_grad();
      auto r = layerwise_forward_backward(*src, adapter, {random_padded_batch(c, 2, 8, 100 + step)}, mix_seed(seed, step), StepOptions{});
      EXPECT_TRUE(r.ok());
      clip_grad_norm(adapter.parameters(), 1.0);
      opt.step(1e-2);
    }
    return adapter.parameters();
  };
  const auto a = train(42), b = train(42), c = train(43);
  bool all_equal = true, any_differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    all_equal = all_equal && at::equal(a[i], b[i]);
    any_differs = any_differs || !at::equal(a[i], c[i]);
  }
  EXPECT_TRUE(all_equal);
  EXPECT_TRUE(any_differs);
}

// Keeping a layer's forward graph instead of recomputing it must not change
// a bit: the same kernels run, in grad mode, once instead of twice. Two
// micro-batches, dropout on, float32 (where an operation order change shows).
TEST(TrainStep, KeptGraphsEqualRecomputationBitForBit) {
  ModelConfig c = tiny_config(RopeScalingType::kNone, false);
  auto src = InMemoryLayerSource::create(c, make_random_model(c, 3, at::kFloat), at::kFloat, at::kCPU).value();
  auto run = [&](int64_t kept) {
    LoraConfig lc;
    lc.r = 4;
    lc.dropout = 0.1;
    LoraAdapter adapter = LoraAdapter::init(c, lc, 9, at::kFloat, at::kCPU);
    test_models::randomize_lora_b(adapter, lc.r, 0.1, 5);
    StepOptions options;
    options.kept_graph_layers = kept;
    adapter.zero_grad();
    auto r = layerwise_forward_backward(*src, adapter, {random_padded_batch(c, 2, 8, 100), random_padded_batch(c, 2, 8, 101)},
                                        77, options);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : adapter.parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(r.ok() ? r.value().loss : -1.0, grads);
  };
  const auto base = run(0);
  for (int64_t kept : {int64_t{1}, c.n_layers, c.n_layers + 5}) {
    const auto other = run(kept);
    EXPECT_EQ(base.first, other.first) << "kept " << kept;
    ASSERT_EQ(base.second.size(), other.second.size());
    for (size_t i = 0; i < base.second.size(); ++i) {
      EXPECT_TRUE(at::equal(base.second[i], other.second[i])) << "kept " << kept << ", parameter " << i;
    }
  }
}

// LoRA state on the host (issue 20) against the state on the device: the
// same losses, gradient norms, masters and AdamW moments, bit for bit,
// over several steps of two micro-batches each (gradient accumulation),
// with dropout, clipping, weight decay, and a layer that keeps its graph.
// On the CPU the "device" copies are real copies, so the staging, the
// gradients' way back and the grouped optimizer update all run.
TEST(TrainStep, LoraStateOnTheHostTrainsBitForBitAsOnTheDevice) {
  ModelConfig c = tiny_config(RopeScalingType::kNone, false);
  auto src = InMemoryLayerSource::create(c, make_random_model(c, 3, at::kFloat), at::kFloat, at::kCPU).value();
  struct Run {
    std::vector<double> losses, norms;
    std::vector<at::Tensor> params, exp_avg, exp_avg_sq;
  };
  auto train = [&](bool on_host, int64_t kept) {
    LoraConfig lc;
    lc.r = 4;
    lc.dropout = 0.1;
    LoraAdapter adapter = LoraAdapter::init(c, lc, 9, at::kFloat, at::kCPU, on_host);
    EXPECT_EQ(adapter.state_on_host(), on_host);
    test_models::randomize_lora_b(adapter, lc.r, 0.1, 5);
    AdamWOptions o;
    o.weight_decay = 0.01;
    AdamW opt = on_host ? AdamW(adapter.parameters(), o, adapter.host_param_groups(), at::kCPU)
                        : AdamW(adapter.parameters(), o);
    StepOptions options;
    options.kept_graph_layers = kept;
    Run run;
    for (int step = 0; step < 4; ++step) {
      adapter.zero_grad();
      auto r = layerwise_forward_backward(
          *src, adapter, {random_padded_batch(c, 2, 8, 100 + step), random_padded_batch(c, 2, 8, 200 + step)},
          mix_seed(5, step), options);
      EXPECT_TRUE(r.ok()) << r.status().to_string();
      run.losses.push_back(r.ok() ? r.value().loss : -1.0);
      run.norms.push_back(clip_grad_norm(adapter.parameters(), 0.05, adapter.grad_norms()));  // small: every step clips
      opt.step(1e-2);
    }
    for (const at::Tensor& p : adapter.parameters()) run.params.push_back(p.detach().clone());
    for (const at::Tensor& m : opt.exp_avg()) run.exp_avg.push_back(m.clone());
    for (const at::Tensor& v : opt.exp_avg_sq()) run.exp_avg_sq.push_back(v.clone());
    return run;
  };
  const Run device = train(false, 0);
  for (int64_t kept : {int64_t{0}, int64_t{2}}) {
    const Run host = train(true, kept);
    EXPECT_EQ(device.losses, host.losses) << "kept " << kept;
    EXPECT_EQ(device.norms, host.norms) << "kept " << kept;
    ASSERT_EQ(device.params.size(), host.params.size());
    bool moved = false;
    for (size_t i = 0; i < device.params.size(); ++i) {
      EXPECT_TRUE(at::equal(device.params[i], host.params[i])) << "kept " << kept << ", parameter " << i;
      EXPECT_TRUE(at::equal(device.exp_avg[i], host.exp_avg[i])) << "kept " << kept << ", exp_avg " << i;
      EXPECT_TRUE(at::equal(device.exp_avg_sq[i], host.exp_avg_sq[i])) << "kept " << kept << ", exp_avg_sq " << i;
      moved = moved || device.exp_avg[i].abs().max().item<double>() > 0.0;
    }
    EXPECT_TRUE(moved);  // the comparison saw trained state, not zeros
  }
}

// A second forward/backward without zero_grad adds to the gradients, with
// the state on the host as on the device.
TEST(TrainStep, LoraStateOnTheHostAccumulatesAcrossCalls) {
  ModelConfig c = tiny_config(RopeScalingType::kNone, false);
  auto src = InMemoryLayerSource::create(c, make_random_model(c, 3, at::kFloat), at::kFloat, at::kCPU).value();
  auto grads = [&](bool on_host) {
    LoraConfig lc;
    lc.r = 4;
    LoraAdapter adapter = LoraAdapter::init(c, lc, 9, at::kFloat, at::kCPU, on_host);
    test_models::randomize_lora_b(adapter, lc.r, 0.1, 5);
    adapter.zero_grad();
    for (int call = 0; call < 2; ++call) {
      EXPECT_TRUE(layerwise_forward_backward(*src, adapter, {random_padded_batch(c, 2, 8, 300 + call)}, 1, StepOptions{}).ok());
    }
    std::vector<at::Tensor> out;
    for (const at::Tensor& p : adapter.parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const auto device = grads(false), host = grads(true);
  ASSERT_EQ(device.size(), host.size());
  for (size_t i = 0; i < device.size(); ++i) EXPECT_TRUE(at::equal(device[i], host[i])) << "parameter " << i;
}

}  // namespace
}  // namespace lema::engine
