// ChatTemplate (common/text/chat_template.h): loading from model
// directories, the context transformers gives, assistant spans by both
// methods, and ids with loss masks through a real Tokenizer.
#include "common/text/chat_template.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"
#include "tests/byte_tokenizer.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lema_chat_template_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }
  void write(const std::string& name, const std::string& text) const {
    ASSERT_TRUE(write_file_atomic(path_join(path_, name), text).ok());
  }

 private:
  std::string path_;
};

ojson msg(const std::string& role, const std::string& content) { return ojson{{"role", role}, {"content", content}}; }

std::string span_text(const ChatRendering& r, size_t i) {
  return r.text.substr(r.assistant_spans[i].begin, r.assistant_spans[i].end - r.assistant_spans[i].begin);
}

TEST(ChatTemplate, LoadsTheConfigTemplateWithItsSpecialTokens) {
  TempDir d;
  ojson config = {{"bos_token", {{"content", "<|begin_of_text|>"}, {"lstrip", false}}},
                  {"eos_token", "<|eot_id|>"},
                  {"chat_template", kLlama3}};
  config["additional_special_tokens"] = ojson::array({"<|a|>", {{"content", "<|b|>"}}});
  d.write("tokenizer_config.json", config.dump());
  auto extra = ChatTemplate::load(d.path());
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ(extra->special_tokens()["additional_special_tokens"], ojson::array({"<|a|>", "<|b|>"}));
  for (const std::string& path : {d.path(), d.path() + "/tokenizer_config.json"}) {
    auto t = ChatTemplate::load(path);
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    ChatRenderOptions o;
    o.add_generation_prompt = true;
    auto text = t->render(ojson::array({msg("user", " Hi ")}), o);
    ASSERT_TRUE(text.ok()) << text.status().to_string();
    EXPECT_EQ(*text,
              "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
  }
}

TEST(ChatTemplate, NamedTemplatesAndTheJinjaFile) {
  TempDir d;
  ojson config = {{"chat_template", ojson::array({{{"name", "default"}, {"template", "D{{ messages | length }}"}},
                                                  {{"name", "tool_use"}, {"template", "T{{ tools | length }}"}}})}};
  d.write("tokenizer_config.json", config.dump());
  ChatRenderOptions o;
  auto def = ChatTemplate::load(d.path());
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(*def->render(ojson::array({msg("user", "x")}), o), "D1");
  auto tool = ChatTemplate::load(d.path(), "tool_use");
  ASSERT_TRUE(tool.ok());
  o.extra = {{"tools", ojson::array({ojson::object(), ojson::object()})}};
  EXPECT_EQ(*tool->render(ojson::array(), o), "T2");
  auto none = ChatTemplate::load(d.path(), "rag");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no template named 'rag' (has: default, tool_use)"), std::string::npos);
  // chat_template.jinja beside the config wins, as transformers loads it.
  d.write("chat_template.jinja", "J{{ eos_token | default('-') }}\n");
  auto jin = ChatTemplate::load(d.path());
  ASSERT_TRUE(jin.ok());
  EXPECT_EQ(*jin->render(ojson::array(), ChatRenderOptions{}), "J-");
}

TEST(ChatTemplate, MissingTemplateAndBadInputAreStatuses) {
  TempDir d;
  d.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  auto t = ChatTemplate::load(d.path());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("has no chat_template"), std::string::npos);
  EXPECT_FALSE(ChatTemplate::load(d.path() + "/nope").ok());
  d.write("tokenizer_config.json", "{not json");
  EXPECT_FALSE(ChatTemplate::load(d.path()).ok());
  d.write("tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  auto bad = ChatTemplate::load(d.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer_config.json:chat_template:1:"), std::string::npos) << bad.status().message();
  auto ok = ChatTemplate::from_source("{{ messages }}", "t", ojson::object());
  ASSERT_TRUE(ok.ok());
  EXPECT_FALSE(ok->render(ojson::object(), ChatRenderOptions{}).ok());  // messages must be an array
}

TEST(ChatTemplate, ContinueFinalMessageCutsAfterTheLastContent) {
  auto t = ChatTemplate::from_source(kLlama3, "llama3", {{"bos_token", "<|begin_of_text|>"}});
  ASSERT_TRUE(t.ok());
  ChatRenderOptions o;
  o.continue_final_message = true;
  // Llama-3 trims the content: the stripped text is what is found.
  auto text = t->render(ojson::array({msg("user", "Q"), msg("assistant", "The answer is ")}), o);
  ASSERT_TRUE(text.ok()) << text.status().to_string();
  EXPECT_EQ(*text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nThe answer is");
  o.add_generation_prompt = true;
  EXPECT_FALSE(t->render(ojson::array({msg("user", "Q")}), o).ok());
}

TEST(ChatTemplate, ContextAsTransformersGivesIt) {
  // tools and documents are defined (as none); extra variables override.
  auto t = ChatTemplate::from_source(
      "{{ tools is defined }} {{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} "
      "{{ bos_token }} {{ enable_thinking is defined }}",
      "t", {{"bos_token", "<s>"}});
  ASSERT_TRUE(t.ok());
  ChatRenderOptions o;
  EXPECT_EQ(*t->render(ojson::array(), o), "True True True False <s> False");
  o.extra = {{"enable_thinking", false}, {"bos_token", "B"}};
  o.add_generation_prompt = true;
  EXPECT_EQ(*t->render(ojson::array(), o), "True True True True B True");
}

TEST(ChatTemplate, PrefixRenderingFindsEveryReplyAndItsEndOfTurn) {
  auto t = ChatTemplate::from_source(kLlama3, "llama3", {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}});
  ASSERT_TRUE(t.ok());
  ojson conv = ojson::array({msg("system", "S"), msg("user", "Q1"), msg("assistant", "A1"), msg("user", "Q2"),
                             msg("assistant", " A2 ")});
  auto r = t->render_for_training(conv, ChatRenderOptions{});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->method, AssistantMaskMethod::kPrefixRendering);
  ASSERT_EQ(r->assistant_spans.size(), 2u);
  EXPECT_EQ(span_text(*r, 0), "A1<|eot_id|>");
  EXPECT_EQ(span_text(*r, 1), "A2<|eot_id|>");
  auto last = t->render_for_training(conv, ChatRenderOptions{}, /*last_assistant_only=*/true);
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->assistant_spans.size(), 1u);
  EXPECT_EQ(span_text(*last, 0), "A2<|eot_id|>");
}

TEST(ChatTemplate, GenerationTagsGiveTheSpans) {
  auto t = ChatTemplate::from_source(
      "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}</s>"
      "{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
      "gen", ojson::object());
  ASSERT_TRUE(t.ok());
  ojson conv = ojson::array({msg("user", "q"), msg("assistant", "a1"), msg("user", "q2"), msg("assistant", "a2")});
  auto r = t->render_for_training(conv, ChatRenderOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->method, AssistantMaskMethod::kGenerationTags);
  ASSERT_EQ(r->assistant_spans.size(), 2u);
  EXPECT_EQ(span_text(*r, 0), "a1</s>");
  EXPECT_EQ(span_text(*r, 1), "a2</s>");
  auto last = t->render_for_training(conv, ChatRenderOptions{}, true);
  ASSERT_EQ(last->assistant_spans.size(), 1u);
  EXPECT_EQ(span_text(*last, 0), "a2</s>");
}

TEST(ChatTemplate, HistoryRenderedDifferentlyIsRefusedByName) {
  // Like Mistral's: the system prompt goes into the last user message, so a
  // conversation cut after an earlier reply renders differently.
  auto t = ChatTemplate::from_source(
      "{% for m in messages %}{% if m.role == 'user' %}[INST]{% if loop.last %}SYS {% endif %}{{ m.content }}[/INST]"
      "{% else %}{{ m.content }}</s>{% endif %}{% endfor %}",
      "moves_system", ojson::object());
  ASSERT_TRUE(t.ok());
  ojson conv = ojson::array({msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2"), msg("assistant", "a2")});
  auto r = t->render_for_training(conv, ChatRenderOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnsupported);
  EXPECT_NE(r.status().message().find("moves_system: message 1 (assistant)"), std::string::npos) << r.status().message();
}

TEST(ChatTemplate, TokenizeChatMasksTheRepliesOnly) {
  TempDir d;
  test::write_byte_tokenizer(d.path());
  auto tok = Tokenizer::load(d.path());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  auto t = ChatTemplate::from_source(
      "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{% if m.role == 'assistant' %}{{ eos_token }}"
      "{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
      "plain", {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  ASSERT_TRUE(t.ok());
  ojson conv = ojson::array({msg("user", "hi"), msg("assistant", "yo é"), msg("user", "x"), msg("assistant", "ok")});
  auto ct = tokenize_chat(*t, **tok, conv, ChatRenderOptions{});
  ASSERT_TRUE(ct.ok()) << ct.status().to_string();
  auto text = t->render(conv, ChatRenderOptions{});
  // No second BOS: the text's own "<s>" is the only one.
  EXPECT_EQ(ct->ids, (*tok)->encode(*text, false));
  EXPECT_EQ(ct->ids.front(), 0);
  std::string trained;
  std::vector<int32_t> trained_ids;
  for (size_t i = 0; i < ct->ids.size(); ++i) {
    if (ct->loss_mask[i]) trained_ids.push_back(ct->ids[i]);
  }
  // (trim_blocks eats the newline after {% endif %}: turns are not separated.)
  EXPECT_EQ(*text, "<s>user: hiassistant: yo é</s>user: xassistant: ok</s>");
  EXPECT_EQ((*tok)->decode(trained_ids, false), "yo é</s>ok</s>");
}

TEST(ChatTemplate, TokenMaskForSpansKeepsSplitCharactersWhole) {
  TempDir d;
  test::write_byte_tokenizer(d.path());
  auto tok = Tokenizer::load(d.path());
  ASSERT_TRUE(tok.ok());
  std::string text = "ab\xc3\xa9" "cd";  // "abécd": é is two byte tokens
  std::vector<int32_t> ids = (*tok)->encode(text, false);
  ASSERT_EQ(ids.size(), 6u);
  auto mask = token_mask_for_spans(**tok, text, ids, {jinja::Span{2, 4}});
  EXPECT_EQ(mask, (std::vector<uint8_t>{0, 0, 1, 1, 0, 0}));
  mask = token_mask_for_spans(**tok, text, ids, {jinja::Span{0, 0}});
  EXPECT_EQ(mask, (std::vector<uint8_t>(6, 0)));
}

// A SentencePiece-BPE tokenizer.json (Llama-2 layout, legacy normalizer)
// over a tiny vocab: decoding does not give the text back (the dummy
// prefix), so span edges are found by encoding prefixes.
std::string spm_json() {
  std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2,"▁":3,"h":4,"i":5,"▁h":6,"▁hi":7)";
  for (int b = 0; b < 256; ++b) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), ",\"<0x%02X>\":%d", b, 8 + b);
    vocab += buf;
  }
  return R"({"added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}],
    "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
    "pre_tokenizer":null,"post_processor":null,
    "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
    "model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":{)" + vocab + R"(},"merges":["▁ h","▁h i"]}})";
}

TEST(ChatTemplate, TokenMaskForSpansByPrefixEncodingWhenDecodeDiffers) {
  TempDir d;
  d.write("tokenizer.json", spm_json());
  auto tok = Tokenizer::load(d.path() + "/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  std::string text = "<s>hi hi</s>";
  std::vector<int32_t> ids = (*tok)->encode(text, false);
  ASSERT_EQ(ids, (std::vector<int32_t>{1, 7, 7, 2}));  // <s> ▁hi ▁hi </s>
  ASSERT_NE((*tok)->decode(ids, false), text);        // the fallback path is the one tested
  // The reply " hi</s>" starts on a token edge.
  EXPECT_EQ(token_mask_for_spans(**tok, text, ids, {jinja::Span{5, 12}}), (std::vector<uint8_t>{0, 0, 1, 1}));
  // A span starting inside "▁hi" leaves that token out.
  EXPECT_EQ(token_mask_for_spans(**tok, text, ids, {jinja::Span{4, 12}}), (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(token_mask_for_spans(**tok, text, ids, {jinja::Span{3, 5}}), (std::vector<uint8_t>{0, 1, 0, 0}));
}

}  // namespace
}  // namespace lema
