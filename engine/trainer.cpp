#include "engine/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <thread>

#include "common/base/attempt_publish.h"
#include "common/base/file_util.h"
#include "common/formats/hf_model.h"
#include "common/base/log.h"
#include "common/formats/model_config.h"
#include "engine/checkpoint.h"
#include "common/base/bounds.h"
#include "engine/data_loader.h"
#include "engine/full_model.h"
#include "engine/layer_store.h"
#include "engine/memory_planner.h"
#include "engine/model_loader.h"
#include "engine/optimizer.h"
#include "engine/run_metrics.h"
#include "engine/train_step.h"
#include "engine/torch_types.h"

namespace lema::engine {

Status validate_train_options(const TrainOptions& o) {
  if (o.model.empty()) return Status::invalid_argument("--model is required");
  if (o.data.empty()) return Status::invalid_argument("--data is required");
  if (o.out.empty()) return Status::invalid_argument("--out is required");
  if (Result<DataFormat> f = parse_data_format(o.format); !f.ok()) return f.status().with_context("--format");
  // The bounds are the job spec's (common/base/bounds.h): `lema train` and a
  // job refuse the same values, and none can overflow a shape.
  const std::pair<const char*, int64_t> ints[] = {
      {"steps", o.steps}, {"stop_after", o.stop_after}, {"warmup", o.warmup}, {"lora_r", o.lora_r},
      {"checkpoint_every", o.checkpoint_every}, {"threads", o.threads}, {"loss_chunk_tokens", o.loss_chunk_tokens}};
  for (const auto& [key, value] : ints) LEMA_RETURN_IF_ERROR(check_bound(key, value).with_context(key));
  const std::pair<const char*, double> reals[] = {
      {"epochs", o.epochs}, {"lr", o.lr}, {"lora_alpha", o.lora_alpha}, {"lora_dropout", o.lora_dropout},
      {"weight_decay", o.weight_decay}, {"max_grad_norm", o.max_grad_norm}};
  for (const auto& [key, value] : reals) LEMA_RETURN_IF_ERROR(check_bound(key, value).with_context(key));
  LEMA_RETURN_IF_ERROR(check_bound("vram", o.vram_budget).with_context("vram"));
  LEMA_RETURN_IF_ERROR(check_bound("ram", o.ram_budget).with_context("ram"));
  LEMA_RETURN_IF_ERROR(check_batch_shape(o.batch, o.micro_batch, o.seq_len));
  LEMA_RETURN_IF_ERROR(parse_lora_target_names(o.targets).status());  // the family is checked in setup
  LEMA_RETURN_IF_ERROR(parse_lr_schedule(o.schedule).status());
  if (o.dtype != "auto") LEMA_RETURN_IF_ERROR(parse_dtype(o.dtype).status());
  return Status();
}

namespace {

uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// Everything that changes the numbers a run computes: a checkpoint only
// resumes a run with the same hash. Device, threads and checkpoint cadence
// are left out (a run may move to another GPU).
std::string training_config_hash(const TrainOptions& o, const ModelConfig& model, const std::string& data_bytes,
                                 int64_t total_steps, at::ScalarType dtype) {
  nlohmann::json j;
  j["model"] = model_config_to_json(model);
  j["data_fnv1a"] = fnv1a(data_bytes);
  j["seed"] = o.seed;
  j["steps"] = total_steps;
  j["lr"] = o.lr;
  j["schedule"] = o.schedule;
  j["warmup"] = o.warmup;
  j["batch"] = o.batch;
  j["micro_batch"] = o.micro_batch;
  j["seq_len"] = o.seq_len;
  if (o.packing) j["packing"] = true;  // absent when off: the hashes of unpacked runs stay what they were
  if (o.full) j["full"] = true;
  else j["lora"] = {o.lora_r, o.lora_alpha, o.lora_dropout, o.use_rslora, o.targets};
  j["dtype"] = dtype_name(dtype);
  j["adamw"] = {o.weight_decay, o.max_grad_norm};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a(j.dump())));
  return buf;
}

class Trainer {
 public:
  Trainer(const TrainOptions& options, TrainObserver* observer) : o_(options), observer_(observer) {}
  Status run();

 private:
  Status setup();
  Status choose_device();
  Status open_model();
  Status load_data(const ModelConfig& model, std::string* data_bytes, std::string* summary);
  Status make_trainable(const ModelConfig& model);
  Status resume();
  void log_configuration(const ModelConfig& model, const std::string& data_summary) const;
  PlanRequest plan_request(const ModelConfig& config) const;
  Status open_streaming_source(int64_t* micro_batch);
  Result<StepReport> step();
  Status claim_out();
  Status save(int64_t step, double loss);
  Status write_output();
  // What the optimizer trains: the LoRA masters, or every weight with --full.
  std::vector<at::Tensor> trained_parameters() const;
  CheckpointWeights checkpoint_weights();

  TrainOptions o_;
  TrainObserver* observer_;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  std::unique_ptr<LayerSource> source_;
  std::unique_ptr<DataLoader> data_;
  std::unique_ptr<LoraAdapter> adapter_;  // LoRA mode
  std::unique_ptr<FullModel> full_;       // --full
  std::string tokenizer_path_;
  bool activations_on_host_ = false;  // the memory plan's choices
  bool lora_on_host_ = false;
  int64_t kept_graph_layers_ = 0;
  std::unique_ptr<AdamW> optimizer_;
  LrSchedule schedule_;
  std::string config_hash_;
  int64_t step_ = 0;  // optimizer steps done
  int64_t resume_attempt_ = 0;  // the ATTEMPT of the checkpoint resumed from (0: none)
  // Every write into o_.out goes through it (set by claim_out).
  std::optional<AttemptFence> fence_;
  int64_t total_steps_ = 0;
  int64_t n_examples_ = 0;
};

// Setup, in the order each part needs the one before: where to compute,
// the model (whose config sizes the rest), the data, what is trained, a
// resume, then the effective configuration printed once.
Status Trainer::setup() {
  LEMA_RETURN_IF_ERROR(validate_train_options(o_));
  if ((o_.vram_budget > 0 || o_.ram_budget > 0) && o_.full) {
    return Status::invalid_argument("--full trains the whole model in memory; --vram/--ram apply to LoRA training");
  }
  if (o_.force_lora_on_host && o_.full) {
    return Status::invalid_argument("--lora-host places LoRA state; --full trains every weight in memory");
  }
  LEMA_RETURN_IF_ERROR(choose_device());
  LEMA_RETURN_IF_ERROR(open_model());
  const ModelConfig model = source_->config();
  std::string data_bytes;
  std::string data_summary;
  LEMA_RETURN_IF_ERROR(load_data(model, &data_bytes, &data_summary));
  LEMA_RETURN_IF_ERROR(make_trainable(model));
  config_hash_ = training_config_hash(o_, model, data_bytes, total_steps_, dtype_);
  if (!o_.resume.empty()) LEMA_RETURN_IF_ERROR(resume());
  LEMA_RETURN_IF_ERROR(make_dirs(o_.out));
  log_configuration(model, data_summary);
  return Status();
}

Status Trainer::choose_device() {
  LEMA_ASSIGN_OR_RETURN(device_, parse_device(o_.device));
  if (o_.dtype == "auto") {
    dtype_ = device_.is_cuda() ? at::kBFloat16 : at::kFloat;
  } else {
    LEMA_ASSIGN_OR_RETURN(dtype_, parse_dtype(o_.dtype));
  }
  if (o_.threads > 0) at::set_num_threads(static_cast<int>(o_.threads));
  else if (!std::getenv("OMP_NUM_THREADS")) at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return Status();
}

// Under a budget the planner picks the ring and the micro-batch; without
// one every layer is resident and the plan only sizes the kept graphs.
Status Trainer::open_model() {
  int64_t planned_micro_batch = 0;
  if (o_.vram_budget > 0 || o_.ram_budget > 0) {
    LEMA_RETURN_IF_ERROR(open_streaming_source(&planned_micro_batch));
  } else {
    LEMA_ASSIGN_OR_RETURN(source_, open_model_source(o_.model, dtype_, device_));
    LEMA_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(plan_request(source_->config())));
    kept_graph_layers_ = plan.kept_graph_layers;
    lora_on_host_ = plan.lora_on_host;
    if (lora_on_host_) log_info("train: LoRA state in host memory, each layer's on the device with the layer");
  }
  if (o_.micro_batch == 0) o_.micro_batch = planned_micro_batch > 0 ? planned_micro_batch : o_.batch;
  return Status();
}

Status Trainer::load_data(const ModelConfig& model, std::string* data_bytes, std::string* summary) {
  LEMA_ASSIGN_OR_RETURN(*data_bytes, read_file(o_.data));
  tokenizer_path_ = o_.tokenizer;
  if (tokenizer_path_.empty()) tokenizer_path_ = is_directory(o_.model) ? o_.model : path_dirname(o_.model);
  LEMA_ASSIGN_OR_RETURN(std::vector<TokenizedExample> examples,
                        load_training_data(o_.data, tokenizer_path_, o_.seq_len,
                                           TrainDataOptions{parse_data_format(o_.format).value(), o_.skip_bad},
                                           summary));
  for (size_t i = 0; i < examples.size(); ++i) {
    for (int32_t id : examples[i].input_ids) {
      if (id >= model.vocab_size) {
        return Status::invalid_argument(o_.data + ": example " + std::to_string(i + 1) + " holds token id " +
                                        std::to_string(id) + ", the model's vocabulary has " +
                                        std::to_string(model.vocab_size));
      }
    }
  }
  n_examples_ = static_cast<int64_t>(examples.size());
  const int32_t pad_id = model.pad_token_id >= 0 ? static_cast<int32_t>(model.pad_token_id) : 0;
  data_ = std::make_unique<DataLoader>(std::move(examples), o_.seed, o_.batch, o_.micro_batch, o_.seq_len, pad_id,
                                       o_.packing);
  if (data_->packed()) {
    const PackStats& p = data_->pack_stats();
    *summary += str_printf("; packed into %lld rows of %lld (%.1f%% padding)", static_cast<long long>(p.rows),
                           static_cast<long long>(o_.seq_len),
                           100.0 * (1.0 - static_cast<double>(p.tokens) / static_cast<double>(p.rows * o_.seq_len)));
  }
  // An epoch is every row once: the examples, or the packed rows.
  total_steps_ = o_.steps > 0 ? o_.steps
                              : static_cast<int64_t>(std::ceil(o_.epochs * static_cast<double>(data_->size()) /
                                                               static_cast<double>(o_.batch)));
  return Status();
}

// The LoRA adapter (or, with --full, fp32 masters of every weight), the
// optimizer over it and the learning-rate schedule.
Status Trainer::make_trainable(const ModelConfig& model) {
  const at::ScalarType master = dtype_ == at::kDouble ? at::kDouble : at::kFloat;
  if (o_.full) {
    if (source_->quantized()) {
      return Status::invalid_argument(o_.model + ": a quantized base (lema convert --quant) trains with LoRA only; "
                                      "for --full convert the model without --quant");
    }
    LEMA_ASSIGN_OR_RETURN(FullModel full, FullModel::from_source(*source_, master));
    full_ = std::make_unique<FullModel>(std::move(full));
    source_.reset();  // the masters are the model now
  } else {
    LoraConfig lora;
    lora.r = o_.lora_r;
    lora.alpha = o_.lora_alpha;
    lora.dropout = o_.lora_dropout;
    lora.use_rslora = o_.use_rslora;
    LEMA_ASSIGN_OR_RETURN(lora.targets, parse_lora_targets(o_.targets, model));
    adapter_ = std::make_unique<LoraAdapter>(LoraAdapter::init(model, lora, o_.seed, master, device_, lora_on_host_));
  }
  AdamWOptions adamw;
  adamw.weight_decay = o_.weight_decay;
  optimizer_ = lora_on_host_ ? std::make_unique<AdamW>(trained_parameters(), adamw, adapter_->host_param_groups(), device_)
                             : std::make_unique<AdamW>(trained_parameters(), adamw);
  LEMA_ASSIGN_OR_RETURN(schedule_.kind, parse_lr_schedule(o_.schedule));
  schedule_.lr = o_.lr;
  schedule_.warmup_steps = o_.warmup;
  schedule_.total_steps = total_steps_;
  return Status();
}

Status Trainer::resume() {
  LEMA_ASSIGN_OR_RETURN(std::string dir, find_latest_checkpoint(o_.resume));
  LEMA_ASSIGN_OR_RETURN(CheckpointState state, load_checkpoint(dir, config_hash_, checkpoint_weights(), *optimizer_));
  step_ = state.step;
  LEMA_ASSIGN_OR_RETURN(resume_attempt_, published_attempt(dir));
  data_->set_cursor(state.cursor);
  log_info("resumed from %s (step %lld, loss %.4f)", dir.c_str(), static_cast<long long>(step_), state.loss);
  return Status();
}

// The effective configuration, once, as a table.
void Trainer::log_configuration(const ModelConfig& model, const std::string& data_summary) const {
  log_info("train: model %s (%lld layers, hidden %lld, vocab %lld), %s on %s", o_.model.c_str(),
           static_cast<long long>(model.n_layers), static_cast<long long>(model.hidden_size),
           static_cast<long long>(model.vocab_size), dtype_name(dtype_), device_.str().c_str());
  log_info("train: data %s: %s", o_.data.c_str(), data_summary.c_str());
  log_info("train: %lld examples, steps %lld, batch %lld %s in micro-batches of %lld, seq_len %lld",
           static_cast<long long>(n_examples_), static_cast<long long>(total_steps_),
           static_cast<long long>(o_.batch), o_.packing ? "packed rows" : "examples",
           static_cast<long long>(o_.micro_batch), static_cast<long long>(o_.seq_len));
  if (full_) {
    log_info("train: lr %g %s warmup %lld, full-parameter training (%lld parameters), seed %llu, hash %s", o_.lr,
             o_.schedule.c_str(), static_cast<long long>(o_.warmup), static_cast<long long>(full_->parameter_count()),
             static_cast<unsigned long long>(o_.seed), config_hash_.c_str());
  } else {
    log_info("train: lr %g %s warmup %lld, LoRA r %lld alpha %g dropout %g on %s (%lld parameters), seed %llu, hash %s",
             o_.lr, o_.schedule.c_str(), static_cast<long long>(o_.warmup), static_cast<long long>(o_.lora_r),
             o_.lora_alpha, o_.lora_dropout, lora_targets_to_string(adapter_->config().targets).c_str(),
             static_cast<long long>(adapter_->parameter_count()), static_cast<unsigned long long>(o_.seed),
             config_hash_.c_str());
  }
}

PlanRequest Trainer::plan_request(const ModelConfig& config) const {
  PlanRequest req;
  req.config = config;
  req.batch = o_.batch;
  req.seq_len = o_.seq_len;
  req.micro_batch = o_.micro_batch;
  req.lora_r = o_.lora_r;
  const Result<std::vector<LoraTarget>> targets = parse_lora_targets(o_.targets, config);
  req.lora_targets = static_cast<int64_t>((targets.ok() ? targets.value() : family_lora_targets(config)).size());
  req.dtype_bytes = static_cast<int64_t>(at::elementSize(dtype_));
  req.flash_attention = device_.is_cuda();
  req.cuda = device_.is_cuda();
  req.loss_chunk_tokens = o_.loss_chunk_tokens;
  req.vram_budget = o_.vram_budget;
  req.ram_budget = o_.ram_budget;
  req.lora_placement = o_.force_lora_on_host ? LoraPlacement::kHost : LoraPlacement::kAuto;
  req.device_memory = plannable_device_memory(device_);
  return req;
}

// The base model streamed through a LayerStore within the budgets: the plan
// is printed before anything large is allocated; `micro_batch` receives the
// planner's split (used when the user gave none).
Status Trainer::open_streaming_source(int64_t* micro_batch) {
  if (is_directory(o_.model)) {
    return Status::invalid_argument("--vram/--ram stream a layer file; convert " + o_.model +
                                    " first: lema convert " + o_.model + " --out MODEL.lema.safetensors");
  }
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> opened, LayerFile::open(o_.model, /*map_file=*/false));
  std::shared_ptr<const LayerFile> file(std::move(opened));
  PlanRequest request = plan_request(file->config());
  set_stored_layers(request, *file);
  LEMA_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(request));
  log_info("%s", plan.to_string().c_str());
  activations_on_host_ = plan.activations_on_host;
  kept_graph_layers_ = plan.kept_graph_layers;
  lora_on_host_ = plan.lora_on_host;
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerStore> store, open_planned_store(file, plan, dtype_, device_));
  source_ = std::move(store);
  *micro_batch = plan.micro_batch;
  return Status();
}

// One optimizer step: data, layer-wise forward/backward, clip, AdamW.
Result<StepReport> Trainer::step() {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<MicroBatch> micro_batches = data_->next_step();
  StepOptions options;
  options.loss_chunk_tokens = o_.loss_chunk_tokens;
  options.activations_on_host = activations_on_host_;
  options.kept_graph_layers = kept_graph_layers_;
  StepLoss loss;
  if (full_) {
    full_->zero_grad();
    LEMA_ASSIGN_OR_RETURN(loss, full_forward_backward(*full_, micro_batches, dtype_, options));
  } else {
    adapter_->zero_grad();
    // Dropout masks derive from (seed, step): a resumed run draws the same ones.
    LEMA_ASSIGN_OR_RETURN(loss, layerwise_forward_backward(*source_, *adapter_, micro_batches,
                                                           mix_seed(o_.seed, static_cast<uint64_t>(step_)), options));
  }
  StepReport report;
  report.grad_norm = clip_grad_norm(trained_parameters(), o_.max_grad_norm,
                                    adapter_ ? adapter_->grad_norms() : std::vector<at::Tensor>{});
  report.lr = schedule_.lr_at(step_);
  optimizer_->step(report.lr);
  ++step_;
  report.step = step_;
  report.loss = loss.loss;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.tokens_per_s = static_cast<double>(loss.n_input_tokens) / std::max(seconds, 1e-9);
  report.input_tokens = loss.n_input_tokens;
  report.step_s = seconds;
  report.memory_bytes = peak_device_memory(device_);
  return report;
}

Status Trainer::save(int64_t step, double loss) {
  if (observer_) LEMA_RETURN_IF_ERROR(observer_->before_write());
  CheckpointState state;
  state.step = step;
  state.cursor = data_->cursor();
  state.seed = o_.seed;
  state.config_hash = config_hash_;
  state.loss = loss;
  LEMA_ASSIGN_OR_RETURN(std::string dir, save_checkpoint(path_join(o_.out, "checkpoints"), checkpoint_weights(),
                                                         *optimizer_, state, &*fence_));
  log_info("checkpoint %s", dir.c_str());
  if (observer_) LEMA_RETURN_IF_ERROR(observer_->on_checkpoint(step, dir));
  return Status();
}

// A job's attempt claims the run directory before its first write: from
// then on an older attempt of the stage can publish nothing there.
// (`lema train` by hand, attempt 0, gets an unfenced one.)
Status Trainer::claim_out() {
  LEMA_ASSIGN_OR_RETURN(AttemptFence fence, AttemptFence::claim(o_.out, "train", o_.attempt));
  fence_ = std::move(fence);
  return Status();
}

Status Trainer::run() {
  LEMA_RETURN_IF_ERROR(setup());
  if (observer_) LEMA_RETURN_IF_ERROR(observer_->before_write());
  LEMA_RETURN_IF_ERROR(claim_out());
  LEMA_ASSIGN_OR_RETURN(const RunMetrics metrics, RunMetrics::open(path_join(o_.out, "metrics.jsonl"), *fence_,
                                                                    o_.stage_id, step_, resume_attempt_));
  const int64_t last = o_.stop_after > 0 ? std::min(o_.stop_after, total_steps_) : total_steps_;
  double loss = 0.0;
  while (step_ < last) {
    LEMA_ASSIGN_OR_RETURN(StepReport r, step());
    loss = r.loss;
    if (!std::isfinite(r.loss)) return Status::internal(str_printf("step %lld: loss is %f", static_cast<long long>(r.step), r.loss));
    if (!o_.quiet) {
      std::printf("step %lld/%lld  loss %.4f  lr %.3g  grad_norm %.3f  %.0f tok/s  mem %s\n",
                  static_cast<long long>(r.step), static_cast<long long>(total_steps_), r.loss, r.lr, r.grad_norm,
                  r.tokens_per_s, format_bytes(r.memory_bytes).c_str());
      std::fflush(stdout);
    }
    if (observer_) LEMA_RETURN_IF_ERROR(observer_->before_write());
    LEMA_RETURN_IF_ERROR(metrics.append({{"step", r.step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm},
                                         {"tokens_per_s", r.tokens_per_s}, {"tokens", r.input_tokens}, {"step_s", r.step_s},
                                         {"memory_bytes", r.memory_bytes}}));
    if (observer_) {
      Status stop = observer_->on_step(r);
      if (!stop.ok()) {
        if (observer_->checkpoint_before_stop()) LEMA_RETURN_IF_ERROR(save(step_, loss));
        return stop;
      }
    }
    const bool periodic = o_.checkpoint_every > 0 && step_ % o_.checkpoint_every == 0;
    if (periodic || step_ == last) LEMA_RETURN_IF_ERROR(save(step_, loss));
  }
  if (step_ == total_steps_) LEMA_RETURN_IF_ERROR(write_output());
  return Status();
}

std::vector<at::Tensor> Trainer::trained_parameters() const {
  return full_ ? full_->parameters() : adapter_->parameters();
}

CheckpointWeights Trainer::checkpoint_weights() {
  if (!full_) return adapter_checkpoint_weights(*adapter_, o_.model);
  // A full checkpoint is itself a loadable model directory (fp32 masters).
  CheckpointWeights w;
  w.names = full_->parameter_names();
  FullModel* full = full_.get();
  w.save = [full](const std::string& dir) { return full->save_hf(dir, full->parameters()[0].scalar_type()); };
  w.load = [full](const std::string& dir) {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> params = full->parameters();
    return read_tensors(path_join(dir, "model.safetensors"), full->parameter_names(), params);
  };
  return w;
}

// The run's product: <out>/adapter (PEFT) or, with --full, <out>/model (a
// Hugging Face directory in the compute dtype, with the tokenizer files).
Status Trainer::write_output() {
  if (observer_) LEMA_RETURN_IF_ERROR(observer_->before_write());
  // Built under the attempt's temp name, then published whole.
  if (!full_) {
    const std::string adapter_dir = path_join(o_.out, "adapter");
    const std::string tmp = fence_->temp_path(adapter_dir);
    LEMA_RETURN_IF_ERROR(remove_all(tmp));
    LEMA_RETURN_IF_ERROR(save_adapter(tmp, *adapter_, o_.model));
    LEMA_RETURN_IF_ERROR(fence_->publish_dir(tmp, adapter_dir));
    log_info("adapter written to %s", adapter_dir.c_str());
    return Status();
  }
  const std::string model_dir = path_join(o_.out, "model");
  const std::string tmp = fence_->temp_path(model_dir);
  LEMA_RETURN_IF_ERROR(remove_all(tmp));
  LEMA_RETURN_IF_ERROR(full_->save_hf(tmp, dtype_));
  LEMA_RETURN_IF_ERROR(copy_hf_side_files(tokenizer_path_, tmp));
  LEMA_RETURN_IF_ERROR(fence_->publish_dir(tmp, model_dir));
  log_info("model written to %s", model_dir.c_str());
  return Status();
}

}  // namespace

Status run_training(const TrainOptions& options, TrainObserver* observer) {
  try {
    Trainer trainer(options, observer);
    return trainer.run();
  } catch (const std::exception& e) {
    return status_from_exception(e, "training");
  }
}

}  // namespace lema::engine
