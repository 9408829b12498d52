// PEFT adapter import (export -> import -> export byte-identical, PEFT key
// variants, refusals) and lema merge (logits of the merged model equal base +
// adapter, sharded output readable by our HF import and convert, bad inputs
// leave no output directory).
#include "engine/merge.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/formats/model_config.h"
#include "common/formats/model_presets.h"
#include "common/formats/safetensors.h"
#include "engine/checkpoint.h"
#include "engine/layer_source.h"
#include "engine/peft_adapter.h"

namespace lema::engine {
namespace {

std::vector<std::string>& temp_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

// Removes every temp dir when the test program ends.
class TempDirCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& d : temp_dirs()) (void)remove_all(d);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TempDirCleanup);

std::string temp_dir(const std::string& name) {
  const std::string dir = "/tmp/lema_merge_test_" + std::to_string(::getpid()) + "_" + name;
  (void)remove_all(dir);
  EXPECT_TRUE(make_dirs(dir).ok());
  temp_dirs().push_back(dir);
  return dir;
}

// Every tensor of an HF directory as fp32 CPU tensors.
TensorMap read_hf(const std::string& dir) {
  auto model = HfModel::open(dir);
  EXPECT_TRUE(model.ok()) << model.status().to_string();
  TensorMap map;
  for (const auto& ref : model.value()->tensors()) {
    EXPECT_EQ(ref.info.dtype, DType::kF32);
    map[ref.info.name] = at::from_blob(const_cast<uint8_t*>(ref.data()), ref.info.shape, at::kFloat).clone();
  }
  return map;
}

// Logits [1, T, V] of a model (optionally with an adapter) for fixed ids.
at::Tensor logits_of(const ModelConfig& c, const TensorMap& tensors, const LoraAdapter* adapter) {
  at::NoGradGuard ng;
  auto src = InMemoryLayerSource::create(c, tensors, at::kFloat, at::kCPU);
  EXPECT_TRUE(src.ok());
  const int64_t t = 9;
  const at::Tensor ids = at::arange(t, at::TensorOptions().dtype(at::kLong)).mul(37).remainder(c.vocab_size).view({1, t});
  LayerContext ctx;
  ctx.config = &c;
  std::tie(ctx.cos, ctx.sin) = Rope(c).cos_sin(t, at::kFloat, at::kCPU);
  at::Tensor x = embed_tokens(ids, src.value()->head(), c);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerLora lora;
    if (adapter) lora = adapter->layer(l, at::kFloat, false);
    x = decoder_layer_forward(x, src.value()->acquire(l).value(), lora, ctx);
  }
  return head_logits(x, src.value()->head(), c);
}

struct MergeFixture {
  std::string root, base, adapter;
  ModelConfig config;
  std::unique_ptr<LoraAdapter> lora;
};

MergeFixture make_setup(const std::string& name, LoraConfig lc = {}) {
  MergeFixture s;
  s.root = temp_dir(name);
  s.base = path_join(s.root, "base");
  s.adapter = path_join(s.root, "adapter");
  s.config = model_preset("tiny").value();
  EXPECT_TRUE(write_random_hf_model(s.config, s.base, 3).ok());
  EXPECT_TRUE(write_file_atomic(path_join(s.base, "tokenizer.json"), "{\"fake\": true}\n").ok());
  lc.r = 4;
  lc.alpha = 16;
  s.lora = std::make_unique<LoraAdapter>(LoraAdapter::init(s.config, lc, 5, at::kFloat, at::kCPU));
  at::Generator gen = at::detail::createCPUGenerator(8);
  at::NoGradGuard ng;
  for (int64_t l = 0; l < s.config.n_layers; ++l) {
    for (LoraTarget t : lc.targets) s.lora->b(l, t).normal_(0.0, 0.05, gen);
  }
  EXPECT_TRUE(save_adapter(s.adapter, *s.lora, s.base).ok());
  return s;
}

void patch_config(const std::string& dir, const std::function<void(nlohmann::json&)>& fn) {
  const std::string path = path_join(dir, "adapter_config.json");
  nlohmann::json j = nlohmann::json::parse(read_file(path).value());
  fn(j);
  ASSERT_TRUE(write_file_atomic(path, j.dump(2)).ok());
}

std::string copy_adapter(const MergeFixture& s, const std::string& name) {
  const std::string dir = path_join(s.root, name);
  EXPECT_TRUE(make_dirs(dir).ok());
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    EXPECT_TRUE(write_file_atomic(path_join(dir, f), read_file(path_join(s.adapter, f)).value()).ok());
  }
  return dir;
}

TEST(PeftAdapter, ExportImportExportIsByteIdentical) {
  MergeFixture s = make_setup("roundtrip");
  auto imported = load_peft_adapter(s.adapter, s.config, at::kFloat, at::kCPU);
  ASSERT_TRUE(imported.ok()) << imported.status().to_string();
  const std::string again = path_join(s.root, "again");
  ASSERT_TRUE(save_adapter(again, *imported.value(), s.base).ok());
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    EXPECT_EQ(read_file(path_join(s.adapter, f)).value(), read_file(path_join(again, f)).value()) << f;
  }
  EXPECT_EQ(peft_base_model(s.adapter).value(), s.base);
}

TEST(PeftAdapter, AcceptsAdapterNameInKeysAndOtherDtypes) {
  MergeFixture s = make_setup("default_keys");
  // Rewrite the weights with ".default" in every key, as bf16.
  auto reader = SafetensorsReader::open(path_join(s.adapter, "adapter_model.safetensors")).value();
  SafetensorsWriter w;
  std::vector<at::Tensor> data;
  for (const auto& info : reader->tensors()) {
    std::string name = info.name;
    name.replace(name.find(".weight"), 7, ".default.weight");
    ASSERT_TRUE(w.add_tensor(name, DType::kBF16, info.shape).ok());
    data.push_back(at::from_blob(const_cast<uint8_t*>(reader->data(info)), info.shape, at::kFloat).to(at::kBFloat16));
  }
  const std::string dir = copy_adapter(s, "bf16");
  ASSERT_TRUE(w.open(path_join(dir, "adapter_model.safetensors")).ok());
  size_t i = 0;
  for (const auto& info : reader->tensors()) {
    std::string name = info.name;
    name.replace(name.find(".weight"), 7, ".default.weight");
    ASSERT_TRUE(w.write_tensor(name, data[i].data_ptr(), data[i].nbytes()).ok());
    ++i;
  }
  ASSERT_TRUE(w.commit().ok());
  auto imported = load_peft_adapter(dir, s.config, at::kFloat, at::kCPU);
  ASSERT_TRUE(imported.ok()) << imported.status().to_string();
  EXPECT_TRUE(at::equal(imported.value()->b(1, LoraTarget::kDown), s.lora->b(1, LoraTarget::kDown).to(at::kBFloat16).to(at::kFloat)));
}

TEST(PeftAdapter, RefusesUnsupportedSettingsWithTheirName) {
  MergeFixture s = make_setup("refuse");
  struct Case { const char* key; nlohmann::json value; };
  const std::vector<Case> cases = {{"use_dora", true},
                                   {"bias", "all"},
                                   {"modules_to_save", nlohmann::json::array({"lm_head"})},
                                   {"rank_pattern", {{"q_proj", 8}}},
                                   {"alpha_pattern", {{"q_proj", 8}}},
                                   {"peft_type", "IA3"},
                                   {"target_modules", nlohmann::json::array({"q_proj", "embed_tokens"})}};
  for (const Case& c : cases) {
    const std::string dir = copy_adapter(s, std::string("bad_") + c.key);
    patch_config(dir, [&](nlohmann::json& j) { j[c.key] = c.value; });
    auto r = load_peft_adapter(dir, s.config, at::kFloat, at::kCPU);
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_NE(r.status().message().find(c.key == std::string("target_modules") ? "embed_tokens" : c.key),
              std::string::npos)
        << r.status().to_string();
  }
  // Empty patterns are fine (PEFT writes them by default).
  const std::string ok_dir = copy_adapter(s, "empty_patterns");
  patch_config(ok_dir, [](nlohmann::json& j) {
    j["rank_pattern"] = nlohmann::json::object();
    j["alpha_pattern"] = nlohmann::json::object();
    j["use_dora"] = false;
  });
  EXPECT_TRUE(load_peft_adapter(ok_dir, s.config, at::kFloat, at::kCPU).ok());
}

TEST(Merge, MergedLogitsEqualBasePlusAdapter) {
  MergeFixture s = make_setup("logits");
  MergeOptions o;
  o.base = s.base;
  o.adapter = s.adapter;
  o.out = path_join(s.root, "merged");
  o.show_progress = false;
  auto stats = merge_adapter(o);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats.value().n_shards, 1);
  EXPECT_EQ(stats.value().n_merged, s.config.n_layers * 7);
  EXPECT_TRUE(path_exists(path_join(o.out, "model.safetensors")));
  EXPECT_TRUE(path_exists(path_join(o.out, "generation_config.json")));
  EXPECT_EQ(read_file(path_join(o.out, "tokenizer.json")).value(), "{\"fake\": true}\n");
  const at::Tensor ref = logits_of(s.config, read_hf(s.base), s.lora.get());
  const at::Tensor merged = logits_of(s.config, read_hf(o.out), nullptr);
  const at::Tensor base_only = logits_of(s.config, read_hf(s.base), nullptr);
  const double diff = (ref - merged).abs().max().item<double>();
  EXPECT_LE(diff, 1e-5);
  // The adapter matters: otherwise the comparison proves nothing.
  EXPECT_GT((ref - base_only).abs().max().item<double>(), 1e-2);
  std::printf("merged vs base+adapter max |logit diff| = %.3g\n", diff);
}

TEST(Merge, ShardedBf16OutputIsReadableAndConvertible) {
  MergeFixture s = make_setup("sharded");
  MergeOptions o;
  o.base = s.base;
  o.adapter = s.adapter;
  o.out = path_join(s.root, "merged");
  o.dtype = DType::kBF16;
  o.shard_bytes = 40000;  // several shards for the tiny model
  o.show_progress = false;
  auto stats = merge_adapter(o);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_GT(stats.value().n_shards, 2);
  const nlohmann::json index = nlohmann::json::parse(read_file(path_join(o.out, "model.safetensors.index.json")).value());
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), stats.value().total_bytes);
  char first[64];
  std::snprintf(first, sizeof(first), "model-00001-of-%05d.safetensors", stats.value().n_shards);
  EXPECT_TRUE(path_exists(path_join(o.out, first)));
  const nlohmann::json cfg = nlohmann::json::parse(read_file(path_join(o.out, "config.json")).value());
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  auto model = HfModel::open(o.out);
  ASSERT_TRUE(model.ok()) << model.status().to_string();
  EXPECT_EQ(model.value()->config().n_layers, s.config.n_layers);
  const std::string layer_file = path_join(s.root, "merged.lema.safetensors");
  auto conv = convert_hf_to_layer_file(o.out, layer_file, {});
  ASSERT_TRUE(conv.ok()) << conv.status().to_string();
  EXPECT_TRUE(LayerFile::open(layer_file).ok());
}

// A layer-file base (config only in its metadata, no tokenizer beside it):
// the merged directory equals the merge of the HF base tensor for tensor,
// its logits equal base + adapter, and the tokenizer named in the options
// is copied.
TEST(Merge, LayerFileBaseMergesLikeItsHfDirectory) {
  MergeFixture s = make_setup("layer_file");
  const std::string lf_dir = path_join(s.root, "lf");
  ASSERT_TRUE(make_dirs(lf_dir).ok());
  const std::string layer_file = path_join(lf_dir, "base.lema.safetensors");
  auto conv = convert_hf_to_layer_file(s.base, layer_file, {});
  ASSERT_TRUE(conv.ok()) << conv.status().to_string();

  MergeOptions o;
  o.adapter = s.adapter;
  o.show_progress = false;
  o.base = s.base;
  o.out = path_join(s.root, "from_hf");
  ASSERT_TRUE(merge_adapter(o).ok());
  o.base = layer_file;
  o.out = path_join(s.root, "from_layer_file");
  o.tokenizer = path_join(s.base, "tokenizer.json");
  uint64_t calls = 0, last_total = 0;
  o.on_tensor = [&](uint64_t done, uint64_t total) {
    ++calls;
    EXPECT_EQ(done, calls);
    last_total = total;
    return Status();
  };
  auto stats = merge_adapter(o);
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  EXPECT_EQ(stats.value().n_merged, s.config.n_layers * 7);
  EXPECT_EQ(calls, last_total);
  EXPECT_EQ(calls, model_tensor_specs(s.config).size());

  const TensorMap from_hf = read_hf(path_join(s.root, "from_hf"));
  const TensorMap from_lf = read_hf(o.out);
  ASSERT_EQ(from_hf.size(), from_lf.size());
  for (const auto& [name, t] : from_hf) {
    ASSERT_TRUE(from_lf.count(name)) << name;
    EXPECT_TRUE(at::equal(t, from_lf.at(name))) << name;
  }
  const at::Tensor ref = logits_of(s.config, read_hf(s.base), s.lora.get());
  const at::Tensor merged = logits_of(s.config, from_lf, nullptr);
  const double diff = (ref - merged).abs().max().item<double>();
  EXPECT_LE(diff, 1e-5);
  EXPECT_GT((ref - logits_of(s.config, read_hf(s.base), nullptr)).abs().max().item<double>(), 1e-2);
  std::printf("layer-file base: merged vs base+adapter max |logit diff| = %.3g\n", diff);

  // config.json rebuilt from the layer file's metadata parses to the same model.
  auto config = load_model_config(path_join(o.out, "config.json"));
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  EXPECT_EQ(config.value().n_layers, s.config.n_layers);
  EXPECT_EQ(config.value().hidden_size, s.config.hidden_size);
  EXPECT_EQ(config.value().vocab_size, s.config.vocab_size);
  EXPECT_EQ(config.value().tie_word_embeddings, s.config.tie_word_embeddings);
  EXPECT_EQ(read_file(path_join(o.out, "tokenizer.json")).value(), "{\"fake\": true}\n");
  EXPECT_TRUE(path_exists(path_join(o.out, "generation_config.json")));

  // A callback error stops the merge and leaves nothing behind.
  o.out = path_join(s.root, "stopped");
  o.on_tensor = [](uint64_t done, uint64_t) { return done == 3 ? Status::cancelled("stop here") : Status(); };
  auto stopped = merge_adapter(o);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), Status::Code::kCancelled);
  EXPECT_FALSE(path_exists(o.out));
  EXPECT_FALSE(path_exists(o.out + ".tmp." + std::to_string(::getpid())));
  // A tokenizer that is not there is named before any work.
  o.on_tensor = nullptr;
  o.tokenizer = path_join(s.root, "no_such_tokenizer.json");
  auto no_tok = merge_adapter(o);
  ASSERT_FALSE(no_tok.ok());
  EXPECT_NE(no_tok.status().message().find("no_such_tokenizer.json"), std::string::npos);
  EXPECT_FALSE(path_exists(o.out));
}

TEST(Merge, BadInputsGiveClearErrorsAndNoOutput) {
  MergeFixture s = make_setup("bad");
  MergeOptions o;
  o.base = s.base;
  o.show_progress = false;
  auto expect_fail = [&](const std::string& adapter, const std::string& needle) {
    o.adapter = adapter;
    o.out = path_join(s.root, "out_" + std::to_string(std::hash<std::string>()(needle)));
    auto r = merge_adapter(o);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(r.status().to_string().find(needle), std::string::npos) << r.status().to_string();
    EXPECT_FALSE(path_exists(o.out));
    EXPECT_FALSE(path_exists(o.out + ".tmp." + std::to_string(::getpid())));
  };
  // Missing files.
  expect_fail(path_join(s.root, "nowhere"), "adapter_config.json");
  const std::string no_weights = copy_adapter(s, "no_weights");
  ASSERT_TRUE(remove_all(path_join(no_weights, "adapter_model.safetensors")).ok());
  expect_fail(no_weights, "adapter_model.safetensors");
  // Rank in the config differs from the tensors.
  const std::string rank = copy_adapter(s, "rank");
  patch_config(rank, [](nlohmann::json& j) { j["r"] = 8; });
  expect_fail(rank, "rank 4");
  // An adapter made for another model shape.
  ModelConfig other = s.config;
  other.hidden_size = 32;
  other.head_dim = 8;
  LoraConfig lc;
  lc.r = 4;
  const LoraAdapter wrong = LoraAdapter::init(other, lc, 1, at::kFloat, at::kCPU);
  const std::string wrong_dir = path_join(s.root, "wrong_shape");
  ASSERT_TRUE(save_adapter(wrong_dir, wrong, "other").ok());
  expect_fail(wrong_dir, "another model shape");
  // Existing output directory is not overwritten.
  o.adapter = s.adapter;
  o.out = s.adapter;
  EXPECT_FALSE(merge_adapter(o).ok());
}

}  // namespace
}  // namespace lema::engine
