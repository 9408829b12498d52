// `lema export MODEL --format gguf --type f32|f16|bf16|q8_0|q4_0 --out model.gguf [--adapter DIR]`
// `lema export BASE --format gguf-lora --adapter DIR --out adapter.gguf`
// Writes a GGUF v3 file for llama.cpp and Ollama (docs/EXPORT.md) with
// engine/gguf_export.h, the code the pipeline's export stage runs too.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "common/base/progress.h"
#include "engine/gguf_export.h"

namespace {

using lema::Status;

struct ExportArgs {
  lema::engine::GgufExportOptions o;
  std::string format = "gguf";
};

Status run_export(const ExportArgs& a) {
  if (a.format == "gguf") {
    LEMA_ASSIGN_OR_RETURN(lema::engine::GgufExportStats s, lema::engine::export_gguf_model(a.o));
    if (s.n_merged > 0) std::printf("merged %lld projections\n", static_cast<long long>(s.n_merged));
    std::printf("wrote %s: GGUF %s, %s, %zu tensors, %s (peak RSS %s)\n", a.o.out.c_str(), s.arch.c_str(),
                s.type.c_str(), s.n_tensors, lema::format_bytes(s.bytes).c_str(),
                lema::format_bytes(lema::peak_rss_bytes()).c_str());
    return Status();
  }
  if (a.format == "gguf-lora") {
    LEMA_ASSIGN_OR_RETURN(lema::engine::GgufExportStats s, lema::engine::export_gguf_lora(a.o));
    std::printf("wrote %s: GGUF LoRA for %s, %zu tensor pairs, rank %lld, alpha %g, %s\n", a.o.out.c_str(),
                s.arch.c_str(), s.n_tensors / 2, static_cast<long long>(s.lora_rank), s.lora_alpha,
                lema::format_bytes(s.bytes).c_str());
    return Status();
  }
  return Status::unsupported("export: format '" + a.format + "' is not built (known: gguf, gguf-lora)");
}

void setup_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand("export", "Export a model (or a LoRA adapter) as GGUF for llama.cpp and Ollama");
  cmd->add_option("model", a->o.model, "HF model directory or layer file (the base, with --adapter)")->required();
  cmd->add_option("--format", a->format, "gguf (the model) | gguf-lora (the adapter alone)")->capture_default_str();
  cmd->add_option("--type", a->o.type, "f32 | f16 | bf16 | q8_0 | q4_0 (gguf-lora: f32 | f16)")->capture_default_str();
  cmd->add_option("--out", a->o.out, "output .gguf file (must not exist)")->required();
  cmd->add_option("--adapter", a->o.adapter, "PEFT adapter directory: merged in (gguf) or exported (gguf-lora)");
  cmd->add_option("--tokenizer", a->o.tokenizer, "tokenizer file or directory (default: the model's directory)");
  cmd->add_option("--tokenizer-pre", a->o.tokenizer_pre,
                  "llama.cpp pre-tokenizer name for a byte-level BPE it is not detected for");
  cmd->add_option("--name", a->o.name, "general.name (default: the model's file name)");
  cmd->callback([a] { lema::cli::finish(run_export(*a)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_export);
