// The worker's stage options come from the typed job spec with the spec's
// defaults, and a train stage trains as `lema train` does with the same
// flags: the flags are parsed by the CLI's own code (cli/train_flags.cpp).
#include "worker/stage_options.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/train_flags.h"
#include "engine/evaluator.h"
#include "common/formats/gguf_arch.h"
#include "engine/gguf_export.h"
#include "engine/merge.h"

namespace lema::worker {
namespace {

// Every TrainOptions field, so that two option sets compare as a whole and
// a difference names the field.
nlohmann::json fields(const engine::TrainOptions& o) {
  return {{"model", o.model},
          {"data", o.data},
          {"out", o.out},
          {"tokenizer", o.tokenizer},
          {"resume", o.resume},
          {"full", o.full},
          {"seed", o.seed},
          {"steps", o.steps},
          {"epochs", o.epochs},
          {"stop_after", o.stop_after},
          {"lr", o.lr},
          {"schedule", o.schedule},
          {"warmup", o.warmup},
          {"batch", o.batch},
          {"micro_batch", o.micro_batch},
          {"seq_len", o.seq_len},
          {"packing", o.packing},
          {"lora_r", o.lora_r},
          {"lora_alpha", o.lora_alpha},
          {"lora_dropout", o.lora_dropout},
          {"use_rslora", o.use_rslora},
          {"targets", o.targets},
          {"dtype", o.dtype},
          {"device", o.device},
          {"checkpoint_every", o.checkpoint_every},
          {"weight_decay", o.weight_decay},
          {"max_grad_norm", o.max_grad_norm},
          {"loss_chunk_tokens", o.loss_chunk_tokens},
          {"vram_budget", o.vram_budget},
          {"ram_budget", o.ram_budget},
          {"force_lora_on_host", o.force_lora_on_host},
          {"threads", o.threads},
          {"quiet", o.quiet}};
}

// What `lema train ARGS` trains with.
engine::TrainOptions lema_train(const std::vector<std::string>& args) {
  engine::TrainOptions o;
  CLI::App app;
  cli::add_train_flags(app.add_subcommand("train"), &o);
  std::vector<std::string> argv = {"train"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::reverse(argv.begin(), argv.end());  // CLI11 takes them last-first
  app.parse(argv);
  return o;
}

JobSpec spec_of(const std::string& toml) {
  Result<JobSpec> spec = JobSpec::parse(toml, "job.toml");
  EXPECT_TRUE(spec.ok()) << spec.status().to_string();
  return spec.ok() ? spec.value() : JobSpec();
}

StageEnv cpu_env() {
  StageEnv env;
  env.device = "cpu";
  env.threads = 3;
  return env;
}

// The flags that say what the stage sets from the job directory and the
// worker (data, out, device, threads; a stage never prints steps).
std::vector<std::string> stage_flags(const std::string& model, const std::string& work_dir) {
  return {"--model", model, "--data", work_dir + "/data/train.jsonl", "--out", work_dir + "/train",
          "--device", "cpu", "--threads", "3", "--quiet"};
}

TEST(StageOptions, DefaultSpecTrainsAsLemaTrainWithNoFlags) {
  const JobSpec spec = spec_of("[model]\npath = \"/m\"\n");
  const engine::TrainOptions stage = train_options(spec, "/w", cpu_env());
  EXPECT_EQ(fields(stage), fields(lema_train(stage_flags("/m", "/w"))));
  // And both are the defaults of the engine's struct.
  engine::TrainOptions plain;
  plain.model = "/m";
  plain.data = "/w/data/train.jsonl";
  plain.out = "/w/train";
  plain.device = "cpu";
  plain.threads = 3;
  plain.quiet = true;
  EXPECT_EQ(fields(stage), fields(plain));
}

TEST(StageOptions, EveryTrainKeyMatchesItsFlag) {
  const JobSpec spec = spec_of(R"(
[model]
path = "/models/m"
tokenizer = "/models/tok.json"
[train]
seed = 13
steps = 77
lr = 3e-3
schedule = "linear"
warmup = 4
batch = 6
micro_batch = 3
seq_len = 96
packing = true
lora_r = 5
lora_alpha = 7.5
lora_dropout = 0.125
targets = ["gate_proj", "down_proj"]
dtype = "bf16"
device = "cpu"
checkpoint_every = 9
vram = "3GiB"
ram = "5GiB"
)");
  std::vector<std::string> flags = stage_flags("/models/m", "/w");
  for (const char* f : {"--tokenizer=/models/tok.json", "--seed=13", "--steps=77", "--lr=3e-3", "--schedule=linear",
                        "--warmup=4", "--batch=6", "--micro-batch=3", "--seq-len=96", "--packing", "--lora-r=5",
                        "--lora-alpha=7.5", "--lora-dropout=0.125", "--targets=gate_proj,down_proj", "--dtype=bf16",
                        "--checkpoint-every=9", "--vram=3GiB", "--ram=5GiB"}) {
    flags.push_back(f);
  }
  const engine::TrainOptions stage = train_options(spec, "/w", cpu_env());
  EXPECT_EQ(fields(stage), fields(lema_train(flags)));
  EXPECT_EQ(stage.vram_budget, uint64_t(3) << 30);
  EXPECT_EQ(stage.targets, "gate_proj,down_proj");
}

TEST(StageOptions, EpochsWhenNoSteps) {
  const JobSpec spec = spec_of("[model]\npath = \"/m\"\n[train]\nepochs = 3\n");
  std::vector<std::string> flags = stage_flags("/m", "/w");
  flags.push_back("--epochs=3");
  EXPECT_EQ(fields(train_options(spec, "/w", cpu_env())), fields(lema_train(flags)));
}

TEST(StageOptions, DeviceAutoIsTheWorkersDevice) {
  StageEnv gpu = cpu_env();
  gpu.device = "cuda:1";
  EXPECT_EQ(train_options(spec_of("[model]\npath = \"/m\"\n"), "/w", gpu).device, "cuda:1");
  EXPECT_EQ(train_options(spec_of("[model]\npath = \"/m\"\n[train]\ndevice = \"cpu\"\n"), "/w", gpu).device, "cpu");
}

TEST(StageOptions, EvalUsesTrainingsCutDtypeAndBudgets) {
  const JobSpec spec = spec_of("[model]\npath = \"/m\"\ntokenizer = \"/t\"\n[train]\nseq_len = 99\ndtype = \"fp16\"\n"
                               "vram = \"1GiB\"\nram = \"2GiB\"\n[eval]\nquestions = 4\nmax_new_tokens = 17\n");
  const engine::EvalOptions o = eval_options(spec, "/w", cpu_env());
  EXPECT_EQ(o.model, "/m");
  EXPECT_EQ(o.tokenizer, "/t");
  EXPECT_EQ(o.adapter, "/w/train/adapter");
  EXPECT_EQ(o.data, "/w/data/eval.jsonl");
  EXPECT_EQ(o.out, "/w/eval");
  EXPECT_EQ(o.metrics, "/w/train/metrics.jsonl");
  EXPECT_EQ(o.questions, 4);
  EXPECT_EQ(o.max_new_tokens, 17);
  EXPECT_EQ(o.seq_len, 99);
  EXPECT_EQ(o.dtype, "fp16");
  EXPECT_EQ(o.device, "cpu");
  EXPECT_EQ(o.vram_budget, uint64_t(1) << 30);
  EXPECT_EQ(o.ram_budget, uint64_t(2) << 30);
  EXPECT_EQ(o.threads, 3);
  EXPECT_FALSE(o.show_progress);
}

TEST(StageOptions, MergeUsesTheMergeSection) {
  auto o = merge_options(spec_of("[model]\npath = \"/m\"\n[merge]\ndtype = \"fp16\"\nshard_size = \"64MiB\"\n"), "/w");
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ(o->base, "/m");
  EXPECT_EQ(o->adapter, "/w/train/adapter");
  EXPECT_EQ(o->out, "/w/merged");
  ASSERT_TRUE(o->dtype.has_value());
  EXPECT_EQ(*o->dtype, DType::kF16);
  EXPECT_EQ(o->shard_bytes, uint64_t(64) << 20);
}

TEST(StageOptions, ExportReadsTheMergedModel) {
  engine::GgufExportOptions o = export_options(
      spec_of("[job]\nname = \"j\"\n[model]\npath = \"/m\"\n[export]\ngguf = \"q4_0\"\n"), "/w");
  EXPECT_EQ(o.model, "/w/merged");
  EXPECT_EQ(o.out, "/w/model.q4_0.gguf");
  EXPECT_EQ(o.type, "q4_0");
  EXPECT_EQ(o.name, "j");
  EXPECT_TRUE(o.adapter.empty());
  EXPECT_FALSE(o.show_progress);
}

// The spec's list of [export] gguf types is the exporter's: each one the
// spec takes is built, and a name the exporter refuses the spec refuses.
TEST(StageOptions, ExportTypesAreTheExportersOwn) {
  for (const char* t : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k", "f8"}) {
    const bool spec_ok =
        JobSpec::parse(std::string("[model]\npath = \"/m\"\n[export]\ngguf = \"") + t + "\"\n").ok();
    EXPECT_EQ(spec_ok, parse_gguf_file_type(t).ok()) << t;
  }
}

TEST(StageOptions, AssignmentSpecIsCheckedAsASubmittedOne) {
  StageAssignment a;
  a.spec_json = spec_of("[model]\npath = \"/m\"\n[train]\nlora_r = 3\n").to_json().dump();
  Result<JobSpec> spec = assignment_spec(a);
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(spec->train.lora_r, 3);
  a.spec_json = "{not json";
  EXPECT_EQ(assignment_spec(a).status().code(), Status::Code::kInvalidArgument);
  nlohmann::json j = spec_of("[model]\npath = \"/m\"\n").to_json();
  j["train"]["batch"] = 0;
  a.spec_json = j.dump();
  Result<JobSpec> bad = assignment_spec(a);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("[train] batch"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace lema::worker
