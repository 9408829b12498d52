#include "common/base/attempt_publish.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema {

namespace {

constexpr const char* kLockFileName = ".publish.lock";

// Holds an exclusive flock of `<dir>/.publish.lock` for its lifetime. flock,
// not fcntl locks: those belong to the process, so two threads (or two
// fences) of one process would not exclude each other.
class PublishLock {
 public:
  ~PublishLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  Status acquire(const std::string& dir) {
    const std::string path = path_join(dir, kLockFileName);
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return status_from_errno("opening lock " + path, errno);
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return status_from_errno("locking " + path, errno);
    }
    return Status();
  }

 private:
  int fd_ = -1;
};

Result<int64_t> read_attempt_number(const std::string& path) {
  if (!path_exists(path)) return int64_t{0};
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  char* end = nullptr;
  const long long n = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || (*end != '\0' && *end != '\n') || n < 0) {
    return Status::corruption(path + ": not an attempt number");
  }
  return static_cast<int64_t>(n);
}

std::string record_path(const std::string& dir, const std::string& stage) {
  return path_join(dir, ".attempt-" + stage);
}

Status superseded(const std::string& what, int64_t newer, int64_t mine) {
  return Status::cancelled(str_printf("%s belongs to attempt %lld; attempt %lld may no longer write it", what.c_str(),
                                      static_cast<long long>(newer), static_cast<long long>(mine)));
}

}  // namespace

Result<int64_t> published_attempt(const std::string& dir) {
  return read_attempt_number(path_join(dir, kAttemptFileName));
}

Result<AttemptFence> AttemptFence::claim(const std::string& dir, const std::string& stage, int64_t attempt) {
  LEMA_CHECK(!stage.empty() && stage.find('/') == std::string::npos);
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  if (attempt <= 0) return unfenced(dir);
  PublishLock lock;
  LEMA_RETURN_IF_ERROR(lock.acquire(dir));
  const std::string record = record_path(dir, stage);
  LEMA_ASSIGN_OR_RETURN(int64_t claimed, read_attempt_number(record));
  if (claimed > attempt) return superseded(dir + " (stage " + stage + ")", claimed, attempt);
  AttemptFence fence(dir, stage, attempt);
  if (claimed < attempt) LEMA_RETURN_IF_ERROR(fence.rename_into_place(record, std::to_string(attempt) + "\n"));
  return fence;
}

AttemptFence AttemptFence::unfenced(const std::string& dir) { return AttemptFence(dir, "", 0); }

std::string AttemptFence::temp_path(const std::string& final_path) const {
  return final_path + ".tmp.a" + std::to_string(attempt_) + "." + std::to_string(::getpid());
}

Status AttemptFence::check_current() const {
  if (attempt_ == 0) return Status();
  LEMA_ASSIGN_OR_RETURN(int64_t claimed, read_attempt_number(record_path(dir_, stage_)));
  if (claimed != attempt_) return superseded(dir_ + " (stage " + stage_ + ")", claimed, attempt_);
  return Status();
}

Status AttemptFence::run_locked(const std::function<Status()>& fn) const {
  PublishLock lock;
  LEMA_RETURN_IF_ERROR(lock.acquire(dir_));
  LEMA_RETURN_IF_ERROR(check_current());
  return fn();
}

Status AttemptFence::publish_dir(const std::string& temp_dir, const std::string& final_dir) const {
  Status s = [&]() -> Status {
    if (attempt_ > 0) {
      LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(temp_dir, kAttemptFileName), std::to_string(attempt_) + "\n"));
    }
    LEMA_RETURN_IF_ERROR(fsync_path(temp_dir));
    return run_locked([&]() -> Status {
      if (attempt_ > 0) {
        LEMA_ASSIGN_OR_RETURN(int64_t there, published_attempt(final_dir));
        if (there > attempt_) return superseded(final_dir, there, attempt_);
      }
      // The old directory goes aside under a temp name first: a crash
      // between the renames leaves the new one or a temp name, and
      // rename(2) cannot replace a non-empty directory.
      const std::string old = temp_path(final_dir) + ".old";
      const bool had_old = path_exists(final_dir);
      if (had_old && std::rename(final_dir.c_str(), old.c_str()) != 0) {
        return status_from_errno("renaming " + final_dir + " aside", errno);
      }
      if (std::rename(temp_dir.c_str(), final_dir.c_str()) != 0) {
        const int err = errno;
        if (had_old) (void)std::rename(old.c_str(), final_dir.c_str());  // put the old one back
        return status_from_errno("renaming " + temp_dir + " to " + final_dir, err);
      }
      LEMA_RETURN_IF_ERROR(fsync_path(path_dirname(final_dir)));
      return had_old ? remove_all(old) : Status();
    });
  }();
  if (!s.ok()) {
    if (Status r = remove_all(temp_dir); !r.ok()) log_warn("%s", r.message().c_str());
  }
  return s;
}

Status AttemptFence::publish_file(const std::string& temp_file, const std::string& final_path) const {
  Status s = run_locked([&]() -> Status {
    if (std::rename(temp_file.c_str(), final_path.c_str()) != 0) {
      return status_from_errno("renaming " + temp_file + " to " + final_path, errno);
    }
    return fsync_path(path_dirname(final_path));
  });
  if (!s.ok()) ::unlink(temp_file.c_str());
  return s;
}

Status AttemptFence::write_file(const std::string& final_path, const std::string& data) const {
  // write_file_atomic makes the temp file whole and durable (its own temp
  // name extends ours, so a crash still leaves only this attempt's names).
  const std::string tmp = temp_path(final_path);
  LEMA_RETURN_IF_ERROR(write_file_atomic(tmp, data));
  return publish_file(tmp, final_path);
}

Status AttemptFence::rename_into_place(const std::string& final_path, const std::string& data) const {
  const std::string tmp = temp_path(final_path);
  LEMA_RETURN_IF_ERROR(write_file_atomic(tmp, data));
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return status_from_errno("renaming " + tmp + " to " + final_path, err);
  }
  return fsync_path(path_dirname(final_path));
}

}  // namespace lema
