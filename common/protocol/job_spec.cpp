// TOML or normalised JSON -> JobSpec with strict keys. Both forms go through
// one reader (JSON is turned into a TOML table first), so a spec read back
// from the scheduler's JSON is checked exactly as the submitted TOML was.
// toml++ throws toml::parse_error on bad syntax; it is caught here and
// turned into a Status with the line.
#include "common/protocol/job_spec.h"

#include <cstdint>
#include <set>
#include <utility>

#include <toml++/toml.h>

#include "common/base/bounds.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/protocol/tomlpp_shield.h"

namespace lema {
namespace {

using nlohmann::json;

// "spec.toml:12", or "spec" for a node without a line (a spec read from JSON).
std::string where(const std::string& source, const toml::node* n) {
  const unsigned line = n ? n->source().begin.line : 0;
  return line > 0 ? str_printf("%s:%u", source.c_str(), line) : source;
}

// Reads the keys of one table, remembering which were consumed so that the
// rest can be reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string section, std::string source)
      : table_(table), section_(std::move(section)), source_(std::move(source)) {}

  Status get(const char* key, std::string* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (!n->is_string()) return type_error(key, n, "a string");
    *out = n->as_string()->get();
    return Status();
  }
  Status get(const char* key, int64_t* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (!n->is_integer()) return type_error(key, n, "an integer");
    *out = n->as_integer()->get();
    return Status();
  }
  Status get(const char* key, double* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (n->is_integer()) *out = double(n->as_integer()->get());
    else if (n->is_floating_point()) *out = n->as_floating_point()->get();
    else return type_error(key, n, "a number");
    return Status();
  }
  Status get(const char* key, bool* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (!n->is_boolean()) return type_error(key, n, "a boolean");
    *out = n->as_boolean()->get();
    return Status();
  }
  Status get(const char* key, std::vector<std::string>* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (!n->is_array()) return type_error(key, n, "an array of strings");
    out->clear();
    for (const toml::node& item : *n->as_array()) {
      if (!item.is_string()) return type_error(key, &item, "an array of strings");
      out->push_back(item.as_string()->get());
    }
    return Status();
  }
  // A size: "4GiB" or an integer number of bytes.
  Status get_bytes(const char* key, uint64_t* out) {
    const toml::node* n = take(key);
    if (!n) return Status();
    if (n->is_integer() && n->as_integer()->get() >= 0) {
      *out = uint64_t(n->as_integer()->get());
      return Status();
    }
    if (!n->is_string()) return type_error(key, n, "a size such as \"4GiB\"");
    Result<uint64_t> bytes = parse_bytes(n->as_string()->get());
    if (!bytes.ok()) return error(key, n, bytes.status().message());
    *out = *bytes;
    return Status();
  }
  bool has(const char* key) const { return table_ && table_->contains(key); }
  // REQUIRES: key was read; checks `ok`, otherwise reports `what`.
  Status require(const char* key, bool ok, const std::string& what) {
    if (ok) return Status();
    const toml::node* n = table_ ? table_->get(key) : nullptr;
    return error(key, n, what);
  }
  // REQUIRES: key was read; checks `value` against the shared bounds
  // (common/base/bounds.h) of `bound_key` (default: key).
  template <typename T>
  Status bound(const char* key, T value, const char* bound_key = nullptr) {
    Status s = check_bound(bound_key ? bound_key : key, value);
    if (s.ok()) return s;
    return require(key, false, s.message());
  }
  // REQUIRES: key was read; a name or path: no control characters.
  Status name(const char* key, const std::string& value, bool required) {
    Status s = check_name(value, required);
    if (s.ok()) return s;
    return require(key, false, s.message());
  }
  Status check_unknown() const {
    if (!table_) return Status();
    for (const auto& [k, v] : *table_) {
      if (!used_.count(std::string(k.str()))) {
        return Status::invalid_argument(where(source_, &v) + str_printf(": unknown key '%s' in [%s]",
                                                                         std::string(k.str()).c_str(),
                                                                         section_.c_str()));
      }
    }
    return Status();
  }

 private:
  const toml::node* take(const char* key) {
    used_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }
  Status error(const char* key, const toml::node* n, const std::string& what) const {
    return Status::invalid_argument(where(source_, n) +
                                    str_printf(": [%s] %s: %s", section_.c_str(), key, what.c_str()));
  }
  Status type_error(const char* key, const toml::node* n, const char* expected) const {
    return error(key, n, std::string("expected ") + expected);
  }

  const toml::table* table_;
  std::string section_;
  std::string source_;
  std::set<std::string> used_;
};

bool one_of(const std::string& v, std::initializer_list<const char*> options) {
  for (const char* o : options) {
    if (v == o) return true;
  }
  return false;
}

// JSON -> TOML, so that a spec from JSON goes through the very checks of a
// spec from TOML. false: a value TOML cannot hold (null, an unsigned number
// beyond int64).
bool table_from_json(const json& object, toml::table* out);
bool array_from_json(const json& array, toml::array* out);

// Calls put(x) with `value` as the TOML type that holds it.
template <typename Put>
bool put_json(const json& value, Put put) {
  switch (value.type()) {
    case json::value_t::string: put(value.get<std::string>()); return true;
    case json::value_t::boolean: put(value.get<bool>()); return true;
    case json::value_t::number_integer: put(value.get<int64_t>()); return true;
    case json::value_t::number_unsigned:
      if (value.get<uint64_t>() > uint64_t(INT64_MAX)) return false;
      put(int64_t(value.get<uint64_t>()));
      return true;
    case json::value_t::number_float: put(value.get<double>()); return true;
    case json::value_t::array: {
      toml::array array;
      if (!array_from_json(value, &array)) return false;
      put(std::move(array));
      return true;
    }
    case json::value_t::object: {
      toml::table table;
      if (!table_from_json(value, &table)) return false;
      put(std::move(table));
      return true;
    }
    default: return false;
  }
}

bool table_from_json(const json& object, toml::table* out) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string& key = it.key();
    if (!put_json(it.value(), [&](auto&& x) { out->insert(key, std::forward<decltype(x)>(x)); })) return false;
  }
  return true;
}

bool array_from_json(const json& array, toml::array* out) {
  for (const json& value : array) {
    if (!put_json(value, [&](auto&& x) { out->push_back(std::forward<decltype(x)>(x)); })) return false;
  }
  return true;
}

// The inverse of shield_from_tomlpp on every string value of the table.
void unshield_strings(toml::node* n) {
  if (toml::value<std::string>* str = n->as_string()) {
    str->get() = unshield(str->get());
  } else if (toml::table* table = n->as_table()) {
    for (auto&& [key, value] : *table) unshield_strings(&value);
  } else if (toml::array* array = n->as_array()) {
    for (toml::node& value : *array) unshield_strings(&value);
  }
}

// Every section, key and range check of a spec, on a parsed TOML table
// (from TOML text, or from JSON through toml_from_json).
Result<JobSpec> spec_from_table(const toml::table& root, const std::string& source) {
  static const char* kSections[] = {"job", "model", "data", "train", "eval", "merge", "export", "resources", "retry"};
  for (const auto& [k, v] : root) {
    std::string name(k.str());
    bool known = false;
    for (const char* s : kSections) known = known || name == s;
    if (!known) {
      return Status::invalid_argument(where(source, &v) + ": unknown section or key '" + name + "'");
    }
    if (!v.is_table()) {
      return Status::invalid_argument(where(source, &v) + ": '" + name + "' must be a table ([" + name + "])");
    }
  }
  auto reader = [&](const char* s) { return TableReader(root[s].as_table(), s, source); };
  JobSpec spec;

  TableReader job = reader("job");
  LEMA_RETURN_IF_ERROR(job.get("name", &spec.job.name));
  LEMA_RETURN_IF_ERROR(job.get("priority", &spec.job.priority));
  LEMA_RETURN_IF_ERROR(job.get("work_dir", &spec.job.work_dir));
  LEMA_RETURN_IF_ERROR(job.get("max_attempts", &spec.job.max_attempts));
  LEMA_RETURN_IF_ERROR(job.name("name", spec.job.name, /*required=*/true));
  LEMA_RETURN_IF_ERROR(job.name("work_dir", spec.job.work_dir, false));
  LEMA_RETURN_IF_ERROR(job.bound("priority", spec.job.priority));
  LEMA_RETURN_IF_ERROR(job.bound("max_attempts", spec.job.max_attempts));
  LEMA_RETURN_IF_ERROR(job.check_unknown());
  if (spec.job.work_dir.empty()) spec.job.work_dir = "runs/" + spec.job.name;

  TableReader model = reader("model");
  LEMA_RETURN_IF_ERROR(model.get("path", &spec.model.path));
  LEMA_RETURN_IF_ERROR(model.get("tokenizer", &spec.model.tokenizer));
  LEMA_RETURN_IF_ERROR(model.name("path", spec.model.path, false));
  LEMA_RETURN_IF_ERROR(model.name("tokenizer", spec.model.tokenizer, false));
  LEMA_RETURN_IF_ERROR(model.check_unknown());
  if (spec.model.path.empty()) {
    return Status::invalid_argument(source + ": [model] path is required (HF model dir or layer file)");
  }

  TableReader data = reader("data");
  LEMA_RETURN_IF_ERROR(data.get("builder", &spec.data.builder));
  LEMA_RETURN_IF_ERROR(data.get("jsonl", &spec.data.jsonl));
  // `path` names the user's file as the other sections name theirs; `jsonl` is its older name.
  std::string user_path;
  LEMA_RETURN_IF_ERROR(data.get("path", &user_path));
  if (data.has("path") && data.has("jsonl")) {
    LEMA_RETURN_IF_ERROR(data.require("path", false, "give either path or jsonl (the same key), not both"));
  }
  if (data.has("path")) spec.data.jsonl = user_path;
  LEMA_RETURN_IF_ERROR(data.get("format", &spec.data.format));
  LEMA_RETURN_IF_ERROR(data.get("skip_bad", &spec.data.skip_bad));
  LEMA_RETURN_IF_ERROR(data.get("examples", &spec.data.examples));
  LEMA_RETURN_IF_ERROR(data.get("seed", &spec.data.seed));
  LEMA_RETURN_IF_ERROR(data.get("eval_fraction", &spec.data.eval_fraction));
  if ((data.has("jsonl") || data.has("path")) && data.has("builder")) {
    LEMA_RETURN_IF_ERROR(data.require(data.has("path") ? "path" : "jsonl", false,
                                      "give either builder or jsonl (your own data file, also named path), not both"));
  }
  bool known_format = false;
  std::string known_formats;
  for (const char* name : kDataFormatNames) {
    known_format = known_format || spec.data.format == name;
    known_formats += (known_formats.empty() ? "" : ", ") + std::string(name);
  }
  LEMA_RETURN_IF_ERROR(data.require("format", known_format, "unknown format (known: " + known_formats + ")"));
  LEMA_RETURN_IF_ERROR(data.require("format", spec.data.format == "auto" || !spec.data.jsonl.empty(),
                                    "applies to your own data file ([data] path): the builder's format is fixed"));
  if (!spec.data.jsonl.empty()) spec.data.builder.clear();
  LEMA_RETURN_IF_ERROR(data.require("builder", spec.data.builder.empty() || spec.data.builder == "lema-reply",
                                    "unknown builder (known: lema-reply)"));
  LEMA_RETURN_IF_ERROR(data.name("jsonl", spec.data.jsonl, false));
  LEMA_RETURN_IF_ERROR(data.bound("examples", spec.data.examples));
  LEMA_RETURN_IF_ERROR(data.bound("eval_fraction", spec.data.eval_fraction));
  LEMA_RETURN_IF_ERROR(data.check_unknown());

  TableReader train = reader("train");
  auto& t = spec.train;
  LEMA_RETURN_IF_ERROR(train.get("seed", &t.seed));
  LEMA_RETURN_IF_ERROR(train.get("steps", &t.steps));
  LEMA_RETURN_IF_ERROR(train.get("epochs", &t.epochs));
  LEMA_RETURN_IF_ERROR(train.get("lr", &t.lr));
  LEMA_RETURN_IF_ERROR(train.get("schedule", &t.schedule));
  LEMA_RETURN_IF_ERROR(train.get("warmup", &t.warmup));
  LEMA_RETURN_IF_ERROR(train.get("batch", &t.batch));
  LEMA_RETURN_IF_ERROR(train.get("micro_batch", &t.micro_batch));
  LEMA_RETURN_IF_ERROR(train.get("seq_len", &t.seq_len));
  LEMA_RETURN_IF_ERROR(train.get("packing", &t.packing));
  LEMA_RETURN_IF_ERROR(train.get("lora_r", &t.lora_r));
  LEMA_RETURN_IF_ERROR(train.get("lora_alpha", &t.lora_alpha));
  LEMA_RETURN_IF_ERROR(train.get("lora_dropout", &t.lora_dropout));
  LEMA_RETURN_IF_ERROR(train.get("targets", &t.targets));
  LEMA_RETURN_IF_ERROR(train.get("dtype", &t.dtype));
  LEMA_RETURN_IF_ERROR(train.get("device", &t.device));
  LEMA_RETURN_IF_ERROR(train.get("checkpoint_every", &t.checkpoint_every));
  LEMA_RETURN_IF_ERROR(train.get_bytes("vram", &t.vram_bytes));
  LEMA_RETURN_IF_ERROR(train.get_bytes("ram", &t.ram_bytes));
  LEMA_RETURN_IF_ERROR(train.bound("steps", t.steps));
  LEMA_RETURN_IF_ERROR(train.bound("epochs", t.epochs));
  LEMA_RETURN_IF_ERROR(train.bound("lr", t.lr));
  LEMA_RETURN_IF_ERROR(train.require("schedule", one_of(t.schedule, {"constant", "linear", "cosine"}),
                                     "must be constant, linear or cosine"));
  LEMA_RETURN_IF_ERROR(train.bound("warmup", t.warmup));
  LEMA_RETURN_IF_ERROR(train.bound("batch", t.batch));
  LEMA_RETURN_IF_ERROR(train.bound("micro_batch", t.micro_batch));
  LEMA_RETURN_IF_ERROR(train.bound("seq_len", t.seq_len));
  // 0: the memory plan picks the split (with budgets), else the whole batch.
  if (Status s = check_batch_shape(t.batch, t.micro_batch, t.seq_len); !s.ok()) {
    return train.require("batch", false, s.message());
  }
  LEMA_RETURN_IF_ERROR(train.bound("lora_r", t.lora_r));
  LEMA_RETURN_IF_ERROR(train.bound("lora_alpha", t.lora_alpha));
  LEMA_RETURN_IF_ERROR(train.bound("lora_dropout", t.lora_dropout));
  LEMA_RETURN_IF_ERROR(train.bound("vram", t.vram_bytes));
  LEMA_RETURN_IF_ERROR(train.bound("ram", t.ram_bytes));
  for (const std::string& target : t.targets) {
    LEMA_RETURN_IF_ERROR(train.require(
        "targets",
        one_of(target, {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj",
                        "gate_up_proj"}),
        "unknown target '" + target +
            "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; Phi-3: qkv_proj, o_proj, gate_up_proj, "
            "down_proj)"));
  }
  LEMA_RETURN_IF_ERROR(train.require("targets", !t.targets.empty(), "must not be empty"));
  LEMA_RETURN_IF_ERROR(train.require("dtype", one_of(t.dtype, {"auto", "fp32", "bf16", "fp16"}),
                                     "must be auto, fp32, bf16 or fp16"));
  LEMA_RETURN_IF_ERROR(train.require("device", one_of(t.device, {"auto", "cpu", "cuda"}), "must be auto, cpu or cuda"));
  LEMA_RETURN_IF_ERROR(train.bound("checkpoint_every", t.checkpoint_every));
  LEMA_RETURN_IF_ERROR(train.check_unknown());

  TableReader eval = reader("eval");
  LEMA_RETURN_IF_ERROR(eval.get("enabled", &spec.eval.enabled));
  LEMA_RETURN_IF_ERROR(eval.get("questions", &spec.eval.questions));
  LEMA_RETURN_IF_ERROR(eval.get("max_new_tokens", &spec.eval.max_new_tokens));
  LEMA_RETURN_IF_ERROR(eval.bound("questions", spec.eval.questions));
  LEMA_RETURN_IF_ERROR(eval.bound("max_new_tokens", spec.eval.max_new_tokens));
  LEMA_RETURN_IF_ERROR(eval.check_unknown());

  TableReader merge = reader("merge");
  LEMA_RETURN_IF_ERROR(merge.get("enabled", &spec.merge.enabled));
  LEMA_RETURN_IF_ERROR(merge.get("dtype", &spec.merge.dtype));
  LEMA_RETURN_IF_ERROR(merge.get_bytes("shard_size", &spec.merge.shard_size_bytes));
  LEMA_RETURN_IF_ERROR(merge.require("dtype", one_of(spec.merge.dtype, {"fp32", "bf16", "fp16"}),
                                     "must be fp32, bf16 or fp16"));
  LEMA_RETURN_IF_ERROR(merge.bound("shard_size", spec.merge.shard_size_bytes));
  LEMA_RETURN_IF_ERROR(merge.check_unknown());

  TableReader exp = reader("export");
  LEMA_RETURN_IF_ERROR(exp.get("gguf", &spec.export_.gguf));
  // The types engine/gguf_export.h builds (gguf_arch.h's parse_gguf_file_type;
  // tests/worker/stage_options_test.cpp keeps the two lists equal).
  LEMA_RETURN_IF_ERROR(exp.require("gguf", spec.export_.gguf.empty() ||
                                               one_of(spec.export_.gguf, {"f32", "f16", "bf16", "q8_0", "q4_0"}),
                                   "'" + spec.export_.gguf + "' is not built (known: f32, f16, bf16, q8_0, q4_0)"));
  LEMA_RETURN_IF_ERROR(exp.require("gguf", spec.export_.gguf.empty() || spec.merge.enabled,
                                   "needs [merge] enabled = true (the export reads the merged model)"));
  LEMA_RETURN_IF_ERROR(exp.check_unknown());

  TableReader retry = reader("retry");
  LEMA_RETURN_IF_ERROR(retry.get("max_crashes", &spec.retry.max_crashes));
  LEMA_RETURN_IF_ERROR(retry.bound("max_crashes", spec.retry.max_crashes));
  LEMA_RETURN_IF_ERROR(retry.check_unknown());

  TableReader res = reader("resources");
  LEMA_RETURN_IF_ERROR(res.get_bytes("gpu_memory", &spec.resources.gpu_memory_bytes));
  LEMA_RETURN_IF_ERROR(res.get("cpu_ok", &spec.resources.cpu_ok));
  LEMA_RETURN_IF_ERROR(res.bound("gpu_memory", spec.resources.gpu_memory_bytes));
  LEMA_RETURN_IF_ERROR(res.check_unknown());
  return spec;
}

}  // namespace

Result<JobSpec> JobSpec::parse(const std::string& toml_text, const std::string& source) {
  // toml++ never sees the characters its whitespace table mis-handles
  // (common/protocol/tomlpp_shield.h); what it gives back is moved back.
  LEMA_ASSIGN_OR_RETURN(std::string shielded, shield_from_tomlpp(toml_text, source));
  toml::table root;
  try {
    root = toml::parse(shielded, source);
  } catch (const toml::parse_error& e) {
    return Status::invalid_argument(str_printf("%s:%u: %s", source.c_str(), e.source().begin.line,
                                               unshield(std::string(e.description())).c_str()));
  }
  unshield_strings(&root);
  Result<JobSpec> spec = spec_from_table(root, source);
  if (!spec.ok() && spec.status().code() == Status::Code::kInvalidArgument) {
    return Status::invalid_argument(unshield(spec.status().message()));  // keys named in errors
  }
  return spec;
}

Result<JobSpec> JobSpec::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) return Status::invalid_argument(source + ": the job spec is not a JSON object");
  json in = j;
  // to_json writes both data.builder and data.jsonl, the unused one empty;
  // the TOML form takes only one of them.
  if (in.contains("data") && in["data"].is_object()) {
    json& d = in["data"];
    for (const char* key : {"builder", "jsonl"}) {
      if (d.contains(key) && d[key].is_string() && d[key].get<std::string>().empty()) d.erase(std::string(key));
    }
  }
  toml::table root;
  if (!table_from_json(in, &root)) {
    return Status::invalid_argument(source + ": the job spec holds a null or an out-of-range number");
  }
  return spec_from_table(root, source);
}

json JobSpec::to_json() const {
  json j;
  j["job"] = {{"name", job.name}, {"priority", job.priority}, {"work_dir", job.work_dir},
              {"max_attempts", job.max_attempts}};
  j["model"] = {{"path", model.path}, {"tokenizer", model.tokenizer}};
  j["data"] = {{"builder", data.builder}, {"jsonl", data.jsonl}, {"examples", data.examples},
               {"seed", data.seed}, {"eval_fraction", data.eval_fraction}, {"format", data.format},
               {"skip_bad", data.skip_bad}};
  j["train"] = {{"seed", train.seed}, {"steps", train.steps}, {"epochs", train.epochs}, {"lr", train.lr},
                {"schedule", train.schedule}, {"warmup", train.warmup}, {"batch", train.batch},
                {"micro_batch", train.micro_batch}, {"seq_len", train.seq_len}, {"packing", train.packing},
                {"lora_r", train.lora_r},
                {"lora_alpha", train.lora_alpha}, {"lora_dropout", train.lora_dropout},
                {"targets", train.targets}, {"dtype", train.dtype}, {"device", train.device},
                {"checkpoint_every", train.checkpoint_every}, {"vram", train.vram_bytes}, {"ram", train.ram_bytes}};
  j["eval"] = {{"enabled", eval.enabled}, {"questions", eval.questions}, {"max_new_tokens", eval.max_new_tokens}};
  j["merge"] = {{"enabled", merge.enabled}, {"dtype", merge.dtype}, {"shard_size", merge.shard_size_bytes}};
  j["export"] = {{"gguf", export_.gguf}};
  j["resources"] = {{"gpu_memory", resources.gpu_memory_bytes}, {"cpu_ok", resources.cpu_ok}};
  j["retry"] = {{"max_crashes", retry.max_crashes}};
  return j;
}

}  // namespace lema
