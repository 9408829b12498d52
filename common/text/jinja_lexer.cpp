#include "common/text/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace lema::jinja {
namespace {

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t tag = find_tag_start(pos);
      if (tag == std::string::npos) {
        emit_text(src_.substr(pos), pos);
        break;
      }
      char kind = src_[tag + 1];
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      std::string text = src_.substr(pos, tag - pos);
      if (sign == '-') {
        text.erase(text.find_last_not_of(" \t\n\r\v\f") + 1);
      } else if (sign != '+' && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            text.find_first_not_of(" \t\r\v\f", l_pos) == std::string::npos) {
          text.erase(l_pos);
        }
      }
      emit_text(text, pos);
      size_t body = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      size_t end;
      if (kind == '#') {
        end = lex_comment(tag, body);
      } else if (kind == '%' && is_raw(body)) {
        end = lex_raw(tag, body);
      } else {
        end = lex_tag(kind, tag, body);
      }
      line_starting = end > 0 && src_[end - 1] == '\n';
      pos = end;
    }
    tokens_.push_back({Token::Type::kEof, "", pos_of(src_.size())});
    return std::move(tokens_);
  }

 private:
  Pos pos_of(size_t offset) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= offset)
        lo = mid;
      else
        hi = mid;
    }
    return Pos{static_cast<int>(lo + 1), static_cast<int>(offset - line_starts_[lo] + 1)};
  }

  [[noreturn]] void fail(const std::string& msg, size_t offset) const { throw Error{msg, pos_of(offset)}; }

  size_t find_tag_start(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_text(const std::string& text, size_t offset) {
    if (!text.empty()) tokens_.push_back({Token::Type::kText, text, pos_of(offset)});
  }

  // After the closing delimiter at `close` (pointing at '%', '}' or '#' of
  // the end marker, with `sign` the char before it or 0): apply `-` / `+` /
  // trim_blocks and return the offset where text resumes.
  size_t after_close(size_t close_end, char sign, bool trim_newline) const {
    size_t p = close_end;
    if (sign == '-') {
      while (p < src_.size() && std::strchr(" \t\n\r\v\f", src_[p])) ++p;
    } else if (sign != '+' && trim_newline && p < src_.size() && src_[p] == '\n') {
      ++p;
    }
    return p;
  }

  size_t lex_comment(size_t tag, size_t body) {
    size_t close = src_.find("#}", body);
    if (close == std::string::npos) fail("missing end of comment tag", tag);
    char sign = close > body && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : '\0';
    return after_close(close + 2, sign, true);
  }

  bool is_raw(size_t body) const {
    size_t p = body;
    while (p < src_.size() && std::isspace(static_cast<unsigned char>(src_[p]))) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && std::isspace(static_cast<unsigned char>(src_[p]))) ++p;
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0 || src_.compare(p, 3, "+%}") == 0;
  }

  size_t lex_raw(size_t tag, size_t body) {
    size_t close = src_.find("%}", body);
    char sign = src_[close - 1] == '-' || src_[close - 1] == '+' ? src_[close - 1] : '\0';
    size_t start = after_close(close + 2, sign, true);
    // Find {% endraw %} (with optional - / +).
    for (size_t p = src_.find("{%", start); p != std::string::npos; p = src_.find("{%", p + 2)) {
      size_t q = p + 2;
      char open_sign = q < src_.size() && (src_[q] == '-' || src_[q] == '+') ? src_[q++] : '\0';
      while (q < src_.size() && std::isspace(static_cast<unsigned char>(src_[q]))) ++q;
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < src_.size() && std::isspace(static_cast<unsigned char>(src_[q]))) ++q;
      char close_sign = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) close_sign = src_[q++];
      if (src_.compare(q, 2, "%}") != 0) continue;
      std::string text = src_.substr(start, p - start);
      if (open_sign == '-') text.erase(text.find_last_not_of(" \t\n\r\v\f") + 1);
      emit_text(text, start);
      return after_close(q + 2, close_sign, true);
    }
    fail("missing end of raw directive", tag);
  }

  // Lexes the expression tokens of a {{ }} or {% %} tag; returns the
  // offset after the tag.
  size_t lex_tag(char kind, size_t tag, size_t p) {
    bool block = kind == '%';
    tokens_.push_back({block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", pos_of(tag)});
    const char close_char = block ? '%' : '}';
    int depth = 0;  // brackets open: `}}` inside a dict literal does not close the tag
    while (true) {
      if (p >= src_.size())
        fail(block ? "unexpected end of template: missing '%}'" : "unexpected end of template: missing '}}'",
             tag);
      char c = src_[p];
      if (depth == 0) {
        char sign = '\0';
        size_t q = p;
        if ((c == '-' || (c == '+' && block)) && q + 1 < src_.size()) {
          sign = c;
          ++q;
        }
        if (src_[q] == close_char && q + 1 < src_.size() && src_[q + 1] == '}') {
          tokens_.push_back({block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", pos_of(p)});
          return after_close(q + 2, sign, block);
        }
      }
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++p;
        continue;
      }
      size_t start = p;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
        tokens_.push_back({Token::Type::kName, src_.substr(start, p - start), pos_of(start)});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                     ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|", ";"};
        const char* op = nullptr;
        for (const char* o : kOps) {
          if (src_.compare(p, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        }
        if (!op) fail(std::string("unexpected character '") + c + "'", p);
        if (std::strchr("([{", op[0]) && op[1] == '\0') ++depth;
        if (std::strchr(")]}", op[0]) && op[1] == '\0') {
          if (depth == 0) fail(std::string("unexpected '") + op + "'", p);
          --depth;
        }
        tokens_.push_back({Token::Type::kOp, op, pos_of(p)});
        p += std::strlen(op);
      }
    }
  }

  size_t lex_number(size_t p) {
    size_t start = p;
    auto digits = [&]() {
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1]))))) {
        ++p;
      }
    };
    digits();
    bool is_float = false;
    // `foo.0` is an item access, not a float: only digits after a dot that
    // follows a number start a fraction.
    if (p + 1 < src_.size() && src_[p] == '.' && std::isdigit(static_cast<unsigned char>(src_[p + 1])) &&
        !(start > 0 && src_[start - 1] == '.')) {
      ++p;
      digits();
      is_float = true;
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        p = q;
        digits();
        is_float = true;
      }
    }
    std::string text = src_.substr(start, p - start);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    tokens_.push_back({is_float ? Token::Type::kFloat : Token::Type::kInt, text, pos_of(start)});
    return p;
  }

  static void append_utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // A string literal with Python's unicode-escape rules (as Jinja2 decodes
  // them): \n \t \r \\ \' \" \a \b \f \v \0-\777 \xNN \uNNNN \UNNNNNNNN and
  // "\<newline>"; any other backslash is kept as written.
  size_t lex_string(size_t p) {
    char quote = src_[p];
    size_t start = p++;
    std::string out;
    while (true) {
      if (p >= src_.size()) fail("unterminated string literal", start);
      char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) fail("unterminated string literal", start);
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '\n':
          break;
        case 'x':
        case 'u':
        case 'U': {
          size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n > src_.size())
            fail("truncated \\" + std::string(1, e) + " escape in string literal", p - 2);
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            char h = src_[p + k];
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              fail("truncated \\" + std::string(1, e) + " escape in string literal", p - 2);
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                     ? h - '0'
                                                     : (std::tolower(h) - 'a' + 10));
          }
          if (cp > 0x10FFFF) fail("illegal Unicode character in string literal", p - 2);
          append_utf8(cp, &out);
          p += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(src_[p++] - '0');
            append_utf8(cp, &out);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back({Token::Type::kString, out, pos_of(start)});
    return p + 1;
  }

  const std::string& src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex_template(const std::string& source) {
  Lexer lexer(source);
  return lexer.run();
}

}  // namespace lema::jinja
