// A Jinja2 interpreter for the subset chat templates use, giving the bytes
// Python's jinja2 gives with transformers' environment:
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
// extensions=[loopcontrols, AssistantTracker]), transformers' `tojson`
// (json.dumps(x, ensure_ascii=False, indent, separators, sort_keys)) and its
// globals raise_exception(msg) and strftime_now(fmt).
//
// Supported: {{ }}, {# #}, whitespace control (-, +), if/elif/else, for
// (loop.*, inline `if`, else, tuple unpacking, break/continue), set (names,
// tuples, ns.attr, block set with filters), macro (defaults, keyword
// arguments), filter blocks, raw, generation; literals, attribute and item
// access, slices, arithmetic, ~, comparisons, and/or/not, in, is tests,
// inline if/else, filters and Python string/dict methods. docs/DATASET.md
// ("Chat templates") lists the filters, tests and what is refused.
//
// Errors (syntax and runtime) come back as a Status whose message starts
// with "<name>:<line>:<col>: ".
//
// Thread-safety: a parsed Template is immutable; render() may be called
// from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema::jinja {

// A byte range [begin, end) of the rendered text.
struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool operator==(const Span& o) const { return begin == o.begin && end == o.end; }
};

struct RenderOptions {
  // The clock of strftime_now(), in seconds since the epoch (local time
  // zone). -1: the system clock.
  int64_t now_unix_s = -1;
};

struct RenderResult {
  std::string text;
  // What each {% generation %} block produced, in order (as transformers'
  // AssistantTracker records them).
  std::vector<Span> generation_spans;
};

class Template {
 public:
  // `name` prefixes error messages (a file name, or e.g.
  // "tokenizer_config.json:chat_template").
  static Result<Template> parse(const std::string& source, const std::string& name);

  // `context`: a JSON object whose keys become the template's variables.
  Result<RenderResult> render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

  // Whether the template holds a {% generation %} block.
  bool has_generation() const { return has_generation_; }
  const std::string& name() const { return name_; }

 private:
  struct Parsed;
  std::shared_ptr<const Parsed> parsed_;
  std::string name_;
  bool has_generation_ = false;
};

// Python's str.strip() (Unicode whitespace), as templates' `trim` does.
std::string py_strip_whitespace(const std::string& s);

}  // namespace lema::jinja
