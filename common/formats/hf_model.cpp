#include "common/formats/hf_model.h"

#include <dirent.h>

#include <nlohmann/json.hpp>
#include <set>

#include "common/base/file_util.h"
#include "common/formats/model_family.h"
#include "common/formats/model_layout.h"

namespace lema {

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

const HfModel::TensorRef* HfModel::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t HfModel::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.info.nbytes;
  return n;
}

Result<std::unique_ptr<HfModel>> HfModel::open(const std::string& dir) {
  if (!is_directory(dir)) {
    if (!path_exists(dir)) return Status::not_found(dir + ": no such directory");
    return Status::invalid_argument(dir + ": not a directory (expected a Hugging Face model directory)");
  }
  std::unique_ptr<HfModel> m(new HfModel());
  m->dir_ = dir;
  std::string config_path = path_join(dir, "config.json");
  if (!path_exists(config_path))
    return Status::not_found(config_path + ": missing (not a Hugging Face model directory?)");
  LEMA_ASSIGN_OR_RETURN(m->config_, load_model_config(config_path));
  LEMA_RETURN_IF_ERROR(m->load_shards());
  return m;
}

Status HfModel::load_shards() {
  // name -> (shard index, info) for every tensor the files hold.
  std::map<std::string, std::pair<size_t, TensorInfo>> found;
  std::string where;  // names the file(s) in messages
  const std::string single = path_join(dir_, kSingleFile);
  const std::string index_path = path_join(dir_, kIndexFile);
  if (path_exists(single)) {
    LEMA_ASSIGN_OR_RETURN(auto r, SafetensorsReader::open(single));
    for (const auto& t : r->tensors()) found[t.name] = {0, t};
    shards_.push_back(std::move(r));
    where = single;
  } else if (path_exists(index_path)) {
    where = index_path;
    LEMA_ASSIGN_OR_RETURN(std::string text, read_file(index_path));
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return Status::corruption(index_path + ": not valid JSON: " + e.what());
    }
    if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
      return Status::corruption(index_path + ": no 'weight_map' object");
    }
    std::map<std::string, size_t> shard_index;
    for (auto it = root["weight_map"].begin(); it != root["weight_map"].end(); ++it) {
      if (!it->is_string()) {
        return Status::corruption(index_path + ": weight_map entry '" + it.key() + "' is not a file name");
      }
      std::string file = it->get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
        return Status::corruption(index_path + ": weight_map entry '" + it.key() + "' names '" + file +
                                  "', not a file in the model directory");
      }
      auto si = shard_index.find(file);
      if (si == shard_index.end()) {
        LEMA_ASSIGN_OR_RETURN(auto r, SafetensorsReader::open(path_join(dir_, file)));
        si = shard_index.emplace(file, shards_.size()).first;
        shards_.push_back(std::move(r));
      }
      const SafetensorsReader& shard = *shards_[si->second];
      const TensorInfo* t = shard.find(it.key());
      if (t == nullptr) {
        return Status::corruption(index_path + ": tensor '" + it.key() + "' is mapped to " + shard.path() +
                                  ", which does not contain it");
      }
      found[it.key()] = {si->second, *t};
    }
  } else {
    for (const auto& f : list_dir(dir_)) {
      if (ends_with(f, ".bin") || ends_with(f, ".bin.index.json") || ends_with(f, ".pt") ||
          ends_with(f, ".pth")) {
        return Status::unsupported(path_join(dir_, f) +
                                   ": PyTorch pickle checkpoints are not read (unsafe and not mappable); "
                                   "lema reads safetensors only. Convert once in Python: "
                                   "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, "
                                   "safe_serialization=True)");
      }
    }
    return Status::not_found(dir_ + ": no " + kSingleFile + " or " + kIndexFile);
  }

  for (const TensorSpec& spec : model_tensor_specs(config_)) {
    auto it = found.find(spec.name);
    if (it == found.end()) {
      return Status::invalid_argument(where + ": tensor '" + spec.name +
                                      "' is missing (config.json expects shape " +
                                      shape_to_string(spec.shape) + ")");
    }
    const SafetensorsReader* file = shards_[it->second.first].get();
    const TensorInfo& info = it->second.second;
    if (info.shape != spec.shape) {
      return Status::invalid_argument(file->path() + ": tensor '" + spec.name + "' has shape " +
                                      shape_to_string(info.shape) + " but config.json gives " +
                                      shape_to_string(spec.shape));
    }
    if (!dtype_is_float(info.dtype)) {
      return Status::unsupported(
          file->path() + ": tensor '" + spec.name + "' has dtype " + dtype_name(info.dtype) +
          "; only F32, F16, BF16 (and F64) weights are supported (quantized models are not)");
    }
    index_[spec.name] = tensors_.size();
    tensors_.push_back({file, info});
    found.erase(it);
  }
  for (const auto& [name, where_info] : found) {
    const SafetensorsReader* file = shards_[where_info.first].get();
    if (name == kLmHeadName && config_.tie_word_embeddings) {
      // Some exports store the tied head anyway; it must be the embedding's twin.
      if (where_info.second.shape != std::vector<int64_t>{config_.vocab_size, config_.hidden_size}) {
        return Status::invalid_argument(file->path() + ": tensor 'lm_head.weight' has shape " +
                                        shape_to_string(where_info.second.shape) +
                                        " but config.json gives [" + std::to_string(config_.vocab_size) +
                                        ", " + std::to_string(config_.hidden_size) + "]");
      }
      ignored_.push_back(name);
      continue;
    }
    if (ends_with(name, "rotary_emb.inv_freq")) {  // a derived buffer some exports keep
      ignored_.push_back(name);
      continue;
    }
    return Status::unsupported(file->path() + ": unexpected tensor '" + name +
                               "' (not part of a " + family_info(config_.family).name +
                               " model as config.json describes it: another architecture, or "
                               "num_hidden_layers in config.json too small?)");
  }
  return Status();
}

Status copy_hf_side_files(const std::string& from, const std::string& to_dir) {
  // chat_template.jinja: the chat template newer models keep beside
  // tokenizer_config.json; a merged model must answer through it too.
  static const char* const kSideFiles[] = {"tokenizer.json",          "tokenizer.model",   "tokenizer_config.json",
                                           "special_tokens_map.json", "added_tokens.json", "generation_config.json",
                                           "chat_template.jinja"};
  std::vector<std::pair<std::string, std::string>> copies;  // source, name in to_dir
  if (is_directory(from)) {
    for (const char* name : kSideFiles) {
      if (path_exists(path_join(from, name))) copies.emplace_back(path_join(from, name), name);
    }
  } else if (path_exists(from)) {
    const std::string base = path_basename(from);
    const bool sp = base.size() > 6 && base.compare(base.size() - 6, 6, ".model") == 0;
    copies.emplace_back(from, sp ? "tokenizer.model" : "tokenizer.json");
    // Its settings (BOS/EOS, special tokens) sit next to it.
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"}) {
      const std::string side = path_join(path_dirname(from), name);
      if (path_exists(side)) copies.emplace_back(side, name);
    }
  } else {
    return Status::not_found("tokenizer '" + from + "': no such file or directory");
  }
  for (const auto& [src, name] : copies) {
    LEMA_ASSIGN_OR_RETURN(std::string bytes, read_file(src));
    LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(to_dir, name), bytes));
  }
  return Status();
}

}  // namespace lema
