#include "common/base/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <vector>

namespace lema {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<LogSink> g_sink{nullptr};

std::string vformat(const char* fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n <= 0) return std::string();
  std::vector<char> buf(static_cast<size_t>(n) + 1);
  std::vsnprintf(buf.data(), buf.size(), fmt, ap);
  return std::string(buf.data(), static_cast<size_t>(n));
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }
void set_log_sink(LogSink sink) { g_sink = sink; }

void log_line(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::time_t t = std::time(nullptr);
  struct tm tm;
  localtime_r(&t, &tm);
  char ts[16];
  std::strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
  std::string line = std::string("lema ") + ts + " " + level_name(level) + " " + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  if (LogSink sink = g_sink.load()) sink(level, message);
}

#define LEMA_LOG_IMPL_(level)        \
  va_list ap;                        \
  va_start(ap, fmt);                 \
  std::string msg = vformat(fmt, ap); \
  va_end(ap);                        \
  log_line(level, msg)

void log_debug(const char* fmt, ...) { LEMA_LOG_IMPL_(LogLevel::kDebug); }
void log_info(const char* fmt, ...) { LEMA_LOG_IMPL_(LogLevel::kInfo); }
void log_warn(const char* fmt, ...) { LEMA_LOG_IMPL_(LogLevel::kWarn); }
void log_error(const char* fmt, ...) { LEMA_LOG_IMPL_(LogLevel::kError); }

std::string str_printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vformat(fmt, ap);
  va_end(ap);
  return s;
}

}  // namespace lema
