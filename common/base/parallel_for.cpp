#include "common/base/parallel_for.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace lema {

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t hw = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  const int64_t parts = std::min(hw, (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  // Equal contiguous parts, each a multiple of `grain` but the last.
  const int64_t per = (n / parts + grain - 1) / grain * grain;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(parts));
  int64_t begin = per;
  for (; begin < n; begin += per) {
    const int64_t end = std::min(n, begin + per);
    threads.emplace_back([&fn, begin, end] { fn(begin, end); });
  }
  fn(0, std::min(n, per));
  for (std::thread& t : threads) t.join();
}

}  // namespace lema
