// The dataset stage: the library calls of `lema dataset build`, written to
// <work_dir>/data. A JSONL of pre-tokenized lines ({"input_ids": [...]}) is
// checked with the engine's reader and copied as train.jsonl: the trainer's
// interim input until text examples are tokenized in the pipeline.
#include <nlohmann/json.hpp>

#include "common/data/dataset_builder.h"
#include "common/data/lema_reply/lema_reply.h"
#include "common/base/file_util.h"
#include "common/base/log.h"
#include "engine/data_loader.h"
#include "worker/stage_runner.h"

namespace lema::worker {

namespace {
bool first_line_is_tokenized(const std::string& text) {
  size_t end = text.find('\n');
  nlohmann::json j = nlohmann::json::parse(text.substr(0, end), nullptr, false);
  return j.is_object() && j.contains("input_ids");
}
}  // namespace

StageOutcome run_dataset_stage(const StageAssignment& a, const std::string& work_dir, const StageEnv& /*env*/,
                               StageReporter& reporter) {
  nlohmann::json spec = nlohmann::json::parse(a.spec_json, nullptr, false);
  if (!spec.is_object() || !spec.contains("data")) {
    return {Status::invalid_argument("ASSIGN spec has no [data] section"), "{}", false};
  }
  const nlohmann::json& d = spec["data"];
  const std::string out_dir = job_data_dir(work_dir);
  const std::string jsonl = d.value("jsonl", std::string());
  reporter.progress(0, 1, "{}");
  nlohmann::json result = {{"dir", out_dir}};
  if (!jsonl.empty()) {
    Result<std::string> text = read_file(jsonl);
    if (!text.ok()) return {text.status().with_context("data.jsonl"), "{}", false};
    if (first_line_is_tokenized(text.value())) {
      auto examples = engine::read_tokenized_jsonl(jsonl);
      if (!examples.ok()) return {examples.status(), "{}", false};
      Status s = make_dirs(out_dir);
      if (s.ok()) s = write_file_atomic(path_join(out_dir, "train.jsonl"), text.value());
      if (!s.ok()) return {s, "{}", true};
      result["train_examples"] = examples->size();
      result["tokenized"] = true;
      reporter.progress(1, 1, "{}");
      return {Status(), result.dump(), false};
    }
    ImportOptions options;
    auto imported = import_jsonl_text(text.value(), jsonl, options);
    if (!imported.ok()) return {imported.status(), "{}", false};
    for (const BadLine& bad : imported->bad_lines) {
      reporter.log("warn", str_printf("%s:%lld: %s: %s", jsonl.c_str(), static_cast<long long>(bad.line),
                                      line_error_name(bad.error), bad.detail.c_str()));
    }
    auto built = split_imported(std::move(imported).value(), d.value("eval_fraction", 0.1),
                                static_cast<uint64_t>(d.value("seed", int64_t{0})));
    if (!built.ok()) return {built.status(), "{}", false};
    if (Status s = write_dataset(built.value(), out_dir); !s.ok()) return {s, "{}", true};
    result["train_examples"] = built->train.size();
    result["eval_examples"] = built->eval.size();
  } else {
    const std::string builder = d.value("builder", std::string("lema-reply"));
    if (builder != "lema-reply") {
      return {Status::invalid_argument("data.builder '" + builder + "' is unknown (known: lema-reply)"), "{}", false};
    }
    BuildOptions options;
    options.examples = d.value("examples", options.examples);
    options.seed = static_cast<uint64_t>(d.value("seed", int64_t{0}));
    options.eval_fraction = d.value("eval_fraction", options.eval_fraction);
    auto built = build_lema_reply(options);
    if (!built.ok()) return {built.status(), "{}", false};
    if (Status s = write_dataset(built.value(), out_dir); !s.ok()) return {s, "{}", true};
    result["train_examples"] = built->train.size();
    result["eval_examples"] = built->eval.size();
  }
  reporter.progress(1, 1, "{}");
  return {Status(), result.dump(), false};
}

}  // namespace lema::worker
