// What decoding a hostile frame costs in memory: a few bytes claiming a huge
// array or map must be refused before anything the size of the claim is
// allocated (issue 19: `dd 00 10 00 00` made msgpack reserve 16 MiB+ per
// frame). msgpack-c++ takes its zone from malloc, so this executable
// interposes malloc, calloc and realloc (forwarding to glibc's __libc_*)
// and counts the bytes requested while decode runs; it holds only this test.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <string>

#include "common/protocol/protocol.h"

extern "C" {
void* __libc_malloc(size_t n);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t n);
void __libc_free(void* p);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_total{0};

void count(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_total += n;
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  count(n);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  count(n * size);
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  count(n);
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
}

namespace lema::protocol {
namespace {

// Bytes allocated (total) while decoding `frame`; the decode must fail.
size_t bytes_to_refuse(const std::string& frame) {
  g_total = 0;
  g_counting = true;
  const bool ok = decode(frame).ok();
  g_counting = false;
  EXPECT_FALSE(ok);
  return g_total.load();
}

TEST(ProtocolAllocTest, ClaimedCountsBeyondTheFrameAllocateNothingLarge) {
  const std::string frames[] = {
      std::string("\xdd\x00\x10\x00\x00", 5),              // array32 of 2^20
      std::string("\xdf\x00\x10\x00\x00", 5),              // map32 of 2^20
      std::string("\xdc\xff\xff", 3),                      // array16 of 65535
      std::string("\x81\xa1k\xdd\x00\x0f\xff\xff", 8),     // {"k": array of 2^20-1}
      std::string("\x91\x91\x91\xdd\x00\x10\x00\x00", 8),  // nested
  };
  for (const std::string& f : frames) {
    EXPECT_LT(bytes_to_refuse(f), size_t{64} << 10) << "frame of " << f.size() << " bytes";
  }
}

TEST(ProtocolAllocTest, AFrameThatHoldsItsElementsStillDecodes) {
  // An array of 300 small integers under a key: the walk accepts what is there.
  static const char kHead[] = "\x83\xa1v\x01\xa4type\xa5READY\xa1x\xdc\x01\x2c";
  std::string frame(kHead, sizeof kHead - 1);
  frame.append(300, '\x07');
  auto m = decode(frame);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->fields["x"].size(), 300u);
}

}  // namespace
}  // namespace lema::protocol
