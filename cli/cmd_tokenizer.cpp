// `lema tokenizer train --corpus FILE --vocab N --out DIR [--pad]`: runs the
// lema-spm-train executable (it links libsentencepiece, which must never
// share a process with LibTorch) found through $LEMA_SPM_TRAIN, next to this
// binary, or in the build tree (build/tools/spm_train/).
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "cli/command.h"
#include "common/file_util.h"

namespace {

struct TrainArgs {
  std::string corpus, out;
  int vocab = 0;
  bool pad = false;
};

lema::Result<std::string> find_trainer() {
  if (const char* env = std::getenv("LEMA_SPM_TRAIN"); env != nullptr && *env) {
    if (access(env, X_OK) != 0) return lema::Status::not_found(std::string("LEMA_SPM_TRAIN=") + env + ": not an executable");
    return std::string(env);
  }
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return lema::Status::not_found("cannot read /proc/self/exe; set LEMA_SPM_TRAIN");
  buf[n] = 0;
  const std::string dir = lema::path_dirname(buf);
  for (const std::string& c : {lema::path_join(dir, "lema-spm-train"), lema::path_join(dir, "../tools/spm_train/lema-spm-train")}) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return lema::Status::not_found("lema-spm-train not found next to " + std::string(buf) +
                                 " or in ../tools/spm_train/; build target lema-spm-train or set LEMA_SPM_TRAIN");
}

lema::Status run_train(const TrainArgs& a) {
  LEMA_ASSIGN_OR_RETURN(std::string exe, find_trainer());
  std::vector<std::string> argv_s = {exe, "--corpus", a.corpus, "--vocab", std::to_string(a.vocab), "--out", a.out};
  if (a.pad) argv_s.push_back("--pad");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return lema::status_from_errno("fork", errno);
  if (pid == 0) {
    execv(exe.c_str(), argv.data());
    std::_Exit(127);
  }
  int ws = 0;
  if (waitpid(pid, &ws, 0) < 0) return lema::status_from_errno("waitpid", errno);
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return lema::Status();
  int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  std::string msg = exe + " failed (" + (WIFEXITED(ws) ? "exit " + std::to_string(code) : "killed by a signal") + ")";
  if (code == 2) return lema::Status::invalid_argument(msg);
  if (code == 3) return lema::Status::not_found(msg);
  if (code == 127) return lema::Status::not_found(msg + ": cannot execute");
  return lema::Status::internal(msg);
}

void setup_tokenizer(CLI::App& app) {
  CLI::App* group = lema::cli::group(app, "tokenizer", "Tokenizer tools");
  auto a = std::make_shared<TrainArgs>();
  CLI::App* train = group->add_subcommand("train", "Train a SentencePiece BPE tokenizer (byte fallback) on a text corpus");
  train->add_option("--corpus", a->corpus, "text file, one sentence or paragraph per line")->required();
  train->add_option("--vocab", a->vocab, "vocabulary size (>= 260)")->required();
  train->add_option("--out", a->out, "output directory: tokenizer.model, tokenizer.json, tokenizer_config.json")->required();
  train->add_flag("--pad", a->pad, "add a <pad> piece (id 3)");
  train->callback([a] { lema::cli::finish(run_train(*a)); });
}
}  // namespace

LEMA_REGISTER_COMMAND(setup_tokenizer);
