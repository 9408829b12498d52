#include "common/base/bounds.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "common/base/log.h"

namespace lema {
namespace {

struct Bound {
  const char* key;
  double lo;
  double hi;
  bool lo_open;  // lo itself is refused (lr, lora_alpha, epochs)
  bool hi_open;  // hi itself is refused (lr, dropout, eval_fraction)
};

constexpr double kMaxSteps = 1e9;            // far beyond any run; keeps step * batch in int64
constexpr double kMaxBytes = double(1ull << 50);  // 1 PiB: any real memory or file size

// Keys as the job spec names them ([job], [data], [train], [eval], [merge],
// [resources], [retry]); the engine's extra options (stop_after, weight_decay,
// max_grad_norm, threads, loss_chunk_tokens) under their TrainOptions names.
const Bound kBounds[] = {
    {"priority", -1e6, 1e6, false, false},
    {"max_attempts", 1, 100, false, false},
    {"max_crashes", 1, 100, false, false},
    {"examples", 1, 1e8, false, false},
    {"eval_fraction", 0, 1, false, true},
    {"steps", 0, kMaxSteps, false, false},
    {"epochs", 0, 1e4, true, false},
    {"stop_after", 0, kMaxSteps, false, false},
    {"lr", 0, 1, true, true},
    {"warmup", 0, kMaxSteps, false, false},
    {"batch", 1, 65536, false, false},
    {"micro_batch", 0, 65536, false, false},
    {"seq_len", 8, 1 << 20, false, false},
    {"lora_r", 1, 8192, false, false},
    {"lora_alpha", 0, 1e6, true, false},
    {"lora_dropout", 0, 1, false, true},
    {"checkpoint_every", 0, kMaxSteps, false, false},
    {"weight_decay", 0, 1, false, false},
    {"max_grad_norm", 0, 1e6, false, false},
    {"threads", 0, 4096, false, false},
    {"loss_chunk_tokens", 1, 1 << 24, false, false},
    {"vram", 0, kMaxBytes, false, false},
    {"ram", 0, kMaxBytes, false, false},
    {"gpu_memory", 0, kMaxBytes, false, false},
    {"shard_size", 1 << 20, kMaxBytes, false, false},
    {"questions", 1, 1e6, false, false},
    {"max_new_tokens", 1, 1 << 20, false, false},
};

const Bound& find(const std::string& key) {
  for (const Bound& b : kBounds) {
    if (key == b.key) return b;
  }
  LEMA_CHECK_MSG(false, "check_bound: unknown key");
  return kBounds[0];
}

std::string number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return str_printf("%.0f", v);
  return str_printf("%g", v);
}

}  // namespace

Status check_bound(const std::string& key, double value) {
  const Bound& b = find(key);
  const bool ok = std::isfinite(value) && (b.lo_open ? value > b.lo : value >= b.lo) &&
                  (b.hi_open ? value < b.hi : value <= b.hi);
  if (ok) return Status();
  return Status::invalid_argument(str_printf("must be in %s%s, %s%s (got %s)", b.lo_open ? "(" : "[",
                                             number(b.lo).c_str(), number(b.hi).c_str(), b.hi_open ? ")" : "]",
                                             number(value).c_str()));
}

Status check_bound(const std::string& key, int64_t value) {
  // Compared as integers first: a double cannot hold every int64, and
  // 2^63 - 1 must not round into range.
  const Bound& b = find(key);
  if (value < int64_t(-kMaxBytes) || value > int64_t(kMaxBytes)) {
    return Status::invalid_argument(str_printf("must be in [%s, %s] (got %lld)", number(b.lo).c_str(),
                                               number(b.hi).c_str(), (long long)value));
  }
  return check_bound(key, double(value));
}

Status check_bound(const std::string& key, uint64_t value) {
  if (value > uint64_t(kMaxBytes)) {
    const Bound& b = find(key);
    return Status::invalid_argument(str_printf("must be in [%s, %s] (got %llu)", number(b.lo).c_str(),
                                               number(b.hi).c_str(), (unsigned long long)value));
  }
  return check_bound(key, double(value));
}

Status check_batch_shape(int64_t batch, int64_t micro_batch, int64_t seq_len) {
  for (auto [key, value] : {std::pair<const char*, int64_t>{"batch", batch}, {"micro_batch", micro_batch},
                            {"seq_len", seq_len}}) {
    LEMA_RETURN_IF_ERROR(check_bound(key, value).with_context(key));
  }
  if (micro_batch != 0 && (micro_batch > batch || batch % micro_batch != 0)) {
    return Status::invalid_argument(str_printf("micro_batch must be 0 (auto) or divide batch (got micro_batch %lld, batch %lld)",
                                               (long long)micro_batch, (long long)batch));
  }
  if (batch * seq_len > int64_t(INT32_MAX)) {
    return Status::invalid_argument(str_printf("batch x seq_len (%lld tokens a step) must be at most %d",
                                               (long long)(batch * seq_len), INT32_MAX));
  }
  return Status();
}

Status check_name(const std::string& value, bool required) {
  if (required && value.empty()) return Status::invalid_argument("must not be empty");
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return Status::invalid_argument(str_printf("must not hold control characters (found 0x%02x)", c));
    }
  }
  return Status();
}

}  // namespace lema
