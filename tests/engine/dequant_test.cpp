// The quantized base against a reference written here from the published
// specs (tests/tools/nf4_reference.py, plain Python): the stored bytes of the
// C++ quantizers (common/formats/quant.h) and the values the engine's
// LibTorch dequantizers (engine/dequant.h) produce must equal it exactly,
// in fp32 and bf16. Then a quantized layer file read through the layer store.
#include "engine/dequant.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/model_layout.h"
#include "common/formats/model_presets.h"
#include "common/formats/quant.h"
#include "engine/layer_store.h"
#include "engine/model_loader.h"

namespace lema::engine {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_dequant_XXXXXX";
  return ::mkdtemp(tmpl);
}

// Runs the Python reference over `x`; returns its JSON.
nlohmann::json python_reference(const std::string& mode, const std::vector<float>& x, const std::string& extra = "") {
  const std::string dir = temp_dir();
  const std::string in = dir + "/in.f32", out = dir + "/out.json";
  {
    std::ofstream f(in, std::ios::binary);
    f.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
  }
  const std::string cmd = "python3 " LEMA_SOURCE_DIR "/tests/tools/nf4_reference.py " + mode + " " + in + " " + out + " " + extra;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out);
  nlohmann::json j = nlohmann::json::parse(f);
  std::remove(in.c_str());
  std::remove(out.c_str());
  ::rmdir(dir.c_str());
  return j;
}

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// Weights as a real model has them, plus the edge cases: a block whose
// absmax is 1 holding every NF4 midpoint exactly (ties go to the lower
// code), an all-zero block, and an odd tail (a partial block, half a byte).
std::vector<float> test_values(int64_t full_blocks, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x;
  for (int64_t i = 0; i < full_blocks * kNf4BlockSize; ++i) x.push_back(normal(rng));
  std::vector<float> ties = {1.0f};
  const float* code = nf4_code();
  for (int i = 0; i < 15; ++i) ties.push_back(static_cast<float>((static_cast<double>(code[i]) + code[i + 1]) / 2.0));
  ties.push_back(-0.0f);
  ties.push_back(0.5f);
  ties.resize(kNf4BlockSize, -0.25f);
  x.insert(x.end(), ties.begin(), ties.end());
  x.insert(x.end(), kNf4BlockSize, 0.0f);
  for (int i = 0; i < 37; ++i) x.push_back(normal(rng) * 3.0f);
  return x;
}

at::Tensor cpu_f32(const std::vector<float>& v) {
  return at::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
}

void expect_dequantized(const at::Tensor& f32, const at::Tensor& bf16, const nlohmann::json& ref) {
  const auto want32 = ref["deq_f32_bits"].get<std::vector<uint32_t>>();
  const auto want16 = ref["deq_bf16_bits"].get<std::vector<uint32_t>>();
  ASSERT_EQ(f32.numel(), static_cast<int64_t>(want32.size()));
  const float* p = f32.data_ptr<float>();
  const auto* q = reinterpret_cast<const uint16_t*>(bf16.data_ptr());
  int64_t bad32 = 0, bad16 = 0;
  for (size_t i = 0; i < want32.size(); ++i) {
    bad32 += bits_of(p[i]) != want32[i];
    bad16 += q[i] != want16[i];
  }
  EXPECT_EQ(bad32, 0) << "fp32 values differ from the reference";
  EXPECT_EQ(bad16, 0) << "bf16 values differ from the reference";
}

TEST(Dequant, Nf4MatchesTheReference) {
  const std::vector<float> x = test_values(300, 1);
  const int64_t n = static_cast<int64_t>(x.size()), nb = (n + 63) / 64;
  std::vector<uint8_t> packed(static_cast<size_t>((n + 1) / 2));
  std::vector<float> absmax(static_cast<size_t>(nb));
  nf4_quantize(x.data(), n, packed.data(), absmax.data());
  const nlohmann::json ref = python_reference("nf4", x);
  EXPECT_EQ(packed, ref["packed"].get<std::vector<uint8_t>>());
  std::vector<uint32_t> absmax_bits;
  for (float a : absmax) absmax_bits.push_back(bits_of(a));
  EXPECT_EQ(absmax_bits, ref["absmax_bits"].get<std::vector<uint32_t>>());

  const at::Tensor p = at::from_blob(packed.data(), {static_cast<int64_t>(packed.size())}, at::kByte).clone();
  const at::Tensor code = at::from_blob(const_cast<float*>(nf4_code()), {16}, at::kFloat).clone();
  at::Tensor out32 = at::empty({n}, at::kFloat), out16 = at::empty({n}, at::kBFloat16);
  dequantize_nf4(p, cpu_f32(absmax), code, out32);
  dequantize_nf4(p, cpu_f32(absmax), code, out16);
  expect_dequantized(out32, out16, ref);
  // The round trip is close: NF4's widest gap (-1 to -0.696) is 0.304 of the
  // block's absmax, so no value moves by more than half of it.
  EXPECT_LE((out32 - cpu_f32(x)).abs().max().item<float>(), 0.1520f * cpu_f32(x).abs().max().item<float>());
}

TEST(Dequant, Nf4DoubleQuantizationMatchesTheReference) {
  const std::vector<float> x = test_values(600, 2);  // 603 blocks: three groups of 256, the last partial
  const int64_t n = static_cast<int64_t>(x.size()), nb = (n + 63) / 64, groups = (nb + 255) / 256;
  std::vector<uint8_t> packed(static_cast<size_t>((n + 1) / 2));
  std::vector<float> absmax(static_cast<size_t>(nb)), scale(static_cast<size_t>(groups));
  std::vector<int8_t> q(static_cast<size_t>(nb));
  float offset = 0.0f;
  nf4_quantize(x.data(), n, packed.data(), absmax.data());
  nf4_double_quantize(absmax.data(), nb, q.data(), scale.data(), &offset);
  const nlohmann::json ref = python_reference("nf4-dq", x);
  EXPECT_EQ(packed, ref["packed"].get<std::vector<uint8_t>>());
  EXPECT_EQ(std::vector<int>(q.begin(), q.end()), ref["absmax_q"].get<std::vector<int>>());
  std::vector<uint32_t> scale_bits;
  for (float s : scale) scale_bits.push_back(bits_of(s));
  EXPECT_EQ(scale_bits, ref["absmax_scale_bits"].get<std::vector<uint32_t>>());
  EXPECT_EQ(bits_of(offset), ref["absmax_offset_bits"].get<uint32_t>());

  const at::Tensor restored = nf4_absmax_from_double_quant(
      at::from_blob(q.data(), {nb}, at::kChar).clone(), cpu_f32(scale), cpu_f32({offset}));
  std::vector<uint32_t> restored_bits;
  for (int64_t i = 0; i < nb; ++i) restored_bits.push_back(bits_of(restored[i].item<float>()));
  EXPECT_EQ(restored_bits, ref["absmax_restored_bits"].get<std::vector<uint32_t>>());
  const at::Tensor p = at::from_blob(packed.data(), {static_cast<int64_t>(packed.size())}, at::kByte).clone();
  const at::Tensor code = at::from_blob(const_cast<float*>(nf4_code()), {16}, at::kFloat).clone();
  at::Tensor out32 = at::empty({n}, at::kFloat), out16 = at::empty({n}, at::kBFloat16);
  dequantize_nf4(p, restored, code, out32);
  dequantize_nf4(p, restored, code, out16);
  expect_dequantized(out32, out16, ref);
}

TEST(Dequant, Int8MatchesTheReference) {
  const int64_t rows = 37, cols = 129;
  std::vector<float> x = test_values(70, 3);
  x.resize(static_cast<size_t>(rows * cols));
  std::fill(x.begin() + 5 * cols, x.begin() + 6 * cols, 0.0f);  // a zero row: scale 0
  x[7 * cols + 3] = 0.5f;                                         // a row whose absmax is exactly 0.5
  x[7 * cols + 4] = 0.5f / 127.0f * 2.5f;                         // near a tie of rint
  std::vector<int8_t> q(x.size());
  std::vector<float> scale(static_cast<size_t>(rows));
  int8_quantize_rows(x.data(), rows, cols, q.data(), scale.data());
  const nlohmann::json ref = python_reference("int8", x, std::to_string(rows) + " " + std::to_string(cols));
  EXPECT_EQ(std::vector<int>(q.begin(), q.end()), ref["q"].get<std::vector<int>>());
  std::vector<uint32_t> scale_bits;
  for (float s : scale) scale_bits.push_back(bits_of(s));
  EXPECT_EQ(scale_bits, ref["scale_bits"].get<std::vector<uint32_t>>());
  const at::Tensor qt = at::from_blob(q.data(), {rows, cols}, at::kChar).clone();
  at::Tensor out32 = at::empty({rows, cols}, at::kFloat), out16 = at::empty({rows, cols}, at::kBFloat16);
  dequantize_int8(qt, cpu_f32(scale), out32);
  dequantize_int8(qt, cpu_f32(scale), out16);
  expect_dequantized(out32.view({-1}), out16.view({-1}), ref);
}

// fp8 (E4M3) per row: the random rows, a zero row, a row holding every E4M3
// value of one binade and the midpoints between neighbours (ties to the
// even byte), subnormals, the largest value and -0.
TEST(Dequant, Fp8MatchesTheReference) {
  const int64_t rows = 9, cols = 301;
  std::vector<float> x = test_values(50, 7);
  x.resize(static_cast<size_t>(rows * cols));
  std::fill(x.begin() + 2 * cols, x.begin() + 3 * cols, 0.0f);  // a zero row: scale 0
  // Row 4 scaled by absmax 448 -> scale 1: its values are E4M3 values and
  // the midpoints between them, as they are.
  float* r4 = x.data() + 4 * cols;
  const float* v = fp8_e4m3_values();
  int64_t c = 0;
  r4[c++] = 448.0f;
  for (int code = 1; code < 0x7E && c + 2 < cols; code += 1) {
    r4[c++] = v[code];
    r4[c++] = (v[code] + v[code + 1]) / 2.0f;  // exact in fp32: a tie
    if (code % 5 == 0) r4[c++] = -v[code];
  }
  r4[c++] = -0.0f;
  while (c < cols) r4[c++] = 0.001f * static_cast<float>(c % 17);
  std::vector<uint8_t> q(x.size());
  std::vector<float> scale(static_cast<size_t>(rows));
  fp8_quantize_rows(x.data(), rows, cols, q.data(), scale.data());
  EXPECT_EQ(scale[4], 1.0f);
  EXPECT_EQ(fp8_e4m3_encode(448.0f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(-1000.0f), 0xFE);
  EXPECT_EQ(fp8_e4m3_encode(1.0f), 0x38);
  EXPECT_EQ(fp8_e4m3_encode(1.0625f), 0x38);  // halfway between 1 and 1.125: the even byte
  EXPECT_EQ(fp8_e4m3_encode(1.1875f), 0x3A);  // halfway between 1.125 and 1.25: the even byte
  EXPECT_EQ(fp8_e4m3_values()[1], 0.001953125f);  // 2^-9, the smallest subnormal
  const nlohmann::json ref = python_reference("fp8", x, std::to_string(rows) + " " + std::to_string(cols));
  EXPECT_EQ(std::vector<int>(q.begin(), q.end()), ref["q"].get<std::vector<int>>());
  std::vector<uint32_t> scale_bits;
  for (float s : scale) scale_bits.push_back(bits_of(s));
  EXPECT_EQ(scale_bits, ref["scale_bits"].get<std::vector<uint32_t>>());
  const at::Tensor qt = at::from_blob(q.data(), {rows, cols}, at::kByte).clone();
  const at::Tensor values = at::from_blob(const_cast<float*>(fp8_e4m3_values()), {256}, at::kFloat);
  at::Tensor out32 = at::empty({rows, cols}, at::kFloat), out16 = at::empty({rows, cols}, at::kBFloat16);
  dequantize_fp8(qt, cpu_f32(scale), values, out32);
  dequantize_fp8(qt, cpu_f32(scale), values, out16);
  expect_dequantized(out32.view({-1}), out16.view({-1}), ref);
}

// lema's CUDA kernels (engine/cuda/dequant_kernels.cu) against the LibTorch
// path above, bit for bit, in fp32, bf16 and fp16: the test values (ties,
// zero block, odd tail) and a tensor larger than one grid of threads (the
// kernels' grid-stride loop). Skipped without a CUDA device; the GPU
// machine runs it through scripts/gpu_check.sh (ctest).
TEST(Dequant, CudaKernelsEqualTheLibTorchPath) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device here: the kernels are checked on the GPU machine";
  const at::Device cuda(at::kCUDA, 0);
  auto same_bits = [](const at::Tensor& a, const at::Tensor& b) {
    return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
           at::equal(a.contiguous().view(at::kByte), b.contiguous().view(at::kByte));
  };
  const at::Tensor code = at::from_blob(const_cast<float*>(nf4_code()), {16}, at::kFloat).clone();
  std::vector<std::vector<float>> inputs = {test_values(300, 1)};
  {
    std::vector<float> big = test_values(600000, 4);  // 38.4M elements: more bytes than 65536 x 256 threads
    inputs.push_back(std::move(big));
  }
  for (const std::vector<float>& x : inputs) {
    const int64_t n = static_cast<int64_t>(x.size()), nb = (n + 63) / 64, groups = (nb + 255) / 256;
    std::vector<uint8_t> packed(static_cast<size_t>((n + 1) / 2));
    std::vector<float> absmax(static_cast<size_t>(nb)), scale(static_cast<size_t>(groups));
    std::vector<int8_t> q(static_cast<size_t>(nb));
    float offset = 0.0f;
    nf4_quantize(x.data(), n, packed.data(), absmax.data());
    nf4_double_quantize(absmax.data(), nb, q.data(), scale.data(), &offset);
    const at::Tensor p = at::from_blob(packed.data(), {static_cast<int64_t>(packed.size())}, at::kByte).clone();
    const at::Tensor qt = at::from_blob(q.data(), {nb}, at::kChar).clone();
    const at::Tensor restored = nf4_absmax_from_double_quant(qt, cpu_f32(scale), cpu_f32({offset}));
    const at::Tensor restored_cuda =
        nf4_absmax_from_double_quant(qt.to(cuda), cpu_f32(scale).to(cuda), cpu_f32({offset}).to(cuda));
    EXPECT_TRUE(same_bits(restored, restored_cuda.cpu())) << "double-quantized absmax, n " << n;
    for (at::ScalarType type : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Tensor want = at::empty({n}, type), got = at::empty({n}, at::TensorOptions().dtype(type).device(cuda));
      dequantize_nf4(p, cpu_f32(absmax), code, want);
      dequantize_nf4(p.to(cuda), cpu_f32(absmax).to(cuda), code.to(cuda), got);
      EXPECT_TRUE(same_bits(want, got.cpu())) << "nf4 " << at::toString(type) << ", n " << n;
    }
  }
  // int8: rows x cols with an odd width, a zero row and a large tensor.
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{37, 129}, {5000, 7001}}) {
    std::vector<float> x = test_values((rows * cols) / 64 + 1, 5);
    x.resize(static_cast<size_t>(rows * cols));
    std::fill(x.begin() + 5 * cols, x.begin() + 6 * cols, 0.0f);
    std::vector<int8_t> q(x.size());
    std::vector<float> scale(static_cast<size_t>(rows));
    int8_quantize_rows(x.data(), rows, cols, q.data(), scale.data());
    const at::Tensor qt = at::from_blob(q.data(), {rows, cols}, at::kChar).clone();
    for (at::ScalarType type : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Tensor want = at::empty({rows, cols}, type);
      at::Tensor got = at::empty({rows, cols}, at::TensorOptions().dtype(type).device(cuda));
      dequantize_int8(qt, cpu_f32(scale), want);
      dequantize_int8(qt.to(cuda), cpu_f32(scale).to(cuda), got);
      EXPECT_TRUE(same_bits(want, got.cpu())) << "int8 " << at::toString(type) << ", " << rows << "x" << cols;
    }
    std::vector<uint8_t> f8(x.size());
    fp8_quantize_rows(x.data(), rows, cols, f8.data(), scale.data());
    const at::Tensor ft = at::from_blob(f8.data(), {rows, cols}, at::kByte).clone();
    const at::Tensor values = at::from_blob(const_cast<float*>(fp8_e4m3_values()), {256}, at::kFloat).clone();
    for (at::ScalarType type : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Tensor want = at::empty({rows, cols}, type);
      at::Tensor got = at::empty({rows, cols}, at::TensorOptions().dtype(type).device(cuda));
      dequantize_fp8(ft, cpu_f32(scale), values, want);
      dequantize_fp8(ft.to(cuda), cpu_f32(scale).to(cuda), values.to(cuda), got);
      EXPECT_TRUE(same_bits(want, got.cpu())) << "fp8 " << at::toString(type) << ", " << rows << "x" << cols;
    }
  }
}

// A random model written straight into quantized layer files: every layer
// acquired from the store equals the dequantized quantizer output of the
// same random values (the plumbing: offsets, order, norms), streamed or
// resident, and the reader refuses a corrupt scale naming the tensor.
TEST(Dequant, QuantizedLayerFilesReadThroughTheStore) {
  const std::string dir = temp_dir();
  ModelConfig c = model_preset("tiny").value();
  c.n_layers = 3;
  for (QuantType quant : {QuantType::kNf4, QuantType::kNf4Dq, QuantType::kInt8, QuantType::kFp8}) {
    SCOPED_TRACE(quant_name(quant));
    const std::string path = dir + "/m.lema.safetensors";
    ASSERT_TRUE(write_random_layer_file(c, path, 5, quant, DType::kBF16).ok());
    auto file = std::shared_ptr<const LayerFile>(LayerFile::open(path, false).value());
    ASSERT_EQ(file->quant(), quant);
    MemoryPlan plan;
    plan.mode = PlanMode::kRam;
    plan.resident_layers = 1;
    plan.device_slots = 2;
    plan.prefetch_depth = 1;
    auto store = open_planned_store(file, plan, at::kFloat, at::kCPU).value();
    EXPECT_EQ(store->layer_bytes(), file->layer_range(0).nbytes);
    EXPECT_FALSE(store->stays_resident(0));  // its views are the shared work buffer
    for (int64_t layer = 0; layer < c.n_layers; ++layer) {
      auto w = store->acquire(layer);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      // q_proj from the quantizer directly.
      const std::string name = layer_tensor_name(layer, "self_attn.q_proj.weight");
      const int64_t rows = c.q_dim(), cols = c.hidden_size, n = rows * cols;
      std::vector<float> x(static_cast<size_t>(n));
      random_normal_for_tensor(name, 5, c.initializer_range, x.data(), x.size());
      at::Tensor want = at::empty({rows, cols}, at::kFloat);
      if (quant == QuantType::kInt8) {
        std::vector<int8_t> q(x.size());
        std::vector<float> scale(static_cast<size_t>(rows));
        int8_quantize_rows(x.data(), rows, cols, q.data(), scale.data());
        dequantize_int8(at::from_blob(q.data(), {rows, cols}, at::kChar), cpu_f32(scale), want);
      } else if (quant == QuantType::kFp8) {
        std::vector<uint8_t> q(x.size());
        std::vector<float> scale(static_cast<size_t>(rows));
        fp8_quantize_rows(x.data(), rows, cols, q.data(), scale.data());
        dequantize_fp8(at::from_blob(q.data(), {rows, cols}, at::kByte), cpu_f32(scale),
                       at::from_blob(const_cast<float*>(fp8_e4m3_values()), {256}, at::kFloat), want);
      } else {
        std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
        std::vector<float> absmax(static_cast<size_t>(n / 64));
        nf4_quantize(x.data(), n, packed.data(), absmax.data());
        at::Tensor am = cpu_f32(absmax);
        if (quant == QuantType::kNf4Dq) {
          std::vector<int8_t> q(absmax.size());
          std::vector<float> scale((absmax.size() + 255) / 256);
          float offset = 0.0f;
          nf4_double_quantize(absmax.data(), static_cast<int64_t>(absmax.size()), q.data(), scale.data(), &offset);
          am = nf4_absmax_from_double_quant(at::from_blob(q.data(), {static_cast<int64_t>(q.size())}, at::kChar),
                                            cpu_f32(scale), cpu_f32({offset}));
        }
        const at::Tensor code = at::from_blob(const_cast<float*>(nf4_code()), {16}, at::kFloat);
        dequantize_nf4(at::from_blob(packed.data(), {n / 2}, at::kByte), am, code, want);
      }
      EXPECT_TRUE(at::equal(w.value().q_proj, want)) << "layer " << layer;
      EXPECT_TRUE(at::equal(w.value().input_norm, at::ones({c.hidden_size}))) << "layer " << layer;
      EXPECT_EQ(w.value().down_proj.sizes(), (std::vector<int64_t>{c.hidden_size, c.intermediate_size}));
      store->release(layer);
    }
    // Two layers held at once is refused (one work buffer), not silently wrong.
    ASSERT_TRUE(store->acquire(1).ok());
    const auto second = store->acquire(2);
    EXPECT_FALSE(second.ok());
    store->release(1);
  }

  // A scale overwritten with NaN: refused when the layer is read, naming the tensor.
  const std::string path = dir + "/bad.lema.safetensors";
  ASSERT_TRUE(write_random_layer_file(c, path, 5, QuantType::kNf4, DType::kBF16).ok());
  {
    auto file = LayerFile::open(path, false).value();
    const std::string target = layer_tensor_name(1, "mlp.up_proj.weight.absmax");
    uint64_t offset = 0;
    for (const auto& t : file->header().tensors) {
      if (t.name == target) offset = t.offset + 4 * 3;
    }
    ASSERT_GT(offset, 0u);
    const float nan = std::nanf("");
    FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, static_cast<long>(offset), SEEK_SET);
    std::fwrite(&nan, 4, 1, f);
    std::fclose(f);
  }
  auto opened = open_model_source(path, at::kFloat, at::kCPU);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("model.layers.1.mlp.up_proj.weight.absmax"), std::string::npos)
      << opened.status().message();
  std::remove(path.c_str());
  std::remove((dir + "/m.lema.safetensors").c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace lema::engine
