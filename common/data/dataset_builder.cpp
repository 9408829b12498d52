#include "common/data/dataset_builder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/base/file_util.h"
#include "common/base/log.h"
#include "common/base/rng.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

ojson stats_object(const std::vector<Example>& examples) {
  DatasetStats s = compute_stats(examples);
  ojson j;
  j["examples"] = s.examples;
  j["distinct_questions"] = s.distinct_questions;
  if (s.chat_examples) j["chat_examples"] = s.chat_examples;
  j["by_category"] = ojson::object();
  for (const auto& [k, v] : s.by_category) j["by_category"][k] = v;
  j["by_confidence"] = ojson::object();
  for (const char* c : {"High", "Medium", "Low"}) j["by_confidence"][c] = s.by_confidence.count(c) ? s.by_confidence.at(c) : 0;
  return j;
}

}  // namespace

Result<BuiltDataset> split_imported(ImportResult imported, double eval_fraction, uint64_t seed) {
  if (eval_fraction < 0 || eval_fraction >= 1)
    return Status::invalid_argument(str_printf("--eval-fraction %g: must be within [0, 1)", eval_fraction));
  std::vector<std::string> keys;
  std::unordered_map<std::string, size_t> key_index;
  for (const auto& e : imported.examples) {
    std::string k = example_question_key(e);
    if (key_index.emplace(k, keys.size()).second) keys.push_back(k);
  }
  std::vector<size_t> order(keys.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  SplitMix64 rng(mix_seed(seed, 0x1a2b3c));
  rng.shuffle(order);
  size_t n_eval = static_cast<size_t>(std::floor(eval_fraction * static_cast<double>(keys.size()) + 0.5));
  std::vector<bool> is_eval(keys.size(), false);
  for (size_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
  BuiltDataset out;
  out.builder = "jsonl";
  out.seed = seed;
  for (auto& e : imported.examples) {
    bool ev = is_eval[key_index.at(example_question_key(e))];
    (ev ? out.eval : out.train).push_back(std::move(e));
  }
  imported.examples.clear();
  out.import = std::move(imported);
  out.imported = true;
  return out;
}

std::string dataset_stats_json(const BuiltDataset& d) {
  ojson j;
  j["builder"] = d.builder;
  j["seed"] = d.seed;
  std::vector<Example> all = d.train;
  all.insert(all.end(), d.eval.begin(), d.eval.end());
  j["all"] = stats_object(all);
  j["train"] = stats_object(d.train);
  j["eval"] = stats_object(d.eval);
  std::set<std::string> train_q;
  for (const auto& e : d.train) train_q.insert(example_question_key(e));
  int64_t overlap = 0;
  for (const auto& e : d.eval) overlap += train_q.count(example_question_key(e)) ? 1 : 0;
  j["eval_questions_in_train"] = overlap;
  if (d.imported) {
    ojson im;
    im["format"] = data_format_name(d.import.format);
    im["json_array"] = d.import.json_array;
    im["lines_total"] = d.import.lines_total;
    im["lines_blank"] = d.import.lines_blank;
    im["bad_lines"] = d.import.bad_lines.size();
    im["duplicates_removed"] = d.import.duplicates;
    im["bad_by_reason"] = ojson::object();
    for (const auto& [k, v] : d.import.bad_by_reason) im["bad_by_reason"][k] = v;
    im["bad"] = ojson::array();
    for (const auto& b : d.import.bad_lines)
      im["bad"].push_back(ojson{{b.element ? "element" : "line", b.line}, {"reason", line_error_name(b.error)}, {"detail", b.detail}});
    j["import"] = im;
  }
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Status write_dataset(const BuiltDataset& d, const std::string& dir) {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "train.jsonl"), examples_to_jsonl(d.train)));
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "eval.jsonl"), examples_to_jsonl(d.eval)));
  // stats.json last: its presence says the other two are complete.
  return write_file_atomic(path_join(dir, "stats.json"), dataset_stats_json(d));
}

}  // namespace lema
