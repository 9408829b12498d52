// Writes a layer file (docs/FORMATS.md) tensor by tensor, in storage order:
// `lema convert` feeds it from an HF model, `lema model init --quant` from
// the random generator. Quantized projections are handed over as fp32
// values a chunk at a time and written as their stored parts, so memory
// stays near one chunk (plus one tensor's absmax / scales).
//
// Not thread-safe; one writer per output file. The file appears at commit().
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/formats/layer_file.h"
#include "common/formats/model_layout.h"
#include "common/formats/quant.h"
#include "common/formats/safetensors.h"

namespace lema {

// Fills dst[0..n) with elements [offset, offset + n) of the tensor being
// written, as fp32.
using FillF32Fn = std::function<Status(int64_t offset, int64_t n, float* dst)>;

class LayerFileWriter {
 public:
  // Declares every tensor of `config` (model_tensor_specs order): tensor i
  // stored in dtypes[i], except the projection weights when `quant` is not
  // kNone (quant_stored_tensors). REQUIRES: dtypes.size() == specs.
  Status open(const std::string& path, ModelConfig config, const std::vector<DType>& dtypes, QuantType quant);
  // Logical tensor i (model_tensor_specs order) is stored quantized.
  bool quantized(size_t i) const { return quantized_[i]; }
  const std::vector<TensorSpec>& specs() const { return specs_; }
  DType dtype(size_t i) const { return dtypes_[i]; }
  // The next bytes of the current unquantized tensor, in its stored dtype.
  Status write_raw(const std::string& name, const void* data, uint64_t nbytes);
  // The whole of quantized logical tensor `i`, values from `fill`.
  Status write_quantized(size_t i, const FillF32Fn& fill);
  Status commit();

  uint64_t total_bytes() const { return total_; }  // data section
  uint64_t written_bytes() const { return written_; }
  uint64_t bytes_on_disk() const { return w_.data_start() + total_; }
  uint64_t largest_layer_bytes() const;

 private:
  SafetensorsWriter w_;
  std::vector<TensorSpec> specs_;
  std::vector<DType> dtypes_;
  std::vector<bool> quantized_;
  QuantType quant_ = QuantType::kNone;
  int64_t n_layers_ = 0;
  size_t per_layer_ = 0;  // stored tensors per layer
  uint64_t total_ = 0;
  uint64_t written_ = 0;
};

}  // namespace lema
