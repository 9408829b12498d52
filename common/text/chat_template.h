// A model's own chat template (Hugging Face tokenizer_config.json /
// chat_template.jinja) rendered as transformers'
// tokenizer.apply_chat_template(messages, tokenize=False,
// add_generation_prompt=...) renders it, byte for byte, plus what training
// needs: which bytes are the assistant's, and ids with a per-id loss mask.
//
// Context given to the template (as transformers does): `messages`,
// `tools` (none unless given), `documents` (none), `add_generation_prompt`,
// the special tokens that tokenizer_config.json names as strings
// (bos_token, eos_token, unk_token, pad_token, additional_special_tokens),
// then `extra` (e.g.
// {"enable_thinking": false}), which overrides any of those.
//
// How assistant spans are found (AssistantMaskMethod):
//  - kGenerationTags, when the template has {% generation %} blocks: the
//    bytes those blocks produced (transformers' return_assistant_tokens_mask).
//  - kPrefixRendering otherwise: for an assistant message k, the span runs
//    from the end of render(messages[:k], add_generation_prompt=true) to the
//    end of render(messages[:k+1], add_generation_prompt=false): the reply
//    and the template's end of turn (e.g. "<|eot_id|>", "<|im_end|>\n",
//    " </s>"). Both renders must be prefixes of the whole conversation's
//    render; templates that render history differently from a cut
//    conversation (Qwen3 drops earlier turns' reasoning; Mistral moves the
//    system prompt to the last user turn) fail for those turns with a
//    Status naming the message. `last_assistant_only` trains on the final
//    assistant message alone, which always works for such templates.
//
// Token mapping (tokenize_chat): ids = encode(text, add_special=false) (the
// text already holds BOS where the template writes it, and transformers
// tokenizes with add_special_tokens=False). A token is trained on when its
// bytes lie inside an assistant span. Token bytes come from streaming
// decode when decoding the ids gives back the text exactly (byte-level
// tokenizers); otherwise each span edge is located by encoding the text up
// to it and taking the common prefix with the ids (a token straddling an
// edge is then not trained on).
//
// Thread-safety: a ChatTemplate is immutable after load; const methods may
// run concurrently.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/text/jinja.h"

namespace lema {

class Tokenizer;

struct ChatRenderOptions {
  bool add_generation_prompt = false;
  // transformers' continue_final_message: render without the generation
  // prompt and cut the text right after the last message's content, so a
  // model continues a prefilled reply. Excludes add_generation_prompt.
  bool continue_final_message = false;
  // Extra template variables (transformers' **kwargs): enable_thinking,
  // tools (a JSON array of tool schemas), date_string, ...
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  int64_t now_unix_s = -1;  // strftime_now's clock; -1: now
};

enum class AssistantMaskMethod { kGenerationTags, kPrefixRendering };

struct ChatRendering {
  std::string text;
  std::vector<jinja::Span> assistant_spans;  // byte ranges in text, in order
  AssistantMaskMethod method = AssistantMaskMethod::kPrefixRendering;
};

struct ChatTokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // [ids.size()], 1 where trained on
};

class ChatTemplate {
 public:
  // `path`: a model directory, a tokenizer_config.json, or a .jinja file.
  // A chat_template.jinja beside tokenizer_config.json takes precedence
  // over its "chat_template" field (as transformers loads it). A list of
  // named templates picks `template_name`, or "default" when empty.
  // Special tokens come from the tokenizer_config.json in that directory
  // (strings or AddedToken objects {"content": ...}).
  static Result<ChatTemplate> load(const std::string& path, const std::string& template_name = "");
  // The template of a model or tokenizer directory (or of the directory of
  // a file such as tokenizer.json) when it has one: chat_template.jinja, or
  // a tokenizer_config.json whose "chat_template" is set. nullopt when it
  // has none (callers fall back to lema's format and say so); a template
  // that is there but does not load is an error.
  static Result<std::optional<ChatTemplate>> find(const std::string& path);
  // A user's template (`--template FILE`: a .jinja file, or a
  // tokenizer_config.json whose chat_template is used) with the special
  // tokens of the model's tokenizer_config.json in `model_dir` (none when
  // it has no such file).
  static Result<ChatTemplate> load_override(const std::string& template_file, const std::string& model_dir);
  // What `--template FILE` and a model directory give together: the
  // override when `template_file` is set, else find(model_dir).
  static Result<std::optional<ChatTemplate>> select(const std::string& template_file, const std::string& model_dir);
  // `special_tokens`: e.g. {"bos_token": "<s>", "eos_token": "</s>"}.
  static Result<ChatTemplate> from_source(const std::string& source, const std::string& name,
                                          const nlohmann::ordered_json& special_tokens);

  // apply_chat_template(messages, tokenize=False, ...). `messages`: a JSON
  // array of {"role", "content", ...} objects.
  Result<std::string> render(const nlohmann::ordered_json& messages, const ChatRenderOptions& options) const;

  // The text (add_generation_prompt=false) and the assistant spans.
  Result<ChatRendering> render_for_training(const nlohmann::ordered_json& messages,
                                            const ChatRenderOptions& options,
                                            bool last_assistant_only = false) const;

  const jinja::Template& jinja_template() const { return template_; }
  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }

 private:
  Result<jinja::RenderResult> render_raw(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                         const ChatRenderOptions& options) const;
  jinja::Template template_;
  nlohmann::ordered_json special_tokens_;
};

// render_for_training, then ids and the per-id loss mask (see the header
// comment for the mapping).
Result<ChatTokens> tokenize_chat(const ChatTemplate& tmpl, const Tokenizer& tokenizer,
                                 const nlohmann::ordered_json& messages, const ChatRenderOptions& options,
                                 bool last_assistant_only = false);

// The mapping alone: 1 for each id of `ids` (= encode(text, false)) whose
// bytes lie inside one of `spans`.
std::vector<uint8_t> token_mask_for_spans(const Tokenizer& tokenizer, const std::string& text,
                                          const std::vector<int32_t>& ids,
                                          const std::vector<jinja::Span>& spans);

}  // namespace lema
