// Opens a base model for the engine: a Hugging Face directory (config.json +
// safetensors) or a lema layer file. Returns an in-memory LayerSource; with
// a layer file in the compute dtype on CPU, each layer's weights are views
// straight into the file map (no copy).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "worker/engine/layer_source.h"

namespace lema::engine {

Result<std::unique_ptr<LayerSource>> open_model_source(const std::string& path, at::ScalarType dtype, at::Device device);

}  // namespace lema::engine
