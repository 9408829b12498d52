// `lema merge`: fold a PEFT LoRA adapter into its base model and write a
// Hugging Face directory (engine/merge.h, docs/MERGE.md).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/formats/dtype.h"
#include "common/base/file_util.h"
#include "engine/merge.h"
#include "engine/torch_types.h"

namespace {

struct MergeArgs {
  std::string base, adapter, out, dtype, tokenizer, shard_size = "5GB";
};

lema::Status run_merge(const MergeArgs& a) {
  lema::engine::MergeOptions o;
  o.base = a.base;
  o.adapter = a.adapter;
  o.out = a.out;
  o.tokenizer = a.tokenizer;
  if (!a.dtype.empty()) {
    LEMA_ASSIGN_OR_RETURN(lema::DType d, lema::parse_dtype_alias(a.dtype));
    o.dtype = d;
  }
  LEMA_ASSIGN_OR_RETURN(o.shard_bytes, lema::parse_bytes(a.shard_size));
  LEMA_ASSIGN_OR_RETURN(lema::engine::MergeStats s, lema::engine::merge_adapter(o));
  std::printf("merged %lld projections into %s: %d shard(s), %s of tensors\n", static_cast<long long>(s.n_merged),
              a.out.c_str(), s.n_shards, lema::format_bytes(s.total_bytes).c_str());
  return lema::Status();
}

void setup_merge(CLI::App& app) {
  auto a = std::make_shared<MergeArgs>();
  CLI::App* cmd = app.add_subcommand("merge", "Merge a LoRA adapter into its base model (Hugging Face directory out)");
  cmd->add_option("--base", a->base, "base model: Hugging Face directory or layer file (*.lema.safetensors)")->required();
  cmd->add_option("--adapter", a->adapter, "PEFT adapter directory")->required();
  cmd->add_option("--out", a->out, "output directory (must not exist)")->required();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "tokenizer file or directory to copy into the output (default: the base's own files)");
  cmd->add_option("--dtype", a->dtype, "fp32 | bf16 | fp16 (default: the base's)");
  cmd->add_option("--shard-size", a->shard_size, "largest shard, e.g. 5GB, 2GiB")->capture_default_str();
  cmd->callback([a] { lema::cli::finish(run_merge(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_merge);
