// Quantized layer files (docs/FORMATS.md, "Quantized layers"): the stored
// layout, convert and `model init --quant` writing the same bytes, and
// damage refused naming the file and the tensor.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>

#include "common/base/file_util.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/formats/model_presets.h"
#include "common/formats/quant.h"

namespace lema {
namespace {

class LayerFileQuantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lema_lfq_XXXXXX";
    dir_ = mkdtemp(tmpl);
    config_ = model_preset("tiny").value();
  }
  void TearDown() override { EXPECT_TRUE(remove_all(dir_).ok()); }
  // Writes `bytes` as a file and opens it; the error message ("" when it opened).
  std::string open_error(const std::string& bytes, const std::string& name) {
    EXPECT_TRUE(write_file_atomic(dir_ + "/" + name, bytes).ok());
    auto r = LayerFile::open(dir_ + "/" + name, false);
    return r.ok() ? "" : r.status().message();
  }
  std::string dir_;
  ModelConfig config_;
};

TEST_F(LayerFileQuantTest, StoresTheProjectionsQuantizedAndTheRestAsIs) {
  const std::string path = dir_ + "/q.lema.safetensors";
  ASSERT_TRUE(write_random_layer_file(config_, path, 4, QuantType::kNf4, DType::kBF16).ok());
  auto lf = LayerFile::open(path, false);
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_EQ((*lf)->quant(), QuantType::kNf4);
  EXPECT_EQ((*lf)->header().metadata.at("lema.version"), "2");
  EXPECT_EQ((*lf)->header().metadata.at("lema.dtype"), "BF16");
  EXPECT_EQ((*lf)->embed().dtype, DType::kBF16);
  const auto& t = (*lf)->layer_tensors(1);
  ASSERT_EQ(t.size(), 9u + 7u);  // nine tensors, each projection with its absmax
  EXPECT_EQ(t[0].suffix, "input_layernorm.weight");
  EXPECT_EQ(t[0].dtype, DType::kBF16);
  EXPECT_EQ(t[1].suffix, "self_attn.q_proj.weight");
  EXPECT_EQ(t[1].dtype, DType::kU8);
  EXPECT_EQ(t[1].shape, (std::vector<int64_t>{config_.q_dim() * config_.hidden_size / 2}));
  EXPECT_EQ(t[2].suffix, "self_attn.q_proj.weight.absmax");
  EXPECT_EQ(t[2].shape, (std::vector<int64_t>{config_.q_dim() * config_.hidden_size / 64}));
  // About 4.5 bits per projection weight: a layer well under a third of bf16.
  uint64_t bf16_layer = 0;
  for (const auto& s : layer_tensor_suffixes(config_)) {
    int64_t n = 1;
    for (int64_t d : layer_tensor_shape(config_, s)) n *= d;
    bf16_layer += static_cast<uint64_t>(n) * 2;
  }
  EXPECT_LT((*lf)->layer_range(0).nbytes * 3, bf16_layer);

  ASSERT_TRUE(write_random_layer_file(config_, dir_ + "/i8.lema.safetensors", 4, QuantType::kInt8, DType::kF32).ok());
  auto i8 = LayerFile::open(dir_ + "/i8.lema.safetensors", false);
  ASSERT_TRUE(i8.ok()) << i8.status().to_string();
  EXPECT_EQ((*i8)->quant(), QuantType::kInt8);
  EXPECT_EQ((*i8)->layer_tensors(0)[1].shape, (std::vector<int64_t>{config_.q_dim(), config_.hidden_size}));
  EXPECT_EQ((*i8)->layer_tensors(0)[2].suffix, "self_attn.q_proj.weight.scale");

  ASSERT_TRUE(write_random_layer_file(config_, dir_ + "/f8.lema.safetensors", 4, QuantType::kFp8, DType::kF32).ok());
  auto f8 = LayerFile::open(dir_ + "/f8.lema.safetensors", false);
  ASSERT_TRUE(f8.ok()) << f8.status().to_string();
  EXPECT_EQ((*f8)->quant(), QuantType::kFp8);
  EXPECT_EQ((*f8)->layer_tensors(0)[1].shape, (std::vector<int64_t>{config_.q_dim(), config_.hidden_size}));
  EXPECT_EQ((*f8)->layer_tensors(0)[1].dtype, DType::kU8);
  EXPECT_EQ((*f8)->layer_tensors(0)[2].suffix, "self_attn.q_proj.weight.scale");

  // Unquantized, the writer still makes a version 1 file older lema reads.
  ASSERT_TRUE(write_random_layer_file(config_, dir_ + "/p.lema.safetensors", 4, QuantType::kNone, DType::kF32).ok());
  auto plain = LayerFile::open(dir_ + "/p.lema.safetensors", false);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->header().metadata.at("lema.version"), "1");
  EXPECT_EQ((*plain)->quant(), QuantType::kNone);
}

TEST_F(LayerFileQuantTest, ModelInitEqualsConvertOfTheHfModel) {
  ASSERT_TRUE(write_random_hf_model(config_, dir_ + "/hf", 6).ok());
  for (QuantType quant : {QuantType::kNone, QuantType::kNf4, QuantType::kNf4Dq, QuantType::kInt8, QuantType::kFp8}) {
    SCOPED_TRACE(quant_name(quant));
    ConvertOptions opt;
    opt.target = DType::kBF16;
    opt.quant = quant;
    ASSERT_TRUE(convert_hf_to_layer_file(dir_ + "/hf", dir_ + "/c.lema.safetensors", opt).ok());
    ASSERT_TRUE(write_random_layer_file(config_, dir_ + "/i.lema.safetensors", 6, quant, DType::kBF16).ok());
    EXPECT_EQ(read_file(dir_ + "/c.lema.safetensors").value(), read_file(dir_ + "/i.lema.safetensors").value());
  }
}

TEST_F(LayerFileQuantTest, DamageIsRefusedNamingTheTensor) {
  const std::string path = dir_ + "/q.lema.safetensors";
  ASSERT_TRUE(write_random_layer_file(config_, path, 4, QuantType::kNf4Dq, DType::kBF16).ok());
  const std::string bytes = read_file(path).value();
  ASSERT_EQ(open_error(bytes, "same.lema.safetensors"), "");

  // Truncated inside the layers: a tensor past the end is named.
  for (size_t cut : {bytes.size() / 2, bytes.size() - 1}) {
    const std::string e = open_error(bytes.substr(0, cut), "cut.lema.safetensors");
    EXPECT_NE(e.find("cut.lema.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("tensor '"), std::string::npos) << e;
  }
  // An unknown quantization type is refused by name.
  std::string other = bytes;
  size_t p = other.find("\"lema.quant\":\"nf4-dq\"");
  ASSERT_NE(p, std::string::npos);
  other.replace(p + std::strlen("\"lema.quant\":\""), 6, "nf5-dq");
  std::string e = open_error(other, "nf5.lema.safetensors");
  EXPECT_NE(e.find("unknown quantization type 'nf5-dq'"), std::string::npos) << e;
  // A companion stored with the wrong dtype (same size, so only the layout check sees it).
  std::string dtype = bytes;
  const std::string name = "\"model.layers.1.mlp.down_proj.weight.absmax_scale\"";
  p = dtype.find(name);
  ASSERT_NE(p, std::string::npos);
  p = dtype.find("\"F32\"", p);
  ASSERT_NE(p, std::string::npos);
  dtype.replace(p, 5, "\"I32\"");
  e = open_error(dtype, "dtype.lema.safetensors");
  EXPECT_NE(e.find("model.layers.1.mlp.down_proj.weight.absmax_scale"), std::string::npos) << e;
  EXPECT_NE(e.find("I32"), std::string::npos) << e;
  // A version 1 file cannot carry a quantization: old readers would misread it.
  std::string v1 = bytes;
  p = v1.find("\"lema.version\":\"2\"");
  ASSERT_NE(p, std::string::npos);
  v1[p + std::strlen("\"lema.version\":\"")] = '1';
  e = open_error(v1, "v1.lema.safetensors");
  EXPECT_NE(e.find("version 1"), std::string::npos) << e;
}

}  // namespace
}  // namespace lema
