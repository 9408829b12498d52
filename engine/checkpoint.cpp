#include "engine/checkpoint.h"
#include "engine/torch_types.h"

#include <dirent.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/formats/safetensors.h"

namespace lema::engine {

namespace {

}  // namespace

Status write_tensors(const std::string& path, const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors,
                     const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter writer;
  std::vector<at::Tensor> cpu;
  for (size_t i = 0; i < names.size(); ++i) {
    cpu.push_back(tensors[i].detach().to(at::kCPU).contiguous());
    LEMA_ASSIGN_OR_RETURN(DType dt, dtype_of(cpu.back().scalar_type(), path + ": tensor '" + names[i] + "'"));
    std::vector<int64_t> shape(cpu.back().sizes().begin(), cpu.back().sizes().end());
    LEMA_RETURN_IF_ERROR(writer.add_tensor(names[i], dt, shape));
  }
  for (const auto& [k, v] : metadata) writer.set_metadata(k, v);
  LEMA_RETURN_IF_ERROR(writer.open(path));
  for (size_t i = 0; i < names.size(); ++i) {
    LEMA_RETURN_IF_ERROR(writer.write_tensor(names[i], cpu[i].data_ptr(), cpu[i].nbytes()));
  }
  return writer.commit();
}

namespace {
// Copies tensor `name` of `reader` into `dst` (same shape and dtype).
Status read_into(const SafetensorsReader& reader, const std::string& name, at::Tensor& dst) {
  const TensorInfo* info = reader.find(name);
  if (!info) return Status::not_found(reader.path() + ": tensor '" + name + "' is missing");
  LEMA_ASSIGN_OR_RETURN(DType want, dtype_of(dst.scalar_type(), reader.path() + ": tensor '" + name + "'"));
  if (info->dtype != want || info->shape != std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end())) {
    return Status::invalid_argument(reader.path() + ": tensor '" + name + "' has dtype " + dtype_name(info->dtype) +
                                    " and another shape than the adapter expects");
  }
  at::NoGradGuard no_grad;
  const at::Tensor src = at::from_blob(const_cast<uint8_t*>(reader.data(*info)), dst.sizes(),
                                       at::TensorOptions().dtype(dst.scalar_type()));
  dst.copy_(src);
  return Status();
}
}  // namespace

Status read_tensors(const std::string& path, const std::vector<std::string>& names, std::vector<at::Tensor>& tensors) {
  LEMA_ASSIGN_OR_RETURN(auto reader, SafetensorsReader::open(path));
  for (size_t i = 0; i < names.size(); ++i) LEMA_RETURN_IF_ERROR(read_into(*reader, names[i], tensors[i]));
  return Status();
}

namespace {
Status write_json(const std::string& path, const nlohmann::json& j) { return write_file_atomic(path, j.dump(2) + "\n"); }
}  // namespace

Status save_adapter(const std::string& dir, const LoraAdapter& adapter, const std::string& base_model) {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  const LoraConfig& c = adapter.config();
  nlohmann::json cfg;
  cfg["peft_type"] = "LORA";
  cfg["task_type"] = "CAUSAL_LM";
  cfg["r"] = c.r;
  cfg["lora_alpha"] = c.alpha;
  cfg["lora_dropout"] = c.dropout;
  std::vector<std::string> targets;
  for (LoraTarget t : c.targets) targets.push_back(lora_target_name(t));
  cfg["target_modules"] = targets;
  cfg["bias"] = "none";
  cfg["use_rslora"] = c.use_rslora;
  cfg["base_model_name_or_path"] = base_model;
  cfg["fan_in_fan_out"] = false;
  cfg["inference_mode"] = true;
  cfg["init_lora_weights"] = true;
  cfg["modules_to_save"] = nullptr;
  cfg["revision"] = nullptr;
  LEMA_RETURN_IF_ERROR(write_json(path_join(dir, "adapter_config.json"), cfg));
  return write_tensors(path_join(dir, "adapter_model.safetensors"), adapter.parameter_names(), adapter.parameters(),
                       {{"format", "pt"}});
}

Result<LoraConfig> read_adapter_config(const std::string& dir) {
  const std::string path = path_join(dir, "adapter_config.json");
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::invalid_argument(path + ": not a JSON object");
  LoraConfig c;
  try {
    if (j.value("peft_type", "LORA") != "LORA") return Status::unsupported(path + ": peft_type is not LORA");
    if (j.value("bias", "none") != "none") return Status::unsupported(path + ": bias other than \"none\"");
    if (j.contains("use_dora") && j["use_dora"].is_boolean() && j["use_dora"].get<bool>()) {
      return Status::unsupported(path + ": DoRA adapters");
    }
    c.r = j.at("r").get<int64_t>();
    c.alpha = j.at("lora_alpha").get<double>();
    c.dropout = j.value("lora_dropout", 0.0);
    c.use_rslora = j.contains("use_rslora") && j["use_rslora"].is_boolean() && j["use_rslora"].get<bool>();
    std::string targets;
    const auto& tm = j.at("target_modules");
    if (tm.is_string()) {
      targets = tm.get<std::string>();
    } else {
      for (const auto& t : tm) targets += (targets.empty() ? "" : ",") + t.get<std::string>();
    }
    LEMA_ASSIGN_OR_RETURN(c.targets, parse_lora_target_names(targets));
  } catch (const std::exception& e) {
    return Status::invalid_argument(path + ": " + e.what());
  }
  if (c.r < 1) return Status::invalid_argument(path + ": r must be >= 1");
  return c;
}

Status load_adapter_weights(const std::string& dir, LoraAdapter& adapter) {
  auto params = adapter.parameters();
  return read_tensors(path_join(dir, "adapter_model.safetensors"), adapter.parameter_names(), params);
}

CheckpointWeights adapter_checkpoint_weights(LoraAdapter& adapter, const std::string& base_model) {
  CheckpointWeights w;
  w.names = adapter.parameter_names();
  w.save = [&adapter, base_model](const std::string& dir) { return save_adapter(dir, adapter, base_model); };
  w.load = [&adapter](const std::string& dir) { return load_adapter_weights(dir, adapter); };
  return w;
}

Result<std::string> save_checkpoint(const std::string& checkpoints_dir, const LoraAdapter& adapter, const AdamW& optimizer,
                                    const CheckpointState& state, const std::string& base_model) {
  return save_checkpoint(checkpoints_dir, adapter_checkpoint_weights(const_cast<LoraAdapter&>(adapter), base_model),
                         optimizer, state);
}

Result<std::string> save_checkpoint(const std::string& checkpoints_dir, const CheckpointWeights& weights,
                                    const AdamW& optimizer, const CheckpointState& state, const AttemptFence* fence) {
  LEMA_RETURN_IF_ERROR(make_dirs(checkpoints_dir));
  const AttemptFence unfenced = AttemptFence::unfenced(checkpoints_dir);
  if (!fence) fence = &unfenced;
  const std::string final_dir = path_join(checkpoints_dir, "step-" + std::to_string(state.step));
  const std::string tmp = fence->temp_path(final_dir);
  LEMA_RETURN_IF_ERROR(remove_all(tmp));
  LEMA_RETURN_IF_ERROR(make_dirs(tmp));

  LEMA_RETURN_IF_ERROR(weights.save(tmp));
  std::vector<std::string> names;
  std::vector<at::Tensor> moments;
  const auto& keys = weights.names;
  for (size_t i = 0; i < keys.size(); ++i) {
    names.push_back("exp_avg." + keys[i]);
    moments.push_back(optimizer.exp_avg()[i]);
    names.push_back("exp_avg_sq." + keys[i]);
    moments.push_back(optimizer.exp_avg_sq()[i]);
  }
  LEMA_RETURN_IF_ERROR(write_tensors(path_join(tmp, "optimizer.safetensors"), names, moments,
                                     {{"step", std::to_string(optimizer.step_count())}}));
  nlohmann::json st;
  st["magic"] = kCheckpointMagic;
  st["version"] = kCheckpointVersion;
  st["step"] = state.step;
  st["optimizer_step"] = optimizer.step_count();
  st["data_cursor"] = {{"epoch", state.cursor.epoch}, {"index", state.cursor.index}};
  st["rng"] = {{"seed", state.seed}, {"scheme", "splitmix64(seed, step, micro_batch, layer, target)"}};
  st["config_hash"] = state.config_hash;
  st["loss"] = state.loss;
  LEMA_RETURN_IF_ERROR(write_json(path_join(tmp, "trainer_state.json"), st));
  // DONE last: a directory without it is an interrupted write.
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "DONE"), "step " + std::to_string(state.step) + "\n"));
  LEMA_RETURN_IF_ERROR(fence->publish_dir(tmp, final_dir));
  return final_dir;
}

Result<std::string> find_latest_checkpoint(const std::string& path) {
  if (path_exists(path_join(path, "DONE"))) return path;
  if (path_exists(path_join(path, "trainer_state.json"))) {
    return Status::corruption(path + ": checkpoint is incomplete (no DONE file)");
  }
  std::string dir = path;
  if (is_directory(path_join(path, "checkpoints"))) dir = path_join(path, "checkpoints");
  DIR* d = opendir(dir.c_str());
  if (!d) return status_from_errno("opening " + dir, errno);
  int64_t best = -1;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("step-", 0) != 0) continue;
    char* end = nullptr;
    const long long n = std::strtoll(name.c_str() + 5, &end, 10);
    if (!end || *end != '\0' || n < 0) continue;
    if (!path_exists(path_join(path_join(dir, name), "DONE"))) continue;
    best = std::max<int64_t>(best, n);
  }
  closedir(d);
  if (best < 0) return Status::not_found(dir + ": no complete checkpoint (step-N/ with DONE)");
  return path_join(dir, "step-" + std::to_string(best));
}

Result<CheckpointState> load_checkpoint(const std::string& dir, const std::string& expected_config_hash,
                                        LoraAdapter& adapter, AdamW& optimizer) {
  return load_checkpoint(dir, expected_config_hash, adapter_checkpoint_weights(adapter, ""), optimizer);
}

Result<CheckpointState> load_checkpoint(const std::string& dir, const std::string& expected_config_hash,
                                        const CheckpointWeights& weights, AdamW& optimizer) {
  const std::string state_path = path_join(dir, "trainer_state.json");
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(state_path));
  const nlohmann::json st = nlohmann::json::parse(text, nullptr, false);
  if (st.is_discarded() || !st.is_object()) return Status::corruption(state_path + ": not JSON");
  if (st.value("magic", "") != kCheckpointMagic) return Status::corruption(state_path + ": not a lema checkpoint (magic)");
  if (st.value("version", 0) != kCheckpointVersion) {
    return Status::unsupported(state_path + ": checkpoint version " + std::to_string(st.value("version", 0)) +
                               ", this lema reads version " + std::to_string(kCheckpointVersion));
  }
  CheckpointState state;
  try {
    state.step = st.at("step").get<int64_t>();
    state.cursor.epoch = st.at("data_cursor").at("epoch").get<int64_t>();
    state.cursor.index = st.at("data_cursor").at("index").get<int64_t>();
    state.seed = st.at("rng").at("seed").get<uint64_t>();
    state.config_hash = st.at("config_hash").get<std::string>();
    state.loss = st.value("loss", 0.0);
  } catch (const std::exception& e) {
    return Status::corruption(state_path + ": " + e.what());
  }
  if (state.config_hash != expected_config_hash) {
    return Status::invalid_argument(dir + " was written by a run with another training configuration (config hash " +
                                    state.config_hash + ", this run " + expected_config_hash +
                                    "): resume with the same model, data and options, or start a new run directory");
  }
  LEMA_RETURN_IF_ERROR(weights.load(dir));
  LEMA_ASSIGN_OR_RETURN(auto opt_reader, SafetensorsReader::open(path_join(dir, "optimizer.safetensors")));
  const auto& keys = weights.names;
  std::vector<at::Tensor> m, v;
  for (size_t i = 0; i < keys.size(); ++i) {
    m.push_back(at::zeros_like(optimizer.exp_avg()[i]));
    v.push_back(at::zeros_like(optimizer.exp_avg_sq()[i]));
    LEMA_RETURN_IF_ERROR(read_into(*opt_reader, "exp_avg." + keys[i], m.back()));
    LEMA_RETURN_IF_ERROR(read_into(*opt_reader, "exp_avg_sq." + keys[i], v.back()));
  }
  LEMA_RETURN_IF_ERROR(optimizer.load_state(st.value("optimizer_step", state.step), m, v));
  return state;
}

}  // namespace lema::engine
