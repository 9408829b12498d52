#include "common/data/eval_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "common/base/file_util.h"

namespace lema {
namespace {

EvalReport sample_report() {
  EvalReport r;
  r.data_path = "data/eval.jsonl";
  r.model = "models/tiny";
  EvalModelResult base;
  base.name = "base";
  base.eval_loss = 3.0;
  base.eval_tokens = 1200;
  base.valid = 1;
  base.total = 50;
  base.failures_by_reason = {{"missing_open_tag", 45}, {"trailing_content", 4}};
  base.by_category = {{"math", {0, 20}}, {"science", {1, 30}}};
  base.samples = {{"What is 2 plus 2?", "math", "4 4 4 ``` 4", "missing_open_tag"}};
  EvalModelResult tuned = base;
  tuned.name = "tuned";
  tuned.adapter = "runs/x/adapter";
  tuned.eval_loss = 1.25;
  tuned.valid = 48;
  tuned.failures_by_reason = {{"bad_confidence", 2}};
  tuned.by_category = {{"math", {19, 20}}, {"science", {29, 30}}};
  tuned.samples = {{"What is 2 plus 2?", "math", "[LEMA_REPLY]\nAnswer: 4\n...", "ok"}};
  r.models = {base, tuned};
  return r;
}

TEST(EvalReport, JsonHoldsEveryFigure) {
  EvalReport r = sample_report();
  auto j = nlohmann::json::parse(eval_report_json(r));
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_EQ(j["models"][0]["name"], "base");
  EXPECT_DOUBLE_EQ(j["models"][0]["perplexity"].get<double>(), std::exp(3.0));
  EXPECT_DOUBLE_EQ(j["models"][1]["adherence"].get<double>(), 48.0 / 50.0);
  EXPECT_EQ(j["models"][0]["failures_by_reason"]["missing_open_tag"], 45);
  EXPECT_EQ(j["models"][1]["by_category"]["math"]["valid"], 19);
  EXPECT_EQ(j["models"][1]["samples"][0]["reason"], "ok");
  EXPECT_EQ(j["data"], "data/eval.jsonl");
}

TEST(EvalReport, MarkdownTableComparesModels) {
  std::string md = eval_report_markdown(sample_report());
  EXPECT_NE(md.find("| | base | tuned |"), std::string::npos) << md;
  EXPECT_NE(md.find("| format adherence | 1/50 (2.0%) | 48/50 (96.0%) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| eval loss (reply tokens) | 3.0000 | 1.2500 |"), std::string::npos) << md;
  char ppl[64];
  std::snprintf(ppl, sizeof ppl, "| perplexity | %.3f | %.3f |", std::exp(3.0), std::exp(1.25));
  EXPECT_NE(md.find(ppl), std::string::npos) << md;
  // A reason only one model has shows 0 for the other.
  EXPECT_NE(md.find("| bad_confidence | 0 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| math | 0/20 (0.0%) | 19/20 (95.0%) |"), std::string::npos) << md;
  // The model's own ``` cannot break the code fence.
  EXPECT_EQ(md.find("4 4 4 ```"), std::string::npos);
}

TEST(EvalReport, SummaryIsTheMarkdownBeforeTheSamples) {
  EvalReport r = sample_report();
  const std::string summary = eval_report_summary_markdown(r);
  const std::string md = eval_report_markdown(r);
  EXPECT_EQ(md.compare(0, summary.size(), summary), 0);
  EXPECT_NE(summary.find("| math | 0/20 (0.0%) | 19/20 (95.0%) |"), std::string::npos) << summary;
  EXPECT_EQ(summary.find("Sample outputs"), std::string::npos);
  EXPECT_EQ(md.find("loss_curve"), std::string::npos);
  r.loss_curve = "loss_curve.svg";
  EXPECT_NE(eval_report_markdown(r).find("![training loss](loss_curve.svg)"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(eval_report_json(r))["loss_curve"], "loss_curve.svg");
  EXPECT_FALSE(nlohmann::json::parse(eval_report_json(sample_report())).contains("loss_curve"));
}

TEST(EvalReport, WritesBothFiles) {
  char tmpl[] = "/tmp/lema_report_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  ASSERT_TRUE(write_eval_report(sample_report(), path_join(dir, "r")).ok());
  EXPECT_TRUE(path_exists(path_join(dir, "r/report.json")));
  auto md = read_file(path_join(dir, "r/report.md"));
  ASSERT_TRUE(md.ok());
  EXPECT_EQ(*md, eval_report_markdown(sample_report()));
  ASSERT_TRUE(remove_all(dir).ok());
}

TEST(LossCurve, ReadsMetricsAndDrawsEveryPoint) {
  char tmpl[] = "/tmp/lema_metrics_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = path_join(dir, "metrics.jsonl");
  ASSERT_TRUE(write_file_atomic(path, "{\"step\":1,\"loss\":4.0,\"lr\":0.001}\n"
                                      "{\"step\":2,\"loss\":3.0}\n"
                                      "\n"
                                      "{\"event\":\"eval\",\"eval_loss\":2.9}\n"
                                      "{\"step\":3,\"loss\":2.0}\n").ok());
  auto pts = read_metrics_jsonl(path);
  ASSERT_TRUE(pts.ok()) << pts.status().to_string();
  ASSERT_EQ(pts->size(), 3u);
  EXPECT_EQ((*pts)[2].step, 3);
  EXPECT_DOUBLE_EQ((*pts)[1].loss, 3.0);

  std::string svg = render_loss_svg(*pts, "train <loss>");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("train &lt;loss&gt;"), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("points=\"([^\"]*)\"")));
  std::string points = m[1];
  // Three points; the loss falls, so y (down the page) rises.
  std::regex pt(R"(([\d.]+),([\d.]+))");
  std::vector<double> ys;
  for (auto it = std::sregex_iterator(points.begin(), points.end(), pt); it != std::sregex_iterator(); ++it)
    ys.push_back(std::stod((*it)[2]));
  ASSERT_EQ(ys.size(), 3u);
  EXPECT_LT(ys[0], ys[1]);
  EXPECT_LT(ys[1], ys[2]);
  EXPECT_NE(render_loss_svg({}, "x").find("no loss points"), std::string::npos);

  ASSERT_TRUE(write_file_atomic(path, "{\"step\":1,\"loss\":4.0}\n{broken\n").ok());
  auto bad = read_metrics_jsonl(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("metrics.jsonl:2"), std::string::npos) << bad.status().message();
  ASSERT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema
