// The shared bounds table (common/base/bounds.h): edges, open ends, values
// that a double cannot tell apart from an in-range one, and names.
#include "common/base/bounds.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace lema {
namespace {

TEST(Bounds, EdgesAndOpenEnds) {
  EXPECT_TRUE(check_bound("batch", int64_t(1)).ok());
  EXPECT_TRUE(check_bound("batch", int64_t(65536)).ok());
  EXPECT_FALSE(check_bound("batch", int64_t(0)).ok());
  EXPECT_FALSE(check_bound("batch", int64_t(65537)).ok());
  EXPECT_EQ(check_bound("batch", int64_t(0)).message(), "must be in [1, 65536] (got 0)");
  // lr is open at both ends, lora_alpha at its low end.
  EXPECT_FALSE(check_bound("lr", 0.0).ok());
  EXPECT_FALSE(check_bound("lr", 1.0).ok());
  EXPECT_TRUE(check_bound("lr", 2e-4).ok());
  EXPECT_EQ(check_bound("lora_alpha", -8.0).message(), "must be in (0, 1000000] (got -8)");
  EXPECT_FALSE(check_bound("lora_alpha", 0.0).ok());
  EXPECT_FALSE(check_bound("lora_dropout", std::nan("")).ok());
  EXPECT_FALSE(check_bound("lr", std::numeric_limits<double>::infinity()).ok());
}

TEST(Bounds, HugeIntegersAreRefusedExactly) {
  EXPECT_FALSE(check_bound("steps", std::numeric_limits<int64_t>::max()).ok());
  EXPECT_FALSE(check_bound("priority", std::numeric_limits<int64_t>::min()).ok());
  EXPECT_FALSE(check_bound("vram", std::numeric_limits<uint64_t>::max()).ok());
  EXPECT_TRUE(check_bound("vram", uint64_t(80) << 30).ok());
  EXPECT_EQ(check_bound("steps", std::numeric_limits<int64_t>::max()).message(),
            "must be in [0, 1000000000] (got 9223372036854775807)");
}

TEST(Bounds, BatchShape) {
  EXPECT_TRUE(check_batch_shape(8, 0, 512).ok());
  EXPECT_TRUE(check_batch_shape(8, 4, 512).ok());
  Status s = check_batch_shape(4, 3, 512);
  EXPECT_NE(s.message().find("micro_batch must be 0 (auto) or divide batch"), std::string::npos) << s.to_string();
  EXPECT_FALSE(check_batch_shape(4, 8, 512).ok());
  s = check_batch_shape(65536, 1, 65536);
  EXPECT_NE(s.message().find("batch x seq_len"), std::string::npos) << s.to_string();
  s = check_batch_shape(int64_t(1) << 31, 1, 512);
  EXPECT_EQ(s.message().rfind("batch: must be in", 0), 0u) << s.to_string();
}

TEST(Bounds, Names) {
  EXPECT_TRUE(check_name("lema-reply 7b", true).ok());
  EXPECT_TRUE(check_name("", false).ok());
  EXPECT_EQ(check_name("", true).message(), "must not be empty");
  EXPECT_FALSE(check_name("a\x1b[2J", true).ok());
  EXPECT_FALSE(check_name("a\nb", true).ok());
  EXPECT_FALSE(check_name(std::string("a\0b", 3), true).ok());
  EXPECT_FALSE(check_name("a\x7f", true).ok());
  EXPECT_TRUE(check_name("caf\xc3\xa9", true).ok());  // UTF-8 is not a control character
}

}  // namespace
}  // namespace lema
