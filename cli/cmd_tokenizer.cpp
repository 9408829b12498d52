// `lema tokenizer train --corpus FILE --vocab N --out DIR [--pad]`
// (cli/spm_trainer.h runs the trainer executable).
#include "cli/command.h"
#include "cli/spm_trainer.h"

namespace {

struct TrainArgs {
  std::string corpus, out;
  int vocab = 0;
  bool pad = false;
};

void setup_tokenizer(CLI::App& app) {
  CLI::App* group = lema::cli::group(app, "tokenizer", "Tokenizer tools");
  auto a = std::make_shared<TrainArgs>();
  CLI::App* train = group->add_subcommand("train", "Train a SentencePiece BPE tokenizer (byte fallback) on a text corpus");
  train->add_option("--corpus", a->corpus, "text file, one sentence or paragraph per line")->required();
  train->add_option("--vocab", a->vocab, "vocabulary size (>= 260)")->required();
  train->add_option("--out", a->out, "output directory: tokenizer.model, tokenizer.json, tokenizer_config.json")->required();
  train->add_flag("--pad", a->pad, "add a <pad> piece (id 3)");
  train->callback([a] { lema::cli::finish(lema::cli::run_spm_train(a->corpus, a->vocab, a->out, a->pad)); });
}
}  // namespace

LEMA_REGISTER_COMMAND(setup_tokenizer);
