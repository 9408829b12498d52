// The LongRoPE attention factor that the decoder applies and the GGUF
// export writes (one computation, common/formats/rope_scaling.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "common/formats/model_presets.h"
#include "common/formats/rope_scaling.h"

namespace lema {
namespace {

TEST(RopeScaling, LongropeAttentionFactor) {
  ModelConfig c = *model_preset("tiny-phi3");
  ASSERT_EQ(c.rope_scaling.type, RopeScalingType::kLongrope);
  // No factor in the config: max_position / original = 512 / 20.
  EXPECT_DOUBLE_EQ(longrope_attention_factor(c), std::sqrt(1 + std::log(512.0 / 20.0) / std::log(20.0)));
  // Phi-3.5-mini (131072 positions, originally 4096): the 1.1902380714238083
  // that transformers computes and llama.cpp's converter writes for it.
  c.max_position_embeddings = 131072;
  c.rope_scaling.original_max_position_embeddings = 4096;
  EXPECT_NEAR(longrope_attention_factor(c), 1.1902380714238083, 1e-12);
  // A factor the config gives wins over the lengths; <= 1 scales nothing.
  c.rope_scaling.factor_given = true;
  c.rope_scaling.factor = 1.0;
  EXPECT_EQ(longrope_attention_factor(c), 1.0);
  c.rope_scaling.factor = 4.0;
  EXPECT_DOUBLE_EQ(longrope_attention_factor(c), std::sqrt(1 + std::log(4.0) / std::log(4096.0)));
  // An attention_factor the config gives is taken as is.
  c.rope_scaling.attention_factor = 0.75;
  EXPECT_EQ(longrope_attention_factor(c), 0.75);
  // Other scalings leave cos and sin alone.
  c.rope_scaling.type = RopeScalingType::kLinear;
  EXPECT_EQ(longrope_attention_factor(c), 1.0);
}

}  // namespace
}  // namespace lema
