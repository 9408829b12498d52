#include "common/data/lema_reply/lema_reply.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/base/log.h"
#include "common/base/rng.h"
#include "common/data/lema_reply/lema_reply_families.h"

namespace lema {
namespace {

// How many items each family contributes: shares proportional to weight,
// capped by the family's size; what a capped family cannot take goes to the
// others (water filling). Integer remainders go to the largest fractional
// parts, ties to the earlier family, so the result is deterministic.
std::vector<int64_t> allocate(const std::vector<Family>& families, int64_t total) {
  std::vector<int64_t> alloc(families.size(), 0);
  std::vector<size_t> active;
  for (size_t i = 0; i < families.size(); ++i)
    if (!families[i].items.empty() && families[i].weight > 0) active.push_back(i);
  int64_t remaining = total;
  for (;;) {
    double w_sum = 0;
    for (size_t i : active) w_sum += families[i].weight;
    if (active.empty() || remaining <= 0) return alloc;
    std::vector<size_t> still;
    bool capped = false;
    for (size_t i : active) {
      double share = static_cast<double>(remaining) * families[i].weight / w_sum;
      int64_t cap = static_cast<int64_t>(families[i].items.size());
      if (share >= static_cast<double>(cap)) {
        alloc[i] = cap;
        capped = true;
      } else {
        still.push_back(i);
      }
    }
    if (capped) {
      for (size_t i : active)
        if (std::find(still.begin(), still.end(), i) == still.end()) remaining -= alloc[i];
      active = still;
      continue;
    }
    std::vector<std::pair<double, size_t>> frac;
    int64_t given = 0;
    for (size_t i : active) {
      double share = static_cast<double>(remaining) * families[i].weight / w_sum;
      alloc[i] = static_cast<int64_t>(std::floor(share));
      given += alloc[i];
      frac.push_back({share - std::floor(share), i});
    }
    std::stable_sort(frac.begin(), frac.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t k = 0; given < remaining && k < frac.size(); ++k, ++given) alloc[frac[k].second]++;
    return alloc;
  }
}

Example to_example(const FamilyItem& item, const std::string& category) {
  Example e;
  e.question = item.question;
  e.answer = item.answer;
  e.explanation = item.explanation;
  e.confidence = item.confidence;
  e.category = category;
  return e;
}

// ---- recompute_answer: re-derives computed answers from the question text
// alone, with its own tables and floating-point formatting, so a bug in the
// generator's integer code cannot hide.

bool full_match(int consumed, const std::string& q) { return consumed == static_cast<int>(q.size()); }

std::string trim_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

std::string money(double v) {
  char buf[64];
  if (std::fabs(v - std::round(v)) < 1e-9)
    std::snprintf(buf, sizeof buf, "%.0f dollars", v);
  else
    std::snprintf(buf, sizeof buf, "%.2f dollars", v);
  return buf;
}

struct Conversion { const char* big; const char* small; int factor; };
const Conversion kConversions[] = {
    {"kilometres", "metres", 1000}, {"metres", "centimetres", 100}, {"centimetres", "millimetres", 10},
    {"kilograms", "grams", 1000},   {"tonnes", "kilograms", 1000},  {"litres", "millilitres", 1000},
    {"hours", "minutes", 60},       {"minutes", "seconds", 60},     {"days", "hours", 24},
    {"weeks", "days", 7},           {"years", "months", 12},        {"decades", "years", 10},
    {"centuries", "years", 100},    {"feet", "inches", 12},         {"yards", "feet", 3},
    {"bytes", "bits", 8},           {"kibibytes", "bytes", 1024},
};

const Conversion* find_conversion(const char* big, const char* small) {
  for (const auto& c : kConversions)
    if (std::strcmp(c.big, big) == 0 && std::strcmp(c.small, small) == 0) return &c;
  return nullptr;
}

}  // namespace


const std::vector<std::string>& lema_reply_categories() {
  static const std::vector<std::string> kCategories = {"science",           "history",   "geography", "math",
                                                       "technology",        "general_knowledge", "practical",
                                                       "lema"};
  return kCategories;
}

bool recompute_answer(const std::string& question, std::string* expected) {
  const char* q = question.c_str();
  int a = 0, b = 0, c = 0, n = -1;
  char w1[32] = {0}, w2[32] = {0};
  auto done = [&](std::string v) {
    *expected = std::move(v);
    return true;
  };
  n = -1;
  if (std::sscanf(q, "What is %d plus %d?%n", &a, &b, &n) == 2 && full_match(n, question)) return done(std::to_string(a + b));
  n = -1;
  if (std::sscanf(q, "What is %d + %d?%n", &a, &b, &n) == 2 && full_match(n, question)) return done(std::to_string(a + b));
  n = -1;
  if (std::sscanf(q, "What is %d minus %d?%n", &a, &b, &n) == 2 && full_match(n, question)) return done(std::to_string(a - b));
  n = -1;
  if (std::sscanf(q, "What is %d times %d?%n", &a, &b, &n) == 2 && full_match(n, question)) return done(std::to_string(a * b));
  n = -1;
  if (std::sscanf(q, "What is %d multiplied by %d?%n", &a, &b, &n) == 2 && full_match(n, question))
    return done(std::to_string(a * b));
  n = -1;
  if (std::sscanf(q, "What is %d divided by %d?%n", &a, &b, &n) == 2 && full_match(n, question) && b != 0)
    return done(trim_number(static_cast<double>(a) / b));
  n = -1;
  if (std::sscanf(q, "What is %d%% of %d?%n", &a, &b, &n) == 2 && full_match(n, question))
    return done(trim_number(a / 100.0 * b));
  n = -1;
  if (std::sscanf(q, "How many %31s are in %d %31[^?]?%n", w1, &a, w2, &n) == 3 && full_match(n, question)) {
    if (const Conversion* cv = find_conversion(w2, w1)) return done(std::to_string(a * cv->factor) + " " + w1);
    return false;
  }
  n = -1;
  if (std::sscanf(q, "How many %31s is %d %31[^?]?%n", w1, &a, w2, &n) == 3 && full_match(n, question)) {
    if (const Conversion* cv = find_conversion(w1, w2)) return done(trim_number(static_cast<double>(a) / cv->factor) + " " + w1);
    return false;
  }
  n = -1;
  if (std::sscanf(q, "About how many kilometres is %d miles?%n", &a, &n) == 1 && full_match(n, question))
    return done("About " + std::to_string(std::lround(a * 1.609344)) + " kilometres");
  n = -1;
  if (std::sscanf(q, "About how many pounds is %d %31[^?]?%n", &a, w1, &n) == 2 && full_match(n, question) &&
      (std::strcmp(w1, "kilograms") == 0 || std::strcmp(w1, "kilogram") == 0))
    return done("About " + std::to_string(std::lround(a / 0.45359237)) + " pounds");
  n = -1;
  if (std::sscanf(q, "About how long does it take to walk %d %31[^?]?%n", &a, w1, &n) == 2 && full_match(n, question))
    return done("About " + trim_number(a / 5.0 * 60) + " minutes");
  n = -1;
  if (std::sscanf(q, "What is %d degrees Celsius in Fahrenheit?%n", &a, &n) == 1 && full_match(n, question))
    return done(trim_number(a * 1.8 + 32) + " degrees Fahrenheit");
  n = -1;
  if (std::sscanf(q, "What is the square of %d?%n", &a, &n) == 1 && full_match(n, question)) return done(std::to_string(a * a));
  n = -1;
  if (std::sscanf(q, "What is the square root of %d?%n", &a, &n) == 1 && full_match(n, question))
    return done(trim_number(std::sqrt(static_cast<double>(a))));
  n = -1;
  if (std::sscanf(q, "What is %d in binary?%n", &a, &n) == 1 && full_match(n, question)) {
    std::string bits;
    for (int bit = 30; bit >= 0; --bit)
      if (!bits.empty() || ((a >> bit) & 1)) bits += ((a >> bit) & 1) ? '1' : '0';
    return done(bits.empty() ? "0" : bits);
  }
  n = -1;
  if (std::sscanf(q, "What is the binary number %31[01] in decimal?%n", w1, &n) == 1 && full_match(n, question))
    return done(std::to_string(std::strtol(w1, nullptr, 2)));
  n = -1;
  if (std::sscanf(q, "What is %d in hexadecimal?%n", &a, &n) == 1 && full_match(n, question)) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%X", a);
    return done(buf);
  }
  n = -1;
  if (std::sscanf(q, "A trip starts at %d:%d and takes %d minutes. When does it end?%n", &a, &b, &c, &n) == 3 &&
      full_match(n, question)) {
    int end = a * 60 + b + c;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%d:%02d", (end / 60) % 24, end % 60);
    return done(buf);
  }
  n = -1;
  if (std::sscanf(q, "How much is a %d%% tip on a bill of %d dollars?%n", &a, &b, &n) == 2 && full_match(n, question))
    return done(money(a / 100.0 * b));
  n = -1;
  if (std::sscanf(q, "%d friends split a bill of %d dollars equally. How much does each pay?%n", &a, &b, &n) == 2 &&
      full_match(n, question) && a != 0)
    return done(money(static_cast<double>(b) / a));
  n = -1;
  int want = 0;
  if (std::sscanf(q, "A recipe for %d people uses %d grams of %31[^.]. How much %31s is needed for %d people?%n", &a, &b,
                  w1, w2, &want, &n) == 5 &&
      full_match(n, question) && std::strcmp(w1, w2) == 0 && a != 0)
    return done(trim_number(static_cast<double>(b) / a * want) + " grams");
  return false;
}

Result<BuiltDataset> build_lema_reply(const BuildOptions& options) {
  if (options.eval_fraction < 0 || options.eval_fraction > 0.5)
    return Status::invalid_argument(str_printf("--eval-fraction %g: must be within [0, 0.5]", options.eval_fraction));
  if (options.examples < 10) return Status::invalid_argument("--examples must be at least 10");
  std::vector<Family> families = lema_reply_families();
  int64_t capacity = 0;
  std::unordered_set<std::string> seen;
  for (const auto& f : families) {
    capacity += static_cast<int64_t>(f.items.size());
    for (const auto& item : f.items)
      if (!seen.insert(item.question).second)
        return Status::internal("lema-reply: question generated twice: '" + item.question + "' (family " + f.name + ")");
  }
  if (options.examples > capacity)
    return Status::invalid_argument(str_printf("--examples %lld: the lema-reply families hold %lld distinct questions",
                                               static_cast<long long>(options.examples), static_cast<long long>(capacity)));
  std::vector<int64_t> alloc = allocate(families, options.examples);

  BuiltDataset out;
  out.builder = "lema-reply";
  out.seed = options.seed;
  for (size_t fi = 0; fi < families.size(); ++fi) {
    if (alloc[fi] == 0) continue;
    std::vector<size_t> order(families[fi].items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    SplitMix64 rng(mix_seed(options.seed, fi));
    rng.shuffle(order);
    int64_t n_eval = static_cast<int64_t>(std::floor(options.eval_fraction * static_cast<double>(alloc[fi]) + 0.5));
    for (int64_t k = 0; k < alloc[fi]; ++k) {
      const FamilyItem& item = families[fi].items[order[static_cast<size_t>(k)]];
      // Every reply must pass the strict validator and round-trip.
      ReplyCheck check = validate_reply(render_reply(item.answer, item.explanation, item.confidence));
      if (!check.ok() || check.reply.answer != item.answer || check.reply.explanation != item.explanation)
        return Status::internal("lema-reply: reply of '" + item.question + "' fails the validator: " + check.detail);
      std::string expected;
      if (recompute_answer(item.question, &expected) && expected != item.answer)
        return Status::internal("lema-reply: '" + item.question + "': generated answer '" + item.answer +
                                "' but recomputed '" + expected + "'");
      if (families[fi].computed && expected.empty())
        return Status::internal("lema-reply: computed question not recognised by the checker: '" + item.question + "'");
      (k < n_eval ? out.eval : out.train).push_back(to_example(item, families[fi].category));
    }
  }
  SplitMix64 rng(mix_seed(options.seed, 0x5eed5eedULL));
  rng.shuffle(out.train);
  rng.shuffle(out.eval);
  return out;
}

}  // namespace lema
