#include "common/base/progress.h"

#include <unistd.h>

#include <cstdio>

namespace lema {
namespace {
std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%02ld:%02ld", s / 60, s % 60);
  return buf;
}
}  // namespace

bool Progress::is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), total_(total), unit_(std::move(unit)), tty_(is_terminal()) {
  start_ = std::chrono::steady_clock::now();
  last_draw_ = start_ - std::chrono::hours(1);
}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(uint64_t done, const std::string& suffix) {
  done_ = done;
  suffix_ = suffix;
  dirty_ = true;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  // A terminal redraws up to 10 times a second; a log file gets a line every 5 s.
  if (since >= (tty_ ? 0.1 : 5.0) || done_ == total_) draw(false);
}

void Progress::finish(const std::string& suffix) {
  if (finished_) return;
  if (!suffix.empty() && suffix != suffix_) {
    suffix_ = suffix;
    dirty_ = true;
  }
  // A log that already shows this state gets no second, identical line; a
  // terminal's bar still needs its newline.
  if (tty_ || dirty_) draw(true);
  finished_ = true;
}

void Progress::draw(bool final_line) {
  auto now = std::chrono::steady_clock::now();
  last_draw_ = now;
  dirty_ = false;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  double eta = (rate > 0 && total_ > done_) ? static_cast<double>(total_ - done_) / rate : 0;
  char stats[160];
  std::snprintf(stats, sizeof(stats), "%llu/%llu %s  %.2f %s/s  %s<%s",
                static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total_),
                unit_.c_str(), rate, unit_.c_str(), format_duration(elapsed).c_str(),
                format_duration(final_line ? 0 : eta).c_str());
  std::string line;
  if (tty_) {
    const int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * static_cast<double>(done_) / static_cast<double>(total_)) : 0;
    if (filled > width) filled = width;
    line = "\r\033[2K" + label_ + " [" + std::string(filled, '#') + std::string(width - filled, '.') + "] " + stats;
    if (!suffix_.empty()) line += "  " + suffix_;
    if (final_line) line += "\n";
  } else {
    line = label_ + ": " + stats;
    if (!suffix_.empty()) line += "  " + suffix_;
    line += "\n";
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace lema
