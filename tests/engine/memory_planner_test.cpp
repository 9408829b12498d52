// The memory planner on the Llama-2-7B shape (byte counts checked against
// figures computed by hand and PEFT's trainable-parameter count) and on a
// tiny shape: budgets pick resident / ram / disk, plans stay within budget,
// more VRAM never means fewer resident layers, and impossible budgets are
// refused with a message naming the option.
#include "engine/memory_planner.h"

#include "common/formats/model_config.h"
#include "common/formats/model_presets.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace lema::engine {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

ModelConfig llama2_7b() {
  ModelConfig c;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.n_layers = 32;
  c.n_heads = 32;
  c.n_kv_heads = 32;
  c.head_dim = 128;
  c.vocab_size = 32000;
  return c;
}

PlanRequest request_7b(int64_t batch, int64_t seq, uint64_t vram, uint64_t ram = 0) {
  PlanRequest r;
  r.config = llama2_7b();
  r.batch = batch;
  r.seq_len = seq;
  r.vram_budget = vram;
  r.ram_budget = ram;
  return r;
}

TEST(MemoryPlanner, Llama7bByteCounts) {
  // q, k, v, o 4 x 4096^2; gate, up, down 3 x 4096 x 11008; two norms.
  EXPECT_EQ(layer_weight_bytes(llama2_7b(), 2), 2ull * (4ull * 4096 * 4096 + 3ull * 4096 * 11008 + 2 * 4096));
  // PEFT prints "trainable params: 39,976,960" for r=16 on all seven projections.
  EXPECT_EQ(lora_parameter_count(llama2_7b(), 16, 7), 39976960ull);
}

TEST(MemoryPlanner, NoLimitIsResident) {
  auto p = plan_memory(request_7b(4, 2048, 0));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p.value().mode, PlanMode::kResident);
  EXPECT_EQ(p.value().resident_layers, 32);
  EXPECT_EQ(p.value().micro_batch, 4);
  EXPECT_FALSE(p.value().activations_on_host);
}

// Kept graphs fill what the device (no budget) or the budget leaves, never
// more, and only resident layers keep one.
TEST(MemoryPlanner, KeptGraphsFillWhatIsLeft) {
  PlanRequest r = request_7b(4, 2048, 0);
  EXPECT_EQ(plan_memory(r).value().kept_graph_layers, 0);  // device size unknown
  r.device_memory = 140 * kGiB;  // an H200: 4 x 2048 keeps every layer's graph (~2.4 GB each)
  const MemoryPlan all = plan_memory(r).value();
  EXPECT_EQ(all.kept_graph_layers, 32);
  EXPECT_LE(all.device_bytes, 140 * kGiB);
  EXPECT_GT(all.graph_bytes, 2 * kGiB);
  r.device_memory = 40 * kGiB;  // room for some
  const MemoryPlan some = plan_memory(r).value();
  EXPECT_GT(some.kept_graph_layers, 0);
  EXPECT_LT(some.kept_graph_layers, 32);
  EXPECT_LE(some.device_bytes, 40 * kGiB);
  EXPECT_GT(some.device_bytes + some.graph_bytes, static_cast<uint64_t>(0.9 * 40 * kGiB));  // one more would not fit
  // Under a budget the budget rules, and streamed layers never keep one.
  PlanRequest budget = request_7b(1, 512, 16 * kGiB);
  budget.device_memory = 140 * kGiB;
  const MemoryPlan b = plan_memory(budget).value();
  EXPECT_LE(b.device_bytes, 16 * kGiB);
  EXPECT_LE(b.kept_graph_layers, b.resident_layers);
  EXPECT_GT(b.kept_graph_layers, 0);
}

TEST(MemoryPlanner, FourGiBStreamsWithinBudget) {
  auto p = plan_memory(request_7b(8, 2048, 4 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  const MemoryPlan& m = p.value();
  EXPECT_EQ(m.mode, PlanMode::kRam);
  EXPECT_LE(m.device_bytes, 4 * kGiB);
  EXPECT_GE(m.device_slots, 2);
  EXPECT_EQ(m.prefetch_depth, m.device_slots - 1);
  EXPECT_TRUE(m.activations_on_host);  // 33 boundaries of 8x2048x4096 bf16 are 4.4 GB
  EXPECT_EQ(m.n_micro * m.micro_batch, 8);
  EXPECT_LT(m.resident_layers, 32);
  EXPECT_FALSE(m.to_string().empty());
}

// Issue 20: a Llama-2-13B shape at --vram 4GiB, 8 x 2048, was refused
// ("head 625 MiB, LoRA state 955 MiB, 2 layer slots 1.2 GiB, working 724
// MiB"); with the LoRA state in pinned host memory it plans, the state's
// device share is two layers', and the host tier carries the rest.
TEST(MemoryPlanner, Llama13bAtFourGiBKeepsTheLoraStateOnTheHost) {
  PlanRequest r = request_7b(8, 2048, 4 * kGiB);
  r.config.hidden_size = 5120;
  r.config.intermediate_size = 13824;
  r.config.n_layers = 40;
  r.config.n_heads = 40;
  r.config.n_kv_heads = 40;
  r.lora_targets = 7;
  const uint64_t lora_bytes = lora_parameter_count(r.config, 16, 7) * 16;
  EXPECT_EQ(lora_bytes >> 20, 955u);  // the figure of the refusal

  PlanRequest device_only = r;
  device_only.lora_placement = LoraPlacement::kDevice;
  Result<MemoryPlan> refused = plan_memory(device_only);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("LoRA state 955.0 MiB"), std::string::npos) << refused.status().to_string();

  Result<MemoryPlan> p = plan_memory(r);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  const MemoryPlan& m = p.value();
  EXPECT_TRUE(m.lora_on_host);
  EXPECT_EQ(m.lora_bytes, lora_bytes);
  EXPECT_EQ(m.lora_device_bytes, 2 * lora_bytes / 40);
  EXPECT_LE(m.device_bytes, 4 * kGiB);
  EXPECT_EQ(m.mode, PlanMode::kRam);
  EXPECT_GE(m.host_bytes, lora_bytes + 40 * m.layer_bytes - m.resident_layers * m.layer_bytes);
  EXPECT_NE(m.to_string().find("LoRA state 955.0 MiB in pinned host memory"), std::string::npos) << m.to_string();

  // Where the device holds it, the plan keeps it there unless told.
  PlanRequest roomy = r;
  roomy.vram_budget = 16 * kGiB;
  EXPECT_FALSE(plan_memory(roomy).value().lora_on_host);
  roomy.lora_placement = LoraPlacement::kHost;
  const MemoryPlan forced = plan_memory(roomy).value();
  EXPECT_TRUE(forced.lora_on_host);
  EXPECT_GE(forced.resident_layers, plan_memory(PlanRequest(r)).value().resident_layers);
  // Without any budget the forced state still goes to the host.
  PlanRequest unlimited = request_7b(1, 512, 0);
  unlimited.lora_placement = LoraPlacement::kHost;
  const MemoryPlan resident = plan_memory(unlimited).value();
  EXPECT_EQ(resident.mode, PlanMode::kResident);
  EXPECT_TRUE(resident.lora_on_host);
  EXPECT_EQ(resident.host_bytes, resident.lora_bytes);
}

TEST(MemoryPlanner, MoreVramNeverFewerResidentLayers) {
  // At a fixed micro-batch (more VRAM may otherwise buy a larger
  // micro-batch first, which is a trade, not a regression).
  int64_t last = -1;
  for (uint64_t g = 4; g <= 40; g += 2) {
    PlanRequest r = request_7b(8, 2048, g * kGiB);
    r.micro_batch = 2;
    auto p = plan_memory(r);
    ASSERT_TRUE(p.ok()) << g << " GiB: " << p.status().to_string();
    EXPECT_LE(p.value().device_bytes, g * kGiB) << g;
    EXPECT_GE(p.value().resident_layers, last) << g;
    last = p.value().resident_layers;
  }
  auto p16 = plan_memory(request_7b(8, 2048, 16 * kGiB));
  EXPECT_GT(p16.value().resident_layers, 0);
  EXPECT_LT(p16.value().resident_layers, 32);
}

TEST(MemoryPlanner, DiskModeWhenRamIsSmall) {
  auto p = plan_memory(request_7b(1, 512, 4 * kGiB, 3 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p.value().mode, PlanMode::kDisk);
  EXPECT_GE(p.value().host_slots, 2);
  EXPECT_LE(p.value().host_bytes, 3 * kGiB);
  PlanRequest forced = request_7b(1, 512, 0);
  forced.force_disk = true;
  forced.vram_budget = 4 * kGiB;
  EXPECT_EQ(plan_memory(forced).value().mode, PlanMode::kDisk);
}

TEST(MemoryPlanner, RefusesWhatCannotFit) {
  auto p = plan_memory(request_7b(8, 2048, 1 * kGiB));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().to_string().find("--vram"), std::string::npos) << p.status().to_string();
  auto q = plan_memory(request_7b(1, 512, 4 * kGiB, 512ull << 20));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().to_string().find("--ram"), std::string::npos) << q.status().to_string();
  PlanRequest bad = request_7b(4, 512, 0);
  bad.micro_batch = 5;
  EXPECT_FALSE(plan_memory(bad).ok());
}

TEST(MemoryPlanner, SmallShape) {
  PlanRequest r;
  r.config.hidden_size = 64;
  r.config.intermediate_size = 128;
  r.config.n_layers = 4;
  r.config.n_heads = 4;
  r.config.n_kv_heads = 2;
  r.config.head_dim = 16;
  r.config.vocab_size = 100;
  r.batch = 4;
  r.seq_len = 32;
  r.lora_r = 4;
  r.vram_budget = 1 * kGiB;
  auto p = plan_memory(r);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p.value().mode, PlanMode::kResident);
  // A micro-batch split that was asked for is kept.
  r.micro_batch = 2;
  EXPECT_EQ(plan_memory(r).value().n_micro, 2);
}

// Issue 19: on the CPU the device tier is host memory, so --ram bounds it;
// `lema train --ram 1KiB` on the CPU planned everything resident and ran.
TEST(MemoryPlanner, RamBoundsTheCpuDeviceTierToo) {
  PlanRequest r = request_7b(1, 512, 0, 1024);
  r.cuda = false;
  auto refused = plan_memory(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("over --ram 1.0 KiB"), std::string::npos) << refused.status().to_string();
  // Enough RAM for the whole plan: accepted, and the plan fits it.
  r.ram_budget = 64 * kGiB;
  auto fits = plan_memory(r);
  ASSERT_TRUE(fits.ok()) << fits.status().to_string();
  EXPECT_LE(fits->device_bytes + fits->host_bytes, r.ram_budget);
  // On CUDA the device tier is the GPU's: --ram alone bounds only the host.
  r.cuda = true;
  r.ram_budget = 1024;
  EXPECT_TRUE(plan_memory(r).ok());
}

// Inference (eval, generation): a KV cache instead of LoRA state and
// boundary activations; the batch shrinks before the plan gives up.
InferenceRequest inference_7b(int64_t batch, int64_t context, uint64_t vram, uint64_t ram = 0) {
  InferenceRequest r;
  r.config = llama2_7b();
  r.batch = batch;
  r.kv_tokens = context;
  r.forward_tokens = 512;
  r.lora_r = 16;
  r.lora_targets = 7;
  r.dtype_bytes = 2;
  r.vram_budget = vram;
  r.ram_budget = ram;
  return r;
}

TEST(InferencePlanner, NoLimitIsResidentAtTheAskedBatch) {
  Result<MemoryPlan> p = plan_inference_memory(inference_7b(8, 640, 0));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->mode, PlanMode::kResident);
  EXPECT_EQ(p->resident_layers, 32);
  EXPECT_EQ(p->micro_batch, 8);
  // KV cache: 8 sequences x 640 tokens x 32 layers x (K and V) x 4096 x 2 bytes.
  EXPECT_EQ(p->activation_bytes, 8ull * 640 * 32 * 2 * 4096 * 2);
}

TEST(InferencePlanner, FourGiBStreamsAndShrinksTheBatchToFit) {
  // Batch 8's KV cache alone (2.5 GiB) leaves no room for 2 layer slots
  // (772 MiB) next to the head (500 MiB) in 4 GiB less slack; fewer
  // sequences do.
  Result<MemoryPlan> p = plan_inference_memory(inference_7b(8, 640, 4 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_NE(p->mode, PlanMode::kResident);
  EXPECT_LT(p->micro_batch, 8);
  EXPECT_GE(p->micro_batch, 1);
  EXPECT_GE(p->device_slots, 2);
  EXPECT_LE(p->device_bytes, 4 * kGiB);
  EXPECT_EQ(p->activation_bytes, uint64_t(p->micro_batch) * 640 * 32 * 2 * 4096 * 2);
  // One sequence more would not have fitted.
  Result<MemoryPlan> more = plan_inference_memory(inference_7b(p->micro_batch + 1, 640, 4 * kGiB));
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->micro_batch, p->micro_batch);
}

TEST(InferencePlanner, MoreVramNeverLessOnTheDevice) {
  int64_t last_batch = 0, last_resident = -1;
  for (uint64_t gib = 3; gib <= 20; ++gib) {
    Result<MemoryPlan> p = plan_inference_memory(inference_7b(8, 640, gib * kGiB));
    ASSERT_TRUE(p.ok()) << gib << " GiB: " << p.status().to_string();
    EXPECT_LE(p->device_bytes, gib * kGiB) << gib;
    EXPECT_GE(p->micro_batch, last_batch) << gib;
    if (p->micro_batch == last_batch) {
      EXPECT_GE(p->resident_layers, last_resident) << gib;
    }
    last_batch = p->micro_batch;
    last_resident = p->resident_layers;
  }
  EXPECT_EQ(last_batch, 8);
}

TEST(InferencePlanner, RefusesWhatCannotFitNamingTheKvCache) {
  Result<MemoryPlan> p = plan_inference_memory(inference_7b(1, 640, 1 * kGiB));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("--vram"), std::string::npos) << p.status().to_string();
  EXPECT_NE(p.status().message().find("KV cache"), std::string::npos) << p.status().to_string();
  // A RAM budget too small for 2 host slots is refused too.
  Result<MemoryPlan> r = plan_inference_memory(inference_7b(1, 640, 4 * kGiB, 512ull << 20));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--ram"), std::string::npos) << r.status().to_string();
}

TEST(InferencePlanner, SmallRamStreamsFromDisk) {
  Result<MemoryPlan> p = plan_inference_memory(inference_7b(2, 640, 4 * kGiB, 3 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->mode, PlanMode::kDisk);
  EXPECT_LE(p->host_bytes, 3 * kGiB);
}

}  // namespace
}  // namespace lema::engine

// The config.json files of real models of every family (tests/data/model_configs):
// layer bytes count the family's own tensors, and a training plan at 8 x 2048
// fits 16 GiB; at 4 GiB the big-vocabulary families stream their head.
namespace lema::engine {
namespace {

ModelConfig fixture(const std::string& name) {
  auto c = load_model_config(std::string(LEMA_TEST_DATA_DIR) + "/model_configs/" + name);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return c.ok() ? *c : ModelConfig{};
}

TEST(MemoryPlannerFamilies, LayerBytesCountTheFamilysTensors) {
  // Qwen2.5-7B: q/o 3584^2, k/v 512 x 3584, MLP 3 x 3584 x 18944, 2 norms, q/k/v biases.
  EXPECT_EQ(layer_weight_bytes(fixture("qwen2.5-7b-instruct.json"), 2),
            2ull * (2ull * 3584 * 3584 + 2ull * 512 * 3584 + 3ull * 3584 * 18944 + 2 * 3584 + 3584 + 2 * 512));
  // gemma-3-4b: q 2048 x 2560, k/v 1024 x 2560, o 2560 x 2048, MLP 3 x 2560 x 10240,
  // 4 norms of 2560, q/k norms of 256.
  EXPECT_EQ(layer_weight_bytes(fixture("gemma-3-4b-it-text.json"), 2),
            2ull * (2ull * 2048 * 2560 + 2ull * 1024 * 2560 + 3ull * 2560 * 10240 + 4 * 2560 + 2 * 256));
  // Phi-3.5-mini: qkv_proj 9216 x 3072, o 3072^2, gate_up_proj 16384 x 3072,
  // down 3072 x 8192, 2 norms.
  EXPECT_EQ(layer_weight_bytes(fixture("phi-3.5-mini-instruct.json"), 2),
            2ull * (9216ull * 3072 + 3072ull * 3072 + 16384ull * 3072 + 3072ull * 8192 + 2 * 3072));
}

TEST(MemoryPlannerFamilies, LoraCountsTheFusedShapes) {
  // Phi-3.5-mini, r 16, its four targets over 32 layers: qkv (3072 + 9216),
  // o (3072 + 3072), gate_up (3072 + 16384), down (8192 + 3072) per rank.
  const ModelConfig phi = fixture("phi-3.5-mini-instruct.json");
  const uint64_t per_layer = 16ull * ((3072 + 9216) + (3072 + 3072) + (3072 + 16384) + (8192 + 3072));
  EXPECT_EQ(lora_parameter_count(phi, 16, 4), 32 * per_layer);
  EXPECT_EQ(lora_parameter_count(phi, 16, kNumLoraTargets), 32 * per_layer);  // "all" is the family's four
  EXPECT_EQ(lora_parameter_count(phi, 16, 2), 32 * per_layer / 2);
  // The Llama layout's seven are unchanged (Llama-3.2-1B: q 2048, kv 512, I 8192).
  const ModelConfig l = fixture("llama-3.2-1b.json");
  EXPECT_EQ(lora_parameter_count(l, 8, 7),
            16ull * 8 * ((2048 + 2048) + 2 * (2048 + 512) + (2048 + 2048) + 3 * (2048 + 8192)));
}

TEST(MemoryPlannerFamilies, RealModelsPlan) {
  for (const char* name : {"qwen2.5-7b-instruct.json", "qwen3-8b.json", "gemma-3-4b-it-text.json",
                           "mistral-7b-v0.3.json", "llama-3.1-8b-instruct.json", "llama-3.2-1b.json",
                           "phi-3.5-mini-instruct.json"}) {
    PlanRequest r;
    r.config = fixture(name);
    r.batch = 8;
    r.seq_len = 2048;
    r.vram_budget = 16 * kGiB;
    r.ram_budget = 0;
    auto p = plan_memory(r);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().to_string();
    EXPECT_LE(p->device_bytes, 16 * kGiB) << name;
    EXPECT_GE(p->device_slots + p->resident_layers, 2) << name;
  }
}

// Qwen2.5-7B's untied 152k-row head (2.2 GB in bf16) and Gemma 3's 262k-row
// one leave no plan in 4 GiB when resident: the planner streams them from
// pinned host memory, the plan stays within the budget, counts the head in
// host memory and says so. 16 GiB keeps the head resident.
TEST(MemoryPlannerFamilies, BigVocabularyHeadsStreamAtFourGiB) {
  for (const char* name : {"qwen2.5-7b-instruct.json", "gemma-3-4b-it-text.json"}) {
    PlanRequest r;
    r.config = fixture(name);
    r.batch = 8;
    r.seq_len = 2048;
    r.vram_budget = 4 * kGiB;
    auto p = plan_memory(r);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().to_string();
    EXPECT_GT(p->vocab_chunk, 0) << name;
    EXPECT_LT(p->vocab_chunk, r.config.vocab_size) << name;
    EXPECT_LE(p->device_bytes, 4 * kGiB) << name;
    EXPECT_GE(p->host_bytes, p->head_bytes) << name;
    EXPECT_NE(p->to_string().find("head streamed"), std::string::npos) << p->to_string();
    std::printf("%s at --vram 4GiB, 8 x 2048:\n%s\n", name, p->to_string().c_str());
    r.vram_budget = 16 * kGiB;
    auto big = plan_memory(r);
    ASSERT_TRUE(big.ok()) << name;
    EXPECT_EQ(big->vocab_chunk, 0) << name;
  }
  // Too small even with the head streamed: refused, naming it.
  PlanRequest tiny;
  tiny.config = fixture("gemma-3-4b-it-text.json");
  tiny.batch = 8;
  tiny.seq_len = 2048;
  tiny.vram_budget = 1 * kGiB;
  auto refused = plan_memory(tiny);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("head streamed"), std::string::npos) << refused.status().message();
}

}  // namespace
}  // namespace lema::engine

namespace lema::engine {
namespace {

// An NF4 base (lema convert --quant nf4, bf16 norms): host memory and slots
// hold the stored bytes, the device adds one bf16 layer and the chunk's
// temporaries for the dequantization; no graphs are kept.
TEST(MemoryPlannerQuant, Nf4LayersAreCountedAsStored) {
  // 7B projections: 4 x 4096^2 + 3 x 4096 x 11008 = 202,375,168 weights;
  // codes half a byte each, an fp32 absmax per 64; two bf16 norms.
  const uint64_t stored = 202375168ull / 2 + 202375168ull / 64 * 4 + 2 * 4096 * 2;
  EXPECT_EQ(stored, 113852416ull);
  PlanRequest plain = request_7b(8, 2048, 6 * kGiB);
  plain.device_memory = 80 * kGiB;
  PlanRequest nf4 = plain;
  nf4.stored_layer_bytes = stored;
  nf4.quant = "nf4";
  auto p = plan_memory(plain);
  auto q = plan_memory(nf4);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(q->layer_bytes, stored);
  // One bf16 layer (404,766,720 bytes) + 4M weights x 20 bytes of temporaries.
  EXPECT_EQ(q->dequant_bytes, 404766720ull + (4ull << 20) * 20);
  EXPECT_EQ(p->dequant_bytes, 0u);
  EXPECT_GT(q->resident_layers, p->resident_layers);
  EXPECT_EQ(q->kept_graph_layers, 0);
  EXPECT_LT(q->host_bytes, p->host_bytes);
  EXPECT_LE(q->device_bytes, 6 * kGiB);
  EXPECT_NE(q->to_string().find("nf4 as stored"), std::string::npos) << q->to_string();
  // Inference the same way.
  InferenceRequest ir;
  ir.config = llama2_7b();
  ir.vram_budget = 4 * kGiB;
  ir.stored_layer_bytes = stored;
  ir.quant = "nf4";
  auto inf = plan_inference_memory(ir);
  ASSERT_TRUE(inf.ok()) << inf.status().to_string();
  EXPECT_EQ(inf->layer_bytes, stored);
  EXPECT_GT(inf->dequant_bytes, 0u);
  EXPECT_LE(inf->device_bytes, 4 * kGiB);
}

// Issue 20's moonshot: Llama-2-70B's shape with an NF4 base, LoRA r=16 on all
// seven projections (207M parameters: 3.3 GB of fp32 state, more than the
// budget's share), trains at 8 x 2048 within --vram 8GiB: the state lives in
// pinned host memory, the plan fits and says so.
TEST(MemoryPlannerQuant, Llama70bNf4FitsEightGiB) {
  auto c = model_preset("llama2-70b");
  ASSERT_TRUE(c.ok());
  // Projections 2 x 8192^2 + 2 x 8192 x 1024 + 3 x 8192 x 28672 = 855,638,016
  // weights: codes half a byte, an fp32 absmax per 64; two bf16 norms.
  const uint64_t weights = 855638016ull;
  EXPECT_EQ(layer_weight_bytes(*c, 2), 2 * (weights + 2 * 8192));
  EXPECT_EQ(lora_parameter_count(*c, 16, 7), 207093760ull);
  PlanRequest r;
  r.config = *c;
  r.batch = 8;
  r.seq_len = 2048;
  r.vram_budget = 8 * kGiB;
  r.device_memory = 139 * kGiB;
  r.stored_layer_bytes = weights / 2 + weights / 64 * 4 + 2 * 8192 * 2;
  r.quant = "nf4";
  auto p = plan_memory(r);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_LE(p->device_bytes, 8 * kGiB);
  EXPECT_TRUE(p->lora_on_host) << p->to_string();
  EXPECT_NE(p->to_string().find("nf4 as stored"), std::string::npos) << p->to_string();
  std::printf("llama2-70b nf4 at --vram 8GiB, 8 x 2048:\n%s\n", p->to_string().c_str());
}

}  // namespace
}  // namespace lema::engine
