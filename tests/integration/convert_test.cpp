// Runs the `lema` binary: model init -> convert -> inspect, damage handling,
// and the peak-RSS bound of convert on a model with large layers.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_presets.h"

#include "tests/integration/lema_processes.h"

namespace lema {
namespace {

using test::RunResult;
test::RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_convert_it_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

uint64_t parse_peak_rss(const std::string& out) {
  size_t p = out.find("peak RSS: ");
  if (p == std::string::npos) return 0;
  size_t open = out.find('(', p);
  if (open == std::string::npos) return 0;
  return std::strtoull(out.c_str() + open + 1, nullptr, 10);
}

TEST(ConvertCli, InitConvertInspect) {
  std::string dir = temp_dir();
  RunResult init = run_lema("model init --preset tiny --out " + dir + "/hf --seed 5");
  ASSERT_EQ(init.exit_code, 0) << init.output;
  RunResult again = run_lema("model init --preset tiny --out " + dir + "/hf2 --seed 5");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(*read_file(dir + "/hf/model.safetensors"), *read_file(dir + "/hf2/model.safetensors"));
  RunResult refuse = run_lema("model init --preset tiny --out " + dir + "/hf --seed 5");
  EXPECT_EQ(refuse.exit_code, 2) << refuse.output;

  RunResult conv = run_lema("convert " + dir + "/hf -o " + dir + "/m.lema.safetensors --dtype bf16");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  EXPECT_GT(parse_peak_rss(conv.output), 0u) << conv.output;
  auto lf = LayerFile::open(dir + "/m.lema.safetensors");
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_EQ((*lf)->dtype(), DType::kBF16);
  auto src = HfModel::open(dir + "/hf");
  ASSERT_TRUE(src.ok());
  for (const auto& t : (*lf)->header().tensors) {
    const auto* s = (*src)->find(t.name);
    ASSERT_NE(s, nullptr);
    const float* in = reinterpret_cast<const float*>(s->data());
    const uint8_t* out = (*lf)->data() + t.offset;
    for (int64_t e = 0; e < t.numel(); ++e) {
      uint16_t h;
      std::memcpy(&h, out + 2 * e, 2);
      ASSERT_EQ(h, f32_to_bf16(in[e])) << t.name;
    }
  }

  RunResult insp = run_lema("inspect --json " + dir + "/m.lema.safetensors");
  ASSERT_EQ(insp.exit_code, 0) << insp.output;
  auto j = nlohmann::json::parse(insp.output);
  EXPECT_EQ(j["kind"], "layer-file");
  EXPECT_EQ(j["config"]["num_hidden_layers"], 2);
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][0]["offset"].get<uint64_t>() + j["layers"][0]["nbytes"].get<uint64_t>(),
            j["layers"][1]["offset"].get<uint64_t>());
  EXPECT_EQ(j["layers"][1]["offset"].get<uint64_t>(), (*lf)->layer_range(1).offset);
  RunResult hf = run_lema("inspect " + dir + "/hf");
  ASSERT_EQ(hf.exit_code, 0) << hf.output;
  EXPECT_NE(hf.output.find("model.layers.1.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(hf.output.find("hf-dir"), std::string::npos);
  RunResult plain = run_lema("inspect " + dir + "/hf/model.safetensors");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("safetensors"), std::string::npos);
  EXPECT_TRUE(remove_all(dir).ok());
}

TEST(ConvertCli, TruncatedFilesFailCleanly) {
  std::string dir = temp_dir();
  ASSERT_EQ(run_lema("model init --preset tiny --out " + dir + "/hf").exit_code, 0);
  ASSERT_EQ(run_lema("convert " + dir + "/hf -o " + dir + "/m.lema.safetensors").exit_code, 0);
  auto lf_bytes = read_file(dir + "/m.lema.safetensors");
  ASSERT_TRUE(
      write_file_atomic(dir + "/cut.lema.safetensors", lf_bytes->substr(0, lf_bytes->size() / 3)).ok());
  RunResult a = run_lema("inspect " + dir + "/cut.lema.safetensors");
  EXPECT_FALSE(a.signaled);
  EXPECT_NE(a.exit_code, 0);
  EXPECT_NE(a.output.find(dir + "/cut.lema.safetensors"), std::string::npos) << a.output;
  // A truncated source model: convert names the file and leaves no output.
  auto src = read_file(dir + "/hf/model.safetensors");
  ASSERT_TRUE(write_file_atomic(dir + "/hf/model.safetensors", src->substr(0, src->size() - 7)).ok());
  RunResult b = run_lema("convert " + dir + "/hf -o " + dir + "/out.lema.safetensors");
  EXPECT_FALSE(b.signaled);
  EXPECT_EQ(b.exit_code, 4) << b.output;
  EXPECT_NE(b.output.find(dir + "/hf/model.safetensors"), std::string::npos) << b.output;
  EXPECT_FALSE(path_exists(dir + "/out.lema.safetensors"));
  RunResult c = run_lema("inspect " + dir + "/hf");
  EXPECT_EQ(c.exit_code, 4) << c.output;
  RunResult d = run_lema("inspect " + dir + "/missing.safetensors");
  EXPECT_EQ(d.exit_code, 3) << d.output;
  ASSERT_TRUE(write_file_atomic(dir + "/hf/pytorch_model.bin", "x").ok());
  ASSERT_TRUE(remove_all(dir + "/hf/model.safetensors").ok());
  RunResult e = run_lema("convert " + dir + "/hf -o " + dir + "/out.lema.safetensors");
  EXPECT_EQ(e.exit_code, 2) << e.output;
  EXPECT_NE(e.output.find("pytorch_model.bin"), std::string::npos) << e.output;
  EXPECT_TRUE(remove_all(dir).ok());
}

// 8 layers of about 34 MB (fp32): the converter's peak RSS must stay under
// three layers plus an allowance: the RSS of the same binary converting a
// tiny model (its code and shared libraries, LibTorch included) + 32 MiB.
// Without releasing consumed source pages it would reach the model size.
TEST(ConvertCli, PeakRssStaysNearALayer) {
  std::string dir = temp_dir();
  ASSERT_EQ(run_lema("model init --preset tiny --out " + dir + "/tiny").exit_code, 0);
  RunResult base = run_lema("convert " + dir + "/tiny -o " + dir + "/tiny.lema.safetensors");
  ASSERT_EQ(base.exit_code, 0) << base.output;
  const uint64_t baseline = parse_peak_rss(base.output);
  ASSERT_GT(baseline, 0u) << base.output;

  ModelConfig c = *model_preset("tiny");
  c.hidden_size = 768;
  c.n_heads = 6;
  c.n_kv_heads = 6;
  c.head_dim = 128;
  c.intermediate_size = 2688;
  c.n_layers = 8;
  c.vocab_size = 1024;
  ASSERT_TRUE(write_random_hf_model(c, dir + "/big", 1).ok());
  const uint64_t layer_bytes = 4ull * (4 * 768 * 768 + 3 * 768 * 2688 + 2 * 768);
  RunResult conv = run_lema("convert " + dir + "/big -o " + dir + "/big.lema.safetensors");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  uint64_t rss = parse_peak_rss(conv.output);
  ASSERT_GT(rss, 0u) << conv.output;
  const uint64_t bound = 3 * layer_bytes + baseline + (32ull << 20);
  std::printf(
      "peak RSS %.1f MiB (tiny-model baseline %.1f MiB) for layers of %.1f MiB; bound %.1f MiB, model %.1f "
      "MiB\n",
      rss / 1048576.0, baseline / 1048576.0, layer_bytes / 1048576.0, bound / 1048576.0,
      (8 * layer_bytes) / 1048576.0);
  EXPECT_LT(rss, bound) << conv.output;
  auto lf = LayerFile::open(dir + "/big.lema.safetensors", false);
  ASSERT_TRUE(lf.ok()) << lf.status().to_string();
  EXPECT_EQ((*lf)->layer_range(0).nbytes, layer_bytes);
  EXPECT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema
