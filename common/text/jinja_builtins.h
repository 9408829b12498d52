// Jinja2's built-in filters, tests, globals and the Python methods templates
// call on strings and dicts (internal to common/text/jinja*.cpp). Each
// follows Jinja2 3.1 / CPython semantics; what differs is said where it is
// implemented. Failures throw jinja::Error without a position; the renderer
// adds the position of the node that called them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/text/jinja_ast.h"

namespace lema::jinja {

[[noreturn]] void raise(const std::string& message);

// Python's ordering (<): numbers, strings (by code point), lists and
// tuples lexicographically. Throws for other pairs.
bool less_than(const Value& a, const Value& b);

// False when no filter/test of that name exists.
bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& subject, CallArgs& args);
bool apply_test(const std::string& name, const Value& subject, CallArgs& args);

// obj.name for Python attributes: bound methods of str and dict
// ('a'.strip, d.items), or an undefined value for mutating methods the
// immutable sandbox refuses (list.append, dict.update). *found false when
// the object has no such attribute (then dicts fall back to their keys).
Value get_method(const Value& obj, const std::string& name, bool* found);

// range, dict, namespace. (raise_exception and strftime_now are added by
// the renderer, which knows the clock.)
Value builtin_global(const std::string& name);

// Python's `fmt % args` (a tuple: positional; a dict: %(name)s; anything
// else: one argument).
std::string py_percent_format(const std::string& fmt, const Value& args);

// Python's str.strip family with chars=None (Unicode whitespace) or a set.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);

// ---- helpers shared by jinja_builtins.cpp and jinja_filters.cpp ----------

// The argument at position `index` or named `name`; nullptr when absent.
const Value* arg(const CallArgs& a, size_t index, const char* name);
Value arg_or(const CallArgs& a, size_t index, const char* name, Value dflt);
void check_arity(const CallArgs& a, size_t max_positional, const std::string& what);
std::string need_string(const Value& v, const std::string& what);
std::vector<Value> need_iterable(const Value& v, const std::string& what);

// UTF-8: the byte length of a sequence from its first byte (1 for a stray
// byte), and a string cut into code points.
size_t utf8_len(unsigned char c);
std::vector<std::string> code_points(const std::string& s);
bool is_py_space(const std::string& code_point);  // str.isspace()

// Case mapping of ASCII letters only (CPython maps all of Unicode).
bool ascii_alpha(char c);
std::string to_upper(std::string s);
std::string to_lower(std::string s);
std::string to_title(std::string s);
std::string capitalize(std::string s);

// str.replace (count < 0: all) and str.split (sep none: whitespace runs).
std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count);
std::vector<std::string> py_split(const std::string& s, const Value& sep, int64_t maxsplit);

// The int/float filters' conversions; `dflt` when the value does not convert.
Value to_int(const Value& v, const Value& dflt);
Value to_float(const Value& v, const Value& dflt);

// "a.b.0" -> v.a.b[0], undefined where missing (Jinja2's make_attrgetter).
Value get_path(const Value& v, const std::string& path);
// Lower-cased strings when !case_sensitive (sort, unique, min, max).
Value sort_key(const Value& v, bool case_sensitive);

}  // namespace lema::jinja
