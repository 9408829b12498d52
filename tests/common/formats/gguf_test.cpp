// GGUF writer, reader, quantizers and the arch table: write then read
// back (header, every value type, alignment, tensor offsets), the block
// encoders against bytes from tests/tools/gguf_quant_reference.py, the Q/K
// row permutation, and refusals (bad tensors, damaged files, unknown types).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/dtype.h"
#include "common/formats/gguf_arch.h"
#include "common/formats/gguf_quant.h"
#include "common/formats/gguf_reader.h"
#include "common/formats/model_presets.h"
#include "common/formats/gguf_writer.h"

namespace lema {
namespace {

std::string temp_path(const char* name) {
  char tmpl[] = "/tmp/lema_gguf_test_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return std::string(d) + "/" + name;
}

uint32_t u32_at(const std::string& bytes, size_t pos) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + pos, 4);
  return v;
}
uint64_t u64_at(const std::string& bytes, size_t pos) {
  uint64_t v;
  std::memcpy(&v, bytes.data() + pos, 8);
  return v;
}

std::string hex(const std::vector<uint8_t>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

TEST(GgufWriter, HeaderBytesFollowTheSpec) {
  const std::string path = temp_path("h.gguf");
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llama"));
  ASSERT_TRUE(w.add_tensor("t", GgmlType::kF32, {3}).ok());
  ASSERT_TRUE(w.open(path).ok());
  const float data[3] = {1, 2, 3};
  ASSERT_TRUE(w.write_tensor("t", data, sizeof(data)).ok());
  ASSERT_TRUE(w.commit().ok());
  const std::string b = *read_file(path);
  EXPECT_EQ(b.substr(0, 4), "GGUF");
  EXPECT_EQ(u32_at(b, 4), 3u);     // version
  EXPECT_EQ(u64_at(b, 8), 1u);     // tensors
  EXPECT_EQ(u64_at(b, 16), 1u);    // key/values
  EXPECT_EQ(u64_at(b, 24), 20u);   // key length
  EXPECT_EQ(b.substr(32, 20), "general.architecture");
  EXPECT_EQ(u32_at(b, 52), 8u);    // string
  EXPECT_EQ(u64_at(b, 56), 5u);
  EXPECT_EQ(b.substr(64, 5), "llama");
  // tensor info: name, n_dims, dims, type, offset
  EXPECT_EQ(u64_at(b, 69), 1u);
  EXPECT_EQ(b.substr(77, 1), "t");
  EXPECT_EQ(u32_at(b, 78), 1u);
  EXPECT_EQ(u64_at(b, 82), 3u);
  EXPECT_EQ(u32_at(b, 90), 0u);    // f32
  EXPECT_EQ(u64_at(b, 94), 0u);    // offset
  // data at the next multiple of 32 after byte 102, padded to 32 at the end
  ASSERT_EQ(b.size(), 128u + 32u);
  float back[3];
  std::memcpy(back, b.data() + 128, sizeof(back));
  EXPECT_EQ(back[2], 3.0f);
  EXPECT_FALSE(path_exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST(GgufWriter, RoundTripsEveryValueTypeAndTensorOffsets) {
  const std::string path = temp_path("rt.gguf");
  GgufWriter w;
  ASSERT_TRUE(w.set_alignment(64).ok());
  GgufValue u8; u8.type = GgufValueType::kUint8; u8.u = 200;
  GgufValue i8; i8.type = GgufValueType::kInt8; i8.i = -100;
  GgufValue u16; u16.type = GgufValueType::kUint16; u16.u = 60000;
  GgufValue i16; i16.type = GgufValueType::kInt16; i16.i = -30000;
  GgufValue i64; i64.type = GgufValueType::kInt64; i64.i = -(1ll << 40);
  GgufValue f64; f64.type = GgufValueType::kFloat64; f64.f = 0.1;
  w.set("a.u8", u8);
  w.set("a.i8", i8);
  w.set("a.u16", u16);
  w.set("a.i16", i16);
  w.set("a.u32", GgufValue::u32(4000000000u));
  w.set("a.i32", GgufValue::i32(-7));
  w.set("a.f32", GgufValue::f32(1.5f));
  w.set("a.bool", GgufValue::boolean(true));
  w.set("a.u64", GgufValue::u64(1ull << 50));
  w.set("a.i64", i64);
  w.set("a.f64", f64);
  w.set("a.strings", GgufValue::strings({"x", "", "\xE2\x96\x81hi"}));
  w.set("a.f32s", GgufValue::f32s({0.5f, -2.0f}));
  w.set("a.i32s", GgufValue::i32s({1, -1, 6}));
  w.set("a.u32", GgufValue::u32(5));  // replaces, keeps its place
  ASSERT_TRUE(w.add_tensor("w.f16", GgmlType::kF16, {2, 3}).ok());
  ASSERT_TRUE(w.add_tensor("w.q8", GgmlType::kQ8_0, {3, 64}).ok());
  ASSERT_TRUE(w.add_tensor("w.q4", GgmlType::kQ4_0, {1, 32}).ok());
  ASSERT_TRUE(w.open(path).ok());
  const std::vector<uint8_t> f16(12, 1), q8(3 * 2 * 34, 2), q4(18, 3);
  EXPECT_FALSE(w.write_tensor("w.q8", q8.data(), q8.size()).ok());  // out of order
  EXPECT_FALSE(w.write_tensor("w.f16", f16.data(), 11).ok());       // wrong size
  ASSERT_TRUE(w.write_tensor("w.f16", f16.data(), f16.size()).ok());
  ASSERT_TRUE(w.write_tensor("w.q8", q8.data(), q8.size()).ok());
  EXPECT_FALSE(w.commit().ok());  // w.q4 missing
  ASSERT_TRUE(w.write_tensor("w.q4", q4.data(), q4.size()).ok());
  ASSERT_TRUE(w.commit().ok());

  auto r = GgufReader::open(path);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const GgufReader& g = **r;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_start() % 64, 0u);
  ASSERT_EQ(g.metadata().size(), 15u);  // 14 keys + general.alignment
  EXPECT_EQ(g.metadata()[0].first, "general.alignment");
  EXPECT_EQ(g.metadata()[5].first, "a.u32");
  EXPECT_EQ(g.find("a.u8")->u, 200u);
  EXPECT_EQ(g.find("a.i8")->i, -100);
  EXPECT_EQ(g.find("a.u16")->u, 60000u);
  EXPECT_EQ(g.find("a.i16")->i, -30000);
  EXPECT_EQ(g.find("a.u32")->u, 5u);
  EXPECT_EQ(g.find("a.i32")->i, -7);
  EXPECT_EQ(g.find("a.f32")->f, 1.5);
  EXPECT_TRUE(g.find("a.bool")->b);
  EXPECT_EQ(g.find("a.u64")->u, 1ull << 50);
  EXPECT_EQ(g.find("a.i64")->i, -(1ll << 40));
  EXPECT_EQ(g.find("a.f64")->f, 0.1);
  const GgufValue* s = g.find("a.strings");
  ASSERT_EQ(s->type, GgufValueType::kArray);
  EXPECT_EQ(s->elem, GgufValueType::kString);
  ASSERT_EQ(s->items.size(), 3u);
  EXPECT_EQ(s->items[2].s, "\xE2\x96\x81hi");
  EXPECT_EQ(g.find("a.f32s")->items[1].f, -2.0);
  EXPECT_EQ(g.find("a.i32s")->items[1].i, -1);
  EXPECT_EQ(g.find("missing"), nullptr);

  ASSERT_EQ(g.tensors().size(), 3u);
  const GgufTensorInfo* t = g.find_tensor("w.q8");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, GgmlType::kQ8_0);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(t->nbytes, q8.size());
  EXPECT_EQ(t->offset, g.data_start() + 64);  // 12 bytes of f16 padded to 64
  EXPECT_EQ(g.data(*t)[0], 2);
  const GgufTensorInfo* t4 = g.find_tensor("w.q4");
  EXPECT_EQ(t4->offset, g.data_start() + 64 + 256);  // 204 bytes padded to 256
  EXPECT_EQ(g.data(*t4)[17], 3);
}

TEST(GgufWriter, RefusesBadTensors) {
  GgufWriter w;
  EXPECT_FALSE(w.add_tensor("a", GgmlType::kQ8_0, {4, 48}).ok());  // rows not whole blocks
  EXPECT_FALSE(w.add_tensor("b", GgmlType::kF32, {}).ok());
  EXPECT_FALSE(w.add_tensor("c", GgmlType::kF32, {2, 0}).ok());
  EXPECT_FALSE(w.add_tensor("d", GgmlType::kF32, {1, 1, 1, 1, 1}).ok());
  ASSERT_TRUE(w.add_tensor("e", GgmlType::kF32, {2}).ok());
  EXPECT_FALSE(w.add_tensor("e", GgmlType::kF32, {2}).ok());
  EXPECT_FALSE(w.set_alignment(24).ok());
}

TEST(GgufWriter, AbandonedWriteLeavesNoFile) {
  const std::string path = temp_path("gone.gguf");
  {
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor("t", GgmlType::kF32, {8}).ok());
    ASSERT_TRUE(w.open(path).ok());
    // destroyed before commit (an error or a kill mid-export)
  }
  EXPECT_FALSE(path_exists(path));
  EXPECT_FALSE(path_exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST(GgufReader, RefusesDamagedFiles) {
  const std::string path = temp_path("d.gguf");
  GgufWriter w;
  w.set("k", GgufValue::strings({"a", "b"}));
  ASSERT_TRUE(w.add_tensor("t", GgmlType::kF32, {8}).ok());
  ASSERT_TRUE(w.open(path).ok());
  const std::vector<float> z(8, 0.0f);
  ASSERT_TRUE(w.write_tensor("t", z.data(), 32).ok());
  ASSERT_TRUE(w.commit().ok());
  const std::string good = *read_file(path);
  auto damaged = [&](std::string bytes) {
    const std::string p = temp_path("bad.gguf");
    EXPECT_TRUE(write_file_atomic(p, bytes).ok());
    return GgufReader::open(p);
  };
  auto r = damaged(good.substr(0, good.size() - 40));  // data cut
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'t'"), std::string::npos) << r.status().to_string();
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_FALSE(damaged(magic).ok());
  std::string count = good;
  const uint64_t huge = 1ull << 60;
  std::memcpy(&count[16], &huge, 8);  // key/value count
  EXPECT_FALSE(damaged(count).ok());
  std::string arr = good;  // array length of "k" (after key, type, elem type)
  std::memcpy(&arr[24 + 8 + 1 + 4 + 4], &huge, 8);
  r = damaged(arr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'k'"), std::string::npos) << r.status().to_string();
  EXPECT_FALSE(damaged(good.substr(0, 30)).ok());
}

std::vector<float> reference_input() {
  std::vector<float> xs;
  for (int k = 0; k < 32; ++k) xs.push_back(static_cast<float>(std::sin(k * 0.37) * (1 + k % 7)));
  for (int k = 0; k < 32; ++k) xs.push_back(static_cast<float>((k - 10) * 0.25));
  return xs;
}

// Bytes printed by tests/tools/gguf_quant_reference.py (from the spec).
TEST(GgufQuant, Q8_0MatchesTheReference) {
  EXPECT_EQ(hex(gguf_encode(GgmlType::kQ8_0, reference_input())),
            "062b000d25415b69660a07f6d9b79781f0e8ed00224a7312232b2610ebbcf1ddcabf4b"
            "29c4cad0d6dce2e8eef4fa00060c12181e242a30363c43494f555b61676d73797f");
}

TEST(GgufQuant, Q4_0MatchesTheReference) {
  EXPECT_EQ(hex(gguf_encode(GgmlType::kQ4_0, reference_input())),
            "f73a7889aadcfe9faeb9a89776437160574640b96c5b5b5b4a4a3a393928282817170606");
}

TEST(GgufQuant, HandComputedBlocks) {
  // q8_0 of 0..31 scaled so amax = 127: d = 1.0 (0x3c00), q = x.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j * 4 - 1);  // -1 .. 123
  x[31] = 127.0f;
  std::vector<uint8_t> q8 = gguf_encode(GgmlType::kQ8_0, x);
  ASSERT_EQ(q8.size(), 34u);
  EXPECT_EQ(q8[0], 0x00);
  EXPECT_EQ(q8[1], 0x3c);
  EXPECT_EQ(static_cast<int8_t>(q8[2]), -1);
  EXPECT_EQ(static_cast<int8_t>(q8[33]), 127);
  // q4_0 with the extreme -8: d = 1.0; x = -8 -> 0, 7 -> 15, 0 -> 8; a value
  // of 7.6 rounds to nibble 16 and is clamped to 15.
  std::vector<float> y(32, 0.0f);
  y[0] = -8.0f;
  y[1] = 7.0f;
  y[16] = 7.6f;
  y[17] = -3.4f;  // -3.4 + 8.5 = 5.1 -> 5
  std::vector<uint8_t> q4 = gguf_encode(GgmlType::kQ4_0, y);
  ASSERT_EQ(q4.size(), 18u);
  EXPECT_EQ(q4[0], 0x00);
  EXPECT_EQ(q4[1], 0x3c);
  EXPECT_EQ(q4[2], 0xF0);  // low: value 0 -> 0; high: value 16 -> 15
  EXPECT_EQ(q4[3], 0x5F);  // low: value 1 -> 15; high: value 17 -> 5
  EXPECT_EQ(q4[4], 0x88);
  // An all-zero block: d = 0, q = 0 (q8_0) and 8 (q4_0).
  std::vector<float> z(32, 0.0f);
  EXPECT_EQ(gguf_encode(GgmlType::kQ8_0, z), std::vector<uint8_t>(34, 0));
  std::vector<uint8_t> z4 = gguf_encode(GgmlType::kQ4_0, z);
  EXPECT_EQ(z4[0], 0);
  EXPECT_EQ(z4[2], 0x88);
}

TEST(GgufQuant, DecodeErrorIsBoundedByHalfAStep) {
  std::vector<float> x(256);
  for (size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(std::cos(k * 1.7) * (k % 13));
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kF16, GgmlType::kBF16, GgmlType::kF32}) {
    std::vector<uint8_t> enc = gguf_encode(t, x);
    std::vector<float> back(x.size());
    gguf_decode(t, enc.data(), static_cast<int64_t>(x.size()), back.data());
    for (size_t b = 0; b < x.size(); b += 32) {
      float amax = 0;
      for (size_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float step = t == GgmlType::kQ8_0 ? amax / 127 : t == GgmlType::kQ4_0 ? amax / 8 : amax / 128;
      // Half a step, plus the scale's own fp16 rounding (2^-11 relative)
      // times the largest code (127): the values are coded with the exact
      // scale but decoded with the stored one. q4_0 maps the extreme of one
      // sign to -8 and clamps the other side at +7: a whole step there.
      const float bound = t == GgmlType::kQ4_0 ? 1.01f : 0.57f;
      for (size_t j = b; j < b + 32; ++j) ASSERT_LE(std::fabs(back[j] - x[j]), step * bound + 1e-6f) << ggml_type_name(t);
    }
  }
}

TEST(GgufArch, LlamaNamesAndRefusals) {
  auto arch = find_gguf_arch("llama");
  ASSERT_TRUE(arch.ok());
  EXPECT_EQ((*arch)->name, "llama");
  EXPECT_EQ(*gguf_tensor_name(**arch, "model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
  EXPECT_EQ(*gguf_tensor_name(**arch, "model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
  EXPECT_EQ(*gguf_tensor_name(**arch, "model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(*gguf_tensor_name(**arch, "lm_head.weight"), "output.weight");
  EXPECT_FALSE(gguf_tensor_name(**arch, "model.layers.x.mlp.down_proj.weight").ok());
  EXPECT_FALSE(gguf_tensor_name(**arch, "model.layers.0.self_attn.q_norm.weight").ok());
  EXPECT_EQ((*find_gguf_arch("mistral"))->name, "llama");
  auto none = find_gguf_arch("mamba");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("llama, mistral"), std::string::npos) << none.status().message();
  auto type = parse_gguf_file_type("q5_k");
  ASSERT_FALSE(type.ok());
  EXPECT_NE(type.status().message().find("f32, f16, bf16, q8_0, q4_0"), std::string::npos);
}

TEST(GgufArch, TensorTypeChoice) {
  EXPECT_EQ(gguf_tensor_type(GgufFileType::kQ8_0, "blk.0.attn_norm.weight", {64}), GgmlType::kF32);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::kQ8_0, "blk.0.attn_q.weight", {64, 64}), GgmlType::kQ8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::kQ4_0, "blk.0.ffn_down.weight", {64, 176}), GgmlType::kF16);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::kQ4_0, "output.weight", {512, 64}), GgmlType::kQ8_0);
  EXPECT_EQ(gguf_tensor_type(GgufFileType::kF16, "output.weight", {512, 64}), GgmlType::kF16);
  EXPECT_EQ(gguf_file_type_id(GgufFileType::kQ8_0), 7u);
}

TEST(GgufArch, RopePermutationInterleavesHalves) {
  // 2 heads of head_dim 4, 1 column: rows h*4 + {0,1 | 2,3} (first halves |
  // second halves) become pairs (0,2),(1,3) per head.
  const std::vector<float> src = {0, 1, 2, 3, 10, 11, 12, 13};
  std::vector<float> dst(8);
  permute_rope_rows(src.data(), 8, 1, 2, sizeof(float), dst.data());
  EXPECT_EQ(dst, (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
  ModelConfig c;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  const GgufArch& llama = **find_gguf_arch("llama");
  EXPECT_EQ(gguf_rope_permute_heads(llama, c, "model.layers.1.self_attn.q_proj.weight"), 8);
  EXPECT_EQ(gguf_rope_permute_heads(llama, c, "model.layers.1.self_attn.k_proj.weight"), 2);
  EXPECT_EQ(gguf_rope_permute_heads(llama, c, "model.layers.1.self_attn.v_proj.weight"), 0);
  EXPECT_EQ(gguf_rope_permute_heads(**find_gguf_arch("qwen2"), c, "model.layers.1.self_attn.q_proj.weight"), 0);
}

TEST(GgufArch, ModelMetadata) {
  ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 512;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  GgufWriter w;
  ASSERT_TRUE(add_gguf_model_metadata(**find_gguf_arch("llama"), c, nlohmann::json::object(), "config.json",
                                      GgufFileType::kQ4_0, &w).ok());
  const std::string path = temp_path("meta.gguf");
  ASSERT_TRUE(w.open(path).ok());
  ASSERT_TRUE(w.commit().ok());
  auto r = GgufReader::open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->find("general.architecture")->s, "llama");
  EXPECT_EQ((*r)->find("general.file_type")->u, 2u);
  EXPECT_EQ((*r)->find("llama.block_count")->u, 2u);
  EXPECT_EQ((*r)->find("llama.attention.head_count_kv")->u, 2u);
  EXPECT_EQ((*r)->find("llama.rope.dimension_count")->u, 16u);
  EXPECT_FLOAT_EQ(static_cast<float>((*r)->find("llama.attention.layer_norm_rms_epsilon")->f), 1e-5f);
  EXPECT_EQ((*r)->find("llama.attention.key_length"), nullptr);  // 64 / 4 already
  c.rope_scaling.type = RopeScalingType::kLlama3;
  c.rope_scaling.factor = 8;
  c.rope_theta = 500000;
  c.head_dim = 128;
  std::vector<float> f = llama3_rope_factors(c);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_EQ(f.front(), 1.0f);  // shortest wavelength kept
  EXPECT_EQ(f.back(), 8.0f);   // longest divided by the factor
}

// The tiny presets switch every feature on; what llama.cpp's graphs cannot
// express is refused naming the key, and the real models' settings pass.
TEST(GgufArch, FamilyNamesAndConfigRefusals) {
  auto name = [](const char* type, const char* hf) { return *gguf_tensor_name(**find_gguf_arch(type), hf); };
  EXPECT_EQ(name("qwen2", "model.layers.1.self_attn.k_proj.bias"), "blk.1.attn_k.bias");
  EXPECT_EQ(name("qwen3", "model.layers.0.self_attn.q_norm.weight"), "blk.0.attn_q_norm.weight");
  EXPECT_EQ(name("gemma2", "model.layers.0.post_attention_layernorm.weight"), "blk.0.post_attention_norm.weight");
  EXPECT_EQ(name("gemma2", "model.layers.0.pre_feedforward_layernorm.weight"), "blk.0.ffn_norm.weight");
  EXPECT_EQ(name("gemma3_text", "model.layers.1.post_feedforward_layernorm.weight"), "blk.1.post_ffw_norm.weight");
  EXPECT_EQ(name("gemma3_text", "model.layers.1.self_attn.k_norm.weight"), "blk.1.attn_k_norm.weight");
  EXPECT_FALSE(gguf_tensor_name(**find_gguf_arch("gemma2"), "model.layers.0.self_attn.q_norm.weight").ok());
  const GgufArch& gemma3 = **find_gguf_arch("gemma3_text");
  EXPECT_TRUE(gguf_norm_plus_one(gemma3, "blk.0.attn_q_norm.weight"));
  EXPECT_TRUE(gguf_norm_plus_one(gemma3, "output_norm.weight"));
  EXPECT_FALSE(gguf_norm_plus_one(gemma3, "blk.0.attn_q.weight"));
  EXPECT_FALSE(gguf_norm_plus_one(**find_gguf_arch("qwen3"), "blk.0.attn_q_norm.weight"));

  auto refusal = [](const char* preset, const char* type) {
    ModelConfig c = *model_preset(preset);
    Status s = check_gguf_config(**find_gguf_arch(type), c, "m/config.json");
    return s.ok() ? std::string() : s.message();
  };
  EXPECT_NE(refusal("tiny-qwen2", "qwen2").find("m/config.json: key 'use_sliding_window'"), std::string::npos);
  EXPECT_NE(refusal("tiny-qwen3", "qwen3").find("key 'use_sliding_window'"), std::string::npos);
  EXPECT_NE(refusal("tiny-gemma2", "gemma2").find("key 'query_pre_attn_scalar': 24; llama.cpp's gemma2 scales "
                                                  "attention by 32^-0.5"),
            std::string::npos)
      << refusal("tiny-gemma2", "gemma2");
  EXPECT_NE(refusal("tiny-gemma3", "gemma3_text").find("query_pre_attn_scalar"), std::string::npos);

  ModelConfig q = *model_preset("tiny-qwen2");
  q.sliding_window = 0;
  q.layer_sliding.clear();
  EXPECT_TRUE(check_gguf_config(**find_gguf_arch("qwen2"), q, "c").ok());
  ModelConfig g2 = *model_preset("tiny-gemma2");
  g2.query_pre_attn_scalar = 32;
  EXPECT_TRUE(check_gguf_config(**find_gguf_arch("gemma2"), g2, "c").ok());
  g2.layer_sliding = {false, true};  // no period of llama.cpp's (its last layer of a period is global)
  EXPECT_NE(check_gguf_config(**find_gguf_arch("gemma2"), g2, "c").message().find("layer_types"), std::string::npos);
  g2.layer_sliding = {true, false};
  g2.final_logit_softcapping = 0;
  EXPECT_NE(check_gguf_config(**find_gguf_arch("gemma2"), g2, "c").message().find("final_logit_softcapping"),
            std::string::npos);
  ModelConfig g3 = *model_preset("tiny-gemma3");
  g3.query_pre_attn_scalar = 32;
  // Two layers of llama.cpp's pattern of 6 both slide; the preset's second is global.
  EXPECT_NE(check_gguf_config(gemma3, g3, "c").message().find("layer_types"), std::string::npos);
  g3.layer_sliding = {true, true};
  EXPECT_TRUE(check_gguf_config(gemma3, g3, "c").ok());
  g3.tie_word_embeddings = false;
  EXPECT_NE(check_gguf_config(gemma3, g3, "c").message().find("tie_word_embeddings"), std::string::npos);

  // Gemma 2's keys: soft-capping and the window (and the pattern when not 2).
  g2.final_logit_softcapping = 30;
  GgufWriter w;
  ASSERT_TRUE(add_gguf_model_metadata(**find_gguf_arch("gemma2"), g2, nlohmann::json::object(), "c",
                                      GgufFileType::kF32, &w).ok());
  const std::string path = temp_path("gemma2.gguf");
  ASSERT_TRUE(w.open(path).ok());
  ASSERT_TRUE(w.commit().ok());
  auto r = GgufReader::open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->find("general.architecture")->s, "gemma2");
  EXPECT_FLOAT_EQ(static_cast<float>((*r)->find("gemma2.attn_logit_softcapping")->f), 50.0f);
  EXPECT_FLOAT_EQ(static_cast<float>((*r)->find("gemma2.final_logit_softcapping")->f), 30.0f);
  EXPECT_EQ((*r)->find("gemma2.attention.sliding_window")->u, 16u);
  EXPECT_EQ((*r)->find("gemma2.attention.sliding_window_pattern"), nullptr);
  EXPECT_EQ((*r)->find("gemma2.attention.key_length")->u, 32u);
}

// Phi-3: the fused projections under llama.cpp's names, partial rotary and
// LongRoPE keys and tensors, and what llama.cpp's phi3 computes otherwise.
TEST(GgufArch, Phi3NamesKeysAndRefusals) {
  const GgufArch& phi3 = **find_gguf_arch("phi3");
  EXPECT_EQ(phi3.name, "phi3");
  EXPECT_EQ(*gguf_tensor_name(phi3, "model.layers.1.self_attn.qkv_proj.weight"), "blk.1.attn_qkv.weight");
  EXPECT_EQ(*gguf_tensor_name(phi3, "model.layers.0.mlp.gate_up_proj.weight"), "blk.0.ffn_up.weight");
  EXPECT_EQ(*gguf_tensor_name(phi3, "model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
  EXPECT_FALSE(gguf_tensor_name(phi3, "model.layers.0.self_attn.q_proj.weight").ok());
  ModelConfig c = *model_preset("tiny-phi3");
  EXPECT_EQ(gguf_rope_permute_heads(phi3, c, "model.layers.0.self_attn.qkv_proj.weight"), 0);

  // The preset slides every layer over 16 of its 512 positions; llama.cpp's phi3 does not slide.
  Status s = check_gguf_config(phi3, c, "m/config.json");
  EXPECT_NE(s.message().find("m/config.json: key 'sliding_window': 16 < max_position_embeddings 512"),
            std::string::npos)
      << s.message();
  c.sliding_window = 262144;  // Phi-3.5-mini's and Phi-4-mini's: longer than the context
  EXPECT_TRUE(check_gguf_config(phi3, c, "c").ok());
  ModelConfig odd = c;
  odd.head_dim = 32;
  EXPECT_NE(check_gguf_config(phi3, odd, "c").message().find("key 'head_dim'"), std::string::npos);
  odd = c;
  odd.rope_scaling.type = RopeScalingType::kLlama3;
  EXPECT_NE(check_gguf_config(phi3, odd, "c").message().find("key 'rope_scaling'"), std::string::npos);

  GgufWriter w;
  ASSERT_TRUE(add_gguf_model_metadata(phi3, c, nlohmann::json::object(), "c", GgufFileType::kF32, &w).ok());
  const std::string path = temp_path("phi3.gguf");
  ASSERT_TRUE(w.open(path).ok());
  ASSERT_TRUE(w.commit().ok());
  auto r = GgufReader::open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->find("phi3.context_length")->u, 512u);
  EXPECT_EQ((*r)->find("phi3.rope.dimension_count")->u, 12u);  // 16 * 0.75
  EXPECT_EQ((*r)->find("phi3.rope.scaling.original_context_length")->u, 20u);
  EXPECT_FLOAT_EQ(static_cast<float>((*r)->find("phi3.rope.scaling.attn_factor")->f),
                  static_cast<float>(std::sqrt(1 + std::log(512.0 / 20.0) / std::log(20.0))));
  EXPECT_EQ((*r)->find("phi3.rope.scaling.factor"), nullptr);  // llama.cpp would scale the positions too
  const std::vector<GgufRopeTensor> rope = gguf_rope_tensors(c);
  ASSERT_EQ(rope.size(), 2u);
  EXPECT_EQ(rope[0].name, "rope_factors_long.weight");
  EXPECT_EQ(rope[0].values, (std::vector<float>{1.5f, 2.5f, 4.0f, 8.0f, 16.0f, 32.0f}));
  EXPECT_EQ(rope[1].name, "rope_factors_short.weight");
  EXPECT_EQ(rope[1].values, (std::vector<float>{1.0f, 1.25f, 1.5f, 2.0f, 3.0f, 4.0f}));
  c.rope_scaling.type = RopeScalingType::kNone;
  EXPECT_TRUE(gguf_rope_tensors(c).empty());
}

TEST(GgufArch, VocabPadding) {
  GgufVocab v;
  v.tokens = {"a", "b"};
  v.scores = {0, -1};
  v.types = {1, 1};
  ASSERT_TRUE(pad_gguf_vocab(4, &v).ok());
  EXPECT_EQ(v.tokens[3], "[PAD3]");
  EXPECT_EQ(v.types[2], 5);
  EXPECT_EQ(v.scores.size(), 4u);
  EXPECT_FALSE(pad_gguf_vocab(3, &v).ok());
}

}  // namespace
}  // namespace lema
