// parallel_for: splits [0, n) into contiguous ranges of at least `grain`
// elements and runs fn(begin, end) on each, on up to hardware_concurrency
// threads (the calling thread included); returns when all are done. For
// CPU-bound loops whose iterations are independent (random weights, the
// quantizers of the layer-file writer): the result must not depend on how
// the range is split, and the callers' tests check that it does not.
#pragma once

#include <cstdint>
#include <functional>

namespace lema {

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace lema
