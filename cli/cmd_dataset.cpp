// `lema dataset build`: the built-in lema-reply set or an import of user
// JSONL, split into train/eval and written with stats (docs/DATASET.md).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "common/data/dataset_builder.h"
#include "common/data/lema_reply/lema_reply.h"
#include "common/base/log.h"

namespace {

struct DatasetBuildArgs {
  std::string builder;
  std::string jsonl;
  std::string out;
  int64_t examples = 5000;
  uint64_t seed = 42;
  double eval_fraction = -1;  // default depends on the source
  bool strict = false;
  std::string format = "auto";
};

lema::Status run_build(const DatasetBuildArgs& a) {
  using namespace lema;
  if (a.builder.empty() == a.jsonl.empty())
    return Status::invalid_argument("give exactly one of --builder lema-reply or --jsonl FILE");
  BuiltDataset d;
  if (!a.builder.empty()) {
    if (a.builder != "lema-reply")
      return Status::invalid_argument("--builder '" + a.builder + "': unknown (available: lema-reply)");
    BuildOptions o;
    o.examples = a.examples;
    o.seed = a.seed;
    if (a.eval_fraction >= 0) o.eval_fraction = a.eval_fraction;
    LEMA_ASSIGN_OR_RETURN(d, build_lema_reply(o));
  } else {
    ImportOptions io;
    io.strict = a.strict;
    LEMA_ASSIGN_OR_RETURN(io.format, parse_data_format(a.format));
    LEMA_ASSIGN_OR_RETURN(ImportResult imported, import_jsonl(a.jsonl, io));
    if (imported.examples.empty())
      return Status::invalid_argument(a.jsonl + ": no usable example (" + std::to_string(imported.bad_lines.size()) +
                                      " bad record(s), format " + data_format_name(imported.format) + ")");
    if (!imported.bad_lines.empty())
      log_warn("%s: skipped %zu bad line(s); see stats.json (use --strict to fail instead)", a.jsonl.c_str(),
               imported.bad_lines.size());
    LEMA_ASSIGN_OR_RETURN(d, split_imported(std::move(imported), a.eval_fraction >= 0 ? a.eval_fraction : 0.1, a.seed));
  }
  LEMA_RETURN_IF_ERROR(write_dataset(d, a.out));
  DatasetStats all = compute_stats(d.train);
  DatasetStats ev = compute_stats(d.eval);
  std::printf("wrote %s: train %lld, eval %lld examples; %lld + %lld distinct questions",
              a.out.c_str(), static_cast<long long>(all.examples), static_cast<long long>(ev.examples),
              static_cast<long long>(all.distinct_questions), static_cast<long long>(ev.distinct_questions));
  if (d.imported) {
    std::printf("; format %s; %zu bad record(s) skipped", data_format_name(d.import.format), d.import.bad_lines.size());
    for (const auto& [reason, n] : d.import.bad_by_reason)
      std::printf("%s%s %lld", reason == d.import.bad_by_reason.begin()->first ? " (" : ", ", reason.c_str(),
                  static_cast<long long>(n));
    std::printf("%s, %lld duplicate(s) removed", d.import.bad_by_reason.empty() ? "" : ")",
                static_cast<long long>(d.import.duplicates));
  }
  std::printf("\n");
  return Status();
}

void setup_dataset(CLI::App& app) {
  CLI::App* group = lema::cli::group(app, "dataset", "Build training datasets");
  auto args = std::make_shared<DatasetBuildArgs>();
  CLI::App* build = group->add_subcommand("build", "Build train.jsonl, eval.jsonl and stats.json");
  build->add_option("--builder", args->builder, "Built-in builder (lema-reply)");
  build->add_option("--jsonl", args->jsonl, "Import your own data file instead (JSONL or a JSON array)");
  build->add_option("--format", args->format,
                    "Format of --jsonl: auto | lema | messages | sharegpt | alpaca | prompt-completion | text")
      ->capture_default_str();
  build->add_option("--out", args->out, "Output directory")->required();
  build->add_option("--examples", args->examples, "Examples to build (train + eval; builder only)");
  build->add_option("--seed", args->seed, "Seed of the selection and split");
  build->add_option("--eval-fraction", args->eval_fraction,
                    "Share held out for eval (default 0.05 for the builder, 0.1 for --jsonl)");
  build->add_flag("--strict", args->strict, "Fail on the first bad JSONL line instead of skipping it");
  build->callback([args] { lema::cli::finish(run_build(*args)); });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_dataset);
