// The streaming LayerStore against InMemoryLayerSource: with a slow loader,
// every mode and prefetch depths 1-4, layerwise_forward_backward gives
// bit-identical losses and LoRA gradients over several steps; each layer is
// loaded at most once per pass and the last forward layer is not reloaded;
// reads from a converted layer file; reader errors surface as Status.
#include "engine/layer_store.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstdlib>
#include <unistd.h>

#include "common/base/file_util.h"
#include "common/formats/model_presets.h"
#include "engine/train_step.h"

#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

using test_models::random_padded_batch;
using test_models::tiny_gqa_config;

ModelConfig tiny_config() { return tiny_gqa_config(6, 61, 0.2); }

LoraAdapter make_adapter(const ModelConfig& c) {
  LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  lc.dropout = 0.1;  // dropout on: masks must follow the same seeds
  LoraAdapter a = LoraAdapter::init(c, lc, 11, at::kFloat, at::kCPU);
  test_models::randomize_lora_b(a, lc.r, 0.1, 5);
  return a;
}

struct StepResult {
  double loss = 0;
  std::vector<at::Tensor> grads;
};

// Three steps with two micro-batches each.
std::vector<StepResult> run_steps(LayerSource& source, const ModelConfig& c) {
  LoraAdapter adapter = make_adapter(c);
  std::vector<StepResult> out;
  for (int step = 0; step < 3; ++step) {
    std::vector<MicroBatch> mbs = {random_padded_batch(c, 2, 9, 100 + step), random_padded_batch(c, 1, 7, 200 + step)};
    adapter.zero_grad();
    auto r = layerwise_forward_backward(source, adapter, mbs, 77 + step, StepOptions());
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    if (!r.ok()) return out;
    StepResult s;
    s.loss = r.value().loss;
    for (const at::Tensor& p : adapter.parameters()) s.grads.push_back(p.grad().clone());
    out.push_back(s);
  }
  return out;
}

void expect_identical(const std::vector<StepResult>& a, const std::vector<StepResult>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_EQ(a[s].loss, b[s].loss) << what << " step " << s;
    ASSERT_EQ(a[s].grads.size(), b[s].grads.size());
    for (size_t i = 0; i < a[s].grads.size(); ++i) {
      EXPECT_TRUE(at::equal(a[s].grads[i], b[s].grads[i])) << what << " step " << s << " grad " << i;
    }
  }
}

struct Model {
  ModelConfig config = tiny_config();
  std::shared_ptr<TensorMap> tensors;
  std::unique_ptr<InMemoryLayerSource> reference;
  std::vector<StepResult> expected;
};

Model& model() {
  static Model* m = [] {
    auto* m = new Model();
    m->tensors = std::make_shared<TensorMap>(make_random_model(m->config, 3, at::kFloat));
    m->reference = InMemoryLayerSource::create(m->config, *m->tensors, at::kFloat, at::kCPU).value();
    m->expected = run_steps(*m->reference, m->config);
    return m;
  }();
  return *m;
}

std::unique_ptr<LayerStore> make_store(const LayerStoreOptions& options, LayerReader reader = nullptr) {
  Model& m = model();
  if (!reader) reader = tensor_map_reader(m.tensors, m.config);
  auto head = load_head(*m.tensors, m.config, at::kFloat, at::kCPU);
  EXPECT_TRUE(head.ok());
  auto store = LayerStore::create(m.config, head.value(), reader, at::kFloat, at::kCPU, options);
  EXPECT_TRUE(store.ok()) << store.status().to_string();
  return store.ok() ? std::move(store).value() : nullptr;
}

TEST(LayerStore, BitIdenticalAcrossModesAndDepths) {
  Model& m = model();
  ASSERT_EQ(m.expected.size(), 3u);
  for (StoreMode mode : {StoreMode::kRam, StoreMode::kDisk}) {
    for (int64_t depth = 1; depth <= 4; ++depth) {
      for (int64_t resident : {0, 2}) {
        LayerStoreOptions o;
        o.mode = mode;
        o.prefetch_depth = depth;
        o.device_slots = depth + 1;
        o.host_slots = 2;
        o.resident_layers = resident;
        o.read_delay = std::chrono::microseconds(1500);  // the loader is slower than compute
        auto store = make_store(o);
        ASSERT_NE(store, nullptr);
        const std::string what = std::string(store_mode_name(mode)) + " depth " + std::to_string(depth) +
                                 " resident " + std::to_string(resident);
        expect_identical(run_steps(*store, m.config), m.expected, what);
        const LayerStoreStats st = store->take_stats();
        const int64_t streamed = m.config.n_layers - resident;
        // Forward loads each streamed layer once, backward reloads at most
        // streamed - 1 of them (the last forward layer stays), per step.
        EXPECT_LE(st.device_loads, 3 * (2 * streamed - 1)) << what;
        EXPECT_GE(st.device_loads, streamed) << what;
        EXPECT_EQ(st.misses, 0) << what;  // the predicted order matched
        EXPECT_EQ(st.bytes_h2d, static_cast<uint64_t>(st.device_loads) * store->layer_bytes());
        if (mode == StoreMode::kDisk) {
          EXPECT_EQ(st.disk_reads, st.device_loads) << what;
        } else {
          EXPECT_EQ(st.disk_reads, 0) << what;
        }
      }
    }
  }
}

TEST(LayerStore, ResidentModeLoadsNothing) {
  LayerStoreOptions o;
  o.mode = StoreMode::kResident;
  auto store = make_store(o);
  ASSERT_NE(store, nullptr);
  expect_identical(run_steps(*store, model().config), model().expected, "resident");
  EXPECT_EQ(store->take_stats().device_loads, 0);
}

// Enough slots for the whole turnaround: the backward reloads nothing near
// the end of the forward; at the minimum (2 slots) exactly the last layer stays.
TEST(LayerStore, LastForwardLayerStartsTheBackward) {
  LayerStoreOptions o;
  o.mode = StoreMode::kRam;
  o.device_slots = 2;
  o.prefetch_depth = 1;
  auto store = make_store(o);
  ASSERT_NE(store, nullptr);
  run_steps(*store, model().config);
  const int64_t n = model().config.n_layers;
  const LayerStoreStats st = store->take_stats();
  // Step 1: n forward loads + (n - 1) backward minus the kept layer(s);
  // later steps also find layer 0 still loaded from the previous backward.
  EXPECT_LE(st.device_loads, 3 * (2 * n - 2) + 1);
  EXPECT_EQ(st.acquires, 3 * (2 * n));  // forward n + backward n per step
}

TEST(LayerStore, ReadsALayerFileInDiskMode) {
  Model& m = model();
  char tmpl[] = "/tmp/lema_layer_store_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_TRUE(write_random_hf_model(m.config, dir + "/hf", 9).ok());
  ConvertOptions co;
  ASSERT_TRUE(convert_hf_to_layer_file(dir + "/hf", dir + "/model.lema.safetensors", co).ok());
  auto file = LayerFile::open(dir + "/model.lema.safetensors", /*map_file=*/true);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  std::shared_ptr<const LayerFile> shared(std::move(file).value());

  // Reference: the same file read whole through the in-memory source.
  TensorMap named;
  for (const TensorInfo& t : shared->header().tensors) {
    ASSERT_EQ(t.dtype, DType::kF32);
    named[t.name] = at::from_blob(const_cast<uint8_t*>(shared->data()) + t.offset, t.shape, at::kFloat).clone();
  }
  auto ref = InMemoryLayerSource::create(shared->config(), named, at::kFloat, at::kCPU).value();
  const auto expected = run_steps(*ref, shared->config());

  auto reader = layer_file_reader(shared, at::kFloat);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  auto head = load_head(*shared, at::kFloat, at::kCPU);
  ASSERT_TRUE(head.ok()) << head.status().to_string();
  for (int64_t depth : {1, 3}) {
    LayerStoreOptions o;
    o.mode = StoreMode::kDisk;
    o.device_slots = depth + 1;
    o.prefetch_depth = depth;
    o.host_slots = 2;
    auto store = LayerStore::create(shared->config(), head.value(), reader.value(), at::kFloat, at::kCPU, o);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    expect_identical(run_steps(*store.value(), shared->config()), expected, "layer file depth " + std::to_string(depth));
  }
  std::system(("rm -rf " + dir).c_str());
}

TEST(LayerStore, ReaderErrorsBecomeStatus) {
  Model& m = model();
  auto inner = tensor_map_reader(m.tensors, m.config);
  LayerReader failing = [inner](int64_t layer, at::Tensor& dst) -> Status {
    if (layer == 3) return Status::io_error("disk on fire reading layer 3");
    return inner(layer, dst);
  };
  LayerStoreOptions o;
  o.mode = StoreMode::kDisk;
  o.device_slots = 3;
  o.prefetch_depth = 2;
  auto store = make_store(o, failing);
  ASSERT_NE(store, nullptr);
  LoraAdapter adapter = make_adapter(m.config);
  adapter.zero_grad();
  auto r = layerwise_forward_backward(*store, adapter, {random_padded_batch(m.config, 1, 5, 1)}, 1, StepOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().to_string().find("disk on fire"), std::string::npos) << r.status().to_string();
}

TEST(LayerStore, RejectsBadOptions) {
  Model& m = model();
  LayerStoreOptions o;
  o.device_slots = 2;
  o.prefetch_depth = 2;  // needs 3 slots
  auto head = load_head(*m.tensors, m.config, at::kFloat, at::kCPU).value();
  auto store = LayerStore::create(m.config, head, tensor_map_reader(m.tensors, m.config), at::kFloat, at::kCPU, o);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().to_string().find("prefetch_depth"), std::string::npos);
}

}  // namespace
}  // namespace lema::engine
