// `lema chat MODEL [--adapter DIR] [--prompt TEXT] [--system TEXT]
// [--template FILE] [--vram 4GiB] [--ram 8GiB]`: renders each question in
// the model's own chat template (as transformers' apply_chat_template with
// add_generation_prompt; common/text/chat_template.h) or, for a model
// without one, in lema's chat format (and says so), generates with a KV
// cache (text streamed as it comes), stops at [/LEMA_REPLY] or EOS, and marks
// the reply valid or with the strict validator's reason (common/text/chat_format.h).
// With a budget the base (a layer file) streams through the device
// (open_inference_source, docs/EVAL.md).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/command.h"
#include "common/text/chat_format.h"
#include "common/text/chat_template.h"
#include "common/base/file_util.h"
#include "common/text/tokenizer.h"
#include "engine/generator.h"
#include "engine/layer_source.h"
#include "engine/model_loader.h"
#include "engine/peft_adapter.h"
#include "engine/torch_types.h"

namespace {

struct ChatArgs {
  std::string model, adapter, prompt, tokenizer, system, template_file;
  std::string dtype = "fp32", device = "cpu";
  int64_t max_new_tokens = 200;
  double temperature = 0.0, top_p = 1.0, repetition_penalty = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  int threads = 0;
  uint64_t vram_budget = 0, ram_budget = 0;
  bool show_prompt = false;
};

// A REPL question's prompt is not known when the model is opened: the KV
// cache of a budgeted plan is sized for prompts up to this many tokens.
constexpr int64_t kReplPromptTokens = 2048;

// The prompt's ids: the template's render of [system (when given), user]
// with the generation prompt, tokenized as transformers does (the text
// holds its BOS); or lema's format with its BOS.
// With --show-prompt the rendered text goes to stderr as a JSON string
// (users check what the model is sent; tests compare it with jinja2's).
lema::Result<std::vector<int32_t>> prompt_ids(const lema::Tokenizer& tok, const lema::ChatTemplate* tmpl,
                                              const ChatArgs& a, const std::string& question) {
  std::string text;
  if (!tmpl) {
    text = lema::render_prompt(question, a.system.empty() ? lema::kSystemPrompt : a.system);
  } else {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
    messages.push_back({{"role", "user"}, {"content", question}});
    lema::ChatRenderOptions options;
    options.add_generation_prompt = true;
    LEMA_ASSIGN_OR_RETURN(text, tmpl->render(messages, options));
  }
  if (a.show_prompt) {
    std::fprintf(stderr, "lema chat: prompt %s\n",
                 nlohmann::ordered_json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return tok.encode(text, /*add_special=*/tmpl == nullptr);
}

lema::Status answer(lema::engine::Generator& gen, const lema::Tokenizer& tok, const lema::ChatTemplate* tmpl,
                    const ChatArgs& a, const std::string& question) {
  LEMA_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, prompt_ids(tok, tmpl, a, question));
  const bool budgeted = a.vram_budget > 0 || a.ram_budget > 0;
  if (budgeted && a.prompt.empty() && static_cast<int64_t>(ids.size()) > kReplPromptTokens) {
    // Its KV cache would outgrow the plan, and with it the budget.
    std::fprintf(stderr, "lema chat: this question is %zu tokens; with --vram/--ram the REPL plans for prompts of up to "
                 "%lld tokens (ask it with --prompt)\n", ids.size(), static_cast<long long>(kReplPromptTokens));
    return lema::Status();
  }
  lema::engine::GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.stop_strings = {lema::kReplyCloseTag};
  o.sampling.temperature = a.temperature;
  o.sampling.top_k = a.top_k;
  o.sampling.top_p = a.top_p;
  o.sampling.repetition_penalty = a.repetition_penalty;
  o.sampling.seed = a.seed;
  LEMA_ASSIGN_OR_RETURN(auto out, gen.generate({ids}, o, [](int64_t, const std::string& piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }));
  const lema::ReplyCheck check = lema::validate_reply(out[0].text);
  std::printf("\n-- %s (%zu tokens, stop: %s)\n", check.ok() ? "valid" : ("invalid: " + std::string(lema::reply_error_name(check.error)) + ": " + check.detail).c_str(),
              out[0].tokens.size(), lema::engine::stop_reason_name(out[0].stop));
  return lema::Status();
}

lema::Status run_chat(const ChatArgs& a) {
  at::set_num_threads(a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  LEMA_ASSIGN_OR_RETURN(at::ScalarType dtype, lema::engine::parse_dtype(a.dtype));
  LEMA_ASSIGN_OR_RETURN(at::Device device, lema::engine::parse_device(a.device));
  std::string tok_path = a.tokenizer;
  if (tok_path.empty()) tok_path = lema::path_exists(lema::path_join(a.model, "config.json")) ? a.model : lema::path_dirname(a.model);
  LEMA_ASSIGN_OR_RETURN(auto tok, lema::Tokenizer::load(tok_path));
  LEMA_ASSIGN_OR_RETURN(const std::optional<lema::ChatTemplate> chat_template,
                        lema::ChatTemplate::select(a.template_file, tok_path));
  const lema::ChatTemplate* tmpl = chat_template ? &*chat_template : nullptr;
  if (tmpl)
    std::fprintf(stderr, "lema chat: chat template %s\n", tmpl->jinja_template().name().c_str());
  else
    std::fprintf(stderr, "lema chat: %s has no chat template: using lema's chat format (give --template FILE to use one)\n",
                 tok_path.c_str());
  int64_t prompt_tokens = kReplPromptTokens;
  if (!a.prompt.empty()) {
    ChatArgs sizing = a;  // only to size the plan: answer() shows the prompt
    sizing.show_prompt = false;
    LEMA_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, prompt_ids(*tok, tmpl, sizing, a.prompt));
    prompt_tokens = static_cast<int64_t>(ids.size());
  }
  lema::engine::InferenceRequest request;
  request.batch = 1;
  request.kv_tokens = prompt_tokens + a.max_new_tokens;
  request.forward_tokens = request.kv_tokens;
  request.vram_budget = a.vram_budget;
  request.ram_budget = a.ram_budget;
  int64_t batch = 1;
  LEMA_ASSIGN_OR_RETURN(auto source,
                        lema::engine::open_inference_source(a.model, a.adapter, request, dtype, device, &batch));
  std::unique_ptr<lema::engine::LoraAdapter> adapter;
  if (!a.adapter.empty()) {
    const at::ScalarType master = dtype == at::kDouble ? at::kDouble : at::kFloat;
    LEMA_ASSIGN_OR_RETURN(adapter, lema::engine::load_peft_adapter(a.adapter, source->config(), master, device));
  }
  lema::engine::Generator gen(*source, adapter.get(), tok.get());
  if (!a.prompt.empty()) return answer(gen, *tok, tmpl, a, a.prompt);
  std::fprintf(stderr, "lema chat: one question per line; empty line or EOF ends.\n");
  std::string line;
  while (true) {
    std::printf("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    LEMA_RETURN_IF_ERROR(answer(gen, *tok, tmpl, a, line));
  }
  return lema::Status();
}

void setup_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand("chat", "Chat with a model in its chat template, optionally with a LoRA adapter");
  cmd->add_option("model", a->model, "HF model directory or layer file")->required();
  cmd->add_option("--adapter", a->adapter, "PEFT adapter directory");
  cmd->add_option("--prompt", a->prompt, "one question, answered once (no REPL)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer file or directory (default: the model's directory)");
  lema::cli::add_bytes_option(cmd, "--vram", a->vram_budget,
                              "device memory budget, e.g. 4GiB: stream the base (a layer file) within it");
  lema::cli::add_bytes_option(cmd, "--ram", a->ram_budget, "host memory budget for the streamed weights, e.g. 8GiB");
  cmd->add_option("--system", a->system,
                  std::string("system prompt (default: none with a chat template; lema's format: \"") +
                      lema::kSystemPrompt + "\")");
  cmd->add_option("--template", a->template_file,
                  "chat template file (.jinja or tokenizer_config.json) instead of the model's own");
  cmd->add_flag("--show-prompt", a->show_prompt, "print each rendered prompt to stderr (a JSON string)");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "longest reply in tokens")->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "0: off")->capture_default_str();
  cmd->add_option("--top-p", a->top_p, "1: off")->capture_default_str();
  cmd->add_option("--repetition-penalty", a->repetition_penalty, "1: off")->capture_default_str();
  cmd->add_option("--seed", a->seed, "sampling seed")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "fp32 | bf16 | fp16")->capture_default_str();
  cmd->add_option("--device", a->device, "cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)");
  cmd->callback([a] { lema::cli::finish(run_chat(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_chat);
