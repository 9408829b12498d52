#include "common/formats/hf_model.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/base/file_util.h"
#include "common/formats/model_layout.h"
#include "common/formats/model_presets.h"

namespace lema {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_hf_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

ModelConfig tiny() {
  auto c = model_preset("tiny");
  EXPECT_TRUE(c.ok());
  return *c;
}

// Writes the specs into `file` with values from the same generator as model init.
void write_tensors(const std::string& path, const std::vector<TensorSpec>& specs, uint64_t seed) {
  SafetensorsWriter w;
  for (const auto& s : specs) ASSERT_TRUE(w.add_tensor(s.name, DType::kF32, s.shape).ok());
  ASSERT_TRUE(w.open(path).ok());
  for (const auto& s : specs) {
    size_t n = 1;
    for (int64_t d : s.shape) n *= static_cast<size_t>(d);
    std::vector<float> v(n);
    random_normal_for_tensor(s.name, seed, 0.02, v.data(), n);
    ASSERT_TRUE(w.write_tensor(s.name, v.data(), n * 4).ok());
  }
  ASSERT_TRUE(w.commit().ok());
}

void expect_open_error(const std::string& dir, Status::Code code, std::vector<std::string> fragments) {
  auto m = HfModel::open(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), code) << m.status().to_string();
  for (const auto& f : fragments) {
    EXPECT_NE(m.status().message().find(f), std::string::npos) << m.status().message() << " lacks " << f;
  }
}

// The generator runs on every core (parallel_for over even-aligned ranges,
// each jumping the splitmix64 counter to its start): a value must not depend
// on how the range was split. Lengths that split differently (and an odd
// one) give the same prefix, and one thread's own loop, written here from
// the published splitmix64 and Box-Muller, gives the same values.
TEST(HfModel, RandomValuesDoNotDependOnTheSplit) {
  const size_t big = (5u << 20) + 3, small = 3u << 20;
  std::vector<float> a(big), b(small), one(1);
  random_normal_for_tensor("t", 9, 0.02, a.data(), a.size());
  random_normal_for_tensor("t", 9, 0.02, b.data(), b.size());
  random_normal_for_tensor("t", 9, 0.02, one.data(), one.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), small * 4), 0);
  EXPECT_EQ(a[0], one[0]);
  uint64_t h = 1469598103934665603ull;
  h = (h ^ static_cast<unsigned char>('t')) * 1099511628211ull;
  uint64_t state = 9 ^ h;
  auto next = [&state] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (size_t i = 0; i < big; i += 2) {
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    const double u2 = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    const double r = std::sqrt(-2.0 * std::log(u1));
    ASSERT_EQ(a[i], static_cast<float>(0.02 * r * std::cos(6.283185307179586 * u2))) << i;
    if (i + 1 < big) ASSERT_EQ(a[i + 1], static_cast<float>(0.02 * r * std::sin(6.283185307179586 * u2))) << i;
  }
}

TEST(HfModel, SingleFileFromModelInit) {
  std::string dir = temp_dir();
  ModelConfig c = tiny();
  ASSERT_TRUE(write_random_hf_model(c, dir, 42).ok());
  auto m = HfModel::open(dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->config().hidden_size, 64);
  EXPECT_EQ((*m)->config().n_kv_heads, 2);
  EXPECT_EQ((*m)->tensors().size(), 2u * 9 + 3);
  const auto* q = (*m)->find("model.layers.1.self_attn.k_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->info.shape, (std::vector<int64_t>{32, 64}));
  std::vector<float> want(32 * 64);
  random_normal_for_tensor(q->info.name, 42, 0.02, want.data(), want.size());
  EXPECT_EQ(std::memcmp(q->data(), want.data(), want.size() * 4), 0);
  // Sample statistics of the init: mean ~ 0, std ~ 0.02.
  const auto* e = (*m)->find(kEmbedName);
  const float* ev = reinterpret_cast<const float*>(e->data());
  double s = 0, s2 = 0;
  size_t n = static_cast<size_t>(e->info.numel());
  for (size_t i = 0; i < n; ++i) s += ev[i], s2 += double(ev[i]) * ev[i];
  EXPECT_NEAR(s / n, 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.001);
  const auto* norm = (*m)->find("model.layers.0.input_layernorm.weight");
  EXPECT_EQ(reinterpret_cast<const float*>(norm->data())[5], 1.0f);
  EXPECT_NE((*m)->find(kLmHeadName), nullptr);
  // Same seed, same bytes; another seed, other bytes.
  std::string dir2 = temp_dir(), dir3 = temp_dir();
  ASSERT_TRUE(write_random_hf_model(c, dir2, 42).ok());
  ASSERT_TRUE(write_random_hf_model(c, dir3, 43).ok());
  EXPECT_EQ(*read_file(dir + "/model.safetensors"), *read_file(dir2 + "/model.safetensors"));
  EXPECT_NE(*read_file(dir + "/model.safetensors"), *read_file(dir3 + "/model.safetensors"));
  EXPECT_TRUE(path_exists(dir + "/generation_config.json"));
  for (auto& d : {dir, dir2, dir3}) EXPECT_TRUE(remove_all(d).ok());
}

TEST(HfModel, ShardedWithIndex) {
  std::string dir = temp_dir();
  ModelConfig c = tiny();
  ASSERT_TRUE(write_file_atomic(dir + "/config.json", model_config_to_json(c)).ok());
  auto specs = model_tensor_specs(c);
  // Shard 1: embed + layer 0; shard 2: the rest (in a scrambled order).
  std::vector<TensorSpec> a(specs.begin(), specs.begin() + 10), b(specs.begin() + 10, specs.end());
  std::reverse(b.begin(), b.end());
  write_tensors(dir + "/model-00001-of-00002.safetensors", a, 5);
  write_tensors(dir + "/model-00002-of-00002.safetensors", b, 5);
  std::string index = "{\"metadata\":{\"total_size\":1},\"weight_map\":{";
  for (size_t i = 0; i < specs.size(); ++i) {
    index += (i ? "," : "") + std::string("\"") + specs[i].name + "\":\"model-0000" + (i < 10 ? "1" : "2") +
             "-of-00002.safetensors\"";
  }
  index += "}}";
  ASSERT_TRUE(write_file_atomic(dir + "/model.safetensors.index.json", index).ok());
  auto m = HfModel::open(dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->shards().size(), 2u);
  ASSERT_EQ((*m)->tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ((*m)->tensors()[i].info.name, specs[i].name);
  const auto* down = (*m)->find("model.layers.1.mlp.down_proj.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_NE(down->file->path().find("00002"), std::string::npos);
  std::vector<float> want(64 * 176);
  random_normal_for_tensor(down->info.name, 5, 0.02, want.data(), want.size());
  EXPECT_EQ(std::memcmp(down->data(), want.data(), want.size() * 4), 0);

  // An index that maps a tensor to the wrong shard names both.
  std::string bad = index;
  size_t p = bad.find("\"model.norm.weight\":\"model-00002");
  ASSERT_NE(p, std::string::npos);
  bad.replace(p, std::strlen("\"model.norm.weight\":\"model-00002"), "\"model.norm.weight\":\"model-00001");
  ASSERT_TRUE(write_file_atomic(dir + "/model.safetensors.index.json", bad).ok());
  expect_open_error(dir, Status::Code::kCorruption,
                    {"model.norm.weight", "model-00001-of-00002.safetensors"});
  // A shard that is missing.
  ASSERT_TRUE(remove_all(dir + "/model-00002-of-00002.safetensors").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/model.safetensors.index.json", index).ok());
  expect_open_error(dir, Status::Code::kNotFound, {"model-00002-of-00002.safetensors"});
  // A path outside the directory.
  ASSERT_TRUE(write_file_atomic(dir + "/model.safetensors.index.json",
                                R"({"weight_map":{"model.norm.weight":"../x.safetensors"}})")
                  .ok());
  expect_open_error(dir, Status::Code::kCorruption, {"../x.safetensors"});
  EXPECT_TRUE(remove_all(dir).ok());
}

TEST(HfModel, Refusals) {
  ModelConfig c = tiny();
  std::string dir = temp_dir();
  expect_open_error(dir, Status::Code::kNotFound, {"config.json"});
  ASSERT_TRUE(write_file_atomic(dir + "/config.json", model_config_to_json(c)).ok());
  expect_open_error(dir, Status::Code::kNotFound, {"model.safetensors"});
  ASSERT_TRUE(write_file_atomic(dir + "/pytorch_model.bin", "PK pickle").ok());
  expect_open_error(dir, Status::Code::kUnsupported, {"pytorch_model.bin", "safetensors"});
  ASSERT_TRUE(remove_all(dir + "/pytorch_model.bin").ok());

  auto specs = model_tensor_specs(c);
  // Missing tensor.
  std::vector<TensorSpec> missing(specs.begin(), specs.end() - 1);
  write_tensors(dir + "/model.safetensors", missing, 1);
  expect_open_error(dir, Status::Code::kInvalidArgument, {"lm_head.weight", "missing", "model.safetensors"});
  // Wrong shape.
  auto wrong = specs;
  wrong[3].shape = {33, 64};
  write_tensors(dir + "/model.safetensors", wrong, 1);
  expect_open_error(dir, Status::Code::kInvalidArgument,
                    {wrong[3].name, "[33, 64]", "config.json gives [32, 64]", "model.safetensors"});
  // Unexpected tensor (a bias).
  auto extra = specs;
  extra.push_back({"model.layers.0.self_attn.q_proj.bias", {64}});
  write_tensors(dir + "/model.safetensors", extra, 1);
  expect_open_error(dir, Status::Code::kUnsupported, {"q_proj.bias"});
  // Tied: a stored lm_head is ignored; rotary buffers too.
  ModelConfig tied = c;
  tied.tie_word_embeddings = true;
  ASSERT_TRUE(write_file_atomic(dir + "/config.json", model_config_to_json(tied)).ok());
  auto with_buffers = specs;
  with_buffers.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {8}});
  write_tensors(dir + "/model.safetensors", with_buffers, 1);
  auto m = HfModel::open(dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->find(kLmHeadName), nullptr);
  EXPECT_EQ((*m)->ignored().size(), 2u);
  // Truncated weights: the error names the file.
  auto bytes = read_file(dir + "/model.safetensors");
  ASSERT_TRUE(write_file_atomic(dir + "/model.safetensors", bytes->substr(0, bytes->size() - 100)).ok());
  expect_open_error(dir, Status::Code::kCorruption, {dir + "/model.safetensors"});
  expect_open_error(dir + "/nope", Status::Code::kNotFound, {"nope"});
  EXPECT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema

namespace lema {
namespace {

// A merged or converted model keeps its chat template, in either place
// transformers keeps one.
TEST(HfModel, SideFilesCarryTheChatTemplate) {
  std::string from = temp_dir(), to_dir = temp_dir(), to_file = temp_dir();
  ASSERT_TRUE(write_file_atomic(from + "/tokenizer.json", "{}").ok());
  ASSERT_TRUE(write_file_atomic(from + "/tokenizer_config.json", R"({"chat_template": "{{ messages }}"})").ok());
  ASSERT_TRUE(write_file_atomic(from + "/chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}").ok());
  ASSERT_TRUE(copy_hf_side_files(from, to_dir).ok());
  EXPECT_EQ(*read_file(to_dir + "/chat_template.jinja"), *read_file(from + "/chat_template.jinja"));
  EXPECT_EQ(*read_file(to_dir + "/tokenizer_config.json"), *read_file(from + "/tokenizer_config.json"));
  ASSERT_TRUE(copy_hf_side_files(from + "/tokenizer.json", to_file).ok());
  EXPECT_EQ(*read_file(to_file + "/chat_template.jinja"), *read_file(from + "/chat_template.jinja"));
  for (auto& d : {from, to_dir, to_file}) EXPECT_TRUE(remove_all(d).ok());
}

}  // namespace
}  // namespace lema
