#include "common/protocol/tomlpp_shield.h"

#include <cstdint>

#include "common/base/log.h"

namespace lema {
namespace {

constexpr char32_t kShift = 0xF0000;  // plane 15, private use

// The code point of the well-formed UTF-8 sequence at s[i], and its length;
// 0 for a byte that does not start one.
size_t decode_utf8(const std::string& s, size_t i, char32_t* out) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = b(i);
  size_t len = 0;
  char32_t cp = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2, cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3, cp = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4, cp = lead & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  const char32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *out = cp;
  return len;
}

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

bool in_tomlpp_whitespace_hole(char32_t c) {
  // toml++ splits U+00A0..U+FEFF into blocks of 0x3FA code points; blocks 5
  // and 7 go to a switch, the others answer from a mask, except blocks 0,
  // 11 and 63, which fall to the switch's default (unreachable) unless the
  // character is U+00A0, U+3000 or U+FEFF.
  if (c < 0xA0 || c > 0xFEFF) return false;
  const uint32_t block = (static_cast<uint32_t>(c) - 0xA0u) / 0x3FAu;
  if (block != 0 && block != 11 && block != 63) return false;
  return c != 0xA0 && c != 0x3000 && c != 0xFEFF;
}

Result<std::string> shield_from_tomlpp(const std::string& text, const std::string& source) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  for (size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    const size_t len = static_cast<unsigned char>(text[i]) >= 0x80 ? decode_utf8(text, i, &cp) : 0;
    if (len == 0) {
      if (text[i] == '\n') ++line;
      out.push_back(text[i++]);
      continue;
    }
    if (cp >= kShift && cp <= kShift + 0xFFFF) {
      return Status::invalid_argument(str_printf("%s:%d: private-use character U+%X is not accepted in a job spec",
                                                 source.c_str(), line, static_cast<unsigned>(cp)));
    }
    if (in_tomlpp_whitespace_hole(cp)) {
      append_utf8(kShift + cp, &out);
    } else {
      out.append(text, i, len);
    }
    i += len;
  }
  return out;
}

std::string unshield(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t len = static_cast<unsigned char>(s[i]) >= 0xF0 ? decode_utf8(s, i, &cp) : 0;
    if (len == 4 && cp >= kShift && in_tomlpp_whitespace_hole(cp - kShift)) {
      append_utf8(cp - kShift, &out);
      i += len;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

}  // namespace lema
