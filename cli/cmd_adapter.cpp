// `lema adapter import SRC --out DIR`: checks a PEFT LoRA adapter made
// elsewhere against a base model and rewrites it in lema's form (the form
// checkpoints use), so it can be evaluated, merged or trained further.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/formats/hf_model.h"
#include "engine/checkpoint.h"
#include "engine/peft_adapter.h"

namespace {

struct ImportArgs {
  std::string src, base, out;
};

lema::Status run_import(const ImportArgs& a) {
  LEMA_ASSIGN_OR_RETURN(auto model, lema::HfModel::open(a.base));
  LEMA_ASSIGN_OR_RETURN(auto adapter, lema::engine::load_peft_adapter(a.src, model->config(), at::kFloat, at::kCPU));
  LEMA_ASSIGN_OR_RETURN(std::string base_name, lema::engine::peft_base_model(a.src));
  if (base_name.empty()) base_name = a.base;
  LEMA_RETURN_IF_ERROR(lema::engine::save_adapter(a.out, *adapter, base_name));
  std::printf("imported %s: r=%lld alpha=%g targets=%s, %lld parameters -> %s\n", a.src.c_str(),
              static_cast<long long>(adapter->config().r), adapter->config().alpha,
              lema::engine::lora_targets_to_string(adapter->config().targets).c_str(),
              static_cast<long long>(adapter->parameter_count()), a.out.c_str());
  return lema::Status();
}

void setup_adapter(CLI::App& app) {
  CLI::App* group = lema::cli::group(app, "adapter", "LoRA adapters in PEFT form");
  auto a = std::make_shared<ImportArgs>();
  CLI::App* cmd = group->add_subcommand("import", "Check a PEFT LoRA adapter against a base model and rewrite it in lema's form");
  cmd->add_option("src", a->src, "PEFT adapter directory")->required();
  cmd->add_option("--base", a->base, "base model (Hugging Face directory)")->required();
  cmd->add_option("--out", a->out, "output adapter directory")->required();
  cmd->callback([a] { lema::cli::finish(run_import(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_adapter);
