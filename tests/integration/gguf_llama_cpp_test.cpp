// `lema export --format gguf|gguf-lora` checked by llama.cpp itself (the
// node-llama-cpp package, prebuilt CPU build, driven by
// tests/tools/llama_cpp_run.mjs): on a small pretrained base of each family
// (the tiny-<family> presets; Qwen's sliding window off, Gemma's attention
// scale and sliding layers and Phi-3's window set as llama.cpp computes them,
// as in the released models, since llama.cpp cannot express the presets'
// settings),
//   f32 and f16: llama.cpp's greedy 32 tokens equal `lema chat`'s;
//   tokenization of 200 varied strings equals `lema tokenize`'s;
//   q8_0 / q4_0: llama.cpp's top-1 next token agrees with lema's fp32
//   logits (`lema debug step`) on >= 95% (q8_0) of a held-out text's
//   positions; the q4_0 figure is printed;
//   the GGUF LoRA on its base equals the merged export in llama.cpp.
// The package comes from scripts/fetch_test_assets.sh into
// ${LEMA_ASSET_CACHE:-~/.cache/lema-test-assets}; without it (offline) these
// tests skip. The refusals at the end run without it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <thread>

#include <dirent.h>
#include <signal.h>

#include "common/base/file_util.h"
#include "common/formats/dtype.h"
#include "common/formats/gguf_reader.h"
#include "common/formats/safetensors.h"

#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

using json = nlohmann::json;

struct Captured {
  int exit_code = -1;
  std::string out;  // stdout only
};

// Runs a shell command; stderr goes to this test's stderr.
Captured capture(const std::string& cmd) {
  Captured c;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return c;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) c.out.append(buf, n);
  const int status = ::pclose(p);
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return c;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string lema_cmd(const std::string& args) { return std::string(LEMA_BINARY) + " " + args; }

std::string node_modules_dir() {
  const char* cache = std::getenv("LEMA_ASSET_CACHE");
  const char* home = std::getenv("HOME");
  const std::string base = cache && *cache ? cache : std::string(home ? home : "/tmp") + "/.cache/lema-test-assets";
  return base + "/node-llama-cpp/node_modules";
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  json j = json::parse(line, nullptr, false);
  if (j.is_array()) {
    for (const auto& x : j) ids.push_back(x.get<int32_t>());
  }
  return ids;
}

// The chat template of common/text/chat_format.cpp render_prompt().
std::string render_prompt(const std::string& question, const std::string& system) {
  return "<|system|>\n" + system + "\n\n<|user|>\n" + question + "\n\n<|assistant|>\n";
}

// 200 strings mixing words, digits, punctuation, accents, CJK, emoji and
// unusual whitespace (leading, doubled, tabs, newlines).
std::vector<std::string> varied_strings() {
  const std::vector<std::string> parts = {
      "the", "Question", "answer", "capital", "of", "France", "is", "Paris", "water", "boils", "at", "100",
      "degrees", "Celsius", "3.14159", "2024", "42", "1,000,000", "e-mail", "don't", "it's", "Hello", "WORLD",
      "caf\xC3\xA9", "na\xC3\xAFve", "\xC3\xBC" "ber", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xF0\x9F\x98\x80",
      "\xCE\xB1\xCE\xB2\xCE\xB3", "(x)", "[note]", "{a: 1}", "#tag", "@user", "a+b=c", "50%", "$9.99", "...", "?!",
      "Explanation:", "Confidence:", "high", "low", "<tag>", "snake_case", "CamelCase", "x86_64", "\\n", "\"quoted\"",
  };
  const std::vector<std::string> gaps = {" ", " ", " ", "  ", "\t", "\n", "", " \n ", "   "};
  std::mt19937 rng(17);
  std::vector<std::string> out;
  for (int i = 0; i < 200; ++i) {
    std::string s;
    if (i % 7 == 0) s += " ";
    if (i % 11 == 0) s += "\n";
    const int words = 1 + static_cast<int>(rng() % 9);
    for (int w = 0; w < words; ++w) {
      if (w > 0) s += gaps[rng() % gaps.size()];
      s += parts[rng() % parts.size()];
    }
    if (i % 13 == 0) s += " ";
    out.push_back(s);
  }
  out[0] = "";
  out[1] = " ";
  out[2] = "a";
  return out;
}

const char* kHeldOut =
    "Question: Which planet is known as the red planet?\nAnswer: Mars\nExplanation: Iron oxide on its "
    "surface gives Mars a reddish colour.\nConfidence: high\n\nQuestion: How many legs does a spider have?\n"
    "Answer: 8\nExplanation: Spiders are arachnids, which have eight legs.\nConfidence: high\n";

std::string skip_reason() {
  if (!path_exists(node_modules_dir() + "/node-llama-cpp/package.json")) {
    return "node-llama-cpp is not installed in " + node_modules_dir() +
           " (run scripts/fetch_test_assets.sh; it needs the npm registry)";
  }
  if (capture("node --version").exit_code != 0) return "node is not on PATH";
  return "";
}

// Runs tests/tools/llama_cpp_run.mjs on `request` (files kept in `dir`).
json llama_cpp(const std::string& dir, const json& request) {
  static int n = 0;
  const std::string path = dir + "/request" + std::to_string(n++) + ".json";
  write_text(path, request.dump());
  Captured c = capture("LEMA_NODE_MODULES=" + quote(node_modules_dir()) + " node " +
                       quote(std::string(LEMA_SOURCE_DIR) + "/tests/tools/llama_cpp_run.mjs") + " " + quote(path));
  EXPECT_EQ(c.exit_code, 0) << c.out;
  const size_t brace = c.out.rfind("\n{");
  json j = json::parse(brace == std::string::npos ? c.out : c.out.substr(brace + 1), nullptr, false);
  EXPECT_TRUE(j.is_object()) << c.out;
  return j.is_object() ? j : json::object();
}

std::vector<int32_t> lema_ids(const std::string& model, const std::string& text, bool special) {
  Captured c = capture(lema_cmd("tokenize --tokenizer " + model + " " + (special ? "--special " : "") + "--text " +
                                quote(text)));
  EXPECT_EQ(c.exit_code, 0) << c.out;
  return parse_ids(c.out);
}

std::string lema_decode(const std::string& model, const std::vector<int32_t>& ids) {
  const std::string path = model + "/../decode.jsonl";
  write_text(path, json(ids).dump() + "\n");
  Captured c = capture(lema_cmd("tokenize --tokenizer " + model + " --decode --skip-special --jsonl " + path));
  EXPECT_EQ(c.exit_code, 0) << c.out;
  json j = json::parse(c.out, nullptr, false);
  return j.is_string() ? j.get<std::string>() : std::string();
}

// lema's fp32 logits after each prefix of `ids` (one forward pass, `lema
// debug step`): the top-1 token and its lead over the runner-up.
struct Top1 {
  std::vector<int32_t> token;
  std::vector<float> margin;
};
Top1 lema_top1(const std::string& model, const std::vector<int32_t>& ids) {
  static int n = 0;
  const std::string batch = model + "/../batch" + std::to_string(n) + ".json";
  const std::string out = model + "/../logits" + std::to_string(n++) + ".safetensors";
  write_text(batch, json({{"input_ids", {ids}}, {"labels", {ids}}}).dump());
  RunResult r = run_lema_shell("debug step --model " + model + " --batch " + batch + " --out " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Top1 top;
  auto st = SafetensorsReader::open(out);
  EXPECT_TRUE(st.ok()) << st.status().to_string();
  if (!st.ok()) return top;
  const TensorInfo* logits = (*st)->find("logits");  // [1, T, V] f32
  EXPECT_NE(logits, nullptr);
  if (logits == nullptr) return top;
  const int64_t t_len = logits->shape[1], vocab = logits->shape[2];
  const float* data = reinterpret_cast<const float*>((*st)->data(*logits));
  for (int64_t t = 0; t < t_len; ++t) {
    const float* row = data + t * vocab;
    const int64_t best = std::max_element(row, row + vocab) - row;
    float second = -1e30f;
    for (int64_t v = 0; v < vocab; ++v) {
      if (v != best) second = std::max(second, row[v]);
    }
    top.token.push_back(static_cast<int32_t>(best));
    top.margin.push_back(row[best] - second);
  }
  return top;
}

int32_t gguf_eos_id(const std::string& path) {
  auto g = GgufReader::open(path);
  EXPECT_TRUE(g.ok());
  const GgufValue* v = g.ok() ? (*g)->find("tokenizer.ggml.eos_token_id") : nullptr;
  return v ? static_cast<int32_t>(v->u) : -1;
}

double agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  if (a.empty() || a.size() != b.size()) return 0.0;
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(a.size());
}

// A PEFT adapter on every projection with random A and B (not a zero B,
// so it changes the output): r = 4, alpha = 8. Phi-3's projections are the
// fused qkv_proj and gate_up_proj (one A/B pair each, as PEFT adapts them).
void write_adapter(const std::string& model, const std::string& dir) {
  ASSERT_TRUE(make_dirs(dir).ok());
  const json cfg = json::parse(slurp(model + "/config.json"));
  const int64_t h = cfg["hidden_size"], ff = cfg["intermediate_size"], nh = cfg["num_attention_heads"],
                nkv = cfg["num_key_value_heads"], layers = cfg["num_hidden_layers"];
  const int64_t hd = cfg.contains("head_dim") && cfg["head_dim"].is_number() ? cfg["head_dim"].get<int64_t>() : h / nh;
  struct Proj { const char* module; const char* name; int64_t out, in; };
  const bool fused = cfg.value("model_type", "") == "phi3";
  const std::vector<Proj> projs =
      fused ? std::vector<Proj>{{"self_attn", "qkv_proj", (nh + 2 * nkv) * hd, h}, {"self_attn", "o_proj", h, nh * hd},
                                {"mlp", "gate_up_proj", 2 * ff, h},                 {"mlp", "down_proj", h, ff}}
            : std::vector<Proj>{{"self_attn", "q_proj", nh * hd, h}, {"self_attn", "k_proj", nkv * hd, h},
                                {"self_attn", "v_proj", nkv * hd, h}, {"self_attn", "o_proj", h, nh * hd},
                                {"mlp", "gate_proj", ff, h},          {"mlp", "up_proj", ff, h},
                                {"mlp", "down_proj", h, ff}};
  json targets = json::array();
  for (const Proj& p : projs) targets.push_back(p.name);
  write_text(dir + "/adapter_config.json",
             json({{"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", 4}, {"lora_alpha", 8},
                   {"lora_dropout", 0.0}, {"bias", "none"}, {"target_modules", targets}})
                 .dump());
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  SafetensorsWriter w;
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
  for (int64_t l = 0; l < layers; ++l) {
    for (const Proj& p : projs) {
      const std::string prefix = "base_model.model.model.layers." + std::to_string(l) + "." + p.module + "." + p.name;
      std::vector<float> a(static_cast<size_t>(4 * p.in)), b(static_cast<size_t>(p.out * 4));
      for (float& x : a) x = u(rng);
      for (float& x : b) x = u(rng);
      ASSERT_TRUE(w.add_tensor(prefix + ".lora_A.weight", DType::kF32, {4, p.in}).ok());
      ASSERT_TRUE(w.add_tensor(prefix + ".lora_B.weight", DType::kF32, {p.out, 4}).ok());
      tensors.emplace_back(prefix + ".lora_A.weight", std::move(a));
      tensors.emplace_back(prefix + ".lora_B.weight", std::move(b));
    }
  }
  ASSERT_TRUE(w.open(dir + "/adapter_model.safetensors").ok());
  for (const auto& [name, data] : tensors) ASSERT_TRUE(w.write_tensor(name, data.data(), data.size() * 4).ok());
  ASSERT_TRUE(w.commit().ok());
}

// The families and the config llama.cpp can express: what each preset
// switches on that llama.cpp's graph for the family does not compute is
// set as in the released models (exporting the preset as is is refused,
// GgufExportCli.Refusals).
struct Family {
  std::string preset, arch;
  void (*edit)(json* config);  // nullptr: as pretrained
};
const std::map<std::string, Family>& families() {
  static const std::map<std::string, Family> f = {
      {"llama", {"tiny", "llama", nullptr}},
      // llama.cpp's qwen2/qwen3 attend to every position (Qwen2.5 and Qwen3 ship use_sliding_window false).
      {"qwen2", {"tiny-qwen2", "qwen2", [](json* c) {
                   (*c)["use_sliding_window"] = false;
                   (*c)["layer_types"] = {"full_attention", "full_attention"};
                 }}},
      {"qwen3", {"tiny-qwen3", "qwen3", [](json* c) {
                   (*c)["use_sliding_window"] = false;
                   (*c)["layer_types"] = {"full_attention", "full_attention"};
                 }}},
      // llama.cpp scales Gemma's attention by head_dim^-0.5 (query_pre_attn_scalar = head_dim in Gemma 2 2B/9B
      // and Gemma 3 below 27B); Gemma 3's layers slide in a pattern of 6 (both layers of a 2-layer model).
      {"gemma2", {"tiny-gemma2", "gemma2", [](json* c) { (*c)["query_pre_attn_scalar"] = (*c)["head_dim"]; }}},
      {"gemma3", {"tiny-gemma3", "gemma3", [](json* c) {
                   (*c)["query_pre_attn_scalar"] = (*c)["head_dim"];
                   (*c)["layer_types"] = {"sliding_attention", "sliding_attention"};
                 }}},
      // llama.cpp's phi3 does not slide: the window longer than the context
      // that Phi-3.5-mini and Phi-4-mini ship. LongRoPE (original length 20,
      // partial rotary 12 of 16) stays: every sequence here is longer than
      // 20 and llama.cpp's context (256 at least) too, so both take the long
      // factors and the attention factor.
      {"phi3", {"tiny-phi3", "phi3", [](json* c) { (*c)["sliding_window"] = 262144; }}},
  };
  return f;
}

const char* kTypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

// Each family's work dir: a pretrained base (dir/base), its exports
// (dir/<type>.gguf, merged.gguf with the adapter, lora.gguf), built once.
struct Bench {
  std::string dir, model, error;
};
const Bench& bench(const std::string& family) {
  static std::map<std::string, Bench> benches;
  auto it = benches.find(family);
  if (it != benches.end()) return it->second;
  Bench& b = benches[family];
  const Family& f = families().at(family);
  b.dir = make_temp_dir(("gguf_" + family).c_str());
  b.model = b.dir + "/base";
  auto run = [&](const std::string& args) {
    RunResult r = run_lema_shell(args);
    if (r.exit_code != 0 && b.error.empty()) b.error = "lema " + args + " failed:\n" + r.output;
    return r.exit_code == 0;
  };
  // A small base that learned plain text, so its next-token choices are
  // clear (a random model's near-ties would flip on any rounding).
  if (!run("dataset build --builder lema-reply --examples 400 --seed 3 --out " + b.dir + "/data")) return b;
  if (!run("model pretrain --preset " + f.preset + " --vocab 400 --steps 160 --batch 8 --seq-len 96 --lr 3e-3 "
           "--checkpoint-every 160 --threads 2 --quiet --data " + b.dir + "/data/train.jsonl --out " + b.model)) {
    return b;
  }
  if (f.edit != nullptr) {
    json cfg = json::parse(slurp(b.model + "/config.json"));
    f.edit(&cfg);
    write_text(b.model + "/config.json", cfg.dump(2));
  }
  for (const char* type : kTypes) {
    if (!run("export " + b.model + " --format gguf --type " + type + " --out " + b.dir + "/" + type + ".gguf")) return b;
  }
  write_adapter(b.model, b.dir + "/adapter");
  if (!run("export " + b.model + " --adapter " + b.dir + "/adapter --type f32 --out " + b.dir + "/merged.gguf")) return b;
  run("export " + b.model + " --format gguf-lora --adapter " + b.dir + "/adapter --out " + b.dir + "/lora.gguf");
  return b;
}

class GgufLlamaCpp : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string skip = skip_reason();
    if (!skip.empty()) GTEST_SKIP() << skip;
    // LEMA_GGUF_FAMILIES=llama,qwen2 checks those alone (each family
    // pretrains its own base: about a minute of a 2-core machine).
    const char* only = std::getenv("LEMA_GGUF_FAMILIES");
    if (only != nullptr && *only != '\0' &&
        ("," + std::string(only) + ",").find("," + GetParam() + ",") == std::string::npos) {
      GTEST_SKIP() << GetParam() << " is not in LEMA_GGUF_FAMILIES=" << only;
    }
    b_ = &bench(GetParam());
    ASSERT_TRUE(b_->error.empty()) << b_->error;
  }
  std::string gguf(const std::string& name) const { return b_->dir + "/" + name + ".gguf"; }
  const Bench* b_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Families, GgufLlamaCpp,
                         ::testing::Values("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST_P(GgufLlamaCpp, FileCarriesTheFamilyMetadata) {
  auto r = GgufReader::open(gguf("q8_0"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const GgufReader& g = **r;
  const std::string arch = families().at(GetParam()).arch;
  EXPECT_EQ(g.find("general.architecture")->s, arch);
  EXPECT_EQ(g.find("general.file_type")->u, 7u);
  EXPECT_EQ(g.find("tokenizer.ggml.model")->s, "llama");
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->items.size(), 400u);
  EXPECT_EQ(g.find_tensor(arch == "phi3" ? "blk.1.attn_qkv.weight" : "blk.1.attn_q.weight")->type, GgmlType::kQ8_0);
  EXPECT_EQ(g.find_tensor("blk.1.ffn_down.weight")->type, GgmlType::kF16);  // rows of 176: not whole blocks
  EXPECT_EQ(g.find_tensor("output_norm.weight")->type, GgmlType::kF32);
  const json cfg = json::parse(slurp(b_->model + "/config.json"));
  EXPECT_EQ(g.find_tensor("output.weight") == nullptr, cfg.value("tie_word_embeddings", false));
  if (arch == "qwen2") {
    EXPECT_NE(g.find_tensor("blk.0.attn_k.bias"), nullptr);
  }
  if (arch == "qwen3" || arch == "gemma3") {
    EXPECT_NE(g.find_tensor("blk.0.attn_q_norm.weight"), nullptr);
    EXPECT_EQ(g.find(arch + ".attention.key_length")->u, 32u);
  }
  if (arch == "gemma2" || arch == "gemma3") {
    EXPECT_NE(g.find_tensor("blk.1.post_ffw_norm.weight"), nullptr);
    EXPECT_EQ(g.find(arch + ".attention.sliding_window")->u, 16u);
  }
  if (arch == "gemma2") {
    EXPECT_FLOAT_EQ(static_cast<float>(g.find("gemma2.final_logit_softcapping")->f), 30.0f);
  }
  if (arch == "phi3") {
    EXPECT_EQ(g.find_tensor("blk.0.attn_qkv.weight")->shape, (std::vector<int64_t>{64 + 2 * 32, 64}));
    EXPECT_EQ(g.find_tensor("blk.0.ffn_up.weight")->shape, (std::vector<int64_t>{2 * 176, 64}));
    EXPECT_EQ(g.find_tensor("rope_factors_long.weight")->type, GgmlType::kF32);
    EXPECT_EQ(g.find("phi3.rope.dimension_count")->u, 12u);
    EXPECT_EQ(g.find("phi3.rope.scaling.original_context_length")->u, 20u);
    EXPECT_GT(g.find("phi3.rope.scaling.attn_factor")->f, 1.4);
  }
}

TEST_P(GgufLlamaCpp, TokenizationOf200StringsEqualsLemas) {
  const std::vector<std::string> strings = varied_strings();
  std::string jsonl;
  for (const std::string& s : strings) jsonl += json(s).dump() + "\n";
  write_text(b_->dir + "/strings.jsonl", jsonl);
  Captured lema = capture(lema_cmd("tokenize --tokenizer " + b_->model + " --jsonl " + b_->dir + "/strings.jsonl"));
  ASSERT_EQ(lema.exit_code, 0) << lema.out;
  std::vector<std::vector<int32_t>> expected;
  size_t start = 0;
  while (start < lema.out.size()) {
    const size_t end = lema.out.find('\n', start);
    expected.push_back(parse_ids(lema.out.substr(start, end - start)));
    start = end + 1;
  }
  ASSERT_EQ(expected.size(), strings.size());
  const json got = llama_cpp(b_->dir, {{"model", gguf("f32")}, {"tokenize", strings}});
  ASSERT_EQ(got["tokens"].size(), strings.size());
  int same = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::vector<int32_t> ids = got["tokens"][i].get<std::vector<int32_t>>();
    if (ids == expected[i]) {
      ++same;
    } else {
      ADD_FAILURE() << "string " << i << " " << json(strings[i]).dump() << ": llama.cpp " << json(ids).dump()
                    << " lema " << json(expected[i]).dump();
    }
  }
  std::printf("%s tokenization: %d / %zu strings identical\n", GetParam().c_str(), same, strings.size());
}

// Greedy decoding is only defined where the top two logits differ: a
// small model has exact ties (two tokens it never told apart), which any
// rounding breaks either way. So the prompt is one whose greedy path has a
// clear leader at each of the 32 steps (lead >= kClearLead in lema's fp32
// logits), picked from a few candidates; on it, every token must be equal.
constexpr float kClearLead = 0.01f;

TEST_P(GgufLlamaCpp, GreedyContinuationEqualsLemaChat) {
  const std::string system = "You answer briefly.";
  const std::vector<std::string> questions = {"How many legs does a spider have?", "What is the capital of France?",
                                              "Which planet is known as the red planet?", "What is 7 times 6?",
                                              "Name a primary colour.", "What do bees make?"};
  const int32_t eos = gguf_eos_id(gguf("f32"));
  // LongRoPE (phi3): lema, as transformers, takes the short factors while
  // the sequence is at most this long; llama.cpp picks by its context size
  // (at least 256 here), so the two agree on a prompt longer than it.
  const json cfg = json::parse(slurp(b_->model + "/config.json"));
  const size_t long_from = cfg.value("original_max_position_embeddings", 0);
  bool compared = false;
  for (const std::string& question : questions) {
    const std::vector<int32_t> prompt = lema_ids(b_->model, render_prompt(question, system), /*special=*/true);
    ASSERT_GT(prompt.size(), 10u);
    if (prompt.size() <= long_from) {
      std::printf("prompt %s: %zu tokens, within LongRoPE's short range, next prompt\n", json(question).dump().c_str(),
                  prompt.size());
      continue;
    }
    const json f32 = llama_cpp(b_->dir, {{"model", gguf("f32")}, {"prompt_ids", prompt}, {"n_generate", 32}});
    const std::vector<int32_t> greedy = f32["generated"].get<std::vector<int32_t>>();
    ASSERT_EQ(greedy.size(), 32u);
    // lema's fp32 choice after the prompt and each prefix of llama.cpp's
    // tokens: equal at every step means lema's own greedy path is the same.
    std::vector<int32_t> forced = prompt;
    forced.insert(forced.end(), greedy.begin(), greedy.end() - 1);
    const Top1 lema = lema_top1(b_->model, forced);
    ASSERT_EQ(lema.token.size(), forced.size());
    float min_lead = 1e30f;
    for (size_t i = 0; i < greedy.size(); ++i) min_lead = std::min(min_lead, lema.margin[prompt.size() - 1 + i]);
    if (min_lead < kClearLead) {
      std::printf("prompt %s: a near tie on the path (lead %.2g), next prompt\n", json(question).dump().c_str(), min_lead);
      continue;
    }
    if (greedy[0] == eos) {
      std::printf("prompt %s: the reply is empty (EOS first), next prompt\n", json(question).dump().c_str());
      continue;
    }
    compared = true;
    for (size_t i = 0; i < greedy.size(); ++i) {
      EXPECT_EQ(greedy[i], lema.token[prompt.size() - 1 + i]) << "f32 step " << i;
    }
    const json f16 = llama_cpp(b_->dir, {{"model", gguf("f16")}, {"prompt_ids", prompt}, {"n_generate", 32}});
    EXPECT_EQ(f16["generated"].get<std::vector<int32_t>>(), greedy) << "f16";

    // lema chat (the generator with its KV cache) says the same, up to the
    // EOS where it stops.
    const size_t at_eos = static_cast<size_t>(std::find(greedy.begin(), greedy.end(), eos) - greedy.begin());
    Captured chat = capture(lema_cmd("chat " + b_->model + " --prompt " + quote(question) + " --system " +
                                     quote(system) + " --max-new-tokens 32 --threads 1 2>/dev/null"));
    ASSERT_EQ(chat.exit_code, 0) << chat.out;
    const size_t tail = chat.out.rfind("\n-- ");
    ASSERT_NE(tail, std::string::npos) << chat.out;
    const std::string chat_text = chat.out.substr(0, tail);
    size_t chat_tokens = 0;
    ASSERT_EQ(std::sscanf(chat.out.c_str() + chat.out.find('(', tail), "(%zu tokens", &chat_tokens), 1) << chat.out;
    const std::vector<int32_t> reply(greedy.begin(),
                                     greedy.begin() + static_cast<std::ptrdiff_t>(std::min(at_eos, greedy.size())));
    EXPECT_EQ(lema_decode(b_->model, reply), chat_text) << "llama.cpp ids " << json(greedy).dump();
    if (at_eos < greedy.size()) {
      EXPECT_TRUE(chat_tokens == at_eos || chat_tokens == at_eos + 1) << chat.out;  // with or without the EOS counted
    } else {
      EXPECT_EQ(chat_tokens, greedy.size()) << chat.out;
    }
    std::printf("%s prompt %s: llama.cpp f32 and f16 greedy 32 tokens = lema's (min lead %.3f); lema chat: %zu "
                "tokens %s\n", GetParam().c_str(), json(question).dump().c_str(), min_lead, chat_tokens,
                json(chat_text).dump().c_str());
    break;
  }
  EXPECT_TRUE(compared) << "every candidate prompt had a near tie on its greedy path";
}

TEST_P(GgufLlamaCpp, QuantizedTop1AgreesWithLemaFp32) {
  const std::vector<int32_t> ids = lema_ids(b_->model, kHeldOut, /*special=*/true);
  ASSERT_GT(ids.size(), 60u);
  const std::vector<int32_t> lema = lema_top1(b_->model, ids).token;
  ASSERT_EQ(lema.size(), ids.size());
  for (const char* type : kTypes) {
    const json got = llama_cpp(b_->dir, {{"model", gguf(type)}, {"score_ids", ids}});
    const double a = agreement(got["top1"].get<std::vector<int32_t>>(), lema);
    std::printf("%s top-1 agreement with lema fp32, %s: %.1f%% of %zu positions\n", GetParam().c_str(), type, 100 * a,
                ids.size());
    RecordProperty(std::string("top1_") + type, std::to_string(a));
    const std::string t = type;
    if (t == "f32" || t == "f16" || t == "bf16") {
      EXPECT_GE(a, 0.99) << type;
    } else if (t == "q8_0") {
      EXPECT_GE(a, 0.95) << type;
    } else if (t == "q4_0") {
      EXPECT_GE(a, 0.5) << type;  // reported; a floor against a broken encoder
    }
  }
}

TEST_P(GgufLlamaCpp, LoraOnBaseEqualsMergedExport) {
  const std::vector<int32_t> ids = lema_ids(b_->model, kHeldOut, /*special=*/true);
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 20);
  const json merged = llama_cpp(b_->dir, {{"model", gguf("merged")}, {"prompt_ids", prompt}, {"n_generate", 32},
                                          {"score_ids", ids}});
  const json lora = llama_cpp(b_->dir, {{"model", gguf("f32")}, {"lora", gguf("lora")}, {"prompt_ids", prompt},
                                        {"n_generate", 32}, {"score_ids", ids}});
  const json base = llama_cpp(b_->dir, {{"model", gguf("f32")}, {"score_ids", ids}});
  EXPECT_EQ(lora["generated"], merged["generated"]);
  const double same = agreement(lora["top1"].get<std::vector<int32_t>>(), merged["top1"].get<std::vector<int32_t>>());
  const double vs_base = agreement(base["top1"].get<std::vector<int32_t>>(), merged["top1"].get<std::vector<int32_t>>());
  std::printf("%s LoRA in llama.cpp vs merged export: top-1 %.1f%% equal (base vs merged: %.1f%%)\n",
              GetParam().c_str(), 100 * same, 100 * vs_base);
  EXPECT_GE(same, 0.99);
  EXPECT_LT(vs_base, 0.9) << "the adapter should change the model";
}

// Llama only: a byte-level vocabulary and Mistral's label.
class GgufLlamaOnly : public GgufLlamaCpp {};
INSTANTIATE_TEST_SUITE_P(Llama, GgufLlamaOnly, ::testing::Values("llama"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// A byte-level BPE vocabulary (tokenizer.ggml.model gpt2, pre-tokenizer
// "gpt-2"): llama.cpp loads it and tokenizes the 200 strings as lema does.
TEST_P(GgufLlamaOnly, ByteLevelTokenizerEqualsLemas) {
  const std::string m = b_->dir + "/bytelevel";
  ASSERT_EQ(run_lema_shell("model init --preset tiny --out " + m).exit_code, 0);
  write_byte_tokenizer(m);
  RunResult r = run_lema_shell("export " + m + " --type f32 --out " + b_->dir + "/bytelevel.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> strings = varied_strings();
  std::string jsonl;
  for (const std::string& s : strings) jsonl += json(s).dump() + "\n";
  write_text(b_->dir + "/strings_bl.jsonl", jsonl);
  Captured lema = capture(lema_cmd("tokenize --tokenizer " + m + " --jsonl " + b_->dir + "/strings_bl.jsonl"));
  ASSERT_EQ(lema.exit_code, 0) << lema.out;
  const json got = llama_cpp(b_->dir, {{"model", b_->dir + "/bytelevel.gguf"}, {"tokenize", strings}});
  ASSERT_EQ(got["tokens"].size(), strings.size());
  size_t start = 0, i = 0, same = 0;
  while (start < lema.out.size() && i < strings.size()) {
    const size_t end = lema.out.find('\n', start);
    const std::vector<int32_t> expected = parse_ids(lema.out.substr(start, end - start));
    const std::vector<int32_t> ids = got["tokens"][i].get<std::vector<int32_t>>();
    if (ids == expected) ++same;
    EXPECT_EQ(ids, expected) << "string " << i << " " << json(strings[i]).dump();
    start = end + 1;
    ++i;
  }
  std::printf("byte-level BPE tokenization: %zu / %zu strings identical\n", same, strings.size());
}

// Mistral is exported as llama.cpp's Llama: the same base relabelled
// MistralForCausalLM (sliding window beyond the text) gives lema's top-1 at
// every position.
TEST_P(GgufLlamaOnly, MistralRunsAsLlama) {
  const std::string mistral = b_->dir + "/mistral";
  ASSERT_TRUE(make_dirs(mistral).ok());
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    if (path_exists(b_->model + "/" + f)) write_text(mistral + "/" + f, slurp(b_->model + "/" + f));
  }
  json cfg = json::parse(slurp(b_->model + "/config.json"));
  cfg["architectures"] = {"MistralForCausalLM"};
  cfg["model_type"] = "mistral";
  cfg["sliding_window"] = 4096;
  write_text(mistral + "/config.json", cfg.dump(2));
  RunResult r = run_lema_shell("export " + mistral + " --type f32 --out " + b_->dir + "/mistral.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto g = GgufReader::open(b_->dir + "/mistral.gguf");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)->find("general.architecture")->s, "llama");
  const std::vector<int32_t> ids = lema_ids(b_->model, kHeldOut, /*special=*/true);
  const json got = llama_cpp(b_->dir, {{"model", b_->dir + "/mistral.gguf"}, {"score_ids", ids}});
  const double a = agreement(got["top1"].get<std::vector<int32_t>>(), lema_top1(mistral, ids).token);
  std::printf("mistral f32: top-1 agreement with lema fp32 %.1f%%\n", 100 * a);
  EXPECT_GE(a, 0.99);
}

// Phi-3 only: LongRoPE's short factors. The same base with an original
// length of 256 (attention factor sqrt(1 + ln 2 / ln 256)): on a text of at
// most 256 tokens lema takes the short factors, and so does llama.cpp, whose
// context (the text's length padded to 256) is then not longer than 256.
class GgufPhi3Only : public GgufLlamaCpp {};
INSTANTIATE_TEST_SUITE_P(Phi3, GgufPhi3Only, ::testing::Values("phi3"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST_P(GgufPhi3Only, LongropeShortFactorsEqualLemas) {
  const std::string m = b_->dir + "/short";
  ASSERT_TRUE(make_dirs(m).ok());
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"}) {
    if (path_exists(b_->model + "/" + f)) write_text(m + "/" + f, slurp(b_->model + "/" + f));
  }
  json cfg = json::parse(slurp(b_->model + "/config.json"));
  cfg["original_max_position_embeddings"] = 256;
  write_text(m + "/config.json", cfg.dump(2));
  RunResult r = run_lema_shell("export " + m + " --type f32 --out " + b_->dir + "/short.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto g = GgufReader::open(b_->dir + "/short.gguf");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)->find("phi3.rope.scaling.original_context_length")->u, 256u);
  std::vector<int32_t> ids = lema_ids(b_->model, kHeldOut, /*special=*/true);
  ids.resize(std::min<size_t>(ids.size(), 200));  // llama.cpp's context: 256
  const json got = llama_cpp(b_->dir, {{"model", b_->dir + "/short.gguf"}, {"score_ids", ids}});
  const double a = agreement(got["top1"].get<std::vector<int32_t>>(), lema_top1(m, ids).token);
  // The long factors on the same text: what a wrong pick would give.
  const double long_pick = agreement(got["top1"].get<std::vector<int32_t>>(), lema_top1(b_->model, ids).token);
  std::printf("phi3 LongRoPE short factors, f32: top-1 agreement with lema fp32 %.1f%% of %zu positions (against "
              "lema with the long factors: %.1f%%)\n", 100 * a, ids.size(), 100 * long_pick);
  EXPECT_GE(a, 0.99);
}

// Bad input, without llama.cpp.
TEST(GgufExportCli, Refusals) {
  const std::string dir = make_temp_dir("gguf_refuse");
  ASSERT_EQ(run_lema_shell("model init --preset tiny --out " + dir + "/m").exit_code, 0);
  RunResult r = run_lema_shell("export " + dir + "/m --type q5_k --out " + dir + "/x.gguf");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("f32, f16, bf16, q8_0, q4_0"), std::string::npos) << r.output;
  r = run_lema_shell("export " + dir + "/m --format onnx --out " + dir + "/x.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("gguf, gguf-lora"), std::string::npos) << r.output;
  // No tokenizer next to the model: refused before any file is made.
  r = run_lema_shell("export " + dir + "/m --type f32 --out " + dir + "/x.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--tokenizer"), std::string::npos) << r.output;
  EXPECT_FALSE(path_exists(dir + "/x.gguf"));
  write_byte_tokenizer(dir + "/m");
  write_text(dir + "/exists.gguf", "x");
  r = run_lema_shell("export " + dir + "/m --type f32 --out " + dir + "/exists.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("already exists"), std::string::npos) << r.output;
  r = run_lema_shell("export " + dir + "/m --format gguf-lora --out " + dir + "/l.gguf");
  EXPECT_NE(r.output.find("--adapter"), std::string::npos) << r.output;
  // An unwritable place: an error, and no file or temp file left.
  r = run_lema_shell("export " + dir + "/m --type f32 --out " + dir + "/no/such/dir/x.gguf");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(path_exists(dir + "/no"));
  // A config llama.cpp's graph cannot express: refused naming the key, no file.
  for (const auto& [preset, key] : std::vector<std::pair<std::string, std::string>>{
           {"tiny-qwen2", "use_sliding_window"}, {"tiny-gemma3", "query_pre_attn_scalar"},
           {"tiny-phi3", "sliding_window"}}) {
    ASSERT_EQ(run_lema_shell("model init --preset " + preset + " --out " + dir + "/" + preset).exit_code, 0);
    write_byte_tokenizer(dir + "/" + preset);
    r = run_lema_shell("export " + dir + "/" + preset + " --type f32 --out " + dir + "/g.gguf");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("config.json: key '" + key + "'"), std::string::npos) << r.output;
    EXPECT_FALSE(path_exists(dir + "/g.gguf"));
  }
}

// A killed export leaves no file under the final name: the writer streams
// into "<out>.tmp.<pid>" and renames only after the last tensor and fsync.
// The model's 100,000-row embedding and lm_head (51M parameters) keep the
// export busy long enough to be killed while its temp file grows.
TEST(GgufExportCli, KilledExportLeavesNoFile) {
  const std::string dir = make_temp_dir("gguf_kill");
  ASSERT_EQ(run_lema_shell("model init --preset small --vocab 100000 --out " + dir + "/m").exit_code, 0);
  write_byte_tokenizer(dir + "/m");
  const std::string out = dir + "/killed.gguf";
  const pid_t pid = spawn_lema({"export", dir + "/m", "--type", "q8_0", "--out", out}, dir + "/export.log");
  std::string temp;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (temp.empty() && std::chrono::steady_clock::now() < until) {
    DIR* d = ::opendir(dir.c_str());
    ASSERT_NE(d, nullptr);
    while (const dirent* e = ::readdir(d)) {
      if (std::string(e->d_name).rfind("killed.gguf.tmp.", 0) == 0) temp = dir + "/" + e->d_name;
    }
    ::closedir(d);
    if (temp.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_FALSE(temp.empty()) << "the export made no temp file: " << slurp(dir + "/export.log");
  ASSERT_FALSE(path_exists(out)) << "the final name appeared before the export was complete";
  kill_and_reap(pid, SIGKILL);
  EXPECT_FALSE(path_exists(out)) << "a killed export left " << out;
  // Completed, the same export appears under the final name whole.
  RunResult r = run_lema_shell("export " + dir + "/m --type q8_0 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto g = GgufReader::open(out);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ((*g)->find("tokenizer.ggml.tokens")->items.size(), 100000u);
}

// The layer-file input gives the same file as the HF directory it came from.
TEST(GgufExportCli, LayerFileInputEqualsHfInput) {
  const std::string dir = make_temp_dir("gguf_layer");
  ASSERT_EQ(run_lema_shell("model init --preset tiny --out " + dir + "/m --seed 2").exit_code, 0);
  write_byte_tokenizer(dir + "/m");
  ASSERT_EQ(run_lema_shell("convert " + dir + "/m -o " + dir + "/m.lema.safetensors").exit_code, 0);
  RunResult a = run_lema_shell("export " + dir + "/m --type q8_0 --name tiny --tokenizer " + dir + "/m --out " + dir + "/a.gguf");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = run_lema_shell("export " + dir + "/m.lema.safetensors --type q8_0 --name tiny --tokenizer " + dir +
                               "/m --out " + dir + "/b.gguf");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_TRUE(slurp(dir + "/a.gguf") == slurp(dir + "/b.gguf"));
}

}  // namespace
}  // namespace lema::test
