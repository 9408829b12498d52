#include "engine/lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <sstream>

namespace lema::engine {

namespace {
const char* const kTargetNames[kNumLoraTargets] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
}  // namespace

const char* lora_target_name(LoraTarget target) { return kTargetNames[static_cast<int>(target)]; }

const char* lora_target_module(LoraTarget target) {
  return static_cast<int>(target) <= static_cast<int>(LoraTarget::kO) ? "self_attn" : "mlp";
}

Result<std::vector<LoraTarget>> parse_lora_targets(const std::string& text) {
  std::vector<LoraTarget> out;
  if (text == "all" || text == "all-linear") {
    for (int i = 0; i < kNumLoraTargets; ++i) out.push_back(static_cast<LoraTarget>(i));
    return out;
  }
  bool seen[kNumLoraTargets] = {};
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) continue;
    int found = -1;
    for (int i = 0; i < kNumLoraTargets; ++i) {
      if (item == kTargetNames[i]) found = i;
    }
    if (found < 0) {
      return Status::invalid_argument("LoRA target '" + item +
                                      "' is not one of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,all");
    }
    seen[found] = true;
  }
  // Canonical order, whatever order the user wrote.
  for (int i = 0; i < kNumLoraTargets; ++i) {
    if (seen[i]) out.push_back(static_cast<LoraTarget>(i));
  }
  if (out.empty()) return Status::invalid_argument("LoRA targets: empty list '" + text + "'");
  return out;
}

std::string lora_targets_to_string(const std::vector<LoraTarget>& targets) {
  std::string s;
  for (LoraTarget t : targets) {
    if (!s.empty()) s += ",";
    s += lora_target_name(t);
  }
  return s;
}

std::pair<int64_t, int64_t> lora_target_shape(const ModelConfig& c, LoraTarget target) {
  const int64_t h = c.hidden_size, q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  switch (target) {
    case LoraTarget::kQ: return {q, h};
    case LoraTarget::kK: return {kv, h};
    case LoraTarget::kV: return {kv, h};
    case LoraTarget::kO: return {h, q};
    case LoraTarget::kGate: return {c.intermediate_size, h};
    case LoraTarget::kUp: return {c.intermediate_size, h};
    case LoraTarget::kDown: return {h, c.intermediate_size};
  }
  return {0, 0};
}

double LoraConfig::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

bool LoraConfig::has_target(LoraTarget target) const {
  for (LoraTarget t : targets) {
    if (t == target) return true;
  }
  return false;
}

uint64_t mix_seed(uint64_t a, uint64_t b) {
  // splitmix64 of a combined with b: cheap, well spread, reproducible.
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const LoraPair& lora, uint64_t dropout_seed) {
  at::Tensor y = at::linear(x, w);  // [..., out]
  if (!lora.defined()) return y;
  double scale = lora.scale;
  at::Tensor xd = x;
  if (lora.dropout > 0.0) {
    // The mask comes from a generator seeded per call (a copy of the device's
    // default one, so Philox on CUDA), so the no-grad forward and the
    // autograd recompute draw the same mask, on the device that uses it.
    // The mask holds 0 and 1 in x's dtype; 1 / keep joins the LoRA scale.
    at::Generator gen = at::globalContext().defaultGenerator(x.device()).clone();
    gen.set_current_seed(dropout_seed);
    const double keep = 1.0 - lora.dropout;
    at::Tensor mask;
    if (x.is_cuda()) {
      mask = at::empty_like(x).bernoulli_(keep, gen);  // one kernel, written in x's dtype
    } else {
      // uniform_ + compare: LibTorch 1.13's CPU bernoulli_ with an explicit
      // generator is about 10x slower than the whole layer.
      mask = at::empty(x.sizes(), x.options().dtype(at::kFloat)).uniform_(0.0, 1.0, gen).lt(keep).to(x.scalar_type());
    }
    xd = x * mask;
    scale /= keep;
  }
  // y + scale * (xd A^T) B^T as one addmm: the sum happens in the GEMM's
  // epilogue instead of two more passes over the [rows, out] output.
  const at::Tensor z = at::linear(xd, lora.a).reshape({-1, lora.a.size(0)});  // [rows, r]
  return at::addmm(y.reshape({-1, y.size(-1)}), z, lora.b.t(), /*beta=*/1.0, /*alpha=*/scale).view(y.sizes());
}

LoraAdapter LoraAdapter::init(const ModelConfig& model, const LoraConfig& config, uint64_t seed,
                              at::ScalarType master_dtype, at::Device device) {
  LoraAdapter adapter;
  adapter.config_ = config;
  adapter.n_layers_ = model.n_layers;
  adapter.a_.resize(model.n_layers);
  adapter.b_.resize(model.n_layers);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto cpu = at::TensorOptions().dtype(master_dtype);
  for (int64_t layer = 0; layer < model.n_layers; ++layer) {
    for (LoraTarget t : config.targets) {
      const auto [out, in] = lora_target_shape(model, t);
      // kaiming_uniform_(a=sqrt(5)) on [r, in]: gain = sqrt(2 / (1 + 5)),
      // bound = gain * sqrt(3 / fan_in) = 1 / sqrt(in).
      const double gain = std::sqrt(2.0 / (1.0 + 5.0));
      const double bound = gain * std::sqrt(3.0 / static_cast<double>(in));
      at::Tensor a = at::empty({config.r, in}, cpu).uniform_(-bound, bound, gen);
      at::Tensor b = at::zeros({out, config.r}, cpu);
      adapter.a_[layer][static_cast<int>(t)] = a.to(device).requires_grad_(true);
      adapter.b_[layer][static_cast<int>(t)] = b.to(device).requires_grad_(true);
    }
  }
  return adapter;
}

at::Tensor& LoraAdapter::a(int64_t layer, LoraTarget target) {
  at::Tensor& t = a_.at(layer)[static_cast<int>(target)];
  LEMA_CHECK(t.defined());
  return t;
}

at::Tensor& LoraAdapter::b(int64_t layer, LoraTarget target) {
  at::Tensor& t = b_.at(layer)[static_cast<int>(target)];
  LEMA_CHECK(t.defined());
  return t;
}

std::vector<at::Tensor> LoraAdapter::parameters() const {
  std::vector<at::Tensor> out;
  for (int64_t layer = 0; layer < n_layers_; ++layer) {
    for (LoraTarget t : config_.targets) {
      out.push_back(a_[layer][static_cast<int>(t)]);
      out.push_back(b_[layer][static_cast<int>(t)]);
    }
  }
  return out;
}

std::vector<std::string> LoraAdapter::parameter_names() const {
  std::vector<std::string> out;
  for (int64_t layer = 0; layer < n_layers_; ++layer) {
    for (LoraTarget t : config_.targets) {
      const std::string p = "base_model.model.model.layers." + std::to_string(layer) + "." +
                            lora_target_module(t) + "." + lora_target_name(t) + ".";
      out.push_back(p + "lora_A.weight");
      out.push_back(p + "lora_B.weight");
    }
  }
  return out;
}

int64_t LoraAdapter::parameter_count() const {
  int64_t n = 0;
  for (const at::Tensor& p : parameters()) n += p.numel();
  return n;
}

LayerLora LoraAdapter::layer(int64_t layer, at::ScalarType dtype, bool dropout) const {
  LayerLora out;
  for (LoraTarget t : config_.targets) {
    LoraPair& pair = out.pairs[static_cast<int>(t)];
    pair.a = a_.at(layer)[static_cast<int>(t)].to(dtype);
    pair.b = b_.at(layer)[static_cast<int>(t)].to(dtype);
    pair.scale = config_.scale();
    pair.dropout = dropout ? config_.dropout : 0.0;
  }
  return out;
}

void LoraAdapter::zero_grad() {
  for (at::Tensor& p : parameters()) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

}  // namespace lema::engine
