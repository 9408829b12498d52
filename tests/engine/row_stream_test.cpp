// RowStream on the CPU: a table on the device comes out as views; the
// copied path (two buffers taking turns, what a GPU runs) hands out every
// chunk's rows in order, a short last chunk included, and each chunk stays
// intact until the next call.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "engine/row_stream.h"

namespace lema::engine {
namespace {

at::Tensor numbered_table(int64_t rows, int64_t cols) {
  return at::arange(rows * cols, at::TensorOptions().dtype(at::kFloat)).reshape({rows, cols});
}

TEST(RowStream, ViewsOfATableOnTheDevice) {
  const at::Tensor table = numbered_table(10, 3);
  RowStream chunks(table, 4, at::kCPU);
  ASSERT_EQ(chunks.n_chunks(), 3);
  for (int64_t k = 0; k < 3; ++k) {
    const at::Tensor c = chunks.next();
    EXPECT_EQ(c.size(0), k < 2 ? 4 : 2);
    // A view: no copy of a resident table.
    EXPECT_EQ(c.data_ptr<float>(), table.data_ptr<float>() + chunks.chunk_start(k) * 3);
  }
}

TEST(RowStream, CopiedChunksComeInOrder) {
  const at::Tensor table = numbered_table(23, 5);
  for (int64_t chunk_rows : {int64_t{1}, int64_t{4}, int64_t{7}, int64_t{23}, int64_t{40}}) {
    RowStream chunks(table, chunk_rows, at::kCPU, /*copy=*/true);
    const int64_t n = (23 + chunk_rows - 1) / chunk_rows;
    ASSERT_EQ(chunks.n_chunks(), n) << chunk_rows;
    at::Tensor previous;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t start = chunks.chunk_start(k);
      EXPECT_EQ(start, k * chunk_rows);
      const at::Tensor c = chunks.next();
      const int64_t rows = std::min<int64_t>(chunk_rows, 23 - start);
      ASSERT_EQ(c.size(0), rows) << chunk_rows << " chunk " << k;
      EXPECT_TRUE(at::equal(c, table.narrow(0, start, rows))) << chunk_rows << " chunk " << k;
      EXPECT_NE(c.data_ptr<float>(), table.data_ptr<float>() + start * 5) << "a copy, not a view";
      // The chunk before this one was in the other buffer, which now holds
      // the chunk after (the double buffer's turn).
      if (k + 1 < n && previous.defined()) {
        const int64_t next_rows = std::min<int64_t>(chunk_rows, 23 - chunks.chunk_start(k + 1));
        EXPECT_TRUE(at::equal(previous.narrow(0, 0, next_rows), table.narrow(0, chunks.chunk_start(k + 1), next_rows)))
            << chunk_rows << " chunk " << k;
      }
      previous = c;
    }
  }
}

}  // namespace
}  // namespace lema::engine
