// `lema tokenize --tokenizer PATH (--text T | --jsonl FILE) [--special] [--decode]`
// Prints the ids of a text (a JSON array per line), or with --decode the
// decoded text as a JSON string. With --jsonl, each input line is a JSON
// string (encoded) or, with --decode, a JSON string or an array of ids.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "common/text/tokenizer.h"

namespace {
using json = nlohmann::json;

struct TokenizeArgs {
  std::string tokenizer, text, jsonl;
  bool special = false, decode = false, skip_special = false;
  bool has_text = false;
};

std::string json_string(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ids_line(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

// One input (a JSON value) -> one output line.
lema::Status process(const lema::Tokenizer& tok, const TokenizeArgs& a, const json& v, std::string* line) {
  if (v.is_string()) {
    std::vector<int32_t> ids = tok.encode(v.get<std::string>(), a.special);
    *line = a.decode ? json_string(tok.decode(ids, a.skip_special)) : ids_line(ids);
    return lema::Status();
  }
  if (a.decode && v.is_array()) {
    std::vector<int32_t> ids;
    for (const auto& x : v) {
      if (!x.is_number_integer()) return lema::Status::invalid_argument("the array must hold integer ids");
      int64_t id = x.get<int64_t>();
      if (id < 0 || id >= tok.vocab_size())
        return lema::Status::invalid_argument("id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(tok.vocab_size()));
      ids.push_back(static_cast<int32_t>(id));
    }
    *line = json_string(tok.decode(ids, a.skip_special));
    return lema::Status();
  }
  return lema::Status::invalid_argument(a.decode ? "expected a JSON string or an array of ids" : "expected a JSON string");
}

lema::Status run_tokenize(const TokenizeArgs& a) {
  if (a.has_text == !a.jsonl.empty())
    return lema::Status::invalid_argument("give exactly one of --text and --jsonl");
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<lema::Tokenizer> tok, lema::Tokenizer::load(a.tokenizer));
  std::string line;
  if (a.has_text) {
    LEMA_RETURN_IF_ERROR(process(*tok, a, json(a.text), &line));
    std::printf("%s\n", line.c_str());
    return lema::Status();
  }
  std::ifstream in(a.jsonl, std::ios::binary);
  if (!in) return lema::Status::not_found(a.jsonl + ": cannot open");
  std::string input;
  std::string out;
  int64_t n = 0;
  while (std::getline(in, input)) {
    ++n;
    if (!input.empty() && input.back() == '\r') input.pop_back();
    json v = json::parse(input, nullptr, false);
    if (v.is_discarded()) return lema::Status::invalid_argument(a.jsonl + ":" + std::to_string(n) + ": not valid JSON");
    lema::Status st = process(*tok, a, v, &line);
    if (!st.ok()) return lema::Status::invalid_argument(a.jsonl + ":" + std::to_string(n) + ": " + st.message());
    out += line;
    out += '\n';
    if (out.size() > (1 << 20)) { std::fwrite(out.data(), 1, out.size(), stdout); out.clear(); }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return lema::Status();
}

void setup_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Encode text to token ids (or decode) with a tokenizer");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, tokenizer.model or a model directory")->required();
  CLI::Option* text_opt = cmd->add_option("--text", a->text, "the text to encode");
  cmd->add_option("--jsonl", a->jsonl, "a file with one JSON string per line");
  cmd->add_flag("--special", a->special, "add what the post-processor adds (BOS)");
  cmd->add_flag("--decode", a->decode, "print the decoded text as a JSON string (input: a string or an array of ids)");
  cmd->add_flag("--skip-special", a->skip_special, "with --decode: drop special tokens");
  cmd->callback([a, text_opt] {
    a->has_text = text_opt->count() > 0;
    lema::cli::finish(run_tokenize(*a));
  });
}
}  // namespace

LEMA_REGISTER_COMMAND(setup_tokenize);
