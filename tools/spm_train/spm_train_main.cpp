// lema-spm-train --corpus FILE --vocab N --out DIR [--pad]
// Trains a SentencePiece BPE model (settings: spm_train_args.h) and writes
// DIR/tokenizer.model, the equivalent DIR/tokenizer.json and
// DIR/tokenizer_config.json. Run by `lema tokenizer train`.
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"
#include "common/base/version.h"
#include "tools/spm_train/spm_train_args.h"

namespace {
int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "lema-spm-train: error: %s\n", msg.c_str());
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  std::string corpus, out;
  int vocab = 0;
  bool pad = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](std::string* v) { if (i + 1 >= argc) return false; *v = argv[++i]; return true; };
    std::string v;
    if (a == "--corpus" && next(&v)) corpus = v;
    else if (a == "--out" && next(&v)) out = v;
    else if (a == "--vocab" && next(&v)) vocab = std::atoi(v.c_str());
    else if (a == "--pad") pad = true;
    else if (a == "--version") { std::printf("%s\n", LEMA_VERSION_STRING); return 0; }
    else return fail("usage: lema-spm-train --corpus FILE --vocab N --out DIR [--pad] (bad argument '" + a + "')", 2);
  }
  if (corpus.empty() || out.empty() || vocab <= 0) return fail("usage: lema-spm-train --corpus FILE --vocab N --out DIR [--pad]", 2);
  if (!lema::path_exists(corpus)) return fail(corpus + ": no such file", 3);
  if (vocab < 260 + (pad ? 1 : 0)) return fail("--vocab " + std::to_string(vocab) + " is too small: 256 byte pieces and 3-4 special pieces need at least 260", 2);
  lema::Status st = lema::make_dirs(out);
  if (!st.ok()) return fail(st.to_string(), 5);

  // Train under a temporary prefix, then rename: a crash leaves no half model.
  const std::string tmp_prefix = lema::path_join(out, ".tokenizer.tmp");
  auto status = sentencepiece::SentencePieceTrainer::Train(lema::spm_train_args(corpus, tmp_prefix, vocab, pad) + " --minloglevel=1");
  if (!status.ok()) return fail(std::string("sentencepiece training failed: ") + status.ToString() +
                                (status.ToString().find("Vocabulary size") != std::string::npos ? " (use a smaller --vocab or a larger corpus)" : ""));
  std::remove((tmp_prefix + ".vocab").c_str());
  const std::string model = lema::path_join(out, "tokenizer.model");
  if (std::rename((tmp_prefix + ".model").c_str(), model.c_str()) != 0) return fail("cannot rename the model into " + model, 5);

  auto json_text = lema::sentencepiece_model_to_hf_json(model);
  if (!json_text.ok()) return fail(json_text.status().to_string());
  st = lema::write_file_atomic(lema::path_join(out, "tokenizer.json"), json_text.value());
  if (!st.ok()) return fail(st.to_string(), 5);
  std::string cfg = std::string("{\n  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n") +
                    "  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n" +
                    (pad ? "  \"pad_token\": \"<pad>\",\n" : "  \"pad_token\": null,\n") +
                    "  \"legacy\": true,\n  \"model_max_length\": 1000000000000000019884624838656\n}\n";
  st = lema::write_file_atomic(lema::path_join(out, "tokenizer_config.json"), cfg);
  if (!st.ok()) return fail(st.to_string(), 5);
  // Check that both files load and agree on the corpus' first lines.
  auto a = lema::Tokenizer::load(model);
  auto b = lema::Tokenizer::load(lema::path_join(out, "tokenizer.json"));
  if (!a.ok()) return fail(a.status().to_string());
  if (!b.ok()) return fail(b.status().to_string());
  std::printf("wrote %s/{tokenizer.model,tokenizer.json,tokenizer_config.json} (vocab %lld)\n", out.c_str(),
              static_cast<long long>(a.value()->vocab_size()));
  return 0;
}
