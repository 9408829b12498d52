#include "common/protocol/job_spec.h"

#include <gtest/gtest.h>

namespace lema {
namespace {

std::string error_of(const std::string& toml) {
  auto r = JobSpec::parse(toml, "job.toml");
  EXPECT_FALSE(r.ok()) << toml;
  return r.ok() ? std::string() : r.status().message();
}

TEST(JobSpec, MinimalSpecGetsDefaults) {
  auto r = JobSpec::parse("[model]\npath = \"/m\"\n", "job.toml");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->job.name, "job");
  EXPECT_EQ(r->job.work_dir, "runs/job");
  EXPECT_EQ(r->job.max_attempts, 3);
  EXPECT_EQ(r->data.builder, "lema-reply");
  EXPECT_EQ(r->train.schedule, "cosine");
  EXPECT_TRUE(r->eval.enabled);
  EXPECT_TRUE(r->resources.cpu_ok);
}

TEST(JobSpec, FullSpecParsesAndNormalises) {
  const char* text = R"(
[job]
name = "lema-reply"
priority = 5
work_dir = "/runs/x"
max_attempts = 4
[model]
path = "/models/tinyllama"
tokenizer = "/models/tinyllama/tokenizer.model"
[data]
jsonl = "/data/train.jsonl"
eval_fraction = 0.2
[train]
seed = 7
steps = 100
lr = 1e-4
schedule = "linear"
warmup = 10
batch = 8
micro_batch = 2
seq_len = 256
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0
targets = ["q_proj", "v_proj", "down_proj"]
dtype = "bf16"
device = "cuda"
checkpoint_every = 25
vram = "4GiB"
ram = 8589934592
[eval]
questions = 5
max_new_tokens = 64
[merge]
enabled = false
dtype = "fp16"
shard_size = "512MiB"
[resources]
gpu_memory = "6GiB"
cpu_ok = false
)";
  auto r = JobSpec::parse(text, "job.toml");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto j = r->to_json();
  EXPECT_EQ(j["job"]["priority"], 5);
  EXPECT_EQ(j["data"]["builder"], "");
  EXPECT_EQ(j["data"]["jsonl"], "/data/train.jsonl");
  EXPECT_EQ(j["train"]["lr"], 1e-4);
  EXPECT_EQ(j["train"]["vram"], uint64_t(4) << 30);
  EXPECT_EQ(j["train"]["ram"], uint64_t(8) << 30);
  EXPECT_EQ(j["train"]["targets"].size(), 3u);
  EXPECT_EQ(j["merge"]["shard_size"], uint64_t(512) << 20);
  EXPECT_EQ(j["resources"]["gpu_memory"], uint64_t(6) << 30);
  EXPECT_EQ(j["resources"]["cpu_ok"], false);
  // Normalising is stable: every key of every section is present.
  for (const char* s : {"job", "model", "data", "train", "eval", "merge", "resources"}) EXPECT_TRUE(j.contains(s));
  EXPECT_EQ(j["train"].size(), 18u);
}

TEST(JobSpec, ErrorsNameKeyAndLine) {
  std::string e = error_of("[model]\npath = \"/m\"\n[train]\nlr = 0.1\nlearning_rate = 3\n");
  EXPECT_NE(e.find("job.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'learning_rate' in [train]"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\n\nsteps = \"ten\"\n");
  EXPECT_NE(e.find("job.toml:5: [train] steps: expected an integer"), std::string::npos) << e;
  e = error_of("[model]\npath = 3\n");
  EXPECT_NE(e.find("job.toml:2: [model] path: expected a string"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[trian]\n");
  EXPECT_NE(e.find("job.toml:3: unknown section or key 'trian'"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\ntargets = [\"q_proj\", \"x_proj\"]\n");
  EXPECT_NE(e.find("unknown target 'x_proj'"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\nschedule = \"step\"\n");
  EXPECT_NE(e.find("job.toml:4: [train] schedule"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\nbatch = 8\nmicro_batch = 3\n");
  EXPECT_NE(e.find("micro_batch"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\nvram = \"lots\"\n");
  EXPECT_NE(e.find("job.toml:4: [train] vram"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[data]\nbuilder = \"lema-reply\"\njsonl = \"/x\"\n");
  EXPECT_NE(e.find("either builder or jsonl"), std::string::npos) << e;
  e = error_of("[job]\nname = \"x\"\n");
  EXPECT_NE(e.find("[model] path is required"), std::string::npos) << e;
  e = error_of("[model\npath = 1\n");
  EXPECT_NE(e.find("job.toml:1"), std::string::npos) << e;
  e = error_of("model = 3\n");
  EXPECT_NE(e.find("must be a table"), std::string::npos) << e;
}

}  // namespace
}  // namespace lema
