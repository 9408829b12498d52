// The quantized base through the `lema` binary: model init --quant writes a
// layer file, inspect shows the quantization, merge and export refuse it
// with the way out, convert refuses an unknown quantization.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "tests/integration/lema_processes.h"

namespace lema {
namespace {

test::RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }

TEST(QuantCli, InitInspectAndRefusals) {
  char tmpl[] = "/tmp/lema_quant_cli_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string q = dir + "/q.lema.safetensors";
  test::RunResult init = run_lema("model init --preset tiny --out " + q + " --quant nf4 --seed 3");
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_NE(init.output.find("nf4 projections"), std::string::npos) << init.output;
  test::RunResult again = run_lema("model init --preset tiny --out " + q + " --quant nf4");
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;

  test::RunResult insp = run_lema("inspect " + q);
  ASSERT_EQ(insp.exit_code, 0) << insp.output;
  EXPECT_NE(insp.output.find("quantization: nf4: the seven projections as NF4 codes"), std::string::npos) << insp.output;
  EXPECT_NE(insp.output.find("self_attn.q_proj.weight.absmax"), std::string::npos) << insp.output;
  test::RunResult js = run_lema("inspect --json " + q);
  ASSERT_EQ(js.exit_code, 0) << js.output;
  const nlohmann::json doc = nlohmann::json::parse(js.output);
  EXPECT_EQ(doc["quant"], "nf4");
  EXPECT_EQ(doc["version"], "2");
  EXPECT_EQ(doc["dtype"], "BF16");

  test::RunResult merge = run_lema("merge --base " + q + " --adapter " + dir + "/adapter --out " + dir + "/merged");
  EXPECT_EQ(merge.exit_code, 2) << merge.output;
  EXPECT_NE(merge.output.find("is quantized (nf4)"), std::string::npos) << merge.output;
  EXPECT_FALSE(path_exists(dir + "/merged"));
  test::RunResult exp = run_lema("export " + q + " --out " + dir + "/m.gguf");
  EXPECT_EQ(exp.exit_code, 2) << exp.output;
  EXPECT_NE(exp.output.find("is quantized (nf4)"), std::string::npos) << exp.output;
  EXPECT_FALSE(path_exists(dir + "/m.gguf"));

  ASSERT_EQ(run_lema("model init --preset tiny --out " + dir + "/hf").exit_code, 0);
  test::RunResult nf5 = run_lema("convert " + dir + "/hf -o " + dir + "/c.lema.safetensors --quant nf5");
  EXPECT_NE(nf5.exit_code, 0) << nf5.output;
  EXPECT_NE(nf5.output.find("nf5"), std::string::npos) << nf5.output;
  test::RunResult i8 = run_lema("convert " + dir + "/hf -o " + dir + "/c.lema.safetensors --quant int8 --dtype bf16");
  ASSERT_EQ(i8.exit_code, 0) << i8.output;
  EXPECT_NE(i8.output.find("quantization int8"), std::string::npos) << i8.output;
  test::RunResult f8 = run_lema("convert " + dir + "/hf -o " + dir + "/f.lema.safetensors --quant fp8 --dtype bf16");
  ASSERT_EQ(f8.exit_code, 0) << f8.output;
  EXPECT_NE(f8.output.find("quantization fp8"), std::string::npos) << f8.output;
  test::RunResult fi = run_lema("inspect " + dir + "/f.lema.safetensors");
  EXPECT_NE(fi.output.find("FP8 E4M3 per output row"), std::string::npos) << fi.output;
  EXPECT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema
