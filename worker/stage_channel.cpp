#include "worker/stage_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema::worker {

namespace {

using Clock = std::chrono::steady_clock;

// What is left of a deadline for poll(): -1 for none, 0 once passed.
int remaining_ms(int timeout_ms, Clock::time_point start) {
  if (timeout_ms < 0) return -1;
  auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  return spent >= timeout_ms ? 0 : static_cast<int>(timeout_ms - spent);
}

}  // namespace

StageChannel::StageChannel(int fd) : fd_(fd) {
  int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

StageChannel::~StageChannel() {
  if (fd_ >= 0) close(fd_);
}

Status StageChannel::send(const nlohmann::json& frame, int timeout_ms) {
  const std::string body = frame.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (static_cast<int64_t>(body.size()) > kMaxStageFrameBytes) {
    return Status::invalid_argument(
        str_printf("stage channel: a %s frame of %zu bytes is over the limit of %lld",
                   frame.value("type", std::string("?")).c_str(), body.size(),
                   static_cast<long long>(kMaxStageFrameBytes)));
  }
  std::string bytes(4, '\0');
  const uint32_t n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  bytes += body;
  size_t off = 0;
  const auto start = Clock::now();
  while (off < bytes.size()) {
    // MSG_NOSIGNAL: a peer that died is an error to report, not a SIGPIPE
    // that would end the worker.
    ssize_t w = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return Status::unavailable("stage channel: the other process has gone (" +
                                 std::string(strerror(errno)) + ")");
    }
    const int left = remaining_ms(timeout_ms, start);
    if (left == 0) {
      return Status::unavailable(str_printf("stage channel: the other process took %zu of %zu bytes in %d ms",
                                            off, bytes.size(), timeout_ms));
    }
    pollfd p = {fd_, POLLOUT, 0};
    if (poll(&p, 1, left) < 0 && errno != EINTR) return status_from_errno("stage channel poll", errno);
  }
  return Status();
}

Result<bool> StageChannel::fill(int timeout_ms) {
  pollfd p = {fd_, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  if (r < 0) {
    if (errno == EINTR) return true;
    return status_from_errno("stage channel poll", errno);
  }
  if (r == 0) return true;
  char chunk[65536];
  for (;;) {
    ssize_t got = ::read(fd_, chunk, sizeof(chunk));
    if (got > 0) {
      buf_.append(chunk, static_cast<size_t>(got));
      // Stop at a bound so a flood cannot grow the buffer past one frame.
      if (static_cast<int64_t>(buf_.size()) > kMaxStageFrameBytes + 4) return true;
      continue;
    }
    if (got == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    if (errno == ECONNRESET) return false;
    return status_from_errno("stage channel read", errno);
  }
}

Result<std::optional<nlohmann::json>> StageChannel::take_frame() {
  if (buf_.size() < 4) return std::optional<nlohmann::json>();
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<unsigned char>(buf_[i]);
  if (n == 0 || static_cast<int64_t>(n) > kMaxStageFrameBytes) {
    return Status::corruption(str_printf("stage channel: garbled frame (length %u; 1 to %lld allowed)", n,
                                         static_cast<long long>(kMaxStageFrameBytes)));
  }
  if (buf_.size() < 4 + static_cast<size_t>(n)) return std::optional<nlohmann::json>();
  nlohmann::json j = nlohmann::json::parse(buf_.begin() + 4, buf_.begin() + 4 + n, nullptr, false);
  buf_.erase(0, 4 + static_cast<size_t>(n));
  if (j.is_discarded() || !j.is_object()) {
    return Status::corruption(
        str_printf("stage channel: garbled frame (%u bytes that are not a JSON object)", n));
  }
  if (!j.contains("type") || !j["type"].is_string()) {
    return Status::corruption("stage channel: garbled frame (no string \"type\")");
  }
  return std::optional<nlohmann::json>(std::move(j));
}

Result<std::optional<nlohmann::json>> StageChannel::receive(int timeout_ms) {
  const auto start = Clock::now();
  bool polled = false;
  for (;;) {
    LEMA_ASSIGN_OR_RETURN(std::optional<nlohmann::json> frame, take_frame());
    if (frame) return frame;
    if (eof_) {
      if (buf_.empty()) return Status::unavailable("stage channel: the other process closed it");
      return Status::corruption(
          str_printf("stage channel: the stream ended inside a frame (%zu bytes left)", buf_.size()));
    }
    const int left = remaining_ms(timeout_ms, start);
    if (polled && left == 0) return std::optional<nlohmann::json>();
    LEMA_ASSIGN_OR_RETURN(bool open, fill(left));
    polled = true;
    eof_ = !open;
  }
}

nlohmann::json status_to_frame(const Status& status) {
  return {{"code", static_cast<int>(status.code())}, {"message", status.message()}};
}

Status status_from_frame(const nlohmann::json& j, Status* out) {
  if (!j.is_object() || !j.contains("code") || !j["code"].is_number_integer()) {
    return Status::corruption("stage channel: a status without an integer \"code\"");
  }
  const int64_t code = j["code"].get<int64_t>();
  const std::string msg =
      j.contains("message") && j["message"].is_string() ? j["message"].get<std::string>() : "";
  using C = Status::Code;
  if (code < static_cast<int64_t>(C::kOk) || code > static_cast<int64_t>(C::kInternal)) {
    return Status::corruption(
        str_printf("stage channel: unknown status code %lld", static_cast<long long>(code)));
  }
  switch (static_cast<C>(code)) {
    case C::kOk:
      *out = Status();
      break;
    case C::kInvalidArgument:
      *out = Status::invalid_argument(msg);
      break;
    case C::kNotFound:
      *out = Status::not_found(msg);
      break;
    case C::kCorruption:
      *out = Status::corruption(msg);
      break;
    case C::kIOError:
      *out = Status::io_error(msg);
      break;
    case C::kUnavailable:
      *out = Status::unavailable(msg);
      break;
    case C::kCancelled:
      *out = Status::cancelled(msg);
      break;
    case C::kUnsupported:
      *out = Status::unsupported(msg);
      break;
    case C::kInternal:
      *out = Status::internal(msg);
      break;
  }
  return Status();
}

}  // namespace lema::worker
