// Where a LayerStore's bytes come from: readers that fill one layer's packed
// buffer from a layer file (pread, converting the dtype when needed) or from
// named tensors, and the head's loaders. Apart from the store, which is the
// ring of slots alone.
//
// Thread-safety: a LayerReader may be called from any thread.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "common/base/status.h"
#include "common/formats/layer_file.h"
#include "engine/layer_source.h"

namespace lema::engine {

// Elements of one layer's packed buffer (every tensor of layer_tensor_shapes).
int64_t layer_numel(const ModelConfig& config);

// Fills `dst` ([numel of one layer], the store's dtype, CPU, contiguous) with
// layer `layer`'s tensors packed in layer_tensor_names() order. Called from
// the loader thread (and at creation): must be safe to call from any thread.
using LayerReader = std::function<Status(int64_t layer, at::Tensor& dst)>;

// Reads layers from a layer file with pread (no map needed); converts when
// the file's dtype differs from `dtype`. A quantized file's layers are read
// as they are stored (dst: [stored bytes] uint8, engine/dequant.h), their
// scales checked.
Result<LayerReader> layer_file_reader(std::shared_ptr<const LayerFile> file, at::ScalarType dtype);
// Packs layers from named HF tensors (any dtype, CPU) on each read.
LayerReader tensor_map_reader(std::shared_ptr<const TensorMap> tensors, const ModelConfig& config);
// Embedding, final norm and lm_head of a layer file, in `dtype` on `device`;
// vocab_chunk > 0 streams the head (HeadWeights): embed and lm_head stay in
// host memory.
Result<HeadWeights> load_head(const LayerFile& file, at::ScalarType dtype, at::Device device, int64_t vocab_chunk = 0);
// Same from named tensors.
Result<HeadWeights> load_head(const TensorMap& tensors, const ModelConfig& config, at::ScalarType dtype,
                              at::Device device);

}  // namespace lema::engine
