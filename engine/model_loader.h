// Opens a base model for the engine: a Hugging Face directory (config.json +
// safetensors) or a lema layer file. Returns an in-memory LayerSource; with
// a layer file in the compute dtype on CPU, each layer's weights are views
// straight into the file map (no copy).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "common/base/status.h"
#include "engine/layer_source.h"
#include "engine/memory_planner.h"

namespace lema::engine {

Result<std::unique_ptr<LayerSource>> open_model_source(const std::string& path, at::ScalarType dtype, at::Device device);

// The base for inference (eval, chat). Without a budget in `request`:
// open_model_source, and *batch = request.batch. With request.vram_budget or
// ram_budget: a layer file (a directory is refused with the `lema convert`
// line to run) streamed forward-only as plan_inference_memory says. The
// caller fills batch, tokens, budgets and loss_chunk_tokens; config,
// dtype_bytes, cuda and flash_attention come from the file, dtype and
// device, and the adapter's rank and targets from `adapter_dir`'s
// adapter_config.json ("": none). *batch gets the plan's batch.
Result<std::unique_ptr<LayerSource>> open_inference_source(const std::string& path, const std::string& adapter_dir,
                                                           InferenceRequest request, at::ScalarType dtype,
                                                           at::Device device, int64_t* batch);

}  // namespace lema::engine
