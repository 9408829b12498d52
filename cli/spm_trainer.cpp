#include "cli/spm_trainer.h"

#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/base/file_util.h"

namespace lema::cli {
namespace {

Result<std::string> find_trainer() {
  if (const char* env = std::getenv("LEMA_SPM_TRAIN"); env != nullptr && *env) {
    if (access(env, X_OK) != 0) return Status::not_found(std::string("LEMA_SPM_TRAIN=") + env + ": not an executable");
    return std::string(env);
  }
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return Status::not_found("cannot read /proc/self/exe; set LEMA_SPM_TRAIN");
  buf[n] = 0;
  const std::string dir = path_dirname(buf);
  for (const std::string& c : {path_join(dir, "lema-spm-train"), path_join(dir, "../tools/spm_train/lema-spm-train")}) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return Status::not_found("lema-spm-train not found next to " + std::string(buf) +
                                 " or in ../tools/spm_train/; build target lema-spm-train or set LEMA_SPM_TRAIN");
}

}  // namespace

Status run_spm_train(const std::string& corpus, int vocab, const std::string& out, bool pad) {
  LEMA_ASSIGN_OR_RETURN(std::string exe, find_trainer());
  std::vector<std::string> argv_s = {exe, "--corpus", corpus, "--vocab", std::to_string(vocab), "--out", out};
  if (pad) argv_s.push_back("--pad");
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return status_from_errno("fork", errno);
  if (pid == 0) {
    execv(exe.c_str(), argv.data());
    std::_Exit(127);
  }
  int ws = 0;
  if (waitpid(pid, &ws, 0) < 0) return status_from_errno("waitpid", errno);
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return Status();
  int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  std::string msg = exe + " failed (" + (WIFEXITED(ws) ? "exit " + std::to_string(code) : "killed by a signal") + ")";
  if (code == 2) return Status::invalid_argument(msg);
  if (code == 3) return Status::not_found(msg);
  if (code == 127) return Status::not_found(msg + ": cannot execute");
  return Status::internal(msg);
}

}  // namespace lema::cli
