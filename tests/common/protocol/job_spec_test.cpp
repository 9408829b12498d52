#include "common/protocol/job_spec.h"
#include "common/protocol/tomlpp_shield.h"

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
  EXPECT_EQ(r->retry.max_crashes, 2);
}

// Issue 19: [retry] max_crashes, bounded [1, 100], kept through the normalised form.
TEST(JobSpec, RetryMaxCrashes) {
  auto r = JobSpec::parse("[model]\npath = \"/m\"\n[retry]\nmax_crashes = 5\n", "job.toml");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->retry.max_crashes, 5);
  auto back = JobSpec::from_json(r->to_json());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->retry.max_crashes, 5);
  std::string e = error_of("[model]\npath = \"/m\"\n[retry]\nmax_crashes = 0\n");
  EXPECT_NE(e.find("job.toml:4: [retry] max_crashes: must be in [1, 100] (got 0)"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[retry]\nmax_crashes = 101\n");
  EXPECT_NE(e.find("[retry] max_crashes: must be in [1, 100]"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[retry]\nmax_crash = 3\n");
  EXPECT_NE(e.find("max_crash"), std::string::npos) << e;
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
packing = true
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
  EXPECT_EQ(j["train"]["packing"], true);
  EXPECT_EQ(j["train"]["vram"], uint64_t(4) << 30);
  EXPECT_EQ(j["train"]["ram"], uint64_t(8) << 30);
  EXPECT_EQ(j["train"]["targets"].size(), 3u);
  EXPECT_EQ(j["merge"]["shard_size"], uint64_t(512) << 20);
  EXPECT_EQ(j["resources"]["gpu_memory"], uint64_t(6) << 30);
  EXPECT_EQ(j["resources"]["cpu_ok"], false);
  // Normalising is stable: every key of every section is present.
  for (const char* s : {"job", "model", "data", "train", "eval", "merge", "export", "resources", "retry"}) {
    EXPECT_TRUE(j.contains(s)) << s;
  }
  EXPECT_EQ(j["train"].size(), 19u);
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
  // Phi-3's fused projections are names the spec knows (the engine checks
  // them against the model's family).
  auto phi = JobSpec::parse("[model]\npath = \"/m\"\n[train]\ntargets = [\"qkv_proj\", \"gate_up_proj\"]\n", "job.toml");
  EXPECT_TRUE(phi.ok()) << phi.status().to_string();
  e = error_of("[model]\npath = \"/m\"\n[train]\nschedule = \"step\"\n");
  EXPECT_NE(e.find("job.toml:4: [train] schedule"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\nbatch = 8\nmicro_batch = 3\n");
  EXPECT_NE(e.find("micro_batch"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[train]\npacking = \"yes\"\n");
  EXPECT_NE(e.find("job.toml:4: [train] packing: expected a boolean"), std::string::npos) << e;
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

// toml++ 3.3.0 reaches __builtin_unreachable() when it asks whether one of
// these characters is whitespace (tests/fuzz/findings/
// job_spec_toml_unreachable*.toml): the text toml++ parses never holds one
// (common/protocol/tomlpp_shield.h), and values, keys and errors give them
// back as written.
TEST(JobSpec, TomlPlusPlusNeverSeesItsWhitespaceHole) {
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0xA0));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0xA1));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0x499));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0x49A));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0x2C5D));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0x2C5E));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0x3000));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0x3057));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0x3058));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0xFB25));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0xFB26));
  EXPECT_TRUE(in_tomlpp_whitespace_hole(0xFEFE));
  EXPECT_FALSE(in_tomlpp_whitespace_hole(0xFEFF));

  // The fuzzer's inputs parse to toml++'s own errors, with the character
  // named as written.
  std::string e = error_of("r\xcf\x8eT");
  EXPECT_NE(e.find("job.toml:1"), std::string::npos) << e;
  e = error_of("#0 Th% ril\nlr =-reed'eeeeeema\xcf\xa0");
  EXPECT_NE(e.find("job.toml:2"), std::string::npos) << e;
  EXPECT_EQ(e.find("\xf3\xb0"), std::string::npos) << e;  // no plane-15 character leaks into an error
  e = error_of("[model]\npath = \"/m\"\n[tr\xc3\xa9in]\n");
  EXPECT_EQ(e.find("\xf3\xb0"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n\"tr\xc3\xa9in\" = 1\n");
  EXPECT_NE(e.find("tr\xc3\xa9in"), std::string::npos) << e;  // a key named as written
  e = error_of("[model]\npath = \"/m\"\n# \xf3\xb0\x8f\x8e\n");  // U+F03CE: the shield's own range
  EXPECT_NE(e.find("job.toml:3: private-use character U+F03CE"), std::string::npos) << e;

  // Strings of every kind, quoted keys and comments keep these characters,
  // a line-ending backslash before one included.
  const std::string ok_text =
      "# mod\xc3\xa8le \xcf\x8e\n"
      "[model]\n"
      "path = \"/m/\xcf\x8e \\\" \xc3\xa9\" # \xe3\x80\x80\n"
      "[job]\n"
      "name = 'n\xc3\xa9'\n"
      "work_dir = \"\"\"/w/\xcf\x8e\\\n  x\\\"\xc3\xa9\"\"\"\"\"\n";
  auto ok = JobSpec::parse(ok_text, "job.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->model.path, "/m/\xcf\x8e \" \xc3\xa9");
  EXPECT_EQ(ok->job.name, "n\xc3\xa9");
  EXPECT_EQ(ok->job.work_dir, "/w/\xcf\x8ex\"\xc3\xa9\"\"");
  ok = JobSpec::parse("[model]\npath = \"\"\"a \\\n  \xc3\xa9\"\"\"\ntargets = ['\xcf\x8e']\n", "job.toml");
  ASSERT_FALSE(ok.ok());  // targets live in [train]; the error names the key as written
  EXPECT_NE(ok.status().message().find("targets"), std::string::npos) << ok.status().message();
  ok = JobSpec::parse("[model]\npath = \"\"\"a \\\n  \xc3\xa9\"\"\"\n", "job.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->model.path, "a \xc3\xa9");
}

// Issue 19 C1/C2: numbers that would overflow a shape or an int32 (and
// abort a worker) are refused at submit with the key and line, as is every
// number outside its bound (common/base/bounds.h) and a name with control
// characters.
TEST(JobSpec, EveryNumberIsBounded) {
  const std::string head = "[model]\npath = \"/m\"\n[train]\n";
  struct Case {
    const char* line;
    const char* expect;
  };
  const Case cases[] = {
      {"seq_len = 9223372036854775807", "job.toml:4: [train] seq_len: must be in [8, 1048576]"},
      {"seq_len = 2147483648", "[train] seq_len: must be in"},
      {"batch = 9223372036854775807", "[train] batch: must be in [1, 65536]"},
      {"batch = 2147483648", "[train] batch: must be in"},
      {"steps = 9223372036854775807", "[train] steps: must be in [0, 1000000000]"},
      {"lora_alpha = -8", "[train] lora_alpha: must be in (0, 1000000]"},
      {"lora_alpha = 0", "[train] lora_alpha"},
      {"lora_r = 100000", "[train] lora_r: must be in [1, 8192]"},
      {"lr = nan", "[train] lr"},
      {"warmup = 9223372036854775807", "[train] warmup"},
      {"checkpoint_every = -1", "[train] checkpoint_every"},
      {"epochs = 100000", "[train] epochs"},
      {"micro_batch = 9223372036854775807", "[train] micro_batch"},
      {"batch = 65536\nseq_len = 65536", "job.toml:4: [train] batch: batch x seq_len"},
      {"batch = 4\nmicro_batch = 3", "micro_batch must be 0 (auto) or divide batch"},
      {"ram = \"2000TiB\"", "[train] ram: must be in"},
      {"vram = 9223372036854775807", "[train] vram: must be in"},
  };
  for (const Case& c : cases) {
    std::string e = error_of(head + c.line + "\n");
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.line << " -> " << e;
  }
  std::string e = error_of("[job]\nmax_attempts = 9223372036854775807\n[model]\npath = \"/m\"\n");
  EXPECT_NE(e.find("[job] max_attempts: must be in [1, 100]"), std::string::npos) << e;
  e = error_of("[job]\npriority = 9223372036854775807\n[model]\npath = \"/m\"\n");
  EXPECT_NE(e.find("[job] priority"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[data]\nexamples = 9223372036854775807\n");
  EXPECT_NE(e.find("[data] examples"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[eval]\nquestions = 9223372036854775807\n");
  EXPECT_NE(e.find("[eval] questions"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[eval]\nmax_new_tokens = 0\n");
  EXPECT_NE(e.find("[eval] max_new_tokens"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[merge]\nshard_size = 9223372036854775807\n");
  EXPECT_NE(e.find("[merge] shard_size"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[resources]\ngpu_memory = \"2000TiB\"\n");
  EXPECT_NE(e.find("[resources] gpu_memory"), std::string::npos) << e;
  // Control characters in names and paths (TOML escapes reach the string).
  e = error_of("[job]\nname = \"a\\u001b[2Jb\"\n[model]\npath = \"/m\"\n");
  EXPECT_NE(e.find("[job] name: must not hold control characters (found 0x1b)"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\\nx\"\n");
  EXPECT_NE(e.find("[model] path: must not hold control characters"), std::string::npos) << e;
  e = error_of("[job]\nwork_dir = \"/w\\tx\"\n[model]\npath = \"/m\"\n");
  EXPECT_NE(e.find("[job] work_dir"), std::string::npos) << e;
  // The bounds' edges are accepted.
  auto ok = JobSpec::parse(head + "steps = 1000000000\nbatch = 2047\nseq_len = 1048576\nlora_r = 8192\n"
                                  "lora_alpha = 1000000\n", "job.toml");
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
  // The JSON form (what a worker reads) is checked by the same bounds.
  nlohmann::json j = JobSpec().to_json();
  j["model"]["path"] = "/m";
  j["train"]["seq_len"] = int64_t(INT64_MAX);
  auto from = JobSpec::from_json(j, "stored");
  ASSERT_FALSE(from.ok());
  EXPECT_NE(from.status().message().find("seq_len"), std::string::npos) << from.status().to_string();
}

// Every field set away from its default, so a field that to_json or
// from_json drops shows up as a difference.
JobSpec every_field_changed() {
  JobSpec s;
  s.job = {"named", 9, "/w/named", 7};
  s.model = {"/models/m", "/models/m/tokenizer.json"};
  s.data.builder.clear();
  s.data.jsonl = "/data/x.jsonl";
  s.data.examples = 321;
  s.data.seed = 11;
  s.data.eval_fraction = 0.25;
  auto& t = s.train;
  t.seed = 13;
  t.steps = 77;
  t.epochs = 3;
  t.lr = 3e-3;
  t.schedule = "linear";
  t.warmup = 4;
  t.batch = 6;
  t.micro_batch = 3;
  t.seq_len = 96;
  t.packing = true;
  t.lora_r = 5;
  t.lora_alpha = 7.5;
  t.lora_dropout = 0.125;
  t.targets = {"gate_proj", "down_proj"};
  t.dtype = "bf16";
  t.device = "cuda";
  t.checkpoint_every = 9;
  t.vram_bytes = uint64_t(3) << 30;
  t.ram_bytes = uint64_t(5) << 30;
  s.eval = {false, 4, 33};
  s.merge = {false, "fp16", uint64_t(3) << 20};
  s.resources = {uint64_t(6) << 30, false};
  return s;
}

// [export] gguf adds an export stage after merge: a type that is not built
// is refused at submit with the list of those that are, and so is an export
// without the merge it reads.
TEST(JobSpec, ExportSection) {
  auto r = JobSpec::parse("[model]\npath = \"/m\"\n[export]\ngguf = \"q8_0\"\n", "job.toml");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->export_.gguf, "q8_0");
  EXPECT_EQ(r->to_json()["export"]["gguf"], "q8_0");
  auto back = JobSpec::from_json(r->to_json());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->export_.gguf, "q8_0");
  EXPECT_EQ(JobSpec::parse("[model]\npath = \"/m\"\n")->export_.gguf, "");
  std::string e = error_of("[model]\npath = \"/m\"\n[export]\ngguf = \"q4_k_m\"\n");
  EXPECT_NE(e.find("job.toml:4: [export] gguf: 'q4_k_m' is not built (known: f32, f16, bf16, q8_0, q4_0)"),
            std::string::npos)
      << e;
  e = error_of("[model]\npath = \"/m\"\n[merge]\nenabled = false\n[export]\ngguf = \"f16\"\n");
  EXPECT_NE(e.find("[export] gguf: needs [merge] enabled = true"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[export]\nggml = \"f16\"\n");
  EXPECT_NE(e.find("unknown key 'ggml' in [export]"), std::string::npos) << e;
  e = error_of("[model]\npath = \"/m\"\n[export]\ngguf = 8\n");
  EXPECT_NE(e.find("[export] gguf: expected a string"), std::string::npos) << e;
}

TEST(JobSpec, FromJsonInvertsToJson) {
  const JobSpec changed = every_field_changed();
  const nlohmann::json j = changed.to_json();
  ASSERT_NE(j, JobSpec().to_json());
  auto back = JobSpec::from_json(j);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), j);
  // Field by field, for the fields whose JSON could hide a type change.
  EXPECT_EQ(back->train.targets, changed.train.targets);
  EXPECT_EQ(back->train.vram_bytes, changed.train.vram_bytes);
  EXPECT_EQ(back->train.lora_alpha, 7.5);
  EXPECT_TRUE(back->train.packing);
  EXPECT_EQ(back->data.builder, "");
  EXPECT_EQ(back->data.jsonl, "/data/x.jsonl");
  // Through text, as the scheduler stores it and ASSIGN carries it.
  auto reparsed = JobSpec::from_json(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(reparsed.ok()) << reparsed.status().to_string();
  EXPECT_EQ(reparsed->to_json(), j);
  // The defaults (builder set, jsonl empty) round-trip as well.
  auto parsed = JobSpec::parse("[model]\npath = \"/m\"\n", "job.toml");
  ASSERT_TRUE(parsed.ok());
  auto defaults = JobSpec::from_json(parsed->to_json());
  ASSERT_TRUE(defaults.ok()) << defaults.status().to_string();
  EXPECT_EQ(defaults->to_json(), parsed->to_json());
  EXPECT_EQ(defaults->data.builder, "lema-reply");
}

TEST(JobSpec, FromJsonChecksAsParseDoes) {
  auto error_of_json = [](const nlohmann::json& j) {
    auto r = JobSpec::from_json(j, "assign");
    EXPECT_FALSE(r.ok()) << j.dump();
    return r.ok() ? std::string() : r.status().message();
  };
  nlohmann::json good = every_field_changed().to_json();
  nlohmann::json j = good;
  j["train"]["lr"] = 2;
  EXPECT_EQ(error_of_json(j), "assign: [train] lr: must be in (0, 1) (got 2)");
  j = good;
  j["train"]["learning_rate"] = 0.1;
  EXPECT_EQ(error_of_json(j), "assign: unknown key 'learning_rate' in [train]");
  j = good;
  j["train"]["steps"] = "ten";
  EXPECT_EQ(error_of_json(j), "assign: [train] steps: expected an integer");
  j = good;
  j["train"]["targets"] = {"q_proj", "x_proj"};
  EXPECT_NE(error_of_json(j).find("unknown target 'x_proj'"), std::string::npos);
  j = good;
  j["data"]["builder"] = "lema-reply";
  EXPECT_NE(error_of_json(j).find("either builder or jsonl"), std::string::npos);
  j = good;
  j["model"]["path"] = "";
  EXPECT_NE(error_of_json(j).find("[model] path is required"), std::string::npos);
  j = good;
  j["trian"] = nlohmann::json::object();
  EXPECT_EQ(error_of_json(j), "assign: unknown section or key 'trian'");
  j = good;
  j["eval"]["questions"] = nullptr;
  EXPECT_NE(error_of_json(j).find("null"), std::string::npos);
  EXPECT_NE(error_of_json(nlohmann::json::array()).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of_json(nlohmann::json{{"model", 3}}).find("must be a table"), std::string::npos);
}

}  // namespace
}  // namespace lema
