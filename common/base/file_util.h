// Files the way lema needs them: whole-file reads with clear errors, atomic
// writes (temp file, fsync, rename, fsync of the directory), read-only maps.
//
// Every function returns a Status naming the path and the OS error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/base/status.h"

namespace lema {

// Maps errno to a Status: ENOENT -> kNotFound, ENOSPC/EIO/... -> kIOError.
Status status_from_errno(const std::string& context, int err);

Result<std::string> read_file(const std::string& path);

// Writes `data` to `path` atomically: a reader sees the old file or the new
// one, never a mix, and after return the new content survives a power cut.
Status write_file_atomic(const std::string& path, const std::string& data);

// The one line loop of lema's line files (JSONL, key lists): calls
// fn(line_number, line) for each line of `text`, numbered from 1, without
// its "\n" or "\r\n"; a last line without "\n" is a line, and a final "\n"
// starts none. Blank lines are passed on (callers decide). The first
// non-OK Status from fn stops the loop and is returned as
// "<name>:<line_number>: <message>", its code kept.
Status for_each_line(std::string_view text, const std::string& name,
                     const std::function<Status(int64_t line_number, std::string_view line)>& fn);

// fsync of a file or directory by path.
Status fsync_path(const std::string& path);

// Creates a directory and its parents (like mkdir -p).
Status make_dirs(const std::string& path);

// Removes a file or a directory tree; a missing path is not an error.
Status remove_all(const std::string& path);

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);

// "a/b" + "c" -> "a/b/c"
std::string path_join(const std::string& a, const std::string& b);
std::string path_dirname(const std::string& path);
std::string path_basename(const std::string& path);

// A writable file that becomes visible at `final_path` only on commit():
// data goes to "<final_path>.tmp.<pid>", commit() fsyncs, renames and
// fsyncs the directory. Destroyed without commit(), the temp file is removed.
// Not thread-safe.
class AtomicFileWriter {
 public:
  AtomicFileWriter() = default;
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  Status open(const std::string& final_path);
  Status append(const void* data, size_t n);
  Status commit();
  uint64_t bytes_written() const { return bytes_written_; }
  const std::string& final_path() const { return final_path_; }

 private:
  void abandon();
  int fd_ = -1;
  std::string final_path_;
  std::string temp_path_;
  uint64_t bytes_written_ = 0;
};

// A read-only map of a whole file. Empty files map to size 0, data nullptr.
// Owns the mapping; not copyable. Safe to read from many threads.
class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  Status open(const std::string& path);
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void close();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Peak resident set size of this process in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();
// Current resident set size in bytes (/proc/self/statm), 0 if unknown.
uint64_t current_rss_bytes();

// "1.5 GiB", "300 MiB", "12 KiB", "17 B".
std::string format_bytes(uint64_t bytes);
// Parses "4GiB", "512MiB", "8GB", "1.5G", "1024" (bytes) into bytes.
Result<uint64_t> parse_bytes(const std::string& text);

}  // namespace lema
