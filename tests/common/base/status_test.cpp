#include "common/base/status.h"

#include <gtest/gtest.h>

namespace lema {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return Status::invalid_argument("value must be positive, got " + std::to_string(v));
  return v;
}

Status use(int v, int* out) {
  LEMA_ASSIGN_OR_RETURN(int x, parse_positive(v));
  *out = x * 2;
  return Status();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status().ok());
  Status s = Status::corruption("f.safetensors: tensor 'w': truncated");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.to_string(), "corruption: f.safetensors: tensor 'w': truncated");
  EXPECT_EQ(s.with_context("loading").message(), "loading: f.safetensors: tensor 'w': truncated");
}

TEST(Status, ResultPropagates) {
  int out = 0;
  EXPECT_TRUE(use(3, &out).ok());
  EXPECT_EQ(out, 6);
  Status s = use(-1, &out);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(out, 6);
}

}  // namespace
}  // namespace lema
