// `lema template render` through the real binary on the real chat templates
// of the test-asset cache (scripts/fetch_test_assets.sh), each line checked
// against Python's jinja2 with transformers' settings
// (tests/tools/render_chat_template.py). Skips with a message when the
// assets or python3-jinja2 are absent.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/base/file_util.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

std::string asset_dir() {
  const char* env = std::getenv("LEMA_ASSET_CACHE");
  const char* home = std::getenv("HOME");
  return (env && *env ? std::string(env) : std::string(home ? home : "/tmp") + "/.cache/lema-test-assets") +
         "/chat_templates";
}

bool python_jinja_available() {
  return std::system("python3 -c 'import jinja2' >/dev/null 2>&1") == 0;
}

int run(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  auto text = read_file(path);
  EXPECT_TRUE(text.ok()) << path;
  if (!text.ok()) return out;
  EXPECT_TRUE(for_each_line(*text, path, [&](int64_t, std::string_view l) {
                out.emplace_back(l);
                return Status();
              }).ok());
  return out;
}

ojson msg(const char* role, const std::string& content) { return ojson{{"role", role}, {"content", content}}; }

// With and without system, multi-turn, unicode and template-sensitive text.
std::vector<ojson> conversations() {
  return {
      ojson::array({msg("user", "What is 2+2?"), msg("assistant", "4")}),
      ojson::array({msg("system", "Answer briefly."), msg("user", "Hi"), msg("assistant", "Hello!"),
                    msg("user", "Name a prime."), msg("assistant", "7")}),
      ojson::array({msg("user", "  spaces {{ not a tag }} \"quotes\" 'x'  "), msg("assistant", "Grüße, 世界 🙂\n")}),
      ojson::array({msg("user", "Only a question?")}),
  };
}

// The context transformers gives a template: the special tokens named in
// tokenizer_config.json (strings or AddedToken objects), then the call's.
ojson context_for(const ojson& config, const ojson& messages, bool add_generation_prompt) {
  ojson c = ojson::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (!config.contains(key)) continue;
    const ojson& v = config[key];
    if (v.is_string()) c[key] = v;
    if (v.is_object() && v.contains("content")) c[key] = v["content"];
  }
  c["messages"] = messages;
  c["add_generation_prompt"] = add_generation_prompt;
  return c;
}

TEST(TemplateCli, RendersAsPythonJinja2OnTheRealTemplates) {
  if (!python_jinja_available()) GTEST_SKIP() << "python3 with jinja2 not found (apt-get install python3-jinja2)";
  std::vector<std::string> dirs;
  for (const char* name : {"llama3_1", "qwen3", "gemma3", "mistral_nemo", "llama2", "deepseek_v3"}) {
    const std::string d = asset_dir() + "/" + name;
    auto config = read_file(d + "/tokenizer_config.json");
    if (!config.ok()) continue;
    ojson j = ojson::parse(*config, nullptr, false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string()) dirs.push_back(d);
  }
  if (dirs.empty()) GTEST_SKIP() << "no fetched chat templates in " << asset_dir() << "; run scripts/fetch_test_assets.sh";
  char tmpl[] = "/tmp/lema_template_cli_XXXXXX";
  const std::string tmp = ::mkdtemp(tmpl);
  size_t checked = 0;
  for (const std::string& dir : dirs) {
    const ojson config = ojson::parse(*read_file(dir + "/tokenizer_config.json"));
    for (bool gen : {false, true}) {
      // The reference first: conversations it refuses (e.g. a template that
      // needs the assistant last) are left out of lema's input.
      std::string requests;
      for (const ojson& conv : conversations())
        requests += ojson{{"template", config["chat_template"]}, {"context", context_for(config, conv, gen)}}.dump() + "\n";
      ASSERT_TRUE(write_file_atomic(tmp + "/req.jsonl", requests).ok());
      ASSERT_EQ(run("TZ=UTC python3 " LEMA_SOURCE_DIR "/tests/tools/render_chat_template.py < " + tmp + "/req.jsonl > " +
                    tmp + "/want.jsonl"),
                0);
      std::vector<std::string> want_lines = lines_of(tmp + "/want.jsonl");
      ASSERT_EQ(want_lines.size(), conversations().size());
      std::string input;
      std::vector<std::string> want;
      for (size_t i = 0; i < want_lines.size(); ++i) {
        ojson w = ojson::parse(want_lines[i]);
        if (!w.contains("text")) continue;
        input += ojson{{"messages", conversations()[i]}}.dump() + "\n";
        want.push_back(w["text"]);
      }
      if (want.empty()) continue;
      ASSERT_TRUE(write_file_atomic(tmp + "/conv.jsonl", input).ok());
      const std::string cmd = std::string(LEMA_BINARY) + " template render --model " + dir + " --messages " + tmp +
                              "/conv.jsonl" + (gen ? " --add-generation-prompt" : "") + " > " + tmp + "/got.jsonl 2> " +
                              tmp + "/err.txt";
      ASSERT_EQ(run(cmd), 0) << dir << ": " << *read_file(tmp + "/err.txt");
      std::vector<std::string> got = lines_of(tmp + "/got.jsonl");
      ASSERT_EQ(got.size(), want.size()) << dir;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(ojson::parse(got[i]).get<std::string>(), want[i]) << dir << " line " << i + 1 << " gen " << gen;
        ++checked;
      }
    }
  }
  std::printf("lema template render: %zu renders of %zu templates identical to python jinja2\n", checked, dirs.size());
  (void)remove_all(tmp);
}

TEST(TemplateCli, IdsMaskAndErrorsNameTheLine) {
  const std::string dir = asset_dir() + "/llama3_1";
  if (!path_exists(dir + "/tokenizer.json")) GTEST_SKIP() << "no llama3_1 assets in " << asset_dir();
  char tmpl[] = "/tmp/lema_template_cli_XXXXXX";
  const std::string tmp = ::mkdtemp(tmpl);
  ASSERT_TRUE(write_file_atomic(tmp + "/conv.jsonl", ojson{{"messages", conversations()[1]}}.dump() + "\n").ok());
  ASSERT_EQ(run(std::string(LEMA_BINARY) + " template render --tokenizer-config " + dir +
                "/tokenizer_config.json --messages " + tmp + "/conv.jsonl --mask > " + tmp + "/got.jsonl 2>/dev/null"),
            0);
  std::vector<std::string> got = lines_of(tmp + "/got.jsonl");
  ASSERT_EQ(got.size(), 1u);
  const ojson g = ojson::parse(got[0]);
  ASSERT_EQ(g["ids"].size(), g["mask"].size());
  // Llama 3.1: "Hello!<|eot_id|>" and "7<|eot_id|>" carry the loss: 2 + 2 ids
  // with its tokenizer ("Hello", "!"; "7"; <|eot_id|> each).
  int trained = 0;
  for (const auto& m : g["mask"]) trained += m.get<int>();
  EXPECT_EQ(trained, 5) << got[0];
  EXPECT_EQ(g["ids"][0], 128000);  // <|begin_of_text|> once, from the template
  EXPECT_NE(g["ids"][1], 128000);
  // A bad line is named.
  ASSERT_TRUE(write_file_atomic(tmp + "/bad.jsonl", ojson{{"messages", conversations()[0]}}.dump() + "\n{\"messages\": 3}\n").ok());
  ASSERT_EQ(run(std::string(LEMA_BINARY) + " template render --model " + dir + " --messages " + tmp + "/bad.jsonl > " +
                tmp + "/out.txt 2> " + tmp + "/err.txt"),
            2);
  EXPECT_NE(read_file(tmp + "/err.txt")->find(tmp + "/bad.jsonl:2: expected an array"), std::string::npos)
      << *read_file(tmp + "/err.txt");
  (void)remove_all(tmp);
}

}  // namespace
}  // namespace lema
