// Progress of long work: a bar with rate and ETA on a terminal, plain lines
// (at most one every few seconds) otherwise. Not thread-safe: one owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace lema {

class Progress {
 public:
  // `unit` names what is counted ("layers", "steps", "MiB").
  Progress(std::string label, uint64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Sets the count done so far and an optional suffix ("loss 1.23").
  void update(uint64_t done, const std::string& suffix = "");
  void finish(const std::string& suffix = "");

  // True when stderr is a terminal (bars) rather than a file or pipe (lines).
  static bool is_terminal();

 private:
  void draw(bool final_line);
  std::string label_;
  uint64_t total_;
  std::string unit_;
  uint64_t done_ = 0;
  std::string suffix_;
  bool tty_;
  bool finished_ = false;
  bool dirty_ = true;  // done_/suffix_ changed since the last line drawn
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace lema
