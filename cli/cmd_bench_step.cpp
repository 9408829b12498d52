// `lema bench-step --model FILE.lema.safetensors [--vram 4GiB] [--ram 8GiB]
// --batch B --seq-len T --steps N [--device cuda] [--json]`: plans memory,
// streams the model through a LayerStore and times N optimizer steps on
// random tokens (LoRA r=16 on all seven projections); prints the plan and
// one line of step statistics (bench/streaming_bench.py reads the JSON).
#include <chrono>
#include <cstdio>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/layer_store.h"
#include "engine/memory_planner.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "engine/torch_types.h"

#ifdef LEMA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace {

struct BenchArgs {
  std::string model, device = "cpu", dtype = "auto";
  uint64_t vram = 0, ram = 0;  // 0: no limit
  int64_t batch = 1, seq_len = 128, steps = 3, micro_batch = 0, lora_r = 16;
  bool json = false, force_disk = false, recompute_all = false, lora_host = false;
};

lema::Status run_bench(const BenchArgs& a) {
  using namespace lema;
  using namespace lema::engine;
  LEMA_ASSIGN_OR_RETURN(at::Device device, parse_device(a.device));
  LEMA_ASSIGN_OR_RETURN(at::ScalarType dtype,
                        lema::engine::parse_dtype(a.dtype == "auto" ? (device.is_cuda() ? "bf16" : "fp32") : a.dtype));
  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerFile> opened, LayerFile::open(a.model, /*map_file=*/false));
  std::shared_ptr<const LayerFile> file(std::move(opened));
  const ModelConfig& config = file->config();
  PlanRequest req;
  req.config = config;
  req.batch = a.batch;
  req.seq_len = a.seq_len;
  req.micro_batch = a.micro_batch;
  req.lora_r = a.lora_r;
  req.dtype_bytes = static_cast<int64_t>(at::elementSize(dtype));
  req.flash_attention = device.is_cuda();
  req.cuda = device.is_cuda();
  req.force_disk = a.force_disk;
  req.lora_placement = a.lora_host ? LoraPlacement::kHost : LoraPlacement::kAuto;
  req.device_memory = plannable_device_memory(device);
  req.vram_budget = a.vram;
  req.ram_budget = a.ram;
  set_stored_layers(req, *file);
  LEMA_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(req));
  std::fprintf(stderr, "%s\n", plan.to_string().c_str());

  LEMA_ASSIGN_OR_RETURN(std::unique_ptr<LayerStore> store, open_planned_store(file, plan, dtype, device));

  try {
    LoraConfig lc;
    lc.r = a.lora_r;
    lc.alpha = 2.0 * static_cast<double>(a.lora_r);
    lc.dropout = 0.05;
    lc.targets = lema::engine::family_lora_targets(config);
    LoraAdapter adapter = LoraAdapter::init(config, lc, 1, at::kFloat, device, plan.lora_on_host);
    AdamW opt = plan.lora_on_host ? AdamW(adapter.parameters(), AdamWOptions(), adapter.host_param_groups(), device)
                                  : AdamW(adapter.parameters(), AdamWOptions());
    at::Generator gen = at::detail::createCPUGenerator(7);
    StepOptions step_options;
    step_options.activations_on_host = plan.activations_on_host;
    step_options.kept_graph_layers = a.recompute_all ? 0 : plan.kept_graph_layers;
    double timed_s = 0.0;
    int64_t timed_tokens = 0;
    LayerStoreStats total;
    for (int64_t step = 0; step < a.steps; ++step) {
      std::vector<MicroBatch> mbs;
      for (int64_t m = 0; m < plan.n_micro; ++m) {
        MicroBatch mb;
        mb.input_ids = at::randint(0, config.vocab_size, {plan.micro_batch, a.seq_len}, gen, at::TensorOptions().dtype(at::kLong));
        mb.labels = mb.input_ids.clone();
        mbs.push_back(mb);
      }
      const auto t0 = std::chrono::steady_clock::now();
      adapter.zero_grad();
      LEMA_ASSIGN_OR_RETURN(StepLoss loss, layerwise_forward_backward(*store, adapter, mbs, 100 + step, step_options));
      const double norm = clip_grad_norm(adapter.parameters(), 1.0, adapter.grad_norms());  // .item(): waits for the device
      opt.step(1e-4);
      (void)adapter.parameters()[0].sum().item<double>();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      LayerStoreStats st = store->take_stats();
      if (step > 0 || a.steps == 1) {  // the first step warms kernels and caches
        timed_s += dt;
        timed_tokens += loss.n_input_tokens;
        total.bytes_h2d += st.bytes_h2d;
        total.copy_s += st.copy_s;
        total.stall_s += st.stall_s;
        total.device_loads += st.device_loads;
      }
      std::fprintf(stderr, "step %lld: loss %.4f, grad norm %.3f, %.2f s, %lld layer loads, %.1f GB/s, %.0f%% hidden\n",
                   static_cast<long long>(step + 1), loss.loss, norm, dt, static_cast<long long>(st.device_loads),
                   st.h2d_gb_per_s(), 100.0 * st.hidden_fraction());
    }
    double peak_vram = 0.0, used_vram = 0.0;
#ifdef LEMA_WITH_CUDA
    if (device.is_cuda()) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
      peak_vram = static_cast<double>(stats.reserved_bytes[0].peak) / (1ull << 30);
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) used_vram = static_cast<double>(total_b - free_b) / (1ull << 30);
    }
#endif
    const double tps = timed_s > 0 ? static_cast<double>(timed_tokens) / timed_s : 0.0;
    const double rss = static_cast<double>(peak_rss_bytes()) / (1ull << 30);
    std::printf("%s{\"tokens_per_s\": %.1f, \"peak_vram_gib\": %.3f, \"device_used_gib\": %.3f, \"host_rss_gib\": %.3f, "
                "\"h2d_gb_s\": %.2f, \"copy_hidden\": %.3f, \"layer_loads\": %lld, \"mode\": \"%s\", \"resident\": %lld, "
                "\"slots\": %lld, \"micro_batch\": %lld, \"kept_graphs\": %lld, \"vocab_chunk\": %lld, \"lora_on_host\": %s}\n",
                a.json ? "" : "stats: ", tps, peak_vram, used_vram, rss, total.h2d_gb_per_s(), total.hidden_fraction(),
                static_cast<long long>(total.device_loads), plan_mode_name(plan.mode),
                static_cast<long long>(plan.resident_layers), static_cast<long long>(plan.device_slots),
                static_cast<long long>(plan.micro_batch), static_cast<long long>(step_options.kept_graph_layers),
                static_cast<long long>(plan.vocab_chunk), plan.lora_on_host ? "true" : "false");
  } catch (const std::exception& e) {
    return status_from_exception(e, "bench-step");
  }
  return Status();
}

void setup_bench_step(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench-step", "Time training steps of a layer file streamed within memory budgets");
  cmd->add_option("--model", args->model, "Layer file (*.lema.safetensors)")->required();
  lema::cli::add_bytes_option(cmd, "--vram", args->vram, "Device memory budget, e.g. 4GiB (default: no limit)");
  lema::cli::add_bytes_option(cmd, "--ram", args->ram, "Host memory budget for weights, e.g. 8GiB (default: no limit)");
  cmd->add_option("--batch", args->batch, "Sequences per step")->check(CLI::Range(1, 4096));
  cmd->add_option("--micro-batch", args->micro_batch, "Sequences per micro-batch (default: planned)");
  cmd->add_option("--seq-len", args->seq_len, "Tokens per sequence")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--steps", args->steps, "Optimizer steps (the first is not timed)")->check(CLI::Range(1, 100000));
  cmd->add_option("--lora-r", args->lora_r, "LoRA rank")->check(CLI::Range(1, 4096));
  cmd->add_option("--device", args->device, "cpu, cuda or cuda:N");
  cmd->add_flag("--recompute-all", args->recompute_all, "Recompute every layer in the backward (keep no forward graph)");
  cmd->add_option("--dtype", args->dtype, "auto | fp32 | bf16 | fp16");
  cmd->add_flag("--lora-host", args->lora_host,
                "LoRA state in pinned host memory even when the device would hold it (the plan says where it lives)");
  cmd->add_flag("--disk", args->force_disk, "Stream from the file every pass even when RAM would hold the model");
  cmd->add_flag("--json", args->json, "Print the statistics as one JSON line");
  cmd->callback([args] { lema::cli::finish(run_bench(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_bench_step);
