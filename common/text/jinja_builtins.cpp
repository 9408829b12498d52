// Helpers of the built-ins, Python's str and dict methods, string
// formatting (str.format, %), ordering and the globals. Filters and tests:
// jinja_filters.cpp.
#include "common/text/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace lema::jinja {

void raise(const std::string& message) { throw Error{message, Pos{0, 0}}; }

// ---- argument access ------------------------------------------------------

const Value* arg(const CallArgs& a, size_t index, const char* name) {
  if (index < a.positional.size()) return &a.positional[index];
  for (const auto& kv : a.keyword) {
    if (kv.first == name) return &kv.second;
  }
  return nullptr;
}

Value arg_or(const CallArgs& a, size_t index, const char* name, Value dflt) {
  const Value* v = arg(a, index, name);
  return v ? *v : dflt;
}

void check_arity(const CallArgs& a, size_t max_positional, const std::string& what) {
  if (a.positional.size() > max_positional) {
    raise(what + " takes at most " + std::to_string(max_positional) + " argument(s), got " +
          std::to_string(a.positional.size()));
  }
}

std::string need_string(const Value& v, const std::string& what) {
  if (!v.is_string()) raise(what + " expects a string, got " + v.type_name());
  return v.as_string();
}

std::vector<Value> need_iterable(const Value& v, const std::string& what) {
  std::vector<Value> items;
  if (!v.iterate(&items)) raise(std::string("'") + v.type_name() + "' object is not iterable (" + what + ")");
  return items;
}

// ---- UTF-8 and Python string helpers -------------------------------------

size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// str.isspace() per CPython's Unicode tables (the code points that exist).
bool is_py_space(const std::string& cp) {
  static const char* kSpaces[] = {" ",
                                  "\t",
                                  "\n",
                                  "\v",
                                  "\f",
                                  "\r",
                                  "\x1c",
                                  "\x1d",
                                  "\x1e",
                                  "\x1f",
                                  "\xc2\x85",
                                  "\xc2\xa0",
                                  "\xe1\x9a\x80",
                                  "\xe2\x80\x80",
                                  "\xe2\x80\x81",
                                  "\xe2\x80\x82",
                                  "\xe2\x80\x83",
                                  "\xe2\x80\x84",
                                  "\xe2\x80\x85",
                                  "\xe2\x80\x86",
                                  "\xe2\x80\x87",
                                  "\xe2\x80\x88",
                                  "\xe2\x80\x89",
                                  "\xe2\x80\x8a",
                                  "\xe2\x80\xa8",
                                  "\xe2\x80\xa9",
                                  "\xe2\x80\xaf",
                                  "\xe2\x81\x9f",
                                  "\xe3\x80\x80"};
  for (const char* s : kSpaces) {
    if (cp == s) return true;
  }
  return false;
}

// Upper/lower/title map ASCII letters only (a documented approximation:
// CPython maps all of Unicode).
namespace {
char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }
char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
}  // namespace
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string to_upper(std::string s) {
  for (char& c : s) c = ascii_upper(c);
  return s;
}
std::string to_lower(std::string s) {
  for (char& c : s) c = ascii_lower(c);
  return s;
}
// str.title(): a letter after a non-letter starts a word.
std::string to_title(std::string s) {
  bool prev_cased = false;
  for (char& c : s) {
    bool cased = ascii_alpha(c) || static_cast<unsigned char>(c) >= 0x80;
    if (ascii_alpha(c)) c = prev_cased ? ascii_lower(c) : ascii_upper(c);
    prev_cased = cased;
  }
  return s;
}
std::string capitalize(std::string s) {
  for (size_t i = 0; i < s.size(); ++i) s[i] = i == 0 ? ascii_upper(s[i]) : ascii_lower(s[i]);
  return s;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between code points (and at both ends).
    auto cps = code_points(s);
    int64_t done = 0;
    for (const auto& cp : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += cp;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep.is_none() || sep.is_undefined()) {
    auto cps = code_points(s);
    size_t i = 0;
    while (true) {
      while (i < cps.size() && is_py_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        std::string rest;
        for (size_t k = i; k < cps.size(); ++k) rest += cps[k];
        // CPython strips trailing whitespace of the remainder.
        out.push_back(py_strip(rest, Value::none(), false, true));
        break;
      }
      std::string word;
      while (i < cps.size() && !is_py_space(cps[i])) word += cps[i++];
      out.push_back(word);
    }
    return out;
  }
  std::string d = need_string(sep, "split");
  if (d.empty()) raise("split: empty separator");
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t hit = s.find(d, pos);
    if (hit == std::string::npos) break;
    out.push_back(s.substr(pos, hit - pos));
    pos = hit + d.size();
  }
  out.push_back(s.substr(pos));
  return out;
}

namespace {
Value string_list(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  for (const auto& p : parts) items.push_back(Value::string(p));
  return Value::list(std::move(items));
}

// startswith/endswith take a string or a tuple of strings.
bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  std::vector<Value> options;
  if (affix.is_list()) {
    options = affix.as_list().items;
  } else {
    options.push_back(affix);
  }
  for (const auto& o : options) {
    std::string a = need_string(o, prefix ? "startswith" : "endswith");
    if (a.size() <= s.size() &&
        (prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0)) {
      return true;
    }
  }
  return false;
}

}  // namespace

// ---- numbers ---------------------------------------------------------------

Value to_int(const Value& v, const Value& dflt) {
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    if (!std::isfinite(v.as_double())) return dflt;
    return Value::integer(static_cast<int64_t>(std::trunc(v.as_double())));
  }
  if (v.is_string()) {
    std::string s = py_strip(v.as_string(), Value::none(), true, true);
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (s.empty()) return dflt;
    size_t idx = 0;
    try {
      int64_t i = std::stoll(s, &idx, 10);
      if (idx == s.size()) return Value::integer(i);
    } catch (...) {
    }
    // Jinja2 falls back to int(float(s)).
    try {
      double d = std::stod(s, &idx);
      if (idx == s.size() && std::isfinite(d)) return Value::integer(static_cast<int64_t>(std::trunc(d)));
    } catch (...) {
    }
  }
  return dflt;
}

Value to_float(const Value& v, const Value& dflt) {
  if (v.is_number()) return Value::real(v.as_double());
  if (v.is_string()) {
    std::string s = py_strip(v.as_string(), Value::none(), true, true);
    size_t idx = 0;
    try {
      double d = std::stod(s, &idx);
      if (idx == s.size()) return Value::real(d);
    } catch (...) {
    }
  }
  return dflt;
}

// ---- attribute lookup used by map/selectattr/sort ----------------------------

// "a.b.0" -> v.a.b[0], undefined where missing (Jinja2's make_attrgetter).
Value get_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_dict()) {
      Value* f = cur.as_dict().find(part);
      cur = f ? *f : Value::undefined("'dict object' has no attribute '" + part + "'");
    } else if (cur.is_list() && !part.empty() && part.size() < 10 &&
               std::all_of(part.begin(), part.end(), ::isdigit)) {
      size_t i = std::stoul(part);
      cur = i < cur.as_list().items.size() ? cur.as_list().items[i] : Value::undefined();
    } else {
      cur = Value::undefined(std::string("'") + cur.type_name() + " object' has no attribute '" + part + "'");
    }
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

// ---- sorting ---------------------------------------------------------------

Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(to_lower(v.as_string()));
  return v;
}

namespace {

// ---- methods -----------------------------------------------------------------

Value bound(const std::string& name, std::function<Value(CallArgs&)> fn) {
  return Value::function(name, std::move(fn));
}

// str.format with {}, {0}, {name}, {{ }} and !r / !s; format specs
// (":>10") are refused.
std::string py_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}')
        ++i;
      else
        raise("format: single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) raise("format: single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    size_t bang = field.find('!');
    if (field.find(':') != std::string::npos) raise("format: format specifications are not supported");
    if (bang != std::string::npos) {
      if (bang + 2 != field.size()) raise("format: bad conversion in '{" + field + "}'");
      conversion = field[bang + 1];
      field.erase(bang);
    }
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= a.positional.size())
        raise("format: replacement index " + std::to_string(auto_index) + " out of range");
      v = &a.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
      if (field.size() > 9) raise("format: replacement index " + field + " out of range");
      size_t k = std::stoul(field);
      if (k >= a.positional.size()) raise("format: replacement index " + field + " out of range");
      v = &a.positional[k];
    } else {
      for (const auto& kv : a.keyword) {
        if (kv.first == field) v = &kv.second;
      }
      if (!v) raise("format: no argument named '" + field + "'");
    }
    out += conversion == 'r' ? v->repr() : v->str();
  }
  return out;
}

}  // namespace

// printf-style formatting: %s %r %d %i %f %e %g %x %X %c and %%, with
// flags (-, 0, +, space), width and precision, and %(name)s with a dict.
std::string py_percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> items;
  const Dict* mapping = nullptr;
  if (args.is_tuple()) {
    items = args.as_list().items;
  } else if (args.is_dict() && !args.is_namespace()) {
    mapping = &args.as_dict();
  } else {
    items.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) raise("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      continue;
    }
    const Value* v = nullptr;
    if (fmt[i] == '(') {
      size_t close = fmt.find(')', i);
      if (close == std::string::npos || !mapping) raise("format requires a mapping");
      std::string key = fmt.substr(i + 1, close - i - 1);
      v = const_cast<Dict*>(mapping)->find(key);
      if (!v) raise("KeyError: '" + key + "'");
      i = close + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::strchr("-0+ #", fmt[i])) spec += fmt[i++];
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) spec += fmt[i++];
    if (i < fmt.size() && fmt[i] == '.') {
      spec += fmt[i++];
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) spec += fmt[i++];
    }
    if (i >= fmt.size()) raise("incomplete format");
    // Widths and precisions stay small so that the result fits the buffer below.
    if (std::count_if(spec.begin(), spec.end(), ::isdigit) > 2)
      raise("format: width or precision above 99 is not supported");
    char conv = fmt[i];
    if (!v) {
      if (mapping) raise("format requires a mapping");
      if (next >= items.size()) raise("not enough arguments for format string");
      v = &items[next++];
    }
    char buf[512];
    if (conv == 's' || conv == 'r' || conv == 'a') {
      std::string text = conv == 's' ? v->str() : v->repr();
      // Width and precision apply to code points; chat templates use plain %s.
      if (spec != "%")
        raise("format: width or precision with %" + std::string(1, conv) + " is not supported");
      out += text;
    } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
      if (!v->is_number())
        raise(std::string("%") + conv + " format: a real number is required, not " + v->type_name());
      long long n = v->is_float() ? static_cast<long long>(std::trunc(v->as_double())) : v->as_int();
      std::snprintf(buf, sizeof buf, (spec + "ll" + (conv == 'i' ? 'd' : conv)).c_str(), n);
      out += buf;
    } else if (std::strchr("feEgG", conv) && conv) {
      if (!v->is_number()) raise(std::string("must be real number, not ") + v->type_name());
      std::snprintf(buf, sizeof buf, (spec + conv).c_str(), v->as_double());
      out += buf;
    } else if (conv == 'c') {
      if (!v->is_string()) raise("%c requires a character");
      out += v->as_string();
    } else {
      raise(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!mapping && next < items.size()) raise("not all arguments converted during string formatting");
  return out;
}

namespace {

Value string_method(const std::string& s, const std::string& name, bool* found) {
  *found = true;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return bound(name, [s, l, r, name](CallArgs& a) {
      check_arity(a, 1, name);
      return Value::string(py_strip(s, arg_or(a, 0, "chars", Value::none()), l, r));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return bound(name, [s, prefix, name](CallArgs& a) {
      const Value* x = arg(a, 0, "prefix");
      if (!x) raise(name + " needs an argument");
      return Value::boolean(affix_match(s, *x, prefix));
    });
  }
  if (name == "split") {
    return bound(name, [s](CallArgs& a) {
      return string_list(py_split(s, arg_or(a, 0, "sep", Value::none()),
                                  arg_or(a, 1, "maxsplit", Value::integer(-1)).as_int()));
    });
  }
  if (name == "replace") {
    return bound(name, [s](CallArgs& a) {
      const Value* from = arg(a, 0, "old");
      const Value* to = arg(a, 1, "new");
      if (!from || !to) raise("replace needs old and new");
      return Value::string(replace_all(s, need_string(*from, "replace"), need_string(*to, "replace"),
                                       arg_or(a, 2, "count", Value::integer(-1)).as_int()));
    });
  }
  if (name == "upper") return bound(name, [s](CallArgs&) { return Value::string(to_upper(s)); });
  if (name == "lower") return bound(name, [s](CallArgs&) { return Value::string(to_lower(s)); });
  if (name == "title") return bound(name, [s](CallArgs&) { return Value::string(to_title(s)); });
  if (name == "capitalize") return bound(name, [s](CallArgs&) { return Value::string(capitalize(s)); });
  if (name == "find" || name == "count" || name == "index" || name == "rfind") {
    return bound(name, [s, name](CallArgs& a) {
      const Value* x = arg(a, 0, "sub");
      if (!x) raise(name + " needs an argument");
      std::string sub = need_string(*x, name);
      if (name == "count") {
        if (sub.empty()) {
          int64_t n;
          Value::string(s).length(&n);
          return Value::integer(n + 1);
        }
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      }
      size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (name == "index") raise("substring not found");
        return Value::integer(-1);
      }
      // Code-point index, as Python's.
      int64_t n;
      Value::string(s.substr(0, p)).length(&n);
      return Value::integer(n);
    });
  }
  if (name == "format") return bound(name, [s](CallArgs& a) { return Value::string(py_format(s, a)); });
  if (name == "join") {
    return bound(name, [s](CallArgs& a) {
      const Value* x = arg(a, 0, "iterable");
      if (!x) raise("join needs an argument");
      std::string out;
      bool first = true;
      for (const auto& item : need_iterable(*x, "join")) {
        if (!first) out += s;
        first = false;
        out += need_string(item, "join");
      }
      return Value::string(out);
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum") {
    return bound(name, [s, name](CallArgs&) {
      if (s.empty()) return Value::boolean(false);
      for (unsigned char c : s) {
        bool ok = name == "isdigit"   ? std::isdigit(c)
                  : name == "isalpha" ? std::isalpha(c)
                  : name == "isspace" ? std::isspace(c)
                                      : std::isalnum(c);
        if (!ok) return Value::boolean(false);
      }
      return Value::boolean(true);
    });
  }
  *found = false;
  return Value::undefined();
}

Value dict_method(const Value& d, const std::string& name, bool* found) {
  *found = true;
  if (name == "items") {
    return bound(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d.as_dict().items)
        out.push_back(Value::list({Value::string(kv.first), kv.second}, true));
      return Value::list(std::move(out));
    });
  }
  if (name == "keys") {
    return bound(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d.as_dict().items) out.push_back(Value::string(kv.first));
      return Value::list(std::move(out));
    });
  }
  if (name == "values") {
    return bound(name, [d](CallArgs&) {
      std::vector<Value> out;
      for (const auto& kv : d.as_dict().items) out.push_back(kv.second);
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return bound(name, [d](CallArgs& a) {
      const Value* k = arg(a, 0, "key");
      if (!k) raise("get needs a key");
      Value dflt = arg_or(a, 1, "default", Value::none());
      if (!k->is_string()) return dflt;
      Value* v = d.as_dict().find(k->as_string());
      return v ? *v : dflt;
    });
  }
  if (name == "copy")
    return bound(name, [d](CallArgs&) {
      Value c = Value::dict();
      c.as_dict().items = d.as_dict().items;
      return c;
    });
  if (name == "update" || name == "pop" || name == "popitem" || name == "setdefault" || name == "clear") {
    return Value::undefined("access to attribute '" + name + "' of 'dict' object is unsafe.");
  }
  *found = false;
  return Value::undefined();
}

}  // namespace

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto cps = code_points(s);
  std::vector<std::string> set;
  bool whitespace = chars.is_none() || chars.is_undefined();
  if (!whitespace) set = code_points(need_string(chars, "strip"));
  auto strip_me = [&](const std::string& cp) {
    return whitespace ? is_py_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip_me(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip_me(cps[e - 1])) --e;
  }
  std::string out;
  for (size_t i = b; i < e; ++i) out += cps[i];
  return out;
}

bool less_than(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string())
    return a.as_string() < b.as_string();  // UTF-8 bytes order = code point order
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i] != y[i]) return less_than(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined() || b.is_undefined())
    raise("'" + (a.is_undefined() ? a : b).undefined_hint() + "' is undefined");
  raise(std::string("'<' not supported between instances of '") + a.type_name() + "' and '" + b.type_name() +
        "'");
}

Value get_method(const Value& obj, const std::string& name, bool* found) {
  *found = false;
  if (obj.is_string()) return string_method(obj.as_string(), name, found);
  if (obj.is_dict() && !obj.is_namespace()) return dict_method(obj, name, found);
  if (obj.is_list()) {
    static const char* kMutators[] = {"append", "extend", "insert", "pop",
                                      "remove", "clear",  "sort",   "reverse"};
    for (const char* m : kMutators) {
      if (name == m) {
        *found = true;
        return Value::undefined("access to attribute '" + name + "' of '" + obj.type_name() +
                                "' object is unsafe.");
      }
    }
  }
  return Value::undefined();
}

Value builtin_global(const std::string& name) {
  if (name == "range") {
    return Value::function("range", [](CallArgs& a) {
      if (a.positional.empty() || a.positional.size() > 3) raise("range expected 1 to 3 arguments");
      for (const auto& v : a.positional) {
        if (!v.is_int() && !v.is_bool())
          raise(std::string("'") + v.type_name() + "' object cannot be interpreted as an integer");
      }
      int64_t start = 0, stop, step = 1;
      if (a.positional.size() == 1) {
        stop = a.positional[0].as_int();
      } else {
        start = a.positional[0].as_int();
        stop = a.positional[1].as_int();
        if (a.positional.size() == 3) step = a.positional[2].as_int();
      }
      if (step == 0) raise("range() arg 3 must not be zero");
      std::vector<Value> out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        // The sandbox's MAX_RANGE.
        if (out.size() >= 100000)
          raise("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        out.push_back(Value::integer(i));
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "dict" || name == "namespace") {
    bool ns = name == "namespace";
    return Value::function(name, [ns](CallArgs& a) {
      Value d = ns ? Value::name_space() : Value::dict();
      for (const auto& p : a.positional) {
        if (!p.is_dict())
          raise(std::string(ns ? "namespace" : "dict") + "() positional argument must be a mapping");
        for (const auto& kv : p.as_dict().items) d.as_dict().set(kv.first, kv.second);
      }
      for (const auto& kv : a.keyword) d.as_dict().set(kv.first, kv.second);
      return d;
    });
  }
  return Value::undefined();
}

}  // namespace lema::jinja
