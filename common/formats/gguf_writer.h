// GGUF v3 files, the format llama.cpp and Ollama load, written by lema's own
// code from the published specification (ggml's docs/gguf.md):
//   "GGUF" magic, u32 version 3, u64 tensor count, u64 key/value count,
//   the typed key/values, the tensor infos (name, dims innermost first,
//   ggml type, offset in the data section), padding to the alignment, then
//   each tensor's bytes padded to the alignment.
// GgufValue is shared with the reader (gguf_reader.h). The writer streams:
// declare the metadata and every tensor first, then open() writes header and
// infos with precomputed offsets, the tensors follow in declared order, and
// commit() makes the file visible atomically (AtomicFileWriter: a killed
// export or a full disk leaves no file under the final name).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/status.h"

namespace lema {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kGgufVersion = 3;
constexpr uint64_t kGgufDefaultAlignment = 32;  // when general.alignment is absent

// The metadata value types, numbered as in the specification.
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* gguf_value_type_name(GgufValueType type);

// The tensor element types lema writes, numbered as ggml's enum ggml_type.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };
// "f32", "f16", "q4_0", "q8_0", "bf16"
const char* ggml_type_name(GgmlType type);
// False when `value` is not one of the types above.
bool ggml_type_from_u32(uint32_t value, GgmlType* type);
// Elements per block (32 for q4_0/q8_0, 1 otherwise) and bytes per block.
int64_t ggml_block_elems(GgmlType type);
uint64_t ggml_block_bytes(GgmlType type);
// Bytes of a tensor of `n_elems` elements. REQUIRES: n_elems is a multiple
// of ggml_block_elems(type).
uint64_t ggml_nbytes(GgmlType type, int64_t n_elems);

// One metadata value: a scalar, a string, or an array of one element type.
// Plain data; integers of every width are held in `u` (unsigned types) or
// `i` (signed types), floats in `f`.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint32;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufValueType elem = GgufValueType::kUint8;  // arrays: the element type
  std::vector<GgufValue> items;                // arrays: the elements

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue strings(const std::vector<std::string>& v);
  static GgufValue f32s(const std::vector<float>& v);
  static GgufValue i32s(const std::vector<int32_t>& v);
};

// One tensor as stored: `shape` is row-major (outermost first, as lema and
// PyTorch write it: [rows, cols]); the file holds it reversed (ggml's ne).
struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // relative to the data section (writer) or absolute (reader)
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class GgufWriter {
 public:
  // Sets (or replaces) a key. Keys keep their first insertion order.
  void set(const std::string& key, GgufValue value);
  // Data alignment (a power of two >= 8); general.alignment is written when
  // it differs from the default 32.
  Status set_alignment(uint64_t alignment);
  // Declares a tensor; rows (the innermost dimension) must be whole blocks.
  Status add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape);

  // Writes header, metadata and tensor infos. No set/add_tensor after this.
  Status open(const std::string& path);
  // Writes all of tensor `name`, which must be the next one declared, with
  // exactly its nbytes.
  Status write_tensor(const std::string& name, const void* data, uint64_t nbytes);
  // Checks every tensor was written, fsyncs and renames into place.
  Status commit();

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  uint64_t data_start() const { return data_start_; }  // valid after open()
  uint64_t bytes_written() const { return out_.bytes_written(); }

 private:
  Status pad_to_alignment();
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_size_ = 0;  // sum of padded tensor sizes
  uint64_t data_start_ = 0;
  AtomicFileWriter out_;
  bool opened_ = false;
  size_t next_ = 0;
  std::string path_;
};

}  // namespace lema
