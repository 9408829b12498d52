// StageChannel: the frames between `lema worker` and the stage child it
// supervises (`lema stage-child`, worker/stage_child.h), over one end of a
// socketpair (docs/WORKER.md, "The stage child"). A frame is a 4-byte
// big-endian length, then that many bytes of one JSON object with a "type".
// Frames larger than kMaxStageFrameBytes, lengths of 0, bodies that are not
// a JSON object with a string "type" are errors (kCorruption) naming what
// was wrong; the reader never trusts a length before checking it.
//
// Owns the file descriptor (closed by the destructor). The fd is put in
// non-blocking mode: every read and write waits with poll() under a
// deadline, so neither side can hang the other by not reading.
//
// Thread-safety: send() and receive() may be called from two different
// threads (one writer, one reader); two concurrent writers need a lock.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/base/status.h"
#include "common/protocol/protocol.h"

namespace lema::worker {

// The largest frame either side accepts: the start frame carries an ASSIGN
// (at most protocol::kMaxMessageBytes) plus the worker's environment.
constexpr int64_t kMaxStageFrameBytes = 2 * protocol::kMaxMessageBytes;

class StageChannel {
 public:
  // Takes ownership of `fd` (a connected stream socket).
  explicit StageChannel(int fd);
  ~StageChannel();
  StageChannel(const StageChannel&) = delete;
  StageChannel& operator=(const StageChannel&) = delete;

  int fd() const { return fd_; }

  // Writes one whole frame within timeout_ms (< 0: no limit).
  // kUnavailable when the peer has gone (EPIPE, reset) or did not take the
  // bytes in time; kInvalidArgument for a frame over kMaxStageFrameBytes.
  Status send(const nlohmann::json& frame, int timeout_ms);

  // The next frame, or nullopt when none arrived within timeout_ms (0: only
  // what is already here). kUnavailable at end of stream (the peer closed
  // or died) between frames; kCorruption for a garbled frame or a stream
  // that ends inside one.
  Result<std::optional<nlohmann::json>> receive(int timeout_ms);

 private:
  // Moves whatever bytes are readable into buf_; false at end of stream.
  Result<bool> fill(int timeout_ms);
  // The first whole frame of buf_, checked; nullopt while it is unfinished.
  Result<std::optional<nlohmann::json>> take_frame();
  int fd_ = -1;
  bool eof_ = false;  // the peer closed its end
  std::string buf_;   // bytes read, not yet a whole frame
};

// A Status carried in a frame as {"code": int, "message": string} and back
// into *out; a malformed one (no integer code, a code out of range) is
// kCorruption naming it.
nlohmann::json status_to_frame(const Status& status);
Status status_from_frame(const nlohmann::json& j, Status* out);

}  // namespace lema::worker
