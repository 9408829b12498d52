#include "common/text/regex_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace lema {

namespace {
pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }
}  // namespace

Result<std::shared_ptr<RegexSplitter>> RegexSplitter::compile(const std::string& pattern, bool literal) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (literal) opts = (opts & ~PCRE2_UCP) | PCRE2_LITERAL;  // LITERAL refuses UCP
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts,
                                   &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return Status::invalid_argument("regex '" + pattern + "' does not compile at offset " +
                                    std::to_string(err_off) + ": " + reinterpret_cast<char*>(buf));
  }
  std::shared_ptr<RegexSplitter> r(new RegexSplitter());
  r->code_ = code;
  r->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

RegexSplitter::~RegexSplitter() {
  if (code_ != nullptr) pcre2_code_free(as_code(code_));
}

void RegexSplitter::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  matches->clear();
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(as_code(code_), nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    int rc = jit_ ? pcre2_jit_match(as_code(code_), subject, text.size(), pos, 0, md, nullptr)
                  : pcre2_match(as_code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t s = ov[0], e = ov[1];
    if (e > s) {
      matches->emplace_back(s, e);
      pos = e;
    } else {
      // Empty match: step over one character, as Oniguruma's find_iter does.
      if (s >= text.size()) break;
      size_t step = 1;
      while (s + step < text.size() && (static_cast<unsigned char>(text[s + step]) & 0xC0) == 0x80) ++step;
      pos = s + step;
    }
  }
  pcre2_match_data_free(md);
}

void RegexSplitter::split(std::string_view text, Behavior behavior, bool invert,
                          std::vector<std::string_view>* out) const {
  thread_local std::vector<std::pair<size_t, size_t>> matches;
  find_all(text, &matches);
  // Pieces in order, each flagged as a match or a gap.
  thread_local std::vector<std::pair<std::pair<size_t, size_t>, bool>> parts;
  parts.clear();
  size_t prev = 0;
  for (auto& m : matches) {
    if (m.first > prev) parts.push_back({{prev, m.first}, false});
    parts.push_back({m, true});
    prev = m.second;
  }
  if (prev < text.size()) parts.push_back({{prev, text.size()}, false});
  if (invert) for (auto& p : parts) p.second = !p.second;

  auto emit = [&](size_t s, size_t e) { if (e > s) out->push_back(text.substr(s, e - s)); };
  switch (behavior) {
    case kIsolated:
      for (auto& p : parts) emit(p.first.first, p.first.second);
      break;
    case kRemoved:
      for (auto& p : parts) if (!p.second) emit(p.first.first, p.first.second);
      break;
    case kMergedWithPrevious: {
      // HF: a match joins the piece before it unless that piece is a match.
      std::vector<std::pair<size_t, size_t>> acc;
      bool prev_match = false;
      for (auto& p : parts) {
        if (p.second && !prev_match && !acc.empty()) acc.back().second = p.first.second;
        else acc.push_back(p.first);
        prev_match = p.second;
      }
      for (auto& r : acc) emit(r.first, r.second);
      break;
    }
    case kMergedWithNext: {
      // HF (folding from the end): a match joins the piece after it unless
      // that piece is a match.
      std::vector<std::pair<size_t, size_t>> acc;
      bool next_match = false;
      for (size_t i = parts.size(); i-- > 0;) {
        auto& p = parts[i];
        if (p.second && !next_match && !acc.empty()) acc.back().first = p.first.first;
        else acc.push_back(p.first);
        next_match = p.second;
      }
      for (size_t i = acc.size(); i-- > 0;) emit(acc[i].first, acc[i].second);
      break;
    }
    case kContiguous: {
      size_t start = 0; bool in_match = false;
      for (auto& p : parts) {
        if (p.second) {
          if (!in_match) { start = p.first.first; in_match = true; }
        } else {
          if (in_match) { emit(start, p.first.first); in_match = false; }
          emit(p.first.first, p.first.second);
        }
      }
      if (in_match) emit(start, text.size());
      break;
    }
  }
}

std::string RegexSplitter::replace(std::string_view text, const std::string& content) const {
  std::vector<std::pair<size_t, size_t>> matches;
  find_all(text, &matches);
  std::string out;
  size_t prev = 0;
  for (auto& m : matches) {
    out.append(text.substr(prev, m.first - prev));
    out.append(content);
    prev = m.second;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace lema
