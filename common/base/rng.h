// A seeded pseudo-random generator whose output is the same on every
// platform and standard library (std::*_distribution is not: libstdc++ and
// libc++ differ). SplitMix64 (Steele, Lea, Flood 2014) plus helpers.
//
// Thread-safety: a value; one owner at a time. Copying it copies the state,
// so a checkpoint can store state() and restore it with set_state().
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace lema {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n) by rejection (no modulo bias). REQUIRES: n > 0.
  uint64_t uniform(uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
      x = next();
    } while (x >= limit);
    return x % n;
  }

  // Uniform integer in [lo, hi]. REQUIRES: lo <= hi.
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(uniform(static_cast<uint64_t>(hi - lo) + 1));
  }

  // Fisher-Yates, from the back, with uniform() above.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      size_t j = static_cast<size_t>(uniform(i));
      std::swap(v[i - 1], v[j]);
    }
  }

  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

// Mixes a seed with a stream number (e.g. epoch) into an independent seed.
inline uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  SplitMix64 r(seed ^ (stream * 0xD1B54A32D192ED03ULL));
  r.next();
  return r.next();
}

}  // namespace lema
