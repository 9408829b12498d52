// Jinja2's built-in filters, tests, globals and the Python methods templates
// call on strings and dicts (internal to common/text/jinja*.cpp). Each
// follows Jinja2 3.1 / CPython semantics; what differs is said where it is
// implemented. Failures throw jinja::Error without a position; the renderer
// adds the position of the node that called them.
#pragma once

#include <cstdint>
#include <string>

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

}  // namespace lema::jinja
