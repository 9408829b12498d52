#include "common/data/dataset_builder.h"
#include "common/data/lema_reply/lema_reply.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "common/base/file_util.h"

namespace lema {
namespace {

const BuiltDataset& default_set() {
  static const BuiltDataset* d = [] {
    auto r = build_lema_reply(BuildOptions{});
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return new BuiltDataset(std::move(r).value());
  }();
  return *d;
}

std::vector<Example> all_of(const BuiltDataset& d) {
  std::vector<Example> all = d.train;
  all.insert(all.end(), d.eval.begin(), d.eval.end());
  return all;
}

TEST(LemaReplyBuilder, CountsDistinctnessAndCoverage) {
  const BuiltDataset& d = default_set();
  std::vector<Example> all = all_of(d);
  EXPECT_EQ(all.size(), 5000u);
  std::set<std::string> questions;
  for (const auto& e : all) questions.insert(e.question);
  EXPECT_GE(questions.size(), 3000u);
  EXPECT_GE(d.eval.size(), 200u);
  EXPECT_LE(d.eval.size(), 300u);

  std::map<std::string, int> by_cat;
  std::map<Confidence, int> by_conf;
  for (const auto& e : all) {
    by_cat[e.category]++;
    by_conf[e.confidence]++;
  }
  for (const auto& c : lema_reply_categories()) EXPECT_GE(by_cat[c], 25) << c;
  EXPECT_EQ(by_cat.size(), lema_reply_categories().size());
  EXPECT_GE(by_conf[Confidence::kHigh], 3000);
  EXPECT_GE(by_conf[Confidence::kMedium], 100);
  EXPECT_GE(by_conf[Confidence::kLow], 150);
  // The eval split covers every confidence level too.
  std::set<Confidence> eval_conf;
  for (const auto& e : d.eval) eval_conf.insert(e.confidence);
  EXPECT_EQ(eval_conf.size(), 3u);
}

TEST(LemaReplyBuilder, EvalQuestionsNeverInTrain) {
  const BuiltDataset& d = default_set();
  std::set<std::string> train;
  for (const auto& e : d.train) train.insert(e.question);
  for (const auto& e : d.eval) EXPECT_EQ(train.count(e.question), 0u) << e.question;
}

TEST(LemaReplyBuilder, EveryReplyPassesTheStrictValidator) {
  for (const auto& e : all_of(default_set())) {
    ReplyCheck c = validate_reply(example_reply(e));
    ASSERT_TRUE(c.ok()) << e.question << ": " << c.detail;
    EXPECT_EQ(c.reply.answer, e.answer);
    EXPECT_EQ(render_plain(e).find("LEMA_REPLY"), std::string::npos);
    // Short, learnable replies (DEMO-FINDINGS.md).
    EXPECT_LE(e.answer.size(), 60u) << e.answer;
    EXPECT_LE(e.explanation.size(), 100u) << e.explanation;
  }
}

TEST(LemaReplyBuilder, LowConfidenceIsForUnanswerableQuestions) {
  int future = 0, personal = 0;
  for (const auto& e : all_of(default_set())) {
    if (e.confidence != Confidence::kLow) continue;
    if (e.question.find(" will ") != std::string::npos || e.question.find("Will ") == 0) ++future;
    if (e.question.find(" my ") != std::string::npos || e.question.find(" I ") != std::string::npos) ++personal;
    // A Low reply never states a definite fact as the answer.
    EXPECT_TRUE(e.answer.find("know") != std::string::npos || e.answer.find("unclear") != std::string::npos)
        << e.question << " -> " << e.answer;
  }
  EXPECT_GE(future, 20);
  EXPECT_GE(personal, 20);
}

long long to_ll(const std::string& s) { return std::stoll(s); }

// Independent re-check of computed answers: own regexes, own arithmetic.
TEST(LemaReplyBuilder, ComputedAnswersAreCorrect) {
  struct Rule {
    std::regex re;
    std::function<std::string(const std::smatch&)> answer;
  };
  auto dec = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    std::string s = buf;
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s;
  };
  std::map<std::string, long long> to_small = {
      {"kilometres", 1000}, {"metres", 100}, {"centimetres", 10}, {"kilograms", 1000}, {"tonnes", 1000},
      {"litres", 1000}, {"hours", 60}, {"minutes", 60}, {"days", 24}, {"weeks", 7}, {"years", 12},
      {"decades", 10}, {"centuries", 100}, {"feet", 12}, {"yards", 3}, {"bytes", 8}, {"kibibytes", 1024}};
  std::vector<Rule> rules = {
      {std::regex(R"(What is (\d+) (?:plus|\+) (\d+)\?)"), [](const std::smatch& m) { return std::to_string(to_ll(m[1]) + to_ll(m[2])); }},
      {std::regex(R"(What is (\d+) minus (\d+)\?)"), [](const std::smatch& m) { return std::to_string(to_ll(m[1]) - to_ll(m[2])); }},
      {std::regex(R"(What is (\d+) (?:times|multiplied by) (\d+)\?)"), [](const std::smatch& m) { return std::to_string(to_ll(m[1]) * to_ll(m[2])); }},
      {std::regex(R"(What is (\d+) divided by (\d+)\?)"), [](const std::smatch& m) {
         EXPECT_EQ(to_ll(m[1]) % to_ll(m[2]), 0);
         return std::to_string(to_ll(m[1]) / to_ll(m[2]));
       }},
      {std::regex(R"(What is (\d+)% of (\d+)\?)"), [&](const std::smatch& m) { return dec(to_ll(m[1]) * to_ll(m[2]) / 100.0); }},
      {std::regex(R"(How many (\w+) are in (\d+) (\w+)\?)"), [&](const std::smatch& m) {
         return std::to_string(to_ll(m[2]) * to_small.at(m[3])) + " " + m[1].str();
       }},
      {std::regex(R"(How many (\w+) is (\d+) (\w+)\?)"), [&](const std::smatch& m) {
         long long f = to_small.at(m[1]);
         EXPECT_EQ(to_ll(m[2]) % f, 0);
         return std::to_string(to_ll(m[2]) / f) + " " + m[1].str();
       }},
      {std::regex(R"(What is (-?\d+) degrees Celsius in Fahrenheit\?)"), [&](const std::smatch& m) {
         return dec(to_ll(m[1]) * 9.0 / 5.0 + 32) + " degrees Fahrenheit";
       }},
      {std::regex(R"(What is the square of (\d+)\?)"), [](const std::smatch& m) { return std::to_string(to_ll(m[1]) * to_ll(m[1])); }},
      {std::regex(R"(What is the square root of (\d+)\?)"), [](const std::smatch& m) {
         long long r = std::llround(std::sqrt(static_cast<double>(to_ll(m[1]))));
         EXPECT_EQ(r * r, to_ll(m[1]));
         return std::to_string(r);
       }},
      {std::regex(R"(About how many kilometres is (\d+) miles\?)"), [](const std::smatch& m) {
         return "About " + std::to_string(std::llround(to_ll(m[1]) * 1.609344)) + " kilometres";
       }},
      {std::regex(R"(About how many pounds is (\d+) kilograms?\?)"), [](const std::smatch& m) {
         return "About " + std::to_string(std::llround(to_ll(m[1]) * 2.20462262)) + " pounds";
       }},
      {std::regex(R"(What is (\d+) in binary\?)"), [](const std::smatch& m) {
         std::string s;
         for (long long v = to_ll(m[1]); v; v >>= 1) s = char('0' + (v & 1)) + s;
         return s;
       }},
      {std::regex(R"(What is the binary number ([01]+) in decimal\?)"), [](const std::smatch& m) {
         long long v = 0;
         for (char c : m[1].str()) v = v * 2 + (c - '0');
         return std::to_string(v);
       }},
      {std::regex(R"(What is (\d+) in hexadecimal\?)"), [](const std::smatch& m) {
         const char* d = "0123456789ABCDEF";
         std::string s;
         for (long long v = to_ll(m[1]); v; v /= 16) s = d[v % 16] + s;
         return s;
       }},
      {std::regex(R"(A trip starts at (\d+):(\d\d) and takes (\d+) minutes\. When does it end\?)"), [](const std::smatch& m) {
         long long t = to_ll(m[1]) * 60 + to_ll(m[2]) + to_ll(m[3]);
         char buf[16];
         std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
         return std::string(buf);
       }},
      {std::regex(R"(How much is a (\d+)% tip on a bill of (\d+) dollars\?)"), [](const std::smatch& m) {
         long long cents = to_ll(m[1]) * to_ll(m[2]);
         char buf[32];
         if (cents % 100 == 0) std::snprintf(buf, sizeof buf, "%lld dollars", cents / 100);
         else std::snprintf(buf, sizeof buf, "%lld.%02lld dollars", cents / 100, cents % 100);
         return std::string(buf);
       }},
      {std::regex(R"((\d+) friends split a bill of (\d+) dollars equally\. How much does each pay\?)"), [](const std::smatch& m) {
         EXPECT_EQ(to_ll(m[2]) % to_ll(m[1]), 0);
         return std::to_string(to_ll(m[2]) / to_ll(m[1])) + " dollars";
       }},
      {std::regex(R"(A recipe for (\d+) people uses (\d+) grams of (\w+)\. How much (\w+) is needed for (\d+) people\?)"), [](const std::smatch& m) {
         EXPECT_EQ(m[3].str(), m[4].str());
         return std::to_string(to_ll(m[2]) * to_ll(m[5]) / to_ll(m[1])) + " grams";
       }},
      {std::regex(R"(About how long does it take to walk (\d+) kilometres?\?)"), [](const std::smatch& m) {
         return "About " + std::to_string(to_ll(m[1]) * 60 / 5) + " minutes";
       }},
  };
  int checked = 0;
  for (const auto& e : all_of(default_set())) {
    bool matched = false;
    for (const auto& r : rules) {
      std::smatch m;
      if (!std::regex_match(e.question, m, r.re)) continue;
      matched = true;
      EXPECT_EQ(e.answer, r.answer(m)) << e.question;
      ++checked;
      break;
    }
    if (e.category == "math") EXPECT_TRUE(matched) << "math question without a checker: " << e.question;
  }
  EXPECT_GE(checked, 2500);
  // Spot checks of the generator's text against hand-computed values.
  std::string expected;
  ASSERT_TRUE(recompute_answer("What is 15% of 30?", &expected));
  EXPECT_EQ(expected, "4.5");
  ASSERT_TRUE(recompute_answer("What is -40 degrees Celsius in Fahrenheit?", &expected));
  EXPECT_EQ(expected, "-40 degrees Fahrenheit");
  EXPECT_FALSE(recompute_answer("What is the capital of France?", &expected));
}

TEST(LemaReplyBuilder, DeterministicForASeed) {
  auto a = build_lema_reply(BuildOptions{});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(examples_to_jsonl(a->train), examples_to_jsonl(default_set().train));
  EXPECT_EQ(examples_to_jsonl(a->eval), examples_to_jsonl(default_set().eval));
  EXPECT_EQ(dataset_stats_json(*a), dataset_stats_json(default_set()));
  BuildOptions o;
  o.seed = 43;
  auto b = build_lema_reply(o);
  ASSERT_TRUE(b.ok());
  EXPECT_NE(examples_to_jsonl(b->train), examples_to_jsonl(a->train));
  EXPECT_NE(examples_to_jsonl(b->eval), examples_to_jsonl(a->eval));
}

TEST(LemaReplyBuilder, OtherSizesAndBadOptions) {
  BuildOptions small;
  small.examples = 300;
  small.eval_fraction = 0.1;
  auto r = build_lema_reply(small);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->train.size() + r->eval.size(), 300u);
  std::set<std::string> cats;
  for (const auto& e : all_of(*r)) cats.insert(e.category);
  EXPECT_GE(cats.size(), 7u);

  BuildOptions huge;
  huge.examples = 100000000;
  EXPECT_EQ(build_lema_reply(huge).status().code(), Status::Code::kInvalidArgument);
  BuildOptions bad;
  bad.eval_fraction = 0.9;
  EXPECT_FALSE(build_lema_reply(bad).ok());
}

TEST(DatasetSplit, ImportedQuestionsStayOnOneSide) {
  std::string text;
  for (int i = 0; i < 200; ++i)
    for (int k = 0; k < 2; ++k)  // each question twice with different answers
      text += R"({"question":"Q)" + std::to_string(i) + R"(?","answer":"A)" + std::to_string(k) +
              R"(","explanation":"E.","confidence":"High"})" + "\n";
  auto imp = import_jsonl_text(text, "x", {});
  ASSERT_TRUE(imp.ok());
  auto d = split_imported(std::move(imp).value(), 0.1, 7);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->eval.size(), 40u);
  EXPECT_EQ(d->train.size(), 360u);
  std::set<std::string> train;
  for (const auto& e : d->train) train.insert(e.question);
  for (const auto& e : d->eval) EXPECT_EQ(train.count(e.question), 0u);
}

TEST(DatasetWrite, WritesThreeFilesAtomically) {
  char tmpl[] = "/tmp/lema_ds_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string out = path_join(dir, "sub/out");
  ASSERT_TRUE(write_dataset(default_set(), out).ok());
  auto train = read_file(path_join(out, "train.jsonl"));
  ASSERT_TRUE(train.ok());
  EXPECT_EQ(*train, examples_to_jsonl(default_set().train));
  auto back = import_jsonl(path_join(out, "eval.jsonl"), ImportOptions{true});
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->examples.size(), default_set().eval.size());
  auto stats = read_file(path_join(out, "stats.json"));
  ASSERT_TRUE(stats.ok());
  EXPECT_NE(stats->find("\"eval_questions_in_train\": 0"), std::string::npos);
  ASSERT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace lema
