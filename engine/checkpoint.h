// Checkpoints and adapters on disk (docs/ENGINE.md, "Checkpoint format").
//
//   <run>/checkpoints/step-N/
//     adapter_config.json          PEFT LoraConfig
//     adapter_model.safetensors    LoRA masters, PEFT keys
//     optimizer.safetensors        AdamW moments (exp_avg.<key>, exp_avg_sq.<key>)
//     trainer_state.json           magic, version, step, data cursor, seed, config hash
//     DONE                         written last: the checkpoint is complete
//
// A checkpoint is built in a temp directory, every file fsynced, then the
// directory is renamed into place (in a job, with an ATTEMPT file, under the
// attempt's fence); only directories holding DONE count.
// Plain functions; callers serialise access to one run directory.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/base/attempt_publish.h"
#include "common/base/status.h"
#include "engine/data_loader.h"
#include "engine/lora.h"
#include "engine/optimizer.h"

namespace lema::engine {

constexpr const char* kCheckpointMagic = "lema-checkpoint";
constexpr int kCheckpointVersion = 1;

struct CheckpointState {
  int64_t step = 0;           // optimizer steps done
  DataCursor cursor;          // where the next step's data starts
  uint64_t seed = 0;          // every random draw derives from (seed, step, ...)
  std::string config_hash;    // training_config_hash() of the run
  double loss = 0.0;          // loss of the last step (information)
};

// Writes the adapter in PEFT form into `dir` (created if needed):
// adapter_config.json + adapter_model.safetensors.
Status save_adapter(const std::string& dir, const LoraAdapter& adapter, const std::string& base_model);
// Reads r, lora_alpha, lora_dropout, target_modules and use_rslora from a
// PEFT adapter_config.json; refuses what lema cannot apply (bias, DoRA, ...).
Result<LoraConfig> read_adapter_config(const std::string& dir);
// Reads a PEFT adapter's weights into `adapter` (same r, targets and layers).
Status load_adapter_weights(const std::string& dir, LoraAdapter& adapter);

// Named tensors (moved to CPU, contiguous) to a safetensors file, atomically.
Status write_tensors(const std::string& path, const std::vector<std::string>& names,
                     const std::vector<at::Tensor>& tensors, const std::map<std::string, std::string>& metadata);
// Copies each named tensor of a safetensors file into tensors[i] (same
// shape and dtype; errors name the file and the tensor).
Status read_tensors(const std::string& path, const std::vector<std::string>& names, std::vector<at::Tensor>& tensors);

// The trained weights of a checkpoint, written and read by the training
// mode that owns them (a LoRA adapter, or every weight with --full). The
// optimizer moments are stored under exp_avg.<name> / exp_avg_sq.<name>.
struct CheckpointWeights {
  std::vector<std::string> names;  // one per optimizer parameter, same order
  std::function<Status(const std::string& dir)> save;
  std::function<Status(const std::string& dir)> load;
};
CheckpointWeights adapter_checkpoint_weights(LoraAdapter& adapter, const std::string& base_model);

// Writes `checkpoints_dir`/step-N atomically; returns its path. The
// directory is built under `fence`'s temp name (step-N.tmp.a<attempt>.<pid>)
// and published through it, so a superseded attempt is refused (kCancelled);
// no fence: the run is not a job's (AttemptFence::unfenced).
Result<std::string> save_checkpoint(const std::string& checkpoints_dir, const CheckpointWeights& weights,
                                    const AdamW& optimizer, const CheckpointState& state,
                                    const AttemptFence* fence = nullptr);
// The same for a LoRA adapter.
Result<std::string> save_checkpoint(const std::string& checkpoints_dir, const LoraAdapter& adapter, const AdamW& optimizer,
                                    const CheckpointState& state, const std::string& base_model);

// `path` is a run directory (its checkpoints/ is searched), a checkpoints
// directory, or one step-N directory; returns the newest complete one.
Result<std::string> find_latest_checkpoint(const std::string& path);

// Loads a checkpoint into the weights and `optimizer` (built for the same
// run). Refuses a config hash other than `expected_config_hash`, naming both.
Result<CheckpointState> load_checkpoint(const std::string& dir, const std::string& expected_config_hash,
                                        const CheckpointWeights& weights, AdamW& optimizer);
// The same for a LoRA adapter.
Result<CheckpointState> load_checkpoint(const std::string& dir, const std::string& expected_config_hash,
                                        LoraAdapter& adapter, AdamW& optimizer);

}  // namespace lema::engine
