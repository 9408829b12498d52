// `lema train` end to end on a tiny random model (lema model init) and
// LEMA_REPLY-format data: the loss falls by half; 20 steps straight equal
// 10 steps + a new process resuming for 10 more, byte for byte; a resume
// with another configuration is refused.
//
// The data is tokenized here byte by byte (id = byte + 3) until the dataset
// module's tokenization lands; the text is the chat format of docs/DATASET.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <utility>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/formats/model_config.h"
#include "common/formats/safetensors.h"

#include <random>

#include "tests/integration/lema_processes.h"

namespace lema {
namespace {

using test::RunResult;
using test::write_byte_tokenizer;
test::RunResult run_lema(const std::string& args) { return test::run_lema_shell(args); }

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_train_it_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

std::vector<int> byte_ids(const std::string& s) {
  std::vector<int> ids;
  for (unsigned char c : s) ids.push_back(static_cast<int>(c) + 3);
  return ids;
}

// LEMA_REPLY examples; the loss covers the reply only.
std::string write_data(const std::string& dir, int n) {
  const char* conf[] = {"High", "Medium", "Low"};
  std::string text;
  for (int i = 0; i < n; ++i) {
    const int a = i % 7, b = (i * 3) % 5;
    const std::string prompt = "<|system|>\nYou are a precise assistant trained using LEMA.\n\n<|user|>\nWhat is " +
                               std::to_string(a) + "+" + std::to_string(b) + "?\n\n<|assistant|>\n";
    const std::string reply = "[LEMA_REPLY]\nAnswer: " + std::to_string(a + b) + "\nExplanation: " + std::to_string(a) +
                              " plus " + std::to_string(b) + ".\nConfidence: " + conf[i % 3] + "\n[/LEMA_REPLY]";
    std::vector<int> ids = {1}, labels = {-100};  // BOS
    for (int id : byte_ids(prompt)) { ids.push_back(id); labels.push_back(-100); }
    for (int id : byte_ids(reply)) { ids.push_back(id); labels.push_back(id); }
    ids.push_back(2);  // EOS
    labels.push_back(2);
    text += nlohmann::json({{"input_ids", ids}, {"labels", labels}}).dump() + "\n";
  }
  const std::string path = dir + "/train.jsonl";
  EXPECT_TRUE(write_file_atomic(path, text).ok());
  return path;
}

std::vector<double> losses(const std::string& metrics_path) {
  std::vector<double> out;
  auto text = read_file(metrics_path);
  EXPECT_TRUE(text.ok());
  size_t start = 0;
  while (start < text->size()) {
    const size_t end = text->find('\n', start);
    const auto j = nlohmann::json::parse(text->substr(start, end - start));
    EXPECT_TRUE(j.contains("tokens_per_s") && j.contains("lr") && j.contains("step"));
    out.push_back(j["loss"].get<double>());
    start = end + 1;
  }
  return out;
}

// A tiny HF model whose embedding and lm_head are large enough (std 0.3)
// that logits can become confident: with `lema model init`'s std 0.02 the
// normalised hidden state times lm_head stays near uniform whatever LoRA
// learns, and the loss cannot fall by half.
void write_tiny_model(const std::string& dir) {
  ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.rms_norm_eps = 1e-5;
  ASSERT_TRUE(make_dirs(dir).ok());
  ASSERT_TRUE(write_file_atomic(dir + "/config.json", model_config_to_json(c)).ok());
  std::vector<std::pair<std::string, std::vector<int64_t>>> specs = {{"model.embed_tokens.weight", {300, 64}}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (auto& s : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"input_layernorm.weight", {64}}, {"self_attn.q_proj.weight", {64, 64}}, {"self_attn.k_proj.weight", {32, 64}},
             {"self_attn.v_proj.weight", {32, 64}}, {"self_attn.o_proj.weight", {64, 64}},
             {"post_attention_layernorm.weight", {64}}, {"mlp.gate_proj.weight", {128, 64}},
             {"mlp.up_proj.weight", {128, 64}}, {"mlp.down_proj.weight", {64, 128}}}) {
      specs.push_back({p + s.first, s.second});
    }
  }
  specs.push_back({"model.norm.weight", {64}});
  specs.push_back({"lm_head.weight", {300, 64}});
  SafetensorsWriter w;
  for (auto& s : specs) ASSERT_TRUE(w.add_tensor(s.first, DType::kF32, s.second).ok());
  ASSERT_TRUE(w.open(dir + "/model.safetensors").ok());
  std::mt19937_64 rng(17);
  for (auto& s : specs) {
    size_t n = 1;
    for (int64_t d : s.second) n *= static_cast<size_t>(d);
    const bool head = s.first.find("embed") != std::string::npos || s.first.find("lm_head") != std::string::npos;
    std::normal_distribution<float> normal(0.0f, head ? 0.3f : 0.05f);
    std::vector<float> v(n, 1.0f);  // norms: 1
    if (s.second.size() == 2) for (float& x : v) x = normal(rng);
    ASSERT_TRUE(w.write_tensor(s.first, v.data(), v.size() * sizeof(float)).ok());
  }
  ASSERT_TRUE(w.commit().ok());
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir();
    write_tiny_model(dir_ + "/model");
    data_ = write_data(dir_, 48);
  }
  void TearDown() override { (void)remove_all(dir_); }
  std::string common_args() const {
    return "train --model " + dir_ + "/model --data " + data_ + " --seed 5 --batch 4 --micro-batch 2 --seq-len 128 " +
           "--lora-r 4 --lora-alpha 8 --threads 1 --quiet ";
  }
  std::string dir_, data_;
};

TEST_F(TrainCli, LossFallsByHalf) {
  RunResult r = run_lema(common_args() + "--out " + dir_ + "/run --steps 60 --lr 1e-2 --lora-dropout 0 " +
                         "--schedule cosine --warmup 5 --targets all");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto l = losses(dir_ + "/run/metrics.jsonl");
  ASSERT_EQ(l.size(), 60u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += l[i] / 5;
  for (size_t i = l.size() - 5; i < l.size(); ++i) last += l[i] / 5;
  std::printf("loss: first 5 steps %.4f, last 5 steps %.4f\n", first, last);
  EXPECT_LT(last, 0.5 * first);
  EXPECT_TRUE(path_exists(dir_ + "/run/adapter/adapter_model.safetensors"));
  EXPECT_TRUE(path_exists(dir_ + "/run/checkpoints/step-60/DONE"));
}

TEST_F(TrainCli, ResumeInANewProcessIsBitIdentical) {
  const std::string args = common_args() + "--steps 20 --lr 5e-3 --schedule linear --warmup 3 --lora-dropout 0.1 ";
  RunResult straight = run_lema(args + "--out " + dir_ + "/a --checkpoint-every 10");
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  RunResult first = run_lema(args + "--out " + dir_ + "/b --stop-after 10");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(path_exists(dir_ + "/b/checkpoints/step-10/DONE"));
  ASSERT_FALSE(path_exists(dir_ + "/b/checkpoints/step-20"));
  // As if the first run had died after step 13, mid-line: its metrics
  // went past the checkpoint it is resumed from.
  {
    std::string metrics = *read_file(dir_ + "/b/metrics.jsonl");
    for (int step = 11; step <= 13; ++step) metrics += "{\"step\": " + std::to_string(step) + ", \"loss\": 9.0}\n";
    ASSERT_TRUE(write_file_atomic(dir_ + "/b/metrics.jsonl", metrics + "{\"step\": 14, \"lo").ok());
  }
  RunResult second = run_lema(args + "--out " + dir_ + "/b --resume " + dir_ + "/b");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  // metrics.jsonl lists each step once, with the straight run's losses.
  auto steps_and_losses = [](const std::string& path) {
    std::vector<std::pair<int64_t, double>> out;
    std::istringstream in(*read_file(path));
    for (std::string line; std::getline(in, line);) {
      auto m = nlohmann::json::parse(line, nullptr, false);
      if (m.is_object()) out.emplace_back(m.value("step", int64_t{-1}), m.value("loss", -1.0));
    }
    return out;
  };
  const auto metrics_a = steps_and_losses(dir_ + "/a/metrics.jsonl");
  ASSERT_EQ(metrics_a.size(), 20u);
  EXPECT_EQ(steps_and_losses(dir_ + "/b/metrics.jsonl"), metrics_a);
  for (const char* f : {"/checkpoints/step-20/adapter_model.safetensors", "/checkpoints/step-20/optimizer.safetensors",
                        "/adapter/adapter_model.safetensors"}) {
    auto a = read_file(dir_ + "/a" + f), b = read_file(dir_ + "/b" + f);
    ASSERT_TRUE(a.ok() && b.ok()) << f;
    EXPECT_TRUE(*a == *b) << f << " differs";
  }
  // The step-10 checkpoints agree as well, and training moved the adapter.
  EXPECT_TRUE(*read_file(dir_ + "/a/checkpoints/step-10/adapter_model.safetensors") ==
              *read_file(dir_ + "/b/checkpoints/step-10/adapter_model.safetensors"));
  EXPECT_FALSE(*read_file(dir_ + "/a/checkpoints/step-10/adapter_model.safetensors") ==
               *read_file(dir_ + "/a/checkpoints/step-20/adapter_model.safetensors"));

  // Another learning rate is another run: refused with a message.
  RunResult refused = run_lema(common_args() + "--steps 20 --lr 1e-3 --schedule linear --warmup 3 --lora-dropout 0.1 --out " +
                               dir_ + "/b --resume " + dir_ + "/b/checkpoints/step-10");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("another training configuration"), std::string::npos) << refused.output;
}

TEST_F(TrainCli, FullTrainingResumesBitIdenticalAndWritesAModel) {
  const std::string args = "train --full --model " + dir_ + "/model --data " + data_ +
                           " --seed 5 --batch 4 --micro-batch 2 --seq-len 128 --threads 1 --quiet --steps 20 --lr 1e-3 " +
                           "--schedule linear --warmup 3 ";
  RunResult straight = run_lema(args + "--out " + dir_ + "/fa --checkpoint-every 10");
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  RunResult first = run_lema(args + "--out " + dir_ + "/fb --stop-after 10");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_FALSE(path_exists(dir_ + "/fb/model"));
  RunResult second = run_lema(args + "--out " + dir_ + "/fb --resume " + dir_ + "/fb");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  for (const char* f : {"/checkpoints/step-20/model.safetensors", "/checkpoints/step-20/optimizer.safetensors",
                        "/model/model.safetensors"}) {
    auto a = read_file(dir_ + "/fa" + f), b = read_file(dir_ + "/fb" + f);
    ASSERT_TRUE(a.ok() && b.ok()) << f;
    EXPECT_TRUE(*a == *b) << f << " differs";
  }
  // Every weight moved, and the output is a model lema reads.
  EXPECT_FALSE(*read_file(dir_ + "/fa/checkpoints/step-10/model.safetensors") ==
               *read_file(dir_ + "/fa/checkpoints/step-20/model.safetensors"));
  RunResult inspect = run_lema("inspect " + dir_ + "/fa/model");
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  const auto l = losses(dir_ + "/fa/metrics.jsonl");
  ASSERT_EQ(l.size(), 20u);
  EXPECT_LT(l.back(), l.front());
}

// --vram/--ram: the memory plan streams a layer file (ram mode, then disk
// mode); the adapter is byte-identical to training with every layer in
// memory, and a budget nothing fits in is refused before training.
TEST_F(TrainCli, BudgetsStreamTheModelWithIdenticalResults) {
  ASSERT_EQ(run_lema("model init --preset small --vocab 512 --out " + dir_ + "/small").exit_code, 0);
  const std::string file = dir_ + "/small.lema.safetensors";
  ASSERT_EQ(run_lema("convert " + dir_ + "/small --out " + file).exit_code, 0);
  const std::string args = "train --model " + file + " --data " + data_ +
                           " --seed 5 --batch 4 --micro-batch 1 --seq-len 192 --lora-r 4 --threads 1 --quiet --steps 3 --device cpu ";
  ASSERT_EQ(run_lema(args + "--out " + dir_ + "/mem").exit_code, 0);
  RunResult ram = run_lema(args + "--out " + dir_ + "/ram --vram 20MiB");
  ASSERT_EQ(ram.exit_code, 0) << ram.output;
  EXPECT_NE(ram.output.find("memory plan: mode ram, 0 resident layers, 2 device slots"), std::string::npos) << ram.output;
  EXPECT_NE(ram.output.find("boundary activations in pinned host memory"), std::string::npos) << ram.output;
  RunResult disk = run_lema(args + "--out " + dir_ + "/disk --vram 24MiB --ram 9MiB");
  ASSERT_EQ(disk.exit_code, 0) << disk.output;
  EXPECT_NE(disk.output.find("memory plan: mode disk, 0 resident layers, 3 device slots, prefetch 2, 2 host slots"),
            std::string::npos) << disk.output;
  const auto mem = read_file(dir_ + "/mem/adapter/adapter_model.safetensors");
  ASSERT_TRUE(mem.ok());
  EXPECT_TRUE(*read_file(dir_ + "/ram/adapter/adapter_model.safetensors") == *mem);
  EXPECT_TRUE(*read_file(dir_ + "/disk/adapter/adapter_model.safetensors") == *mem);

  RunResult refused = run_lema(args + "--out " + dir_ + "/no --vram 4MiB");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("no plan fits in --vram 4.0 MiB"), std::string::npos) << refused.output;
  EXPECT_FALSE(path_exists(dir_ + "/no/checkpoints"));
  RunResult dir_model = run_lema("train --model " + dir_ + "/small --data " + data_ + " --out " + dir_ +
                                 "/d --steps 1 --vram 1GiB --quiet");
  EXPECT_NE(dir_model.exit_code, 0);
  EXPECT_NE(dir_model.output.find("lema convert"), std::string::npos) << dir_model.output;
}

// --lora-host (issue 20): the LoRA state in host memory, each layer's
// staged on the "device" with its layer, gives the bytes of the run that
// keeps it on the device (adapter and optimizer state), resident or
// streamed within a budget; a run stopped and resumed with it ends on the
// same bytes; and its adapter merges.
TEST_F(TrainCli, LoraStateOnTheHostGivesTheSameAdapterResumesAndMerges) {
  ASSERT_EQ(run_lema("model init --preset small --vocab 512 --out " + dir_ + "/small").exit_code, 0);
  const std::string file = dir_ + "/small.lema.safetensors";
  ASSERT_EQ(run_lema("convert " + dir_ + "/small --out " + file).exit_code, 0);
  const std::string args = "train --model " + file + " --data " + data_ +
                           " --seed 5 --batch 4 --micro-batch 2 --seq-len 128 --lora-r 4 --lora-dropout 0.1 --threads 1"
                           " --quiet --steps 4 --checkpoint-every 2 --device cpu ";
  ASSERT_EQ(run_lema(args + "--out " + dir_ + "/dev").exit_code, 0);
  RunResult host = run_lema(args + "--out " + dir_ + "/host --lora-host");
  ASSERT_EQ(host.exit_code, 0) << host.output;
  EXPECT_NE(host.output.find("LoRA state in host memory"), std::string::npos) << host.output;
  RunResult streamed = run_lema(args + "--out " + dir_ + "/streamed --lora-host --vram 24MiB");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.output;
  EXPECT_NE(streamed.output.find("memory plan: mode ram"), std::string::npos) << streamed.output;
  EXPECT_NE(streamed.output.find("in pinned host memory ("), std::string::npos) << streamed.output;
  RunResult first = run_lema(args + "--out " + dir_ + "/resumed --lora-host --stop-after 2");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  RunResult second = run_lema(args + "--out " + dir_ + "/resumed --lora-host --resume " + dir_ + "/resumed");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  for (const char* f : {"/adapter/adapter_model.safetensors", "/checkpoints/step-4/optimizer.safetensors",
                        "/checkpoints/step-2/adapter_model.safetensors"}) {
    const auto dev = read_file(dir_ + "/dev" + f);
    ASSERT_TRUE(dev.ok()) << f;
    for (const char* run : {"/host", "/streamed", "/resumed"}) {
      const auto other = read_file(dir_ + run + f);
      ASSERT_TRUE(other.ok()) << run << f;
      EXPECT_TRUE(*other == *dev) << run << f << " differs";
    }
  }
  EXPECT_FALSE(*read_file(dir_ + "/dev/checkpoints/step-2/adapter_model.safetensors") ==
               *read_file(dir_ + "/dev/adapter/adapter_model.safetensors"));  // training moved it
  for (const char* run : {"dev", "host"}) {
    RunResult merged = run_lema("merge --base " + dir_ + "/small --adapter " + dir_ + "/" + run + "/adapter --out " + dir_ +
                                "/merged-" + run);
    ASSERT_EQ(merged.exit_code, 0) << merged.output;
  }
  EXPECT_TRUE(*read_file(dir_ + "/merged-host/model.safetensors") == *read_file(dir_ + "/merged-dev/model.safetensors"));
  RunResult full = run_lema("train --full --model " + dir_ + "/small --data " + data_ + " --out " + dir_ +
                            "/full --steps 1 --lora-host --quiet --device cpu");
  EXPECT_NE(full.exit_code, 0);
  EXPECT_NE(full.output.find("--lora-host"), std::string::npos) << full.output;
}

// A budget that the head (embedding + lm_head of a 32,000-word vocabulary,
// 62.5 MiB in fp32) does not fit beside the working memory: the plan
// streams the head from host memory, says so, and trains to the adapter of
// the unbudgeted run (equal up to summation order: the loss's log-sum-exp
// and the hidden states' gradient are summed over vocabulary chunks).
TEST_F(TrainCli, BigVocabularyHeadStreamsWithinBudget) {
  ASSERT_EQ(run_lema("model init --preset small --vocab 32000 --out " + dir_ + "/bigv").exit_code, 0);
  const std::string file = dir_ + "/bigv.lema.safetensors";
  ASSERT_EQ(run_lema("convert " + dir_ + "/bigv --out " + file).exit_code, 0);
  const std::string args = "train --model " + file + " --data " + data_ +
                           " --seed 5 --batch 2 --micro-batch 1 --seq-len 128 --lora-r 4 --threads 1 --quiet --steps 3 --device cpu ";
  ASSERT_EQ(run_lema(args + "--out " + dir_ + "/bigv-mem").exit_code, 0);
  RunResult streamed = run_lema(args + "--out " + dir_ + "/bigv-streamed --vram 40MiB");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.output;
  EXPECT_NE(streamed.output.find("head streamed: embedding and lm_head in pinned host memory"), std::string::npos)
      << streamed.output;
  auto mem = SafetensorsReader::open(dir_ + "/bigv-mem/adapter/adapter_model.safetensors");
  auto str = SafetensorsReader::open(dir_ + "/bigv-streamed/adapter/adapter_model.safetensors");
  ASSERT_TRUE(mem.ok() && str.ok());
  ASSERT_EQ((*mem)->tensors().size(), (*str)->tensors().size());
  double worst = 0;
  for (const TensorInfo& info : (*mem)->tensors()) {
    const TensorInfo* other = (*str)->find(info.name);
    ASSERT_NE(other, nullptr) << info.name;
    ASSERT_EQ(info.dtype, DType::kF32);
    ASSERT_EQ(other->nbytes, info.nbytes);
    const auto* a = reinterpret_cast<const float*>((*mem)->data(info));
    const auto* b = reinterpret_cast<const float*>((*str)->data(*other));
    double scale = 0, diff = 0;
    for (int64_t i = 0; i < info.numel(); ++i) {
      scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
      diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  // fp32 rounding differences reach AdamW, whose first steps move every
  // weight by about lr whatever its gradient's size: the adapters agree to
  // 1e-3 and the step losses to 1e-5 (the exact check, fp64 against the
  // resident head, is model_family_test's StreamedHeadEqualsResidentHead).
  std::printf("streamed head vs resident head: worst relative adapter difference %.3g\n", worst);
  EXPECT_LT(worst, 1e-3);
  const auto resident_losses = losses(dir_ + "/bigv-mem/metrics.jsonl");
  const auto streamed_losses = losses(dir_ + "/bigv-streamed/metrics.jsonl");
  ASSERT_EQ(resident_losses.size(), 3u);
  ASSERT_EQ(streamed_losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(streamed_losses[i], resident_losses[i], 1e-5 * resident_losses[i]) << i;
  // The same budget with the head resident would not fit: the plan had to stream it.
  RunResult too_small = run_lema(args + "--out " + dir_ + "/bigv-no --vram 8MiB");
  EXPECT_NE(too_small.exit_code, 0);
  EXPECT_NE(too_small.output.find("head streamed"), std::string::npos) << too_small.output;
}

TEST_F(TrainCli, TrainsOnTextJsonlWithTheModelsTokenizer) {
  write_byte_tokenizer(dir_ + "/model");
  std::string text;
  for (int i = 0; i < 8; ++i) {
    text += R"({"question": "What is )" + std::to_string(i) + R"( plus 1?", "answer": ")" + std::to_string(i + 1) +
            R"(", "explanation": "Counting up by one.", "confidence": "High"})" + "\n";
  }
  ASSERT_TRUE(write_file_atomic(dir_ + "/text.jsonl", text).ok());
  RunResult r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/text.jsonl --out " + dir_ +
                         "/t --steps 3 --batch 2 --seq-len 256 --lora-r 2 --threads 1 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(losses(dir_ + "/t/metrics.jsonl").size(), 3u);
  EXPECT_NE(r.output.find("8 examples"), std::string::npos) << r.output;
  // A bad line is named with its line number.
  ASSERT_TRUE(write_file_atomic(dir_ + "/bad.jsonl", text + "{\"question\": 3}\n").ok());
  r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/bad.jsonl --out " + dir_ + "/u --steps 1 --quiet");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("bad.jsonl:9"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"question\": expected a string"), std::string::npos) << r.output;
  // --skip-bad counts it by reason in the run's summary instead.
  r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/bad.jsonl --out " + dir_ +
               "/v --steps 1 --batch 2 --seq-len 256 --lora-r 2 --threads 1 --quiet --skip-bad");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 bad record(s) skipped (wrong_type 1)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no chat template: lema's chat format"), std::string::npos) << r.output;
  // Nothing usable is an error naming the user's file, skipped or not.
  ASSERT_TRUE(write_file_atomic(dir_ + "/none.jsonl", "{\"question\": 3}\n\n").ok());
  r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/none.jsonl --out " + dir_ + "/w --steps 1 --skip-bad");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dir_ + "/none.jsonl: no usable example"), std::string::npos) << r.output;
  r = run_lema("train --model " + dir_ + "/model --data " + dir_ + "/text.jsonl --out " + dir_ + "/w --steps 1 --format csv");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'csv'"), std::string::npos) << r.output;
}

// Alpaca records in a JSON array, through a chat template beside the
// tokenizer: the summary names the format and the template.
TEST_F(TrainCli, AlpacaArrayThroughTheChatTemplate) {
  const std::string tok = dir_ + "/tok";
  ASSERT_TRUE(make_dirs(tok).ok());
  write_byte_tokenizer(tok);
  write_byte_tokenizer(dir_ + "/model");
  ASSERT_TRUE(write_file_atomic(tok + "/chat_template.jinja",
                                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
                  .ok());
  std::string text = "[";
  for (int i = 0; i < 6; ++i)
    text += std::string(i ? "," : "") + R"({"instruction": "Add one to )" + std::to_string(i) + R"(.", "input": "", "output": ")" +
            std::to_string(i + 1) + R"("})";
  ASSERT_TRUE(write_file_atomic(dir_ + "/alpaca.json", text + "]\n").ok());
  RunResult r = run_lema("train --model " + dir_ + "/model --tokenizer " + tok + " --data " + dir_ +
                         "/alpaca.json --out " + dir_ + "/a --steps 2 --batch 2 --seq-len 128 --lora-r 2 --threads 1 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("6 examples (format alpaca, chat template " + tok + "/chat_template.jinja)"), std::string::npos)
      << r.output;
  // chat and eval render through the same template, and say which.
  r = run_lema("chat " + dir_ + "/model --tokenizer " + tok + " --adapter " + dir_ +
               "/a/adapter --prompt 'Add one to 2.' --max-new-tokens 3 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("lema chat: chat template " + tok + "/chat_template.jinja"), std::string::npos) << r.output;
  r = run_lema("eval --model " + dir_ + "/model --tokenizer " + tok + " --data " + dir_ + "/alpaca.json --out " + dir_ +
               "/e --questions 1 --max-new-tokens 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("eval: chat template " + tok + "/chat_template.jinja"), std::string::npos) << r.output;
  // Without a template both fall back to lema's format and say so; --template overrides.
  r = run_lema("chat " + dir_ + "/model --tokenizer " + dir_ + "/model --prompt 'Hi' --max-new-tokens 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("has no chat template: using lema's chat format"), std::string::npos) << r.output;
  r = run_lema("chat " + dir_ + "/model --tokenizer " + dir_ + "/model --template " + tok +
               "/chat_template.jinja --prompt 'Hi' --max-new-tokens 2 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("lema chat: chat template " + tok + "/chat_template.jinja"), std::string::npos) << r.output;
}

// --packing: the examples (about 176 tokens each) packed three to a row of
// 544; 12 steps straight equal 6 + a resume in a new process, byte for
// byte; the packed run's checkpoint does not resume an unpacked run; and
// the job spec's [train] packing reaches the engine through `lema run`.
TEST_F(TrainCli, PackingRunsResumesAndIsASpecKey) {
  const std::string args = "train --model " + dir_ + "/model --data " + data_ +
                           " --seed 5 --batch 2 --micro-batch 1 --seq-len 544 --lora-r 4 --lora-alpha 8 --threads 1 "
                           "--quiet --steps 12 --lr 5e-3 --lora-dropout 0.1 --packing ";
  RunResult straight = run_lema(args + "--out " + dir_ + "/pa --checkpoint-every 6");
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  // 48 examples of 174..178 tokens, three to a row: 16 rows.
  EXPECT_NE(straight.output.find("packed into 16 rows of 544"), std::string::npos) << straight.output;
  EXPECT_NE(straight.output.find("batch 2 packed rows"), std::string::npos) << straight.output;
  RunResult first = run_lema(args + "--out " + dir_ + "/pb --stop-after 6");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  RunResult second = run_lema(args + "--out " + dir_ + "/pb --resume " + dir_ + "/pb");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  for (const char* f : {"/checkpoints/step-12/adapter_model.safetensors", "/checkpoints/step-12/optimizer.safetensors",
                        "/adapter/adapter_model.safetensors"}) {
    auto a = read_file(dir_ + "/pa" + f), b = read_file(dir_ + "/pb" + f);
    ASSERT_TRUE(a.ok() && b.ok()) << f;
    EXPECT_TRUE(*a == *b) << f << " differs";
  }
  const auto l = losses(dir_ + "/pa/metrics.jsonl");
  ASSERT_EQ(l.size(), 12u);
  for (double x : l) EXPECT_TRUE(std::isfinite(x) && x > 0);
  // Packing is part of the run's configuration: the same flags without it
  // are another run.
  std::string unpacked = args;
  unpacked.erase(unpacked.find("--packing"));
  RunResult refused = run_lema(unpacked + "--out " + dir_ + "/pb --resume " + dir_ + "/pb/checkpoints/step-6");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("another training configuration"), std::string::npos) << refused.output;

  // [train] packing = true in a job spec: the train stage packs.
  const std::string job_dir = dir_ + "/job";
  ASSERT_TRUE(make_dirs(job_dir).ok());
  test::make_model_and_data(job_dir, 24);
  std::string spec = test::tiny_spec(job_dir, "packed", 2, 0);
  spec.replace(spec.find("seq_len = 64\n"), 13, "seq_len = 64\npacking = true\n");
  test::write_text(job_dir + "/packed.toml", spec);
  RunResult job = run_lema("run " + job_dir + "/packed.toml --cpu --threads 1");
  const std::string worker_log = test::slurp(job_dir + "/packed/logs/worker-0.log");
  ASSERT_EQ(job.exit_code, 0) << job.output << worker_log;
  EXPECT_NE(worker_log.find("pre-tokenized examples (0 cut to seq_len); packed into"), std::string::npos) << worker_log;
  EXPECT_TRUE(path_exists(job_dir + "/packed/train/adapter/adapter_model.safetensors"));
}

TEST_F(TrainCli, BadOptionsAreRefused) {
  RunResult r = run_lema(common_args() + "--out " + dir_ + "/x --steps 2 --targets q_proj,foo");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'foo'"), std::string::npos) << r.output;
  r = run_lema(common_args() + "--out " + dir_ + "/x --steps 2 --schedule wavy");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace lema
