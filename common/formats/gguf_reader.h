// A validating GGUF reader (the format of gguf_writer.h), for tests and
// `lema inspect`: header, typed metadata and tensor infos; the tensor bytes
// through the read-only map. Every count, length and offset is checked
// against the file size before use, so a damaged file is a kCorruption
// Status naming the file and the field, never a crash.
// Owns the map; data() pointers live as long as the reader. Thread-safe
// for reading.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/formats/gguf_writer.h"

namespace lema {

class GgufReader {
 public:
  static Result<std::unique_ptr<GgufReader>> open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_start() const { return data_start_; }
  // Keys in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  // nullptr when absent.
  const GgufValue* find(const std::string& key) const;
  // Tensors in file order; offsets absolute.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const uint8_t* data(const GgufTensorInfo& t) const { return map_.data() + t.offset; }
  const std::string& path() const { return map_.path(); }

 private:
  GgufReader() = default;
  Status parse();
  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_start_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace lema
