// Logging: one line per event to stderr, "lema HH:MM:SS level message".
// Thread-safe (each line is written with one call).
#pragma once

#include <string>

namespace lema {

enum class LogLevel { kDebug = 0, kInfo, kWarn, kError };

void set_log_level(LogLevel level);
LogLevel log_level();
// Optional sink that receives every line (the worker forwards them as LOG
// messages). nullptr clears it. The sink must be thread-safe.
using LogSink = void (*)(LogLevel level, const std::string& line);
void set_log_sink(LogSink sink);

void log_line(LogLevel level, const std::string& message);
// printf-style helpers.
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// printf into a std::string.
std::string str_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace lema
