// Consecutive row chunks of a [V, H] table on the compute device, in order,
// each copied while the previous one is in use: the streamed head's lm_head
// (docs/STREAMING.md, "The streamed head").
//
// A table already on the device is handed out as views. A host table (pinned
// for a GPU) goes through two device buffers of `chunk_rows` rows: on CUDA
// chunk k+1 is copied host->device on a side stream while the compute stream
// runs chunk k's kernels. The copy into a buffer waits on an event recorded
// on the compute stream when the buffer was last handed back (or allocated);
// the compute stream waits on the copy's event before it reads the buffer.
// On the CPU the same two buffers are filled with plain copies (`copy`
// forces this path for tests of the rotation; nothing overlaps there).
//
// Ownership: the stream keeps a reference to the table, which must not be
// written while chunks are in flight. Thread-safety: one thread, the one
// whose current CUDA stream runs the compute.
#pragma once

#include <ATen/ATen.h>

#include <memory>

namespace lema::engine {

class RowStream {
 public:
  // table: [V, H]. chunk_rows >= 1. copy: use the two buffers even when the
  // table is already on `device` (tests); a table elsewhere is always copied.
  RowStream(const at::Tensor& table, int64_t chunk_rows, at::Device device, bool copy = false);
  // Orders the compute stream after any copy still in flight, so that the
  // buffers can be reused once they are freed.
  ~RowStream();
  RowStream(const RowStream&) = delete;
  RowStream& operator=(const RowStream&) = delete;

  int64_t n_chunks() const { return n_chunks_; }
  // The first row of chunk k.
  int64_t chunk_start(int64_t k) const { return k * chunk_rows_; }
  // The next chunk, rows [chunk_start(k), + n) with n = min(chunk_rows, V - start),
  // and starts copying the one after it.
  // REQUIRES: fewer than n_chunks() calls so far. A copied chunk's view is
  // valid until the next call: that call starts overwriting its buffer
  // (on CUDA after the kernels enqueued before it have read it).
  at::Tensor next();  // [n, H] on `device`

 private:
  struct Cuda;  // streams and events, CUDA builds only
  void start_copy(int64_t k);

  at::Tensor table_;             // [V, H]
  int64_t chunk_rows_ = 0;
  int64_t n_chunks_ = 0;
  int64_t next_ = 0;             // chunks handed out so far
  bool buffered_ = false;        // false: views of a table on the device
  at::Tensor buffers_[2];        // [chunk_rows, H] on the device; chunk k in buffers_[k % 2]
  std::unique_ptr<Cuda> cuda_;   // set when the device is a GPU and the chunks are copied
};

}  // namespace lema::engine
