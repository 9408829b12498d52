// Every path of the `lema` binary on a Phi-3 model (tiny-phi3: fused
// qkv_proj / gate_up_proj, LongRoPE, partial rotary): model init, convert,
// inspect, train resident and streamed (identical adapters), the PEFT names
// in the adapter, --targets refusals, debug step with generation, merge (the
// output keeps phi3's class and keys and reads back with the same logits).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <random>

#include "common/base/file_util.h"
#include "common/formats/model_config.h"
#include "common/formats/model_presets.h"
#include "common/formats/safetensors.h"
#include "tests/integration/lema_processes.h"

namespace {
// A --vram budget that streams tiny-phi3 (every layer through the ring).
const char* const kStreamVram = "1600KiB";
}  // namespace

namespace lema {
namespace {

using test::RunResult;
RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }

class Phi3Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lema_phi3_it_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    RunResult init = run_lema("model init --preset tiny-phi3 --out " + dir_ + "/init --seed 3");
    ASSERT_EQ(init.exit_code, 0) << init.output;
    // tiny-phi3 with 6 layers, so that a budget can stream it (2 layers fit
    // in the 2 slots a stream needs anyway).
    ModelConfig c = model_preset("tiny-phi3").value();
    c.n_layers = 6;
    c.layer_sliding.assign(6, true);
    ASSERT_TRUE(write_random_hf_model(c, dir_ + "/hf", 3).ok());
    // Sequences of 28 tokens: past the preset's original length (20), so
    // training runs the long factors.
    std::mt19937 rng(5);
    std::string text;
    for (int i = 0; i < 8; ++i) {
      std::vector<int> ids = {1};
      for (int t = 0; t < 27; ++t) ids.push_back(3 + static_cast<int>(rng() % 500));
      text += nlohmann::json({{"input_ids", ids}, {"labels", ids}}).dump() + "\n";
    }
    data_ = dir_ + "/train.jsonl";
    ASSERT_TRUE(write_file_atomic(data_, text).ok());
  }
  void TearDown() override { (void)remove_all(dir_); }

  std::string dir_, data_;
};

TEST_F(Phi3Cli, EveryPath) {
  // model init's config keeps Phi3Config's keys.
  const ModelConfig c = load_model_config(dir_ + "/init/config.json").value();
  EXPECT_EQ(c.family, ModelFamily::kPhi3);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kLongrope);

  const std::string file = dir_ + "/m.lema.safetensors";
  RunResult conv = run_lema("convert " + dir_ + "/hf -o " + file);
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  RunResult insp = run_lema("inspect " + file);
  ASSERT_EQ(insp.exit_code, 0) << insp.output;
  EXPECT_NE(insp.output.find("Phi-3 family (Phi3ForCausalLM)"), std::string::npos) << insp.output;
  EXPECT_NE(insp.output.find("self_attn.qkv_proj.weight"), std::string::npos) << insp.output;

  std::string args = "train --model " + file + " --data " + data_ +
                           " --seed 5 --batch 4 --micro-batch 1 --seq-len 28 --lora-r 4 --threads 1 --steps 3 ";
  // The default targets (the Llama layout's q/k/v/o) are refused for Phi-3,
  // naming its own projections; "all" is its four.
  RunResult refused = run_lema(args + "--out " + dir_ + "/no");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("qkv_proj"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("phi3"), std::string::npos) << refused.output;
  refused = run_lema(args + "--out " + dir_ + "/no --targets q_proj,v_proj");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("'q_proj'"), std::string::npos) << refused.output;
  args += "--targets all --device cpu ";  // the budget is sized for the CPU (no CUDA slack)
  RunResult mem = run_lema(args + "--out " + dir_ + "/mem");
  ASSERT_EQ(mem.exit_code, 0) << mem.output;
  EXPECT_NE(mem.output.find("qkv_proj,o_proj,gate_up_proj,down_proj"), std::string::npos) << mem.output;
  RunResult ram = run_lema(args + "--out " + dir_ + "/ram --vram " + kStreamVram);
  ASSERT_EQ(ram.exit_code, 0) << ram.output;
  EXPECT_NE(ram.output.find("memory plan: mode ram"), std::string::npos) << ram.output;
  const auto adapter = read_file(dir_ + "/mem/adapter/adapter_model.safetensors");
  ASSERT_TRUE(adapter.ok());
  EXPECT_TRUE(*read_file(dir_ + "/ram/adapter/adapter_model.safetensors") == *adapter);
  // PEFT's module names for the fused projections.
  auto st = SafetensorsReader::open(dir_ + "/mem/adapter/adapter_model.safetensors");
  ASSERT_TRUE(st.ok());
  EXPECT_NE((*st)->find("base_model.model.model.layers.1.self_attn.qkv_proj.lora_B.weight"), nullptr);
  EXPECT_NE((*st)->find("base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight"), nullptr);
  EXPECT_EQ((*st)->find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), nullptr);
  const auto cfg = nlohmann::json::parse(*read_file(dir_ + "/mem/adapter/adapter_config.json"));
  EXPECT_NE(cfg.dump().find("gate_up_proj"), std::string::npos) << cfg.dump();

  // debug step with the trained adapter; generation crosses the original length.
  std::vector<int> prompt = {1, 17, 250, 6, 9, 33, 101, 40, 7, 300, 12, 90, 45, 7, 200, 11};
  const std::string batch = dir_ + "/batch.json";
  std::vector<int> ids(prompt.begin(), prompt.end());
  ASSERT_TRUE(write_file_atomic(batch, nlohmann::json({{"input_ids", {ids}}, {"labels", {ids}},
                                                       {"prompt_ids", {prompt}}}).dump())
                  .ok());
  RunResult dbg = run_lema("debug step --model " + file + " --adapter " + dir_ + "/mem/adapter --batch " + batch +
                           " --out " + dir_ + "/dbg.safetensors --generate 8");
  ASSERT_EQ(dbg.exit_code, 0) << dbg.output;

  // Merge: the output keeps model_type phi3 and the longrope keys, and lema
  // reads it back with the logits of base + adapter.
  RunResult merge = run_lema("merge --base " + dir_ + "/hf --adapter " + dir_ + "/mem/adapter --out " + dir_ +
                             "/merged --dtype fp32");
  ASSERT_EQ(merge.exit_code, 0) << merge.output;
  const auto merged_cfg = nlohmann::json::parse(*read_file(dir_ + "/merged/config.json"));
  EXPECT_EQ(merged_cfg["model_type"], "phi3");
  EXPECT_EQ(merged_cfg["rope_scaling"]["long_factor"].size(), 6u);
  EXPECT_EQ(merged_cfg["num_hidden_layers"], 6);
  EXPECT_EQ(merged_cfg["original_max_position_embeddings"], 20);
  EXPECT_EQ(merged_cfg["partial_rotary_factor"], 0.75);
  RunResult back = run_lema("debug step --model " + dir_ + "/merged --batch " + batch + " --out " + dir_ +
                            "/back.safetensors");
  ASSERT_EQ(back.exit_code, 0) << back.output;
  auto a = SafetensorsReader::open(dir_ + "/dbg.safetensors");
  auto b = SafetensorsReader::open(dir_ + "/back.safetensors");
  ASSERT_TRUE(a.ok() && b.ok());
  const TensorInfo* la = (*a)->find("logits");
  const TensorInfo* lb = (*b)->find("logits");
  ASSERT_TRUE(la != nullptr && lb != nullptr);
  ASSERT_EQ(la->shape, lb->shape);
  ASSERT_EQ(la->dtype, DType::kF32);
  const float* pa = reinterpret_cast<const float*>((*a)->data(*la));
  const float* pb = reinterpret_cast<const float*>((*b)->data(*lb));
  double worst = 0;
  for (int64_t i = 0; i < la->numel(); ++i) worst = std::max(worst, static_cast<double>(std::abs(pa[i] - pb[i])));
  EXPECT_LT(worst, 1e-4);
}

}  // namespace
}  // namespace lema
