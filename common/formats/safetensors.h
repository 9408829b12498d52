// safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON, then the raw tensor bytes.
// The JSON maps tensor names to {"dtype","shape","data_offsets":[begin,end]}
// (offsets relative to the start of the data section) and may hold a
// "__metadata__" map of string -> string. Validation rules: docs/FORMATS.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/formats/dtype.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace lema {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t nbytes = 0;

  int64_t numel() const;
};

// A parsed, validated header. Tensors are sorted by offset (the file's
// byte order); together they cover [data_start, file_size) without holes.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length
  uint64_t file_size = 0;
};

// Headers longer than this are refused as absurd (real ones are < 1 MiB).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;

// Validates a header. `bytes` holds the first `available` bytes of a file of
// `file_size` bytes (available may be less than file_size, but must cover the
// header). `source` names the file in errors. Never reads past `available`.
Result<SafetensorsHeader> parse_safetensors_header(const uint8_t* bytes, uint64_t available,
                                                   uint64_t file_size, const std::string& source);
// Reads and validates only the header of `path` with pread (no map).
Result<SafetensorsHeader> read_safetensors_header(const std::string& path);

// A read-only, validated safetensors file over mmap. Owns the map; pointers
// from data() live as long as the reader. Safe to read from many threads.
class SafetensorsReader {
 public:
  static Result<std::unique_ptr<SafetensorsReader>> open(const std::string& path);

  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  // REQUIRES: info comes from this reader.
  const uint8_t* data(const TensorInfo& info) const { return map_.data() + info.offset; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return map_.path(); }
  uint64_t file_size() const { return header_.file_size; }
  // Tells the kernel the pages of [offset, offset+nbytes) are no longer
  // needed, so they leave this process's RSS (streaming readers call it on
  // consumed ranges). The data stays readable (it is re-read from disk).
  void release(uint64_t offset, uint64_t nbytes) const;

 private:
  SafetensorsReader() = default;
  MappedFile map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// Streams a safetensors file to disk: declare every tensor (add_tensor) and
// the metadata first, then open() writes the header with precomputed offsets,
// then the tensor bytes are written in declared order (whole, or in parts),
// and commit() makes the file visible atomically. Never holds tensor data.
// Not thread-safe.
class SafetensorsWriter {
 public:
  Status add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Metadata that depends on the final absolute offsets (a layer file's byte
  // ranges): open() calls `fn` with the tensors at their absolute offsets,
  // again if the header grows, until the header length settles.
  using LayoutMetadataFn =
      std::function<std::map<std::string, std::string>(const std::vector<TensorInfo>& tensors)>;
  void set_layout_metadata(LayoutMetadataFn fn) { layout_fn_ = std::move(fn); }
  // Starts the data section at a multiple of `alignment` (a multiple of 8,
  // default 8) by padding the header with spaces.
  void set_data_alignment(uint64_t alignment) { alignment_ = alignment; }

  // Computes offsets and writes the header. No add_tensor after this.
  Status open(const std::string& path);
  // Writes all of tensor `name`, which must be the next one declared.
  Status write_tensor(const std::string& name, const void* data, uint64_t nbytes);
  // Appends a part of tensor `name` (the one in progress, or the next one).
  Status write_tensor_part(const std::string& name, const void* data, uint64_t nbytes);
  // Checks every tensor is complete, fsyncs and renames into place.
  Status commit();

  // Declared tensors; offsets are absolute and valid after open().
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  uint64_t data_start() const { return data_start_; }
  // The JSON header text (with padding) that open() wrote.
  const std::string& header_json() const { return header_text_; }

 private:
  std::string header_text(const std::map<std::string, std::string>& metadata) const;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  AtomicFileWriter out_;
  bool opened_ = false;
  size_t next_ = 0;               // index of the tensor being written
  uint64_t written_in_next_ = 0;  // bytes of tensors_[next_] written so far
  uint64_t data_start_ = 0;
  uint64_t alignment_ = 8;
  LayoutMetadataFn layout_fn_;
  std::string header_text_;
  std::string path_;
};

}  // namespace lema
