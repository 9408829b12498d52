// open_model_source: an HF directory and its layer file give the same
// weights; a layer file in the compute dtype is viewed, not copied; bad
// paths are named.
#include "engine/model_loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/base/file_util.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_presets.h"

namespace lema::engine {
namespace {

TEST(ModelLoader, HfDirAndLayerFileAgree) {
  const std::string dir = "/tmp/lema_model_loader_test_" + std::to_string(getpid());
  ASSERT_TRUE(remove_all(dir).ok());
  auto preset = model_preset("tiny");
  ASSERT_TRUE(preset.ok());
  ASSERT_TRUE(write_random_hf_model(*preset, dir + "/hf", 4).ok());
  ASSERT_TRUE(convert_hf_to_layer_file(dir + "/hf", dir + "/m.lema.safetensors", ConvertOptions{}).ok());

  auto hf = open_model_source(dir + "/hf", at::kFloat, at::kCPU);
  ASSERT_TRUE(hf.ok()) << hf.status().to_string();
  auto lf = open_model_source(dir + "/m.lema.safetensors", at::kFloat, at::kCPU);
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_EQ((*hf)->config().n_layers, (*lf)->config().n_layers);
  EXPECT_TRUE(at::equal((*hf)->head().embed, (*lf)->head().embed));
  EXPECT_TRUE(at::equal((*hf)->head().lm_head, (*lf)->head().lm_head));
  for (int64_t i = 0; i < (*hf)->config().n_layers; ++i) {
    const LayerWeights a = (*hf)->acquire(i).value(), b = (*lf)->acquire(i).value();
    for (LoraTarget t : family_lora_targets((*hf)->config())) EXPECT_TRUE(at::equal(a.proj(t), b.proj(t)));
    EXPECT_TRUE(at::equal(a.post_norm, b.post_norm));
    // One buffer per layer: q_proj follows input_norm in memory.
    EXPECT_EQ(static_cast<const char*>(b.q_proj.data_ptr()),
              static_cast<const char*>(b.input_norm.data_ptr()) + b.input_norm.nbytes());
  }
  // bf16 compute: converted once per layer, still one buffer.
  auto lf16 = open_model_source(dir + "/m.lema.safetensors", at::kBFloat16, at::kCPU);
  ASSERT_TRUE(lf16.ok());
  EXPECT_EQ((*lf16)->acquire(0).value().down_proj.scalar_type(), at::kBFloat16);

  auto missing = open_model_source(dir + "/nope", at::kFloat, at::kCPU);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nope"), std::string::npos);
  ASSERT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema::engine
