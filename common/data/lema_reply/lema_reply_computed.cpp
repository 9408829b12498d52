// Computed families of the lema-reply builder: arithmetic, percentages,
// unit conversions, number bases, clock times, bills and recipes. The
// answers come from integer arithmetic here; the builder re-derives each
// one from the question text (recompute_answer in lema_reply.cpp)
// and refuses to write a mismatch.
#include <string>

#include "common/data/lema_reply/lema_reply_families.h"

namespace lema {
namespace {

constexpr Confidence H = Confidence::kHigh;

std::string num(int64_t v) { return std::to_string(v); }

// `hundredths` / 100 as a short decimal: 250 -> "2.5", 300 -> "3", 5 -> "0.05".
std::string decimal_hundredths(int64_t hundredths) {
  std::string s = num(hundredths / 100);
  int64_t frac = hundredths % 100;
  if (frac == 0) return s;
  if (frac % 10 == 0) return s + "." + num(frac / 10);
  return s + "." + (frac < 10 ? "0" : "") + num(frac);
}

// Money: whole dollars or two decimals ("4.50 dollars").
std::string dollars(int64_t cents) {
  if (cents % 100 == 0) return num(cents / 100) + " dollars";
  int64_t c = cents % 100;
  return num(cents / 100) + "." + (c < 10 ? "0" : "") + num(c) + " dollars";
}

std::string clock(int minutes_of_day) {
  int m = minutes_of_day % 60;
  return num(minutes_of_day / 60) + ":" + (m < 10 ? "0" : "") + num(m);
}

Family computed(std::string name, std::string category, double weight) {
  Family f;
  f.name = std::move(name);
  f.category = std::move(category);
  f.computed = true;
  f.weight = weight;
  return f;
}

struct Unit {
  const char* big_singular;
  const char* big_plural;
  const char* small_plural;
  int factor;
};

const Unit kUnits[] = {
    {"kilometre", "kilometres", "metres", 1000}, {"metre", "metres", "centimetres", 100},
    {"centimetre", "centimetres", "millimetres", 10}, {"kilogram", "kilograms", "grams", 1000},
    {"tonne", "tonnes", "kilograms", 1000}, {"litre", "litres", "millilitres", 1000},
    {"hour", "hours", "minutes", 60}, {"minute", "minutes", "seconds", 60},
    {"day", "days", "hours", 24}, {"week", "weeks", "days", 7},
    {"year", "years", "months", 12}, {"decade", "decades", "years", 10},
    {"century", "centuries", "years", 100}, {"foot", "feet", "inches", 12},
    {"yard", "yards", "feet", 3}, {"byte", "bytes", "bits", 8},
    {"kibibyte", "kibibytes", "bytes", 1024},
};

std::string binary(int64_t n) {
  std::string s;
  for (; n > 0; n /= 2) s.insert(s.begin(), static_cast<char>('0' + n % 2));
  return s;
}

}  // namespace

std::vector<Family> lema_reply_computed_families() {
  std::vector<Family> out;

  Family plus = computed("plus", "math", 400);
  for (int a = 2; a <= 99; ++a)
    for (int b = 2; b <= 99; ++b) {
      std::string expl = num(a) + " + " + num(b) + " = " + num(a + b) + ".";
      plus.items.push_back({"What is " + num(a) + " plus " + num(b) + "?", num(a + b), expl, H});
      plus.items.push_back({"What is " + num(a) + " + " + num(b) + "?", num(a + b), expl, H});
    }
  out.push_back(std::move(plus));

  Family minus = computed("minus", "math", 300);
  for (int a = 10; a <= 199; ++a)
    for (int b = 1; b < a; ++b)
      minus.items.push_back({"What is " + num(a) + " minus " + num(b) + "?", num(a - b),
                             num(a) + " - " + num(b) + " = " + num(a - b) + ".", H});
  out.push_back(std::move(minus));

  Family times = computed("times", "math", 300);
  for (int a = 2; a <= 12; ++a)
    for (int b = 2; b <= 99; ++b) {
      std::string expl = num(a) + " x " + num(b) + " = " + num(a * b) + ".";
      times.items.push_back({"What is " + num(a) + " times " + num(b) + "?", num(a * b), expl, H});
      times.items.push_back({"What is " + num(a) + " multiplied by " + num(b) + "?", num(a * b), expl, H});
    }
  out.push_back(std::move(times));

  Family divide = computed("divide", "math", 250);
  for (int b = 2; b <= 12; ++b)
    for (int q = 2; q <= 50; ++q)
      divide.items.push_back({"What is " + num(q * b) + " divided by " + num(b) + "?", num(q),
                              num(q * b) + " / " + num(b) + " = " + num(q) + " because " + num(q) + " x " + num(b) +
                                  " = " + num(q * b) + ".",
                              H});
  out.push_back(std::move(divide));

  Family percent = computed("percent", "math", 250);
  for (int p : {5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80, 90})
    for (int n = 10; n <= 500; n += 10) {
      std::string r = decimal_hundredths(static_cast<int64_t>(p) * n);
      percent.items.push_back({"What is " + num(p) + "% of " + num(n) + "?", r,
                               num(p) + "% of " + num(n) + " is " + num(p) + " / 100 x " + num(n) + " = " + r + ".", H});
    }
  out.push_back(std::move(percent));

  Family unit = computed("unit_conversion", "math", 400);
  Family unit_back = computed("unit_conversion_back", "math", 200);
  for (const auto& u : kUnits)
    for (int n = 2; n <= 60; ++n) {
      int64_t v = static_cast<int64_t>(n) * u.factor;
      std::string one = std::string("1 ") + u.big_singular + " is " + num(u.factor) + " " + u.small_plural;
      unit.items.push_back({std::string("How many ") + u.small_plural + " are in " + num(n) + " " + u.big_plural + "?",
                            num(v) + " " + u.small_plural, one + ", so " + num(n) + " x " + num(u.factor) + " = " + num(v) + ".", H});
      unit_back.items.push_back({std::string("How many ") + u.big_plural + " is " + num(v) + " " + u.small_plural + "?",
                                 num(n) + " " + u.big_plural, one + ", so " + num(v) + " / " + num(u.factor) + " = " + num(n) + ".", H});
    }
  out.push_back(std::move(unit));
  out.push_back(std::move(unit_back));

  Family temp = computed("celsius", "math", 29);
  for (int c = -40; c <= 100; c += 5) {
    int f = c * 9 / 5 + 32;  // exact: c is a multiple of 5
    temp.items.push_back({"What is " + num(c) + " degrees Celsius in Fahrenheit?", num(f) + " degrees Fahrenheit",
                          num(c) + " x 9 / 5 + 32 = " + num(f) + ".", H});
  }
  out.push_back(std::move(temp));

  Family square = computed("square", "math", 29);
  Family root = computed("square_root", "math", 29);
  for (int n = 2; n <= 30; ++n) {
    square.items.push_back({"What is the square of " + num(n) + "?", num(n * n), num(n) + " x " + num(n) + " = " + num(n * n) + ".", H});
    root.items.push_back({"What is the square root of " + num(n * n) + "?", num(n), num(n) + " x " + num(n) + " = " + num(n * n) + ".", H});
  }
  out.push_back(std::move(square));
  out.push_back(std::move(root));

  // Approximate conversions: the answer is rounded, so Medium confidence.
  Family miles = computed("approx_miles", "math", 60);
  for (int n = 5; n <= 300; n += 5) {
    int64_t km = (static_cast<int64_t>(n) * 1609344 + 500000) / 1000000;  // 1 mile = 1.609344 km exactly
    miles.items.push_back({"About how many kilometres is " + num(n) + " miles?", "About " + num(km) + " kilometres",
                           "1 mile is about 1.609 kilometres.", Confidence::kMedium});
  }
  out.push_back(std::move(miles));
  Family pounds = computed("approx_pounds", "math", 80);
  for (int n = 1; n <= 100; ++n) {
    int64_t lb = (static_cast<int64_t>(n) * 100000000 + 45359237 / 2) / 45359237;  // 1 lb = 0.45359237 kg
    pounds.items.push_back({"About how many pounds is " + num(n) + (n == 1 ? " kilogram?" : " kilograms?"),
                            "About " + num(lb) + " pounds", "1 kilogram is about 2.2 pounds.", Confidence::kMedium});
  }
  out.push_back(std::move(pounds));

  Family to_bin = computed("to_binary", "technology", 150);
  Family from_bin = computed("from_binary", "technology", 100);
  Family to_hex = computed("to_hex", "technology", 100);
  const char* hex_digits = "0123456789ABCDEF";
  for (int n = 2; n <= 255; ++n) {
    std::string b = binary(n);
    to_bin.items.push_back({"What is " + num(n) + " in binary?", b, num(n) + " in base 2 is " + b + ".", H});
    from_bin.items.push_back({"What is the binary number " + b + " in decimal?", num(n), b + " in base 2 is " + num(n) + ".", H});
    if (n >= 16) {
      std::string h = std::string(1, hex_digits[n / 16]) + hex_digits[n % 16];
      to_hex.items.push_back({"What is " + num(n) + " in hexadecimal?", h,
                              num(n) + " = " + num(n / 16) + " x 16 + " + num(n % 16) + ".", H});
    }
  }
  out.push_back(std::move(to_bin));
  out.push_back(std::move(from_bin));
  out.push_back(std::move(to_hex));

  Family trip = computed("trip_time", "practical", 200);
  for (int h = 6; h <= 20; ++h)
    for (int mm : {0, 15, 30, 45})
      for (int m = 10; m <= 170; m += 5) {
        int start = h * 60 + mm, end = start + m;
        trip.items.push_back({"A trip starts at " + clock(start) + " and takes " + num(m) + " minutes. When does it end?",
                              clock(end), num(m) + " minutes after " + clock(start) + " is " + clock(end) + ".", H});
      }
  out.push_back(std::move(trip));

  Family walk = computed("walk_time", "practical", 30);
  for (int n = 1; n <= 30; ++n)
    walk.items.push_back({"About how long does it take to walk " + num(n) + (n == 1 ? " kilometre?" : " kilometres?"),
                          "About " + num(n * 12) + " minutes", "People walk about 5 kilometres an hour.",
                          Confidence::kMedium});
  out.push_back(std::move(walk));

  Family tip = computed("tip", "practical", 150);
  for (int p : {10, 15, 20, 25})
    for (int n = 10; n <= 200; ++n) {
      std::string r = dollars(static_cast<int64_t>(p) * n);
      tip.items.push_back({"How much is a " + num(p) + "% tip on a bill of " + num(n) + " dollars?", r,
                           num(p) + "% of " + num(n) + " dollars is " + r + ".", H});
    }
  out.push_back(std::move(tip));

  Family split = computed("split_bill", "practical", 150);
  for (int k = 2; k <= 8; ++k)
    for (int each = 5; each <= 60; ++each)
      split.items.push_back({num(k) + " friends split a bill of " + num(k * each) + " dollars equally. How much does each pay?",
                             num(each) + " dollars", num(k * each) + " / " + num(k) + " = " + num(each) + ".", H});
  out.push_back(std::move(split));

  Family recipe = computed("recipe_scale", "practical", 150);
  for (const char* food : {"flour", "sugar", "rice", "pasta", "butter"})
    for (int people : {2, 4, 6})
      for (int per : {25, 50, 75, 100})
        for (int want = 2; want <= 12; ++want) {
          if (want == people) continue;
          recipe.items.push_back({"A recipe for " + num(people) + " people uses " + num(per * people) + " grams of " + food +
                                      ". How much " + food + " is needed for " + num(want) + " people?",
                                  num(per * want) + " grams",
                                  "Each person needs " + num(per) + " grams, and " + num(per) + " x " + num(want) + " = " +
                                      num(per * want) + ".",
                                  H});
        }
  out.push_back(std::move(recipe));
  return out;
}

}  // namespace lema
