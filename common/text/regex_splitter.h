// RegexSplitter: a PCRE2 regex (UTF + UCP, JIT when available) that splits
// text the way Hugging Face's Split pre-tokenizer does. Owns the compiled
// pattern. Thread-safety: split/replace may run concurrently (match data is
// per call).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/status.h"

namespace lema {

class RegexSplitter {
 public:
  enum Behavior { kIsolated = 0, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

  // `literal`: the pattern is a plain string, not a regex.
  static Result<std::shared_ptr<RegexSplitter>> compile(const std::string& pattern, bool literal);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // REQUIRES: `text` is valid UTF-8. Appends the pieces of `text` to `out`
  // (views into `text`); empty pieces are dropped.
  void split(std::string_view text, Behavior behavior, bool invert,
             std::vector<std::string_view>* out) const;
  // Replaces every match with `content`.
  std::string replace(std::string_view text, const std::string& content) const;

 private:
  RegexSplitter() = default;
  // (start, end) byte offsets of every non-overlapping match.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;
  void* code_ = nullptr;  // pcre2_code*
  bool jit_ = false;
};

}  // namespace lema
