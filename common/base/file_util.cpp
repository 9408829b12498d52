#include "common/base/file_util.h"
#include "common/base/regular_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ftw.h>

namespace lema {

Status status_from_errno(const std::string& context, int err) {
  std::string msg = context + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return Status::not_found(msg);
    case EINVAL: return Status::invalid_argument(msg);
    default: return Status::io_error(msg);
  }
}

Result<int> open_regular_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return status_from_errno(path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return status_from_errno(path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::invalid_argument(path + (S_ISDIR(st.st_mode) ? ": a directory, not a regular file"
                                                                 : ": not a regular file"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    int err = errno;
    ::close(fd);
    return status_from_errno(path, err);
  }
  return fd;
}

Result<std::string> read_file(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(int fd, open_regular_file(path));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return status_from_errno(path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status for_each_line(std::string_view text, const std::string& name,
                     const std::function<Status(int64_t line_number, std::string_view line)>& fn) {
  int64_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start = end + 1;
    ++line_number;
    Status s = fn(line_number, line);
    if (!s.ok()) return s.with_context(name + ":" + std::to_string(line_number));
  }
  return Status();
}

Status write_file_atomic(const std::string& path, const std::string& data) {
  AtomicFileWriter w;
  LEMA_RETURN_IF_ERROR(w.open(path));
  LEMA_RETURN_IF_ERROR(w.append(data.data(), data.size()));
  return w.commit();
}

Status fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return status_from_errno("fsync " + path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on directories; that is not data loss.
  if (rc != 0 && err != EINVAL) return status_from_errno("fsync " + path, err);
  return Status();
}

// Directory helpers are plain POSIX, not std::filesystem: PyTorch's
// libtorch.so exports its own build of the std::filesystem functions, and a
// binary that links it can bind to that copy, which crashed (jump to null in
// remove_all) with LibTorch 2.11.
Status make_dirs(const std::string& path) {
  if (path.empty()) return Status::invalid_argument("create directory: empty path");
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return status_from_errno("create directory " + prefix, errno);
    }
  }
  if (!is_directory(path)) return Status::io_error("create directory " + path + ": exists and is not a directory");
  return Status();
}

namespace {
int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
  return rc != 0 && errno != ENOENT ? errno : 0;
}
}  // namespace

Status remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? Status() : status_from_errno("remove " + path, errno);
  }
  // Depth first, never following symbolic links out of the tree.
  const int err = ::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS);
  if (err > 0) return status_from_errno("remove " + path, err);
  if (err < 0) return status_from_errno("remove " + path, errno);
  return Status();
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string path_join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string path_dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string path_basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ---------------------------------------------------------------------------
// AtomicFileWriter

AtomicFileWriter::~AtomicFileWriter() { abandon(); }

void AtomicFileWriter::abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
  }
}

Status AtomicFileWriter::open(const std::string& final_path) {
  abandon();
  final_path_ = final_path;
  temp_path_ = final_path + ".tmp." + std::to_string(::getpid());
  bytes_written_ = 0;
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return status_from_errno("create " + temp_path_, errno);
  return Status();
}

Status AtomicFileWriter::append(const void* data, size_t n) {
  if (fd_ < 0) return Status::internal("append to a writer that is not open: " + final_path_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      abandon();
      return status_from_errno("write " + final_path_, err);
    }
    p += w;
    n -= static_cast<size_t>(w);
    bytes_written_ += static_cast<uint64_t>(w);
  }
  return Status();
}

Status AtomicFileWriter::commit() {
  if (fd_ < 0) return Status::internal("commit of a writer that is not open: " + final_path_);
  if (::fsync(fd_) != 0) {
    int err = errno;
    abandon();
    return status_from_errno("fsync " + temp_path_, err);
  }
  if (::close(fd_) != 0) {
    int err = errno;
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    return status_from_errno("close " + temp_path_, err);
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    return status_from_errno("rename to " + final_path_, err);
  }
  return fsync_path(path_dirname(final_path_));
}

// ---------------------------------------------------------------------------
// MappedFile

MappedFile::~MappedFile() { close(); }

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    close();
    data_ = other.data_;
    size_ = other.size_;
    path_ = std::move(other.path_);
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MappedFile::close() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

Status MappedFile::open(const std::string& path) {
  close();
  path_ = path;
  LEMA_ASSIGN_OR_RETURN(int fd, open_regular_file(path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return status_from_errno(path, err);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      size_ = 0;
      return status_from_errno("mmap " + path, err);
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return Status();
}

uint64_t peak_rss_bytes() {
  // VmHWM is this address space's high-water mark. getrusage's ru_maxrss is
  // not: Linux carries it across fork and execve, so a process started by a
  // large parent (a Python benchmark holding a model) reports the parent's peak.
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    unsigned long kib = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::sscanf(line, "VmHWM: %lu kB", &kib) == 1) {
        found = true;
        break;
      }
    }
    std::fclose(f);
    if (found) return static_cast<uint64_t>(kib) * 1024;
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

uint64_t current_rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof(buf), "%.1f %s", v, units[u]);
  return buf;
}

Result<uint64_t> parse_bytes(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return Status::invalid_argument("not a size: '" + text + "' (expected e.g. 4GiB, 512MiB)");
  double v = std::atof(text.substr(0, i).c_str());
  std::string unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k") mult = 1024.0;
  else if (unit == "M" || unit == "MiB") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TiB") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "KB" || unit == "kB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else return Status::invalid_argument("unknown size unit in '" + text + "' (use B, KiB, MiB, GiB, KB, MB, GB)");
  if (!std::isfinite(v) || v < 0) return Status::invalid_argument("not a size: '" + text + "'");
  // llround of a value beyond int64 is undefined: refuse it by name.
  if (v * mult >= 9.2e18) return Status::invalid_argument("size '" + text + "' is too large");
  return static_cast<uint64_t>(std::llround(v * mult));
}

}  // namespace lema
