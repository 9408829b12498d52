#include "common/formats/layer_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>

#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/model_layout.h"
#include "common/formats/model_presets.h"

namespace lema {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_lf_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

class LayerFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir();
    auto c = model_preset("tiny");
    ASSERT_TRUE(c.ok());
    config_ = *c;
    ASSERT_TRUE(write_random_hf_model(config_, dir_ + "/hf", 9).ok());
  }
  void TearDown() override { EXPECT_TRUE(remove_all(dir_).ok()); }
  std::string dir_;
  ModelConfig config_;
};

// Checks the layout rules of docs/FORMATS.md against the source model.
void check_layout(const LayerFile& lf, const HfModel& src, std::optional<DType> target) {
  const ModelConfig& c = lf.config();
  EXPECT_EQ(c.hidden_size, src.config().hidden_size);
  EXPECT_EQ(lf.n_layers(), src.config().n_layers);
  EXPECT_EQ(lf.header().data_start % kLayerFileAlignment, 0u);
  // embed, then layers back to back, then norm, then lm_head.
  EXPECT_EQ(lf.embed().offset, lf.header().data_start);
  uint64_t cursor = lf.embed().offset + lf.embed().nbytes;
  for (int64_t i = 0; i < lf.n_layers(); ++i) {
    ByteRange r = lf.layer_range(i);
    EXPECT_EQ(r.offset, cursor) << "layer " << i;
    uint64_t sum = 0;
    const auto& ts = lf.layer_tensors(i);
    ASSERT_EQ(ts.size(), layer_tensor_suffixes(c).size());
    for (size_t k = 0; k < ts.size(); ++k) {
      EXPECT_EQ(ts[k].suffix, layer_tensor_suffixes(c)[k]);
      EXPECT_EQ(ts[k].offset, sum);
      EXPECT_EQ(ts[k].shape, layer_tensor_shape(c, ts[k].suffix));
      sum += ts[k].nbytes;
    }
    EXPECT_EQ(r.nbytes, sum);
    cursor += r.nbytes;
  }
  EXPECT_EQ(lf.final_norm().offset, cursor);
  cursor += lf.final_norm().nbytes;
  if (lf.lm_head()) {
    EXPECT_EQ(lf.lm_head()->offset, cursor);
    cursor += lf.lm_head()->nbytes;
  }
  EXPECT_EQ(cursor, lf.header().file_size);

  // Every tensor equals the source, bit for bit or through the reference cast.
  for (const auto& t : lf.header().tensors) {
    const HfModel::TensorRef* s = src.find(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    const uint8_t* got = lf.data() + t.offset;
    if (!target || *target == s->info.dtype) {
      ASSERT_EQ(t.nbytes, s->info.nbytes);
      ASSERT_EQ(std::memcmp(got, s->data(), t.nbytes), 0) << t.name;
    } else {
      ASSERT_EQ(*target, DType::kBF16);
      ASSERT_EQ(s->info.dtype, DType::kF32);
      const float* in = reinterpret_cast<const float*>(s->data());
      for (int64_t e = 0; e < t.numel(); ++e) {
        uint16_t h;
        std::memcpy(&h, got + 2 * e, 2);
        ASSERT_EQ(h, f32_to_bf16(in[e])) << t.name << "[" << e << "]";
      }
    }
  }
}

TEST_F(LayerFileTest, ConvertKeepIsBitIdentical) {
  ConvertOptions opt;
  opt.chunk_bytes = 1000;  // many chunks per tensor, not element-aligned boundaries of pages
  uint64_t last = 0, calls = 0;
  opt.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last);
    EXPECT_LE(done, total);
    last = done;
    ++calls;
  };
  auto st = convert_hf_to_layer_file(dir_ + "/hf", dir_ + "/m.lema.safetensors", opt);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_GT(calls, 100u);
  auto lf = LayerFile::open(dir_ + "/m.lema.safetensors");
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  auto src = HfModel::open(dir_ + "/hf");
  ASSERT_TRUE(src.ok());
  check_layout(**lf, **src, std::nullopt);
  EXPECT_EQ((*lf)->dtype(), DType::kF32);
  EXPECT_FALSE((*lf)->tied());
  EXPECT_EQ(st->bytes_written, (*lf)->header().file_size);
  EXPECT_EQ(st->largest_layer_bytes, (*lf)->layer_range(0).nbytes);
  // Header-only open (pread path) agrees with the mapped one.
  auto lf2 = LayerFile::open(dir_ + "/m.lema.safetensors", false);
  ASSERT_TRUE(lf2.ok());
  EXPECT_EQ((*lf2)->data(), nullptr);
  EXPECT_EQ((*lf2)->layer_range(1).offset, (*lf)->layer_range(1).offset);
  // The pread path returns the same bytes as the map.
  ByteRange r1 = (*lf2)->layer_range(1);
  std::vector<uint8_t> buf(r1.nbytes);
  ASSERT_TRUE((*lf2)->read_range(r1, buf.data()).ok());
  EXPECT_EQ(std::memcmp(buf.data(), (*lf)->data() + r1.offset, r1.nbytes), 0);
  EXPECT_FALSE((*lf2)->read_range({r1.offset, (*lf2)->header().file_size}, buf.data()).ok());
  // A plain safetensors reader opens it too (it is a valid safetensors file).
  auto plain = SafetensorsReader::open(dir_ + "/m.lema.safetensors");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->get()->metadata().at("lema.format"), "layer-file");
  EXPECT_EQ(plain->get()->metadata().at("format"), "pt");
}

TEST_F(LayerFileTest, ConvertToBf16IsTheReferenceCast) {
  ConvertOptions opt;
  opt.target = DType::kBF16;
  opt.chunk_bytes = 4096;
  ASSERT_TRUE(convert_hf_to_layer_file(dir_ + "/hf", dir_ + "/b.lema.safetensors", opt).ok());
  auto lf = LayerFile::open(dir_ + "/b.lema.safetensors");
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  auto src = HfModel::open(dir_ + "/hf");
  check_layout(**lf, **src, DType::kBF16);
  EXPECT_EQ((*lf)->dtype(), DType::kBF16);
  EXPECT_EQ((*lf)->config().torch_dtype, "bfloat16");
}

TEST_F(LayerFileTest, TiedEmbeddingsOmitLmHead) {
  ModelConfig tied = config_;
  tied.tie_word_embeddings = true;
  ASSERT_TRUE(write_random_hf_model(tied, dir_ + "/tied", 3).ok());
  ASSERT_TRUE(convert_hf_to_layer_file(dir_ + "/tied", dir_ + "/t.lema.safetensors", {}).ok());
  auto lf = LayerFile::open(dir_ + "/t.lema.safetensors");
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_TRUE((*lf)->tied());
  EXPECT_EQ((*lf)->lm_head(), nullptr);
  EXPECT_EQ((*lf)->header().metadata.at("lema.tied"), "true");
  auto src = HfModel::open(dir_ + "/tied");
  check_layout(**lf, **src, std::nullopt);
}

TEST_F(LayerFileTest, RejectsOtherFilesAndDamage) {
  // Converting onto a source shard is refused before anything is written.
  auto onto = convert_hf_to_layer_file(dir_ + "/hf", dir_ + "/hf/model.safetensors", {});
  ASSERT_FALSE(onto.ok());
  EXPECT_NE(onto.status().message().find("source model"), std::string::npos);
  ASSERT_TRUE(HfModel::open(dir_ + "/hf").ok());
  // A plain HF safetensors file is not a layer file.
  auto r = LayerFile::open(dir_ + "/hf/model.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a lema layer file"), std::string::npos);
  ASSERT_TRUE(convert_hf_to_layer_file(dir_ + "/hf", dir_ + "/m.lema.safetensors", {}).ok());
  auto bytes = read_file(dir_ + "/m.lema.safetensors");
  ASSERT_TRUE(bytes.ok());
  // Truncated anywhere: an error naming the file, never a crash.
  for (size_t cut : {size_t(0), size_t(5), size_t(100), bytes->size() / 2, bytes->size() - 1}) {
    ASSERT_TRUE(write_file_atomic(dir_ + "/cut.lema.safetensors", bytes->substr(0, cut)).ok());
    auto c = LayerFile::open(dir_ + "/cut.lema.safetensors");
    ASSERT_FALSE(c.ok()) << cut;
    EXPECT_NE(c.status().message().find("cut.lema.safetensors"), std::string::npos) << c.status().message();
  }
  // Metadata that lies about a layer range (same length, other digit).
  std::string bad = *bytes;
  size_t p = bad.find("\"lema.layer_ranges\":\"[[");
  ASSERT_NE(p, std::string::npos);
  size_t digit = p + std::strlen("\"lema.layer_ranges\":\"[[");
  bad[digit] = bad[digit] == '1' ? '2' : '1';
  ASSERT_TRUE(write_file_atomic(dir_ + "/bad.lema.safetensors", bad).ok());
  auto b = LayerFile::open(dir_ + "/bad.lema.safetensors");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("layer_ranges"), std::string::npos) << b.status().message();
  // A future version is refused with a hint.
  std::string future = *bytes;
  p = future.find("\"lema.version\":\"1\"");
  ASSERT_NE(p, std::string::npos);
  future[p + std::strlen("\"lema.version\":\"")] = '9';
  ASSERT_TRUE(write_file_atomic(dir_ + "/future.lema.safetensors", future).ok());
  auto f = LayerFile::open(dir_ + "/future.lema.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("convert the model again"), std::string::npos);
}

}  // namespace
}  // namespace lema
