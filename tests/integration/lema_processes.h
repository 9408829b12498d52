// Helpers for end-to-end tests that run the real `lema` binary (LEMA_BINARY)
// as child processes on loopback: run to completion, spawn and kill, poll
// `lema show --json`, and make a tiny model plus pre-tokenized data.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>

#include "tests/byte_tokenizer.h"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace lema::test {

inline std::string make_temp_dir(const char* tag) {
  std::string tmpl = std::string("/tmp/lema_") + tag + "_XXXXXX";
  char* d = mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// Job specs of these tests name absolute paths under /tmp: the scheduler and
// the workers must allow them (docs/SECURITY.md, --allow-path). A test that
// wants other roots sets LEMA_ALLOW_PATH itself first.
inline void allow_tmp_paths() { setenv("LEMA_ALLOW_PATH", "/tmp", 0); }

// Starts `lema ARGS...` with stdout+stderr appended to `log`; returns its pid.
inline pid_t spawn_lema(const std::vector<std::string>& args, const std::string& log) {
  allow_tmp_paths();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    std::string bin = LEMA_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

struct RunResult {
  int exit_code = -1;     // 128 + signal when killed by a signal
  bool signaled = false;  // the process died of a signal (a crash, not an error exit)
  std::string output;     // stdout + stderr
};

// Runs `lema ARGS...` to the end; output is stdout+stderr.
inline RunResult run_lema(const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/lema_out_XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  pid_t pid = spawn_lema(args, tmpl);
  int status = 0;
  waitpid(pid, &status, 0);
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.signaled = WIFSIGNALED(status);
  r.output = slurp(tmpl);
  unlink(tmpl);
  return r;
}

// Runs `lema ARGS` through the shell: ARGS is one string, so redirections
// and quoting work as typed.
inline RunResult run_lema_shell(const std::string& args) {
  allow_tmp_paths();
  const std::string cmd = std::string(LEMA_BINARY) + " " + args + " 2>&1";
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.signaled = WIFSIGNALED(status);
  return r;
}

inline void kill_and_reap(pid_t pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  waitpid(pid, nullptr, 0);
}

// Waits until pred() or timeout; returns pred()'s last value.
inline bool wait_until(const std::function<bool()>& pred, double timeout_s, int poll_ms = 100) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
  return pred();
}

// Loopback ports for one test process: consecutive from a base derived
// from the pid, so parallel ctest runs do not collide.
inline int free_port() {
  static int next = 20000 + static_cast<int>(getpid() % 20000);
  return next++;
}

// `lema show JOB --json` against `clients`; null when it fails.
inline nlohmann::json show_job(const std::string& clients, int64_t job) {
  RunResult r = run_lema({"show", std::to_string(job), "--json", "--scheduler", clients});
  if (r.exit_code != 0) return nullptr;
  size_t brace = r.output.find('{');
  if (brace == std::string::npos) return nullptr;
  return nlohmann::json::parse(r.output.substr(brace), nullptr, false);
}

inline nlohmann::json stage_of(const nlohmann::json& job, const std::string& kind) {
  if (!job.is_object() || !job.contains("stages")) return nullptr;
  for (const auto& s : job["stages"]) {
    if (s.value("kind", std::string()) == kind) return s;
  }
  return nullptr;
}

inline int64_t train_step(const nlohmann::json& job) {
  nlohmann::json s = stage_of(job, "train");
  if (!s.is_object() || !s.contains("progress") || !s["progress"].is_object()) return 0;
  return s["progress"].value("step", int64_t{0});
}

// A tiny model (`lema model init --preset tiny`) and `n` pre-tokenized
// examples with loss on the last two thirds of each.
inline void make_model_and_data(const std::string& dir, int n) {
  RunResult init = run_lema({"model", "init", "--preset", "tiny", "--out", dir + "/model"});
  ASSERT_EQ(init.exit_code, 0) << init.output;
  std::mt19937 rng(7);
  std::string lines;
  for (int i = 0; i < n; ++i) {
    int len = 16 + static_cast<int>(rng() % 32);
    nlohmann::json ids = nlohmann::json::array(), labels = nlohmann::json::array();
    for (int t = 0; t < len; ++t) {
      int id = 3 + static_cast<int>(rng() % 500);
      ids.push_back(id);
      labels.push_back(t < len / 3 ? -100 : id);
    }
    lines += nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump() + "\n";
  }
  write_text(dir + "/tokens.jsonl", lines);
}


// A job spec for that model and data, CPU, no eval (not landed yet); merge
// (fp32) only when asked, to keep the other tests short.
inline std::string tiny_spec(const std::string& dir, const std::string& name, int steps, int checkpoint_every,
                             bool merge = false) {
  std::ostringstream s;
  s << "[job]\nname = \"" << name << "\"\nwork_dir = \"" << dir << "/" << name << "\"\nmax_attempts = 5\n"
    << "[model]\npath = \"" << dir << "/model\"\n"
    << "[data]\njsonl = \"" << dir << "/tokens.jsonl\"\n"
    << "[train]\nsteps = " << steps << "\nbatch = 4\nmicro_batch = 2\nseq_len = 64\nlora_r = 4\nlora_alpha = 8\n"
    << "lora_dropout = 0.0\nlr = 1e-3\nschedule = \"constant\"\ndevice = \"cpu\"\ncheckpoint_every = "
    << checkpoint_every << "\n"
    << "[eval]\nenabled = false\n[merge]\nenabled = " << (merge ? "true\ndtype = \"fp32\"" : "false") << "\n";
  return s.str();
}

// A scheduler on fixed loopback ports with a short heartbeat.
struct SchedulerProcess {
  std::string db, log, workers, clients;
  std::string heartbeat_ms = "300";  // the lease is 3 heartbeats
  pid_t pid = -1;
  void start() {
    pid = spawn_lema({"scheduler", "--db", db, "--workers-bind", workers, "--clients-bind", clients, "--heartbeat-ms",
                      heartbeat_ms},
                     log);
  }
  void stop(int sig = SIGTERM) {
    kill_and_reap(pid, sig);
    pid = -1;
  }
};

}  // namespace lema::test
