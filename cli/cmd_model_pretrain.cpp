// `lema model pretrain --preset tiny|mini|compact|small --data FILE.jsonl --out DIR`:
// makes a small base model that knows the dataset's content but has never
// seen the [LEMA_REPLY] format (DEMO-FINDINGS.md): trains a tokenizer on
// the examples' plain text, initialises the preset, and trains every weight
// on "Question: ...\nAnswer: ...\nExplanation: ...\n" texts. DIR ends up a
// Hugging Face model directory with its tokenizer; the work (corpus,
// tokenized data, checkpoints) stays in DIR/pretrain, and running the same
// command again resumes from the newest checkpoint.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/spm_trainer.h"
#include "common/text/chat_format.h"
#include "common/data/dataset.h"
#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/base/log.h"
#include "common/formats/model_presets.h"
#include "common/text/tokenizer.h"
#include "engine/checkpoint.h"
#include "engine/data_loader.h"
#include "engine/trainer.h"

namespace {

struct PretrainArgs {
  std::string preset = "small";
  std::string data, out;
  int64_t steps = 800;
  uint64_t seed = 0;
  int vocab = 2000;
  int64_t batch = 16;
  int64_t seq_len = 128;
  double lr = 1e-3;
  int64_t checkpoint_every = 100;
  int64_t threads = 0;
  bool quiet = false;
};

// One line per line of text: the SentencePiece trainer reads lines.
void append_lines(const std::string& text, std::string* corpus) {
  (void)lema::for_each_line(text, "text", [corpus](int64_t, std::string_view line) {
    if (!line.empty()) corpus->append(line).push_back('\n');
    return lema::Status();
  });
}

lema::Status run_pretrain(const PretrainArgs& a) {
  using namespace lema;
  LEMA_ASSIGN_OR_RETURN(ModelConfig config, model_preset(a.preset));
  LEMA_ASSIGN_OR_RETURN(ImportResult data, import_jsonl(a.data, ImportOptions{}));
  if (data.examples.empty()) return Status::invalid_argument(a.data + ": no usable example");
  if (!data.bad_lines.empty()) {
    log_warn("%s: %zu bad lines skipped (first: line %lld)", a.data.c_str(), data.bad_lines.size(),
             static_cast<long long>(data.bad_lines.front().line));
  }
  const std::string work = path_join(a.out, "pretrain");
  LEMA_RETURN_IF_ERROR(make_dirs(work));

  // 1. Tokenizer, trained on the plain texts and on the prompts a chat
  //    carries (never on a reply in the format).
  if (!path_exists(path_join(a.out, "tokenizer.json"))) {
    std::string corpus;
    for (const Example& e : data.examples) {
      append_lines(render_plain(e), &corpus);
      append_lines(example_prompt(e), &corpus);
    }
    const std::string corpus_path = path_join(work, "corpus.txt");
    LEMA_RETURN_IF_ERROR(write_file_atomic(corpus_path, corpus));
    log_info("pretrain: training a %d-piece tokenizer on %s", a.vocab, corpus_path.c_str());
    LEMA_RETURN_IF_ERROR(cli::run_spm_train(corpus_path, a.vocab, a.out, /*pad=*/true));
  }
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::load(path_join(a.out, "tokenizer.json")));

  // 2. The preset with the tokenizer's vocabulary and special ids.
  config.vocab_size = tok->vocab_size();
  config.bos_token_id = tok->bos_id();
  config.eos_token_ids = {tok->eos_id()};
  config.pad_token_id = tok->pad_id();
  const std::string init_dir = path_join(work, "init");
  if (!path_exists(path_join(init_dir, "model.safetensors"))) {
    LEMA_RETURN_IF_ERROR(write_random_hf_model(config, init_dir, a.seed));
  }

  // 3. Plain text, every token trained: BOS text EOS.
  const std::string tokenized = path_join(work, "plain.tokens.jsonl");
  std::vector<TokenizedExample> examples;
  for (const Example& e : data.examples) {
    TokenizedExample t;
    t.input_ids = tok->encode(render_plain(e), /*add_special=*/true);
    if (tok->eos_id() >= 0) t.input_ids.push_back(tok->eos_id());
    if (static_cast<int64_t>(t.input_ids.size()) > a.seq_len) {
      t.input_ids.resize(a.seq_len);
      t.truncated = true;
    }
    t.labels = t.input_ids;
    examples.push_back(std::move(t));
  }
  LEMA_RETURN_IF_ERROR(engine::write_tokenized_jsonl(tokenized, examples));

  // 4. Every weight, from the newest checkpoint when one exists.
  engine::TrainOptions o;
  o.full = true;
  o.model = init_dir;
  o.data = tokenized;
  o.tokenizer = a.out;
  o.out = path_join(work, "run");
  o.seed = a.seed;
  o.steps = a.steps;
  o.lr = a.lr;
  o.schedule = "cosine";
  o.warmup = std::min<int64_t>(20, a.steps / 10);
  o.batch = a.batch;
  o.micro_batch = a.batch;  // a small model: the whole batch in one pass
  o.seq_len = a.seq_len;
  o.dtype = "fp32";
  o.device = "cpu";
  o.checkpoint_every = a.checkpoint_every;
  o.threads = a.threads;
  o.quiet = a.quiet;
  if (engine::find_latest_checkpoint(o.out).ok()) o.resume = o.out;
  LEMA_RETURN_IF_ERROR(engine::run_training(o));

  // 5. The trained model becomes DIR (its tokenizer files are there already).
  for (const char* name : {"config.json", "model.safetensors"}) {
    const std::string from = path_join(path_join(o.out, "model"), name), to = path_join(a.out, name);
    if (std::rename(from.c_str(), to.c_str()) != 0) return status_from_errno("moving " + from + " to " + to, errno);
  }
  LEMA_RETURN_IF_ERROR(copy_hf_side_files(init_dir, a.out));  // generation_config.json
  LEMA_RETURN_IF_ERROR(fsync_path(a.out));
  std::printf("wrote %s: preset %s (vocab %lld), %lld full-parameter steps on %zu plain-text examples\n",
              a.out.c_str(), a.preset.c_str(), static_cast<long long>(config.vocab_size),
              static_cast<long long>(a.steps), examples.size());
  return Status();
}

void setup_model_pretrain(CLI::App& app) {
  auto a = std::make_shared<PretrainArgs>();
  CLI::App* model = lema::cli::group(app, "model", "Create and train small models");
  CLI::App* cmd = model->add_subcommand(
      "pretrain", "Make a small base that knows a dataset's content as plain text, never the reply format");
  cmd->add_option("--preset", a->preset, "tiny, mini, compact or small")->capture_default_str()->check(CLI::IsMember(lema::model_preset_names()));
  cmd->add_option("--data", a->data, "dataset JSONL (lema dataset build's train.jsonl, or yours)")->required();
  cmd->add_option("--out", a->out, "model directory to write (config, weights, tokenizer)")->required();
  cmd->add_option("--steps", a->steps, "full-parameter training steps")->capture_default_str();
  cmd->add_option("--seed", a->seed, "seed of the weights and the data order")->capture_default_str();
  cmd->add_option("--vocab", a->vocab, "tokenizer vocabulary size")->capture_default_str();
  cmd->add_option("--batch", a->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq-len", a->seq_len, "longest sequence")->capture_default_str();
  cmd->add_option("--lr", a->lr, "peak learning rate (cosine schedule)")->capture_default_str();
  cmd->add_option("--checkpoint-every", a->checkpoint_every, "steps between checkpoints")->capture_default_str();
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)");
  cmd->add_flag("--quiet", a->quiet, "no per-step lines");
  cmd->callback([a] { lema::cli::finish(run_pretrain(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_model_pretrain);
