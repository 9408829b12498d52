// Status and Result<T>: every failure that comes from the environment or the
// user (bad file, bad input, I/O error, peer gone) travels as a Status.
// Bugs are not Statuses: they abort through LEMA_CHECK.
//
// Thread-safety: a Status is a value; copies are independent.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace lema {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // the user's input is wrong (spec, flag, file content)
    kNotFound,
    kCorruption,  // stored bytes fail validation (truncated, bit-flipped)
    kIOError,     // the OS said no (ENOSPC, EIO, permissions)
    kUnavailable,  // a peer or resource is gone for now; retrying may work
    kCancelled,
    kUnsupported,  // valid input that lema does not handle (yet)
    kInternal,
  };

  Status() = default;
  static Status ok_status() { return Status(); }
  static Status invalid_argument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status not_found(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status io_error(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status cancelled(std::string msg) { return Status(Code::kCancelled, std::move(msg)); }
  static Status unsupported(std::string msg) { return Status(Code::kUnsupported, std::move(msg)); }
  static Status internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corruption: model.safetensors: tensor 'x': offsets outside the file"
  std::string to_string() const;
  static const char* code_name(Code code);

  // Prepends context: s.with_context("loading model") -> "loading model: <msg>".
  Status with_context(const std::string& context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status::internal("Result built from an OK status without a value");
  }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok()
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& msg);

}  // namespace lema

// Invariant checks for bugs (never for user input): abort with file:line.
#define LEMA_CHECK(cond) \
  do { if (!(cond)) ::lema::check_failed(__FILE__, __LINE__, #cond, ""); } while (0)
#define LEMA_CHECK_MSG(cond, msg) \
  do { if (!(cond)) ::lema::check_failed(__FILE__, __LINE__, #cond, (msg)); } while (0)

// Early return on a non-OK Status / Result.
#define LEMA_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::lema::Status lema_status_ = (expr);     \
    if (!lema_status_.ok()) return lema_status_; \
  } while (0)

#define LEMA_CONCAT_INNER_(a, b) a##b
#define LEMA_CONCAT_(a, b) LEMA_CONCAT_INNER_(a, b)
// LEMA_ASSIGN_OR_RETURN(auto x, make_x()); returns the Status on failure.
#define LEMA_ASSIGN_OR_RETURN(lhs, expr) \
  LEMA_ASSIGN_OR_RETURN_IMPL_(LEMA_CONCAT_(lema_result_, __LINE__), lhs, expr)
#define LEMA_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
