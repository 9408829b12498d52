// Jinja2's built-in filters and tests (Jinja2 3.1 semantics; transformers'
// tojson). Helpers shared with the methods live in jinja_builtins.cpp.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "common/text/jinja_builtins.h"

namespace lema::jinja {

namespace {

// ---- filters ---------------------------------------------------------------

using FilterFn = std::function<Value(const Value&, CallArgs&)>;

Value filter_tojson(const Value& v, CallArgs& a) {
  check_arity(a, 4, "tojson");
  JsonDumpOptions o;
  Value indent = arg_or(a, 1, "indent", Value::none());
  if (indent.is_int()) {
    o.indent = static_cast<int>(indent.as_int());
  } else if (!indent.is_none()) {
    raise("tojson: indent must be an integer or none");
  }
  Value seps = arg_or(a, 2, "separators", Value::none());
  if (seps.is_list() && seps.as_list().items.size() == 2 && seps.as_list().items[0].is_string() &&
      seps.as_list().items[1].is_string()) {
    o.item_separator = seps.as_list().items[0].as_string();
    o.key_separator = seps.as_list().items[1].as_string();
    if (o.item_separator.empty() && o.key_separator.empty()) o.key_separator = "\x01";  // marker, fixed below
  } else if (!seps.is_none()) {
    raise("tojson: separators must be a pair of strings");
  }
  o.ensure_ascii = arg_or(a, 0, "ensure_ascii", Value::boolean(false)).truthy();
  o.sort_keys = arg_or(a, 3, "sort_keys", Value::boolean(false)).truthy();
  if (o.key_separator == "\x01") o.key_separator = "";
  std::string out, error;
  if (!json_dumps(v, o, &out, &error)) raise("tojson: " + error);
  return Value::string(out);
}

Value filter_join(const Value& v, CallArgs& a) {
  std::string sep = arg_or(a, 0, "d", Value::string("")).str();
  const Value* attr = arg(a, 1, "attribute");
  std::string out;
  bool first = true;
  for (const auto& item : need_iterable(v, "join")) {
    if (!first) out += sep;
    first = false;
    out += attr ? get_path(item, attr->str()).str() : item.str();
  }
  return Value::string(out);
}

Value filter_map(const Value& v, CallArgs& a) {
  std::vector<Value> out;
  const Value* attr = nullptr;
  for (const auto& kv : a.keyword) {
    if (kv.first == "attribute") attr = &kv.second;
  }
  if (attr) {
    Value dflt = Value::undefined();
    for (const auto& kv : a.keyword) {
      if (kv.first == "default") dflt = kv.second;
    }
    for (const auto& item : need_iterable(v, "map")) {
      Value got = get_path(item, attr->str());
      out.push_back(got.is_undefined() && !dflt.is_undefined() ? dflt : got);
    }
    return Value::list(std::move(out));
  }
  if (a.positional.empty()) raise("map: needs a filter name or attribute=");
  std::string name = need_string(a.positional[0], "map");
  if (!has_filter(name)) raise("map: no filter named '" + name + "'");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const auto& item : need_iterable(v, "map")) out.push_back(apply_filter(name, item, rest));
  return Value::list(std::move(out));
}

// select/reject (by_attr false) and selectattr/rejectattr (true).
Value select_impl(const Value& v, CallArgs& a, bool by_attr, bool keep_when) {
  size_t k = 0;
  std::string attr;
  if (by_attr) {
    if (a.positional.empty()) raise("selectattr: needs an attribute name");
    attr = need_string(a.positional[k++], "selectattr");
  }
  std::string test;
  CallArgs rest;
  if (k < a.positional.size()) {
    test = need_string(a.positional[k++], "select");
    if (!has_test(test)) raise("no test named '" + test + "'");
    rest.positional.assign(a.positional.begin() + static_cast<long>(k), a.positional.end());
    rest.keyword = a.keyword;
  }
  std::vector<Value> out;
  for (const auto& item : need_iterable(v, "select")) {
    Value subject = by_attr ? get_path(item, attr) : item;
    bool pass = test.empty() ? subject.truthy() : apply_test(test, subject, rest);
    if (pass == keep_when) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value filter_sort(const Value& v, CallArgs& a) {
  bool reverse = arg_or(a, 0, "reverse", Value::boolean(false)).truthy();
  bool case_sensitive = arg_or(a, 1, "case_sensitive", Value::boolean(false)).truthy();
  const Value* attr = arg(a, 2, "attribute");
  std::vector<Value> items = need_iterable(v, "sort");
  auto key = [&](const Value& x) { return sort_key(attr ? get_path(x, attr->str()) : x, case_sensitive); };
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return reverse ? less_than(key(y), key(x)) : less_than(key(x), key(y));
  });
  return Value::list(std::move(items));
}

Value filter_unique(const Value& v, CallArgs& a) {
  bool case_sensitive = arg_or(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value* attr = arg(a, 1, "attribute");
  std::vector<Value> out, seen;
  for (const auto& item : need_iterable(v, "unique")) {
    Value k = sort_key(attr ? get_path(item, attr->str()) : item, case_sensitive);
    if (std::find(seen.begin(), seen.end(), k) == seen.end()) {
      seen.push_back(k);
      out.push_back(item);
    }
  }
  return Value::list(std::move(out));
}

Value filter_indent(const Value& v, CallArgs& a) {
  Value width = arg_or(a, 0, "width", Value::integer(4));
  bool first = arg_or(a, 1, "first", Value::boolean(false)).truthy();
  bool blank = arg_or(a, 2, "blank", Value::boolean(false)).truthy();
  std::string ind = width.is_string()
                        ? width.as_string()
                        : std::string(static_cast<size_t>(std::max<int64_t>(0, width.as_int())), ' ');
  // Jinja2 appends "\n" and splits with str.splitlines() (\n, \r\n, \r).
  std::string s = v.str() + "\n";
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += "\n";
      if (blank || !lines[i].empty()) out += ind;
    }
    out += lines[i];
  }
  if (first) out = ind + out;
  return Value::string(out);
}

Value filter_round(const Value& v, CallArgs& a) {
  int64_t precision = arg_or(a, 0, "precision", Value::integer(0)).as_int();
  std::string method = arg_or(a, 1, "method", Value::string("common")).str();
  if (!v.is_number()) raise(std::string("round: expects a number, got ") + v.type_name());
  double x = v.as_double();
  double scale = std::pow(10.0, static_cast<double>(precision));
  double r;
  if (method == "common") {
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());  // Python: round(int, n) is that int
    r = std::nearbyint(x * scale) / scale;                             // ties to even, as CPython's round()
  } else if (method == "floor") {
    r = std::floor(x * scale) / scale;
  } else if (method == "ceil") {
    r = std::ceil(x * scale) / scale;
  } else {
    raise("round: method must be 'common', 'ceil' or 'floor'");
  }
  return Value::real(r);
}

Value filter_escape(const Value& v, CallArgs&) {
  std::string out;
  for (char c : v.str()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value::string(out);
}

Value filter_minmax(const Value& v, CallArgs& a, bool want_max) {
  bool case_sensitive = arg_or(a, 0, "case_sensitive", Value::boolean(false)).truthy();
  const Value* attr = arg(a, 1, "attribute");
  std::vector<Value> items = need_iterable(v, want_max ? "max" : "min");
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    Value ki = sort_key(attr ? get_path(items[i], attr->str()) : items[i], case_sensitive);
    Value kb = sort_key(attr ? get_path(items[best], attr->str()) : items[best], case_sensitive);
    if (want_max ? less_than(kb, ki) : less_than(ki, kb)) best = i;
  }
  return items[best];
}

Value filter_sum(const Value& v, CallArgs& a) {
  const Value* attr = arg(a, 0, "attribute");
  Value total = arg_or(a, 1, "start", Value::integer(0));
  for (const auto& item : need_iterable(v, "sum")) {
    Value x = attr ? get_path(item, attr->str()) : item;
    if (!x.is_number() || !total.is_number()) raise(std::string("sum: cannot add ") + x.type_name());
    if (x.is_float() || total.is_float()) {
      total = Value::real(total.as_double() + x.as_double());
    } else {
      total = Value::integer(total.as_int() + x.as_int());
    }
  }
  return total;
}

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> kFilters = [] {
    std::map<std::string, FilterFn> f;
    f["trim"] = [](const Value& v, CallArgs& a) {
      return Value::string(py_strip(v.str(), arg_or(a, 0, "chars", Value::none()), true, true));
    };
    f["tojson"] = filter_tojson;
    f["length"] = [](const Value& v, CallArgs&) {
      int64_t n;
      if (!v.length(&n)) raise(std::string("object of type '") + v.type_name() + "' has no len()");
      return Value::integer(n);
    };
    f["count"] = f["length"];
    f["string"] = [](const Value& v, CallArgs&) { return Value::string(v.str()); };
    f["upper"] = [](const Value& v, CallArgs&) { return Value::string(to_upper(v.str())); };
    f["lower"] = [](const Value& v, CallArgs&) { return Value::string(to_lower(v.str())); };
    f["title"] = [](const Value& v, CallArgs&) { return Value::string(to_title(v.str())); };
    f["capitalize"] = [](const Value& v, CallArgs&) { return Value::string(capitalize(v.str())); };
    f["default"] = [](const Value& v, CallArgs& a) {
      Value dflt = arg_or(a, 0, "default_value", Value::string(""));
      bool boolean = arg_or(a, 1, "boolean", Value::boolean(false)).truthy();
      return (v.is_undefined() || (boolean && !v.truthy())) ? dflt : v;
    };
    f["d"] = f["default"];
    f["items"] = [](const Value& v, CallArgs&) {
      if (v.is_undefined()) return Value::list();
      if (!v.is_dict()) raise(std::string("items: can only get items from a mapping, not ") + v.type_name());
      std::vector<Value> out;
      for (const auto& kv : v.as_dict().items)
        out.push_back(Value::list({Value::string(kv.first), kv.second}, true));
      return Value::list(std::move(out));
    };
    f["join"] = filter_join;
    f["first"] = [](const Value& v, CallArgs&) {
      auto items = need_iterable(v, "first");
      return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
    };
    f["last"] = [](const Value& v, CallArgs&) {
      auto items = need_iterable(v, "last");
      return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
    };
    f["list"] = [](const Value& v, CallArgs&) { return Value::list(need_iterable(v, "list")); };
    f["map"] = filter_map;
    f["select"] = [](const Value& v, CallArgs& a) { return select_impl(v, a, false, true); };
    f["reject"] = [](const Value& v, CallArgs& a) { return select_impl(v, a, false, false); };
    f["selectattr"] = [](const Value& v, CallArgs& a) { return select_impl(v, a, true, true); };
    f["rejectattr"] = [](const Value& v, CallArgs& a) { return select_impl(v, a, true, false); };
    f["replace"] = [](const Value& v, CallArgs& a) {
      const Value* from = arg(a, 0, "old");
      const Value* to = arg(a, 1, "new");
      if (!from || !to) raise("replace: needs old and new");
      Value count = arg_or(a, 2, "count", Value::none());
      return Value::string(
          replace_all(v.str(), from->str(), to->str(), count.is_none() ? -1 : count.as_int()));
    };
    f["int"] = [](const Value& v, CallArgs& a) {
      return to_int(v, arg_or(a, 0, "default", Value::integer(0)));
    };
    f["float"] = [](const Value& v, CallArgs& a) {
      return to_float(v, arg_or(a, 0, "default", Value::real(0)));
    };
    f["abs"] = [](const Value& v, CallArgs&) {
      if (v.is_float()) return Value::real(std::fabs(v.as_double()));
      if (v.is_int() || v.is_bool()) return Value::integer(std::llabs(v.as_int()));
      raise(std::string("bad operand type for abs(): '") + v.type_name() + "'");
    };
    f["round"] = filter_round;
    f["reverse"] = [](const Value& v, CallArgs&) {
      if (v.is_string()) {
        auto cps = code_points(v.as_string());
        std::string out;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
        return Value::string(out);
      }
      auto items = need_iterable(v, "reverse");
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    };
    f["sort"] = filter_sort;
    f["unique"] = filter_unique;
    f["safe"] = [](const Value& v, CallArgs&) { return v; };
    f["escape"] = filter_escape;
    f["e"] = filter_escape;
    f["indent"] = filter_indent;
    f["wordcount"] = [](const Value& v, CallArgs&) {
      // re.findall(r"\w+"): letters, digits, underscore (non-ASCII bytes count as word characters).
      int64_t n = 0;
      bool in_word = false;
      for (unsigned char c : v.str()) {
        bool w = std::isalnum(c) || c == '_' || c >= 0x80;
        if (w && !in_word) ++n;
        in_word = w;
      }
      return Value::integer(n);
    };
    f["min"] = [](const Value& v, CallArgs& a) { return filter_minmax(v, a, false); };
    f["max"] = [](const Value& v, CallArgs& a) { return filter_minmax(v, a, true); };
    f["sum"] = filter_sum;
    f["format"] = [](const Value& v, CallArgs& a) {
      if (!a.positional.empty() && !a.keyword.empty())
        raise("format: can't handle positional and keyword arguments at the same time");
      Value args;
      if (!a.keyword.empty()) {
        args = Value::dict();
        for (const auto& kv : a.keyword) args.as_dict().set(kv.first, kv.second);
      } else {
        args = Value::list(a.positional, /*tuple=*/true);
      }
      return Value::string(py_percent_format(v.str(), args));
    };
    f["center"] = [](const Value& v, CallArgs& a) {
      int64_t width = arg_or(a, 0, "width", Value::integer(80)).as_int();
      std::string s = v.str();
      int64_t n;
      Value::string(s).length(&n);
      if (n >= width) return Value::string(s);
      // CPython's str.center: the extra space goes left when the margin is odd and width is odd.
      int64_t marg = width - n;
      int64_t left = marg / 2 + (marg & width & 1);
      return Value::string(std::string(static_cast<size_t>(left), ' ') + s +
                           std::string(static_cast<size_t>(marg - left), ' '));
    };
    f["dictsort"] = [](const Value& v, CallArgs& a) {
      if (!v.is_dict()) raise("dictsort: expects a mapping");
      bool case_sensitive = arg_or(a, 0, "case_sensitive", Value::boolean(false)).truthy();
      std::string by = arg_or(a, 1, "by", Value::string("key")).str();
      bool reverse = arg_or(a, 2, "reverse", Value::boolean(false)).truthy();
      std::vector<Value> items;
      for (const auto& kv : v.as_dict().items)
        items.push_back(Value::list({Value::string(kv.first), kv.second}, true));
      size_t idx = by == "value" ? 1 : 0;
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        Value kx = sort_key(x.as_list().items[idx], case_sensitive),
              ky = sort_key(y.as_list().items[idx], case_sensitive);
        return reverse ? less_than(ky, kx) : less_than(kx, ky);
      });
      return Value::list(std::move(items));
    };
    return f;
  }();
  return kFilters;
}

// ---- tests -----------------------------------------------------------------

using TestFn = std::function<bool(const Value&, CallArgs&)>;

const Value& test_arg(const CallArgs& a, const char* test) {
  if (a.positional.empty()) raise(std::string("test '") + test + "' needs an argument");
  return a.positional[0];
}

bool is_callable(const Value& v) { return v.is_function(); }

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> kTests = [] {
    std::map<std::string, TestFn> t;
    t["defined"] = [](const Value& v, CallArgs&) { return !v.is_undefined(); };
    t["undefined"] = [](const Value& v, CallArgs&) { return v.is_undefined(); };
    t["none"] = [](const Value& v, CallArgs&) { return v.is_none(); };
    t["boolean"] = [](const Value& v, CallArgs&) { return v.is_bool(); };
    t["true"] = [](const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); };
    t["false"] = [](const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); };
    t["integer"] = [](const Value& v, CallArgs&) { return v.is_int(); };
    t["float"] = [](const Value& v, CallArgs&) { return v.is_float(); };
    t["number"] = [](const Value& v, CallArgs&) { return v.is_number(); };
    t["string"] = [](const Value& v, CallArgs&) { return v.is_string(); };
    t["mapping"] = [](const Value& v, CallArgs&) { return v.is_dict() && !v.is_namespace(); };
    // Undefined is iterable (empty) and a sequence (len 0) in Jinja2.
    t["iterable"] = [](const Value& v, CallArgs&) {
      return v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace());
    };
    t["sequence"] = t["iterable"];
    t["callable"] = [](const Value& v, CallArgs&) { return is_callable(v); };
    t["odd"] = [](const Value& v, CallArgs&) {
      if (!v.is_int() && !v.is_bool()) raise("test 'odd' expects an integer");
      return (v.as_int() % 2) != 0;
    };
    t["even"] = [](const Value& v, CallArgs&) {
      if (!v.is_int() && !v.is_bool()) raise("test 'even' expects an integer");
      return (v.as_int() % 2) == 0;
    };
    t["divisibleby"] = [](const Value& v, CallArgs& a) {
      const Value& n = test_arg(a, "divisibleby");
      if (!n.is_number() || n.as_double() == 0) raise("divisibleby: bad divisor");
      if ((v.is_int() || v.is_bool()) && (n.is_int() || n.is_bool())) return v.as_int() % n.as_int() == 0;
      return std::fmod(v.as_double(), n.as_double()) == 0;
    };
    t["eq"] = [](const Value& v, CallArgs& a) { return v == test_arg(a, "eq"); };
    t["equalto"] = t["eq"];
    t["=="] = t["eq"];
    t["ne"] = [](const Value& v, CallArgs& a) { return v != test_arg(a, "ne"); };
    t["!="] = t["ne"];
    t["lt"] = [](const Value& v, CallArgs& a) { return less_than(v, test_arg(a, "lt")); };
    t["lessthan"] = t["lt"];
    t["<"] = t["lt"];
    t["le"] = [](const Value& v, CallArgs& a) { return !less_than(test_arg(a, "le"), v); };
    t["<="] = t["le"];
    t["gt"] = [](const Value& v, CallArgs& a) { return less_than(test_arg(a, "gt"), v); };
    t["greaterthan"] = t["gt"];
    t[">"] = t["gt"];
    t["ge"] = [](const Value& v, CallArgs& a) { return !less_than(v, test_arg(a, "ge")); };
    t[">="] = t["ge"];
    t["in"] = [](const Value& v, CallArgs& a) {
      const Value& seq = test_arg(a, "in");
      if (seq.is_string()) return v.is_string() && seq.as_string().find(v.as_string()) != std::string::npos;
      if (seq.is_dict()) return v.is_string() && seq.as_dict().find(v.as_string()) != nullptr;
      std::vector<Value> items = need_iterable(seq, "in");
      return std::find(items.begin(), items.end(), v) != items.end();
    };
    t["lower"] = [](const Value& v, CallArgs&) {
      std::string s = v.str();
      return to_lower(s) == s && std::any_of(s.begin(), s.end(), ascii_alpha);
    };
    t["upper"] = [](const Value& v, CallArgs&) {
      std::string s = v.str();
      return to_upper(s) == s && std::any_of(s.begin(), s.end(), ascii_alpha);
    };
    t["sameas"] = [](const Value& v, CallArgs& a) {
      const Value& o = test_arg(a, "sameas");
      if (v.kind() != o.kind()) return false;
      if (v.is_list() || v.is_dict() || v.is_function())
        return v == o && (v.is_list()   ? &v.as_list() == &o.as_list()
                          : v.is_dict() ? &v.as_dict() == &o.as_dict()
                                        : true);
      return v == o;
    };
    return t;
  }();
  return kTests;
}

}  // namespace

bool has_filter(const std::string& name) { return filters().count(name) > 0; }
bool has_test(const std::string& name) { return tests().count(name) > 0; }

Value apply_filter(const std::string& name, const Value& subject, CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) raise("no filter named '" + name + "'");
  return it->second(subject, args);
}

bool apply_test(const std::string& name, const Value& subject, CallArgs& args) {
  auto it = tests().find(name);
  if (it == tests().end()) raise("no test named '" + name + "'");
  return it->second(subject, args);
}

}  // namespace lema::jinja
