// `lema template render --model DIR | --tokenizer-config FILE --messages
// FILE.jsonl [--add-generation-prompt] [--ids] [--mask] [--template FILE]`:
// each conversation line rendered by the model's chat template as
// transformers' apply_chat_template renders it (common/text/chat_template.h),
// printed as one JSON string per line; with --ids or --mask one object per
// line: {"text", "ids", "mask" (1 = trained on), "last_turn_only" (the
// template rewrites history: only the last assistant turn is masked in)}.
// For users to check their data before a long run, and for tests.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/data/training_example.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"

namespace {

using ojson = nlohmann::ordered_json;

struct TemplateRenderArgs {
  std::string model, tokenizer_config, template_file, messages;
  bool add_generation_prompt = false, ids = false, mask = false;
};

// A line is a JSON array of messages or an object with "messages".
lema::Result<ojson> conversation_of(std::string_view line) {
  ojson j = ojson::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return lema::Status::invalid_argument("not valid JSON");
  if (j.is_object() && j.contains("messages")) j = j["messages"];
  if (!j.is_array()) return lema::Status::invalid_argument("expected an array of messages or {\"messages\": [...]}");
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_object() || !j[i].contains("role") || !j[i]["role"].is_string())
      return lema::Status::invalid_argument("messages[" + std::to_string(i) + "]: needs a string \"role\"");
  }
  return j;
}

lema::Status run_render(const TemplateRenderArgs& a) {
  using namespace lema;
  if (a.model.empty() == a.tokenizer_config.empty())
    return Status::invalid_argument("give exactly one of --model DIR or --tokenizer-config FILE");
  if (a.mask && a.add_generation_prompt)
    return Status::invalid_argument("--mask shows the training render: it excludes --add-generation-prompt");
  const std::string source = a.model.empty() ? a.tokenizer_config : a.model;
  // The model's own template must be there: render refuses what chat falls back from.
  LEMA_ASSIGN_OR_RETURN(ChatTemplate tmpl, a.template_file.empty()
                                                ? ChatTemplate::load(source)
                                                : ChatTemplate::load_override(a.template_file, source));
  std::unique_ptr<Tokenizer> tok;
  if (a.ids || a.mask) {
    LEMA_ASSIGN_OR_RETURN(tok, Tokenizer::load(a.model.empty() ? path_dirname(a.tokenizer_config) : a.model));
  }
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(a.messages));
  ChatRenderOptions options;
  options.add_generation_prompt = a.add_generation_prompt;
  return for_each_line(text, a.messages, [&](int64_t, std::string_view line) -> Status {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return Status();
    LEMA_ASSIGN_OR_RETURN(ojson messages, conversation_of(line));
    ojson out;
    if (a.mask) {
      bool last_turn_only = false;
      LEMA_ASSIGN_OR_RETURN(ChatTokens chat, tokenize_conversation(tmpl, *tok, messages, &last_turn_only));
      LEMA_ASSIGN_OR_RETURN(std::string rendered, tmpl.render(messages, options));
      out = {{"text", rendered}, {"ids", chat.ids}, {"mask", chat.loss_mask}};
      if (last_turn_only) out["last_turn_only"] = true;
    } else {
      LEMA_ASSIGN_OR_RETURN(std::string rendered, tmpl.render(messages, options));
      out = rendered;
      if (a.ids) out = {{"text", rendered}, {"ids", tok->encode(rendered, /*add_special=*/false)}};
    }
    const std::string s = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(s.data(), 1, s.size(), stdout);
    return Status();
  });
}

void setup_template(CLI::App& app) {
  CLI::App* group = lema::cli::group(app, "template", "A model's chat template");
  auto a = std::make_shared<TemplateRenderArgs>();
  CLI::App* render = group->add_subcommand("render", "Render conversations as transformers' apply_chat_template does");
  render->add_option("--model", a->model, "model or tokenizer directory (tokenizer_config.json / chat_template.jinja)");
  render->add_option("--tokenizer-config", a->tokenizer_config, "a tokenizer_config.json holding chat_template");
  render->add_option("--template", a->template_file, "override: a .jinja file (or tokenizer_config.json) whose template is used");
  render->add_option("--messages", a->messages, "JSONL: one conversation per line ([...] or {\"messages\": [...]})")
      ->required();
  render->add_flag("--add-generation-prompt", a->add_generation_prompt, "end with the assistant's turn header");
  render->add_flag("--ids", a->ids, "print the token ids (as transformers tokenizes the text: no added BOS)");
  render->add_flag("--mask", a->mask, "print ids and which carry loss in training (1 = trained on)");
  render->callback([a] { lema::cli::finish(run_render(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_template);
