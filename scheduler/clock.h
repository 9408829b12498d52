// Clock: where the scheduler reads time (ms since the Unix epoch, so leases
// stored in SQLite stay meaningful across restarts). Tests inject a
// ManualClock to expire leases without sleeping.
//
// Thread-safety: both clocks are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace lema {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t now_ms() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

class ManualClock : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'000'000) : now_ms_(start_ms) {}
  int64_t now_ms() const override { return now_ms_.load(); }
  void advance_ms(int64_t delta_ms) { now_ms_ += delta_ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace lema
