// Checkpoint and adapter files: round trip, PEFT keys and config, the
// config-hash refusal, newest-complete selection; and the data loader.
#include "engine/checkpoint.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/base/file_util.h"
#include "common/formats/safetensors.h"
#include "engine/data_loader.h"

namespace lema::engine {
namespace {

std::string temp_dir(const std::string& name) {
  const std::string dir = "/tmp/lema_engine_test_" + name + "_" + std::to_string(getpid());
  EXPECT_TRUE(remove_all(dir).ok());
  EXPECT_TRUE(make_dirs(dir).ok());
  return dir;
}

ModelConfig small_config() {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 20;
  return c;
}

TEST(Checkpoint, RoundTripAndRefusals) {
  const std::string root = temp_dir("ckpt");
  const ModelConfig c = small_config();
  LoraConfig lc;
  lc.r = 2;
  lc.targets = {LoraTarget::kQ, LoraTarget::kDown};
  LoraAdapter adapter = LoraAdapter::init(c, lc, 1, at::kFloat, at::kCPU);
  AdamW opt(adapter.parameters(), AdamWOptions{});
  for (at::Tensor& p : adapter.parameters()) p.mutable_grad() = at::randn_like(p);
  opt.step(0.1);
  CheckpointState st;
  st.step = 7;
  st.cursor = {2, 5};
  st.seed = 99;
  st.config_hash = "abc";
  auto dir = save_checkpoint(path_join(root, "checkpoints"), adapter, opt, st, "/models/x");
  ASSERT_TRUE(dir.ok()) << dir.status().to_string();
  EXPECT_TRUE(path_exists(path_join(*dir, "DONE")));

  // PEFT form.
  auto reader = SafetensorsReader::open(path_join(*dir, "adapter_model.safetensors"));
  ASSERT_TRUE(reader.ok());
  const TensorInfo* a = (*reader)->find("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 24}));
  const TensorInfo* b = (*reader)->find("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{16, 2}));
  const auto cfg = nlohmann::json::parse(read_file(path_join(*dir, "adapter_config.json")).value());
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"q_proj", "down_proj"}));

  // Load into a fresh adapter: identical masters and moments.
  LoraAdapter other = LoraAdapter::init(c, lc, 2, at::kFloat, at::kCPU);
  AdamW other_opt(other.parameters(), AdamWOptions{});
  auto loaded = load_checkpoint(*dir, "abc", other, other_opt);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->step, 7);
  EXPECT_EQ(loaded->cursor.epoch, 2);
  EXPECT_EQ(loaded->cursor.index, 5);
  EXPECT_EQ(other_opt.step_count(), 1);
  for (size_t i = 0; i < adapter.parameters().size(); ++i) {
    EXPECT_TRUE(at::equal(adapter.parameters()[i], other.parameters()[i]));
    EXPECT_TRUE(at::equal(opt.exp_avg_sq()[i], other_opt.exp_avg_sq()[i]));
  }

  // Another configuration is refused with both hashes named.
  auto refused = load_checkpoint(*dir, "def", other, other_opt);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("abc"), std::string::npos);
  EXPECT_NE(refused.status().message().find("def"), std::string::npos);

  // Newest complete checkpoint wins; one without DONE is skipped.
  st.step = 12;
  ASSERT_TRUE(save_checkpoint(path_join(root, "checkpoints"), adapter, opt, st, "x").ok());
  ASSERT_TRUE(make_dirs(path_join(root, "checkpoints/step-20")).ok());
  auto latest = find_latest_checkpoint(root);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(path_basename(*latest), "step-12");
  EXPECT_FALSE(find_latest_checkpoint(path_join(root, "checkpoints/step-20")).ok());
  EXPECT_FALSE(find_latest_checkpoint(temp_dir("empty")).ok());
  ASSERT_TRUE(remove_all(root).ok());
}

TEST(DataLoader, EpochsShuffleDeterministicallyAndPad) {
  std::vector<TokenizedExample> ex;
  for (int i = 0; i < 5; ++i) {
    TokenizedExample e;
    for (int k = 0; k <= i % 4; ++k) e.input_ids.push_back(10 + i);
    e.labels = e.input_ids;
    e.labels[0] = -100;
    ex.push_back(e);
  }
  DataLoader a(ex, 3, 4, 2, 4, 0), b(ex, 3, 4, 2, 4, 0);
  std::vector<int64_t> seen;
  for (int step = 0; step < 5; ++step) {
    auto ma = a.next_step(), mb = b.next_step();
    ASSERT_EQ(ma.size(), 2u);
    for (size_t m = 0; m < ma.size(); ++m) {
      EXPECT_TRUE(at::equal(ma[m].input_ids, mb[m].input_ids));
      EXPECT_LE(ma[m].input_ids.size(1), 4);  // cut to seq_len
      for (int64_t r = 0; r < ma[m].input_ids.size(0); ++r) {
        const int64_t id = ma[m].input_ids[r][0].item<int64_t>();
        seen.push_back(id);
        // Padding (id 0) carries no label.
        for (int64_t k = 0; k < ma[m].input_ids.size(1); ++k) {
          if (ma[m].input_ids[r][k].item<int64_t>() == 0) EXPECT_EQ(ma[m].labels[r][k].item<int64_t>(), -100);
        }
      }
    }
  }
  seen.resize(5);  // the first epoch: each example once
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int64_t>{10, 11, 12, 13, 14}));
  // A loader restarted at a saved cursor continues identically.
  DataLoader c(ex, 3, 4, 2, 4, 0);
  c.set_cursor(a.cursor());
  auto na = a.next_step(), nc = c.next_step();
  EXPECT_TRUE(at::equal(na[1].input_ids, nc[1].input_ids));
}

TEST(DataLoader, ReadsPretokenizedJsonlAndNamesBadLines) {
  const std::string dir = temp_dir("jsonl");
  const std::string path = path_join(dir, "d.jsonl");
  ASSERT_TRUE(write_file_atomic(path, "{\"input_ids\":[1,2,3],\"labels\":[-100,2,3]}\n\n{\"input_ids\":[4]}\n").ok());
  auto ex = read_tokenized_jsonl(path);
  ASSERT_TRUE(ex.ok()) << ex.status().to_string();
  ASSERT_EQ(ex->size(), 2u);
  EXPECT_EQ((*ex)[1].labels, std::vector<int32_t>{4});
  ASSERT_TRUE(write_file_atomic(path, "{\"input_ids\":[1]}\n{\"input_ids\":[1,2],\"labels\":[1]}\n").ok());
  auto bad = read_tokenized_jsonl(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d.jsonl:2"), std::string::npos) << bad.status().message();
  ASSERT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema::engine
