#include "common/data/eval_report.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema {
namespace {

using ojson = nlohmann::ordered_json;

std::string fraction_cell(int64_t valid, int64_t total) {
  if (total == 0) return "-";
  return str_printf("%lld/%lld (%.1f%%)", static_cast<long long>(valid), static_cast<long long>(total),
                    100.0 * static_cast<double>(valid) / static_cast<double>(total));
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// "1.5", "200", "0.25": a short tick label.
std::string tick_label(double v) {
  std::string s = str_printf("%.3g", v);
  return s;
}

}  // namespace

double EvalModelResult::perplexity() const { return std::exp(eval_loss); }
double EvalModelResult::adherence() const {
  return total == 0 ? 0.0 : static_cast<double>(valid) / static_cast<double>(total);
}

std::string eval_report_json(const EvalReport& report) {
  ojson j;
  j["data"] = report.data_path;
  j["model"] = report.model;
  if (!report.loss_curve.empty()) j["loss_curve"] = report.loss_curve;
  j["models"] = ojson::array();
  for (const auto& m : report.models) {
    ojson o;
    o["name"] = m.name;
    o["adapter"] = m.adapter;
    o["eval_loss"] = m.eval_loss;
    o["perplexity"] = m.perplexity();
    o["eval_tokens"] = m.eval_tokens;
    o["valid"] = m.valid;
    o["total"] = m.total;
    o["adherence"] = m.adherence();
    o["failures_by_reason"] = ojson::object();
    for (const auto& [k, v] : m.failures_by_reason) o["failures_by_reason"][k] = v;
    o["by_category"] = ojson::object();
    for (const auto& [k, v] : m.by_category) o["by_category"][k] = ojson{{"valid", v.valid}, {"total", v.total}};
    o["samples"] = ojson::array();
    for (const auto& s : m.samples)
      o["samples"].push_back(ojson{{"question", s.question}, {"category", s.category}, {"output", s.output}, {"reason", s.reason}});
    j["models"].push_back(o);
  }
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string eval_report_summary_markdown(const EvalReport& report) {
  std::string md = "# lema eval report\n\n";
  md += "Eval data: `" + report.data_path + "`, base model: `" + report.model + "`.\n\n";
  std::string header = "| |", rule = "|---|";
  for (const auto& m : report.models) {
    header += " " + m.name + " |";
    rule += "---|";
  }
  md += header + "\n" + rule + "\n";
  auto row = [&](const std::string& label, auto cell) {
    std::string r = "| " + label + " |";
    for (const auto& m : report.models) r += " " + cell(m) + " |";
    md += r + "\n";
  };
  row("eval loss (reply tokens)", [](const EvalModelResult& m) { return str_printf("%.4f", m.eval_loss); });
  row("perplexity", [](const EvalModelResult& m) { return str_printf("%.3f", m.perplexity()); });
  row("format adherence", [](const EvalModelResult& m) { return fraction_cell(m.valid, m.total); });
  row("loss tokens", [](const EvalModelResult& m) { return std::to_string(m.eval_tokens); });

  std::set<std::string> reasons, categories;
  for (const auto& m : report.models) {
    for (const auto& [k, v] : m.failures_by_reason) reasons.insert(k);
    for (const auto& [k, v] : m.by_category) categories.insert(k);
  }
  if (!reasons.empty()) {
    md += "\n## Failures by reason\n\n| reason |";
    for (const auto& m : report.models) md += " " + m.name + " |";
    md += "\n" + rule + "\n";
    for (const auto& r : reasons) {
      md += "| " + r + " |";
      for (const auto& m : report.models) {
        auto it = m.failures_by_reason.find(r);
        md += " " + std::to_string(it == m.failures_by_reason.end() ? 0 : it->second) + " |";
      }
      md += "\n";
    }
  }
  if (!categories.empty()) {
    md += "\n## Adherence by category\n\n| category |";
    for (const auto& m : report.models) md += " " + m.name + " |";
    md += "\n" + rule + "\n";
    for (const auto& c : categories) {
      md += "| " + c + " |";
      for (const auto& m : report.models) {
        auto it = m.by_category.find(c);
        md += " " + (it == m.by_category.end() ? std::string("-") : fraction_cell(it->second.valid, it->second.total)) + " |";
      }
      md += "\n";
    }
  }
  return md;
}

std::string eval_report_markdown(const EvalReport& report) {
  std::string md = eval_report_summary_markdown(report);
  if (!report.loss_curve.empty()) md += "\n## Training loss\n\n![training loss](" + report.loss_curve + ")\n";
  md += "\n## Sample outputs\n";
  for (const auto& m : report.models) {
    md += "\n### " + m.name + "\n";
    int shown = 0;
    for (const auto& s : m.samples) {
      if (shown++ >= report.max_samples_in_md) break;
      std::string out = s.output;
      // Keep the fence intact whatever the model wrote.
      for (size_t p = out.find("```"); p != std::string::npos; p = out.find("```", p)) out.replace(p, 3, "'''");
      md += "\n**Q** (" + s.category + "): " + s.question + " - `" + s.reason + "`\n\n```\n" + out + "\n```\n";
    }
  }
  return md;
}

Status write_eval_report(const EvalReport& report, const std::string& dir) {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(dir, "report.json"), eval_report_json(report)));
  return write_file_atomic(path_join(dir, "report.md"), eval_report_markdown(report));
}

Result<std::vector<MetricPoint>> read_metrics_jsonl(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<MetricPoint> points;
  LEMA_RETURN_IF_ERROR(for_each_line(text, path, [&](int64_t, std::string_view line) {
    if (line.find_first_not_of(" \t") == std::string_view::npos) return Status();
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Status::invalid_argument("not a JSON object");
    auto s = j.find("step"), l = j.find("loss");
    if (s != j.end() && l != j.end() && s->is_number() && l->is_number()) {
      points.push_back({s->get<int64_t>(), l->get<double>()});
    }
    return Status();
  }));
  return points;
}

std::string render_loss_svg(const std::vector<MetricPoint>& points, const std::string& title) {
  const double W = 640, H = 400, left = 70, right = 20, top = 40, bottom = 50;
  const double pw = W - left - right, ph = H - top - bottom;
  std::string svg = str_printf(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      W, H, W, H);
  svg += str_printf("<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n", W / 2,
                    xml_escape(title).c_str());
  std::vector<MetricPoint> pts;
  for (const auto& p : points)
    if (std::isfinite(p.loss)) pts.push_back(p);
  if (pts.empty()) {
    svg += str_printf("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no loss points</text>\n</svg>\n", W / 2, H / 2);
    return svg;
  }
  std::sort(pts.begin(), pts.end(), [](const MetricPoint& a, const MetricPoint& b) { return a.step < b.step; });
  double x0 = static_cast<double>(pts.front().step), x1 = static_cast<double>(pts.back().step);
  double y0 = pts[0].loss, y1 = pts[0].loss;
  for (const auto& p : pts) {
    y0 = std::min(y0, p.loss);
    y1 = std::max(y1, p.loss);
  }
  if (x1 <= x0) x1 = x0 + 1;
  double pad = (y1 - y0) * 0.05;
  if (pad <= 0) pad = std::max(0.5, std::fabs(y0) * 0.1);
  y0 -= pad;
  y1 += pad;
  auto X = [&](double v) { return left + (v - x0) / (x1 - x0) * pw; };
  auto Y = [&](double v) { return top + (y1 - v) / (y1 - y0) * ph; };
  // Axes and ticks.
  svg += str_printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left, top + ph, left + pw, top + ph);
  svg += str_printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", left, top, left, top + ph);
  for (int i = 0; i <= 4; ++i) {
    double xv = x0 + (x1 - x0) * i / 4.0, yv = y0 + (y1 - y0) * i / 4.0;
    svg += str_printf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", left, Y(yv), left + pw, Y(yv));
    svg += str_printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X(xv), top + ph + 18,
                      tick_label(std::round(xv)).c_str());
    svg += str_printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", left - 6, Y(yv) + 4,
                      tick_label(yv).c_str());
  }
  svg += str_printf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", left + pw / 2, H - 10);
  svg += str_printf("<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">loss</text>\n",
                    top + ph / 2, top + ph / 2);
  svg += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
  for (size_t i = 0; i < pts.size(); ++i)
    svg += str_printf("%s%.1f,%.1f", i ? " " : "", X(static_cast<double>(pts[i].step)), Y(pts[i].loss));
  svg += "\"/>\n</svg>\n";
  return svg;
}

}  // namespace lema
