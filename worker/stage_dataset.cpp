// The dataset stage: the library calls of `lema dataset build`, written to
// <work_dir>/data. The user's file ([data] path) in any format of
// docs/DATASET.md is validated (a bad record fails the stage unless
// [data] skip_bad), split and written with stats.json; the train stage
// tokenizes train.jsonl through the model's chat template. A pre-tokenized
// file ({"input_ids": [...]}) is checked with the engine's reader and
// copied as train.jsonl.
#include <nlohmann/json.hpp>

#include "common/base/attempt_publish.h"
#include "common/data/dataset_builder.h"
#include "common/data/lema_reply/lema_reply.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/data_loader.h"
#include "worker/stage_options.h"
#include "worker/stage_runner.h"

namespace lema::worker {

namespace {
// The stage fails here, naming the user's file, rather than passing an
// empty copy on to train (whose error would name the copy).
Status no_example(const std::string& jsonl, const std::string& why) {
  return Status::invalid_argument("data.jsonl " + jsonl + ": no usable example (" + why + ")");
}
}  // namespace

StageOutcome run_dataset_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& env,
                               StageReporter& reporter) {
  Result<JobSpec> spec = assignment_spec(a);
  if (!spec.ok()) return {spec.status(), "{}", false};
  const JobSpec::Data& d = spec->data;
  Result<AttemptFence> fence = AttemptFence::claim(work_dir, a.kind, a.attempt);
  if (!fence.ok()) return {fence.status(), "{}", false};
  // Written under the attempt's temp name, published whole at the end.
  const std::string final_dir = job_data_dir(work_dir);
  const std::string out_dir = fence->temp_path(final_dir);
  if (Status s = remove_all(out_dir); !s.ok()) return {s, "{}", true};
  // The output goes into place only while the lease can be shown.
  std::optional<StageOutcome> fenced;
  auto publish = [&]() {
    if ((fenced = fenced_outcome(reporter, env))) return fenced->status;
    return fence->publish_dir(out_dir, final_dir);
  };
  const std::string& jsonl = d.jsonl;
  reporter.progress(0, 1, "{}");
  nlohmann::json result = {{"dir", final_dir}};
  if (!jsonl.empty()) {
    Result<std::string> text = read_file(jsonl);
    if (!text.ok()) return {text.status().with_context("data.jsonl"), "{}", false};
    // JobSpec checked the name.
    const DataFormat format = parse_data_format(d.format).value();
    if (format == DataFormat::kTokenized || (format == DataFormat::kAuto && engine::is_pretokenized(text.value()))) {
      auto examples = engine::read_tokenized_jsonl(jsonl);
      if (!examples.ok()) return {examples.status(), "{}", false};
      if (examples->empty()) return {no_example(jsonl, "no tokenized line"), "{}", false};
      Status s = make_dirs(out_dir);
      if (s.ok()) s = write_file_atomic(path_join(out_dir, "train.jsonl"), text.value());
      if (s.ok()) s = publish();
      if (fenced) return *fenced;
      if (!s.ok()) return {s, "{}", true};
      result["train_examples"] = examples->size();
      result["tokenized"] = true;
      reporter.progress(1, 1, "{}");
      return {Status(), result.dump(), false};
    }
    ImportOptions options;
    options.strict = !d.skip_bad;
    options.format = format;
    auto imported = import_jsonl_text(text.value(), jsonl, options);
    if (!imported.ok()) return {imported.status(), "{}", false};
    for (const BadLine& bad : imported->bad_lines) {
      reporter.log("warn", str_printf("%s: %s: %s", bad_line_where(jsonl, bad).c_str(), line_error_name(bad.error),
                                      bad.detail.c_str()));
    }
    if (imported->examples.empty()) {
      return {no_example(jsonl, std::to_string(imported->bad_lines.size()) + " bad record(s), format " +
                                    data_format_name(imported->format)),
              "{}", false};
    }
    result["format"] = data_format_name(imported->format);
    result["bad_records"] = imported->bad_lines.size();
    auto built = split_imported(std::move(imported).value(), d.eval_fraction, static_cast<uint64_t>(d.seed));
    if (!built.ok()) return {built.status(), "{}", false};
    if (built->train.empty()) return {no_example(jsonl, "every example went to the eval split"), "{}", false};
    if (Status s = write_dataset(built.value(), out_dir); !s.ok()) return {s, "{}", true};
    result["train_examples"] = built->train.size();
    result["eval_examples"] = built->eval.size();
  } else {
    // JobSpec checked the builder's name: lema-reply is the only one.
    BuildOptions options;
    options.examples = d.examples;
    options.seed = static_cast<uint64_t>(d.seed);
    options.eval_fraction = d.eval_fraction;
    auto built = build_lema_reply(options);
    if (!built.ok()) return {built.status(), "{}", false};
    if (Status s = write_dataset(built.value(), out_dir); !s.ok()) return {s, "{}", true};
    result["train_examples"] = built->train.size();
    result["eval_examples"] = built->eval.size();
  }
  if (Status s = publish(); !s.ok()) return fenced ? *fenced : StageOutcome{s, "{}", true};
  reporter.progress(1, 1, "{}");
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
