// The values a Jinja2 template computes with, with Python's semantics as
// Jinja2 (on CPython) gives them: truthiness, equality (1 == 1.0 == True),
// ordering, str() and repr() (None, True, 1.0, 1e-05, ['a', "it's"]),
// and json.dumps as transformers' `tojson` calls it.
//
// Lists and dicts are shared by reference, as in Python: copying a Value
// copies the handle, so `{% set ns.x = 1 %}` is seen by every holder of ns.
// Dicts keep insertion order (Python 3.7+) and have string keys only.
//
// Internal to the renderer (common/text/jinja*.cpp); not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace lema::jinja {

class Value;

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A callable: a global (range, namespace), a bound method ('a'.strip) or
// a macro. Throws jinja::Error (jinja_internal.h) on failure.
using Function = std::function<Value(CallArgs&)>;

struct List;
struct Dict;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // undefined
  static Value undefined(std::string hint = "") {
    Value v;
    v.str_ = std::move(hint);
    return v;
  }
  static Value none() {
    Value v;
    v.kind_ = Kind::kNone;
    return v;
  }
  static Value boolean(bool b) {
    Value v;
    v.kind_ = Kind::kBool;
    v.int_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v;
    v.kind_ = Kind::kInt;
    v.int_ = i;
    return v;
  }
  static Value real(double d) {
    Value v;
    v.kind_ = Kind::kFloat;
    v.float_ = d;
    return v;
  }
  static Value string(std::string s) {
    Value v;
    v.kind_ = Kind::kString;
    v.str_ = std::move(s);
    return v;
  }
  static Value list(std::vector<Value> items = {}, bool tuple = false);
  static Value dict();
  // A namespace(): a dict whose attributes may be assigned.
  static Value name_space();
  static Value function(std::string name, Function fn);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }  // not bool (Python's `is integer`)
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const;
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const;
  bool is_function() const { return kind_ == Kind::kFunction; }

  // REQUIRES: the matching kind.
  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }  // also bools
  double as_double() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return str_; }
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }
  const Function& as_function() const { return *fn_; }
  const std::string& function_name() const { return str_; }
  // For an undefined value: what was looked up ("'x' is undefined").
  const std::string& undefined_hint() const { return str_; }

  bool truthy() const;
  // Python's type name as Jinja2 errors show it: "str", "int", "list", ...
  const char* type_name() const;
  // str(x) (what {{ x }} prints; undefined prints as "").
  std::string str() const;
  // repr(x), used inside containers.
  std::string repr() const;
  // Items of an iteration: a list's items, a dict's keys, a string's
  // characters (UTF-8 code points); undefined iterates as empty.
  // Returns false when the value is not iterable.
  bool iterate(std::vector<Value>* out) const;
  // Length per Python len(); false when it has none.
  bool length(int64_t* out) const;

  // Python ==.
  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;  // string value, undefined hint, or function name
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

struct List {
  std::vector<Value> items;
  bool tuple = false;
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;  // insertion order
  bool is_namespace = false;
  // nullptr when absent.
  Value* find(const std::string& key);
  void set(const std::string& key, Value v);
};

// Python's repr of a str: 'it' or "it's", with \n, \t, \\ and \xNN escapes.
std::string py_repr_string(const std::string& s);
// Python's repr of a float: 1.0, 0.1, 1e-05, 1e+16, inf, nan.
std::string py_repr_float(double d);

struct JsonDumpOptions {
  int indent = -1;             // -1: None (one line)
  std::string item_separator;  // "" = Python's default for the indent
  std::string key_separator;
  bool sort_keys = false;
  bool ensure_ascii = false;  // true: non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
};
// json.dumps(v, ensure_ascii=False, ...). False (with *error set) when a
// value is not serialisable (undefined, a function).
bool json_dumps(const Value& v, const JsonDumpOptions& opts, std::string* out, std::string* error);

}  // namespace lema::jinja
