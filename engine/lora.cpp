#include "engine/lora.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "common/base/log.h"
#include "engine/device_copy.h"

namespace lema::engine {

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

// State on the host: per layer one flat buffer of masters and one of their
// gradients (parameters() order within the layer), and the layers staged
// on the device now (one or two in a training step).
struct LoraAdapter::HostState {
  explicit HostState(at::Device d) : copier(d) {}
  DeviceCopier copier;
  std::vector<at::Tensor> master;  // [layer] -> [n] host
  std::vector<at::Tensor> grad;    // [layer] -> [n] host
  struct Staged {
    DeviceCopier::Pending pending;  // the flat masters' copy
    bool ready = false;             // waited for; leaves made
    std::vector<at::Tensor> leaves; // device masters in parameters() order, leaves of the autograd graph
  };
  std::map<int64_t, Staged> staged;
  std::vector<at::Tensor> grad_norms;  // [parameter] 0-dim on the device, undefined without a gradient
};

LoraAdapter LoraAdapter::init(const ModelConfig& model, const LoraConfig& config, uint64_t seed,
                              at::ScalarType master_dtype, at::Device device, bool state_on_host) {
  const Status targets_ok = check_lora_targets(model, config.targets);
  LEMA_CHECK_MSG(targets_ok.ok(), targets_ok.to_string());
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
      adapter.a_[layer][static_cast<int>(t)] = state_on_host ? a : a.to(device).requires_grad_(true);
      adapter.b_[layer][static_cast<int>(t)] = state_on_host ? b : b.to(device).requires_grad_(true);
    }
  }
  if (!state_on_host) return adapter;
  // Each layer's masters become views of one flat host buffer, so that a
  // layer crosses to the device (and back, in the optimizer) as one copy.
  adapter.host_ = std::make_shared<HostState>(device);
  adapter.host_->grad_norms.resize(static_cast<size_t>(2 * config.targets.size() * model.n_layers));
  for (int64_t layer = 0; layer < model.n_layers; ++layer) {
    int64_t n = 0;
    for (LoraTarget t : config.targets) {
      n += adapter.a_[layer][static_cast<int>(t)].numel() + adapter.b_[layer][static_cast<int>(t)].numel();
    }
    at::Tensor flat = empty_host({n}, master_dtype, device);
    adapter.host_->grad.push_back(empty_host({n}, master_dtype, device));
    int64_t offset = 0;
    for (LoraTarget t : config.targets) {
      for (at::Tensor* m : {&adapter.a_[layer][static_cast<int>(t)], &adapter.b_[layer][static_cast<int>(t)]}) {
        at::Tensor view = flat.narrow(0, offset, m->numel()).view(m->sizes());
        view.copy_(*m);
        offset += m->numel();
        *m = view.requires_grad_(true);
      }
    }
    adapter.host_->master.push_back(flat);
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
  const std::vector<at::Tensor>* staged = nullptr;
  if (host_) {
    stage(layer);
    HostState::Staged& s = host_->staged.at(layer);
    if (!s.ready) {
      const at::Tensor flat = host_->copier.wait(s.pending);  // [n] on the device
      int64_t offset = 0;
      for (LoraTarget t : config_.targets) {
        for (const at::Tensor* m : {&a_.at(layer)[static_cast<int>(t)], &b_.at(layer)[static_cast<int>(t)]}) {
          at::Tensor leaf = flat.narrow(0, offset, m->numel()).view(m->sizes()).requires_grad_(true);
          offset += m->numel();
          // A gradient already there (no zero_grad since the last call)
          // starts the leaf's, so that autograd adds each micro-batch to it
          // in the order it would add them to a master on the device.
          if (m->grad().defined()) leaf.mutable_grad() = m->grad().to(flat.device(), /*non_blocking=*/false, /*copy=*/true);
          s.leaves.push_back(leaf);
        }
      }
      s.ready = true;
    }
    staged = &s.leaves;
  }
  LayerLora out;
  size_t j = 0;
  for (LoraTarget t : config_.targets) {
    LoraPair& pair = out.pairs[static_cast<int>(t)];
    pair.a = (staged ? (*staged)[j] : a_.at(layer)[static_cast<int>(t)]).to(dtype);
    pair.b = (staged ? (*staged)[j + 1] : b_.at(layer)[static_cast<int>(t)]).to(dtype);
    j += 2;
    pair.scale = config_.scale();
    pair.dropout = dropout ? config_.dropout : 0.0;
  }
  return out;
}

void LoraAdapter::zero_grad() {
  if (host_) {
    // A step that failed half-way leaves layers staged: their copies land
    // before their device memory goes back to the allocator.
    for (auto& [layer, s] : host_->staged) {
      if (!s.ready) host_->copier.wait(s.pending);
    }
    host_->staged.clear();
    host_->grad_norms.assign(static_cast<size_t>(2 * config_.targets.size() * n_layers_), at::Tensor());
  }
  for (at::Tensor& p : parameters()) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

void LoraAdapter::stage(int64_t layer) const {
  if (!host_ || host_->staged.count(layer) > 0) return;
  HostState::Staged s;
  s.pending = host_->copier.to_device(host_->master.at(layer));
  host_->staged.emplace(layer, std::move(s));
}

void LoraAdapter::unstage(int64_t layer, bool keep_grad) const {
  if (!host_) return;
  auto it = host_->staged.find(layer);
  if (it == host_->staged.end()) return;
  HostState::Staged& s = it->second;
  if (!s.ready) host_->copier.wait(s.pending);
  if (keep_grad && s.ready) {
    const auto first = static_cast<int64_t>(2 * config_.targets.size()) * layer;  // the layer's first parameter
    int64_t offset = 0;
    size_t j = 0;
    for (LoraTarget t : config_.targets) {
      for (const at::Tensor* m : {&a_.at(layer)[static_cast<int>(t)], &b_.at(layer)[static_cast<int>(t)]}) {
        at::Tensor param = *m;  // shares the host master's autograd meta: .grad() is the parameter's
        at::Tensor dst = host_->grad.at(layer).narrow(0, offset, m->numel()).view(m->sizes());
        offset += m->numel();
        const at::Tensor g = s.leaves[j++].grad();  // the layer's gradient, accumulated on the device
        if (!g.defined()) continue;
        host_->grad_norms[static_cast<size_t>(first + j - 1)] = g.norm(2);
        host_->copier.to_host(g, dst);
        param.mutable_grad() = dst;
      }
    }
  }
  host_->staged.erase(it);
}

std::vector<at::Tensor> LoraAdapter::grad_norms() const {
  return host_ ? host_->grad_norms : std::vector<at::Tensor>{};
}

void LoraAdapter::finish_grads() const {
  if (host_) host_->copier.synchronize();
}

std::vector<HostParamGroup> LoraAdapter::host_param_groups() const {
  std::vector<HostParamGroup> groups;
  if (!host_) return groups;
  const auto per_layer = static_cast<int64_t>(2 * config_.targets.size());
  for (int64_t layer = 0; layer < n_layers_; ++layer) {
    groups.push_back(HostParamGroup{layer * per_layer, (layer + 1) * per_layer, host_->master[layer], host_->grad[layer]});
  }
  return groups;
}

}  // namespace lema::engine
