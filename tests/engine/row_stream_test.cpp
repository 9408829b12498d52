// RowStream on the CPU: a table on the device comes out as views; the
// copied path (two buffers taking turns, what a GPU runs) hands out every
// chunk's rows in order, a short last chunk included, and each chunk stays
// intact until the next call. On a machine with CUDA (skipped elsewhere):
// the side-stream copies from pinned memory, read by kernels that run
// behind them, and the streamed head on the GPU against the resident one.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <string>
#include <vector>

#include "common/formats/model_presets.h"
#include "engine/llama_model.h"
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

// Every chunk is consumed by a kernel enqueued right after next() (a slow
// matmul first, so that the compute stream lags the copies): a copy that
// overwrote a buffer before its reader ran, or a reader that ran before the
// copy, shows up as a wrong chunk.
TEST(RowStream, CudaCopiesOverlapWithoutRaces) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor table = numbered_table(64 * 1024 + 77, 512).pin_memory();
  const at::Tensor slow = at::randn({2048, 2048}, at::TensorOptions().device(at::kCUDA));
  RowStream chunks(table, 1024, at::kCUDA);
  std::vector<at::Tensor> seen;
  for (int64_t k = 0; k < chunks.n_chunks(); ++k) {
    const at::Tensor c = chunks.next();
    at::Tensor busy = slow;
    for (int i = 0; i < 4; ++i) busy = at::mm(busy, slow).div_(2048.0);
    seen.push_back(c.clone() + busy.sum() * 0);
  }
  for (int64_t k = 0; k < chunks.n_chunks(); ++k) {
    const int64_t start = chunks.chunk_start(k), rows = seen[static_cast<size_t>(k)].size(0);
    EXPECT_TRUE(at::equal(seen[static_cast<size_t>(k)].cpu(), table.narrow(0, start, rows))) << "chunk " << k;
  }
}

// The streamed head on the GPU (lm_head pinned on the host, chunks through
// the side stream) against the resident head on the GPU, fp32, with Gemma
// 2's softcap: losses and hidden-state gradients to fp32 rounding.
TEST(RowStream, CudaStreamedHeadEqualsResidentHead) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto config = model_preset("tiny-gemma2");
  ASSERT_TRUE(config.ok()) << config.status().to_string();
  const ModelConfig& c = *config;
  const auto cuda = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA);
  HeadWeights resident;
  resident.lm_head = at::randn({c.vocab_size, c.hidden_size}, cuda) * 0.3;
  resident.embed = resident.lm_head;
  resident.final_norm = at::rand({c.hidden_size}, cuda);
  HeadWeights streamed = resident;
  streamed.lm_head = resident.lm_head.cpu().pin_memory();
  streamed.embed = streamed.lm_head;
  streamed.vocab_chunk = 37;
  std::vector<at::Tensor> hidden, labels;
  for (int64_t t : {48, 33, 64}) {
    hidden.push_back(at::randn({2, t, c.hidden_size}, cuda));
    labels.push_back(at::randint(0, c.vocab_size, {2, t}, at::TensorOptions().dtype(at::kLong).device(at::kCUDA)));
  }
  const std::vector<HeadLossResult> all = head_loss_backward_all(hidden, labels, streamed, c, 100.0, 16);
  for (size_t m = 0; m < hidden.size(); ++m) {
    const HeadLossResult ref = head_loss_backward(hidden[m], labels[m], resident, c, 100.0, 16);
    EXPECT_NEAR(all[m].loss_sum, ref.loss_sum, 1e-5 * ref.loss_sum) << m;
    EXPECT_NEAR(head_loss(hidden[m], labels[m], streamed, c, 16).loss_sum, ref.loss_sum, 1e-5 * ref.loss_sum) << m;
    const double scale = ref.grad_hidden.abs().max().item<double>();
    EXPECT_LT((all[m].grad_hidden - ref.grad_hidden).abs().max().item<double>(), 1e-4 * scale) << m;
  }
}

}  // namespace
}  // namespace lema::engine
