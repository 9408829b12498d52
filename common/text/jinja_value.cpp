#include "common/text/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace lema::jinja {

Value Value::list(std::vector<Value> items, bool tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<List>();
  v.list_->items = std::move(items);
  v.list_->tuple = tuple;
  return v;
}

Value Value::dict() {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>();
  return v;
}

Value Value::name_space() {
  Value v = dict();
  v.dict_->is_namespace = true;
  return v;
}

Value Value::function(std::string name, Function fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.str_ = std::move(name);
  v.fn_ = std::make_shared<Function>(std::move(fn));
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return none();
    case nlohmann::ordered_json::value_t::boolean:
      return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      // Python ints are unbounded; ours stop at int64 (a float beyond).
      return u <= static_cast<uint64_t>(INT64_MAX) ? integer(static_cast<int64_t>(u))
                                                   : real(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return real(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = dict();
      for (auto it = j.begin(); it != j.end(); ++it)
        d.dict_->items.emplace_back(it.key(), from_json(it.value()));
      return d;
    }
    default:
      return none();  // binary / discarded: not produced by the JSON parser
  }
}

bool Value::is_tuple() const { return kind_ == Kind::kList && list_->tuple; }
bool Value::is_namespace() const { return kind_ == Kind::kDict && dict_->is_namespace; }

Value* Dict::find(const std::string& key) {
  for (auto& kv : items) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  if (Value* old = find(key)) {
    *old = std::move(v);
  } else {
    items.emplace_back(key, std::move(v));
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
      return int_ != 0;
    case Kind::kFloat:
      return float_ != 0;
    case Kind::kString:
      return !str_.empty();
    case Kind::kList:
      return !list_->items.empty();
    case Kind::kDict:
      return dict_->is_namespace || !dict_->items.empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return list_->tuple ? "tuple" : "list";
    case Kind::kDict:
      return dict_->is_namespace ? "Namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return str_;
    default:
      return repr();
  }
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return int_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(int_);
    case Kind::kFloat:
      return py_repr_float(float_);
    case Kind::kString:
      return py_repr_string(str_);
    case Kind::kList: {
      std::string out = list_->tuple ? "(" : "[";
      for (size_t i = 0; i < list_->items.size(); ++i) {
        if (i) out += ", ";
        out += list_->items[i].repr();
      }
      if (list_->tuple && list_->items.size() == 1) out += ",";
      out += list_->tuple ? ")" : "]";
      return out;
    }
    case Kind::kDict: {
      if (dict_->is_namespace) return "<Namespace>";
      std::string out = "{";
      for (size_t i = 0; i < dict_->items.size(); ++i) {
        if (i) out += ", ";
        out += py_repr_string(dict_->items[i].first) + ": " + dict_->items[i].second.repr();
      }
      return out + "}";
    }
    case Kind::kFunction:
      return "<function " + str_ + ">";
  }
  return "";
}

namespace {
// Length in bytes of the UTF-8 sequence starting with `c` (1 for a stray byte).
size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

uint32_t utf8_decode(const std::string& s, size_t i, size_t n) {
  unsigned char c = s[i];
  if (n == 1) return c;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

// Code points CPython's str.isprintable() rejects that chat text may hold
// (C0/C1 controls, non-ASCII spaces, format characters, line separators).
bool py_unprintable(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) return true;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return true;
  if ((cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000) return true;
  if (cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0xD800 && cp <= 0xDFFF)) return true;
  return false;
}
}  // namespace

bool Value::iterate(std::vector<Value>* out) const {
  out->clear();
  switch (kind_) {
    case Kind::kUndefined:
      return true;
    case Kind::kList:
      *out = list_->items;
      return true;
    case Kind::kDict:
      if (dict_->is_namespace) return false;
      for (const auto& kv : dict_->items) out->push_back(string(kv.first));
      return true;
    case Kind::kString:
      for (size_t i = 0; i < str_.size();) {
        size_t n = std::min(utf8_len(static_cast<unsigned char>(str_[i])), str_.size() - i);
        out->push_back(string(str_.substr(i, n)));
        i += n;
      }
      return true;
    default:
      return false;
  }
}

bool Value::length(int64_t* out) const {
  switch (kind_) {
    case Kind::kUndefined:
      *out = 0;
      return true;
    case Kind::kList:
      *out = static_cast<int64_t>(list_->items.size());
      return true;
    case Kind::kDict:
      *out = static_cast<int64_t>(dict_->items.size());
      return !dict_->is_namespace;
    case Kind::kString: {
      int64_t n = 0;
      for (size_t i = 0; i < str_.size(); i += utf8_len(static_cast<unsigned char>(str_[i]))) ++n;
      *out = n;
      return true;
    }
    default:
      return false;
  }
}

bool operator==(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind_ == K::kFloat || b.kind_ == K::kFloat) return a.as_double() == b.as_double();
    return a.int_ == b.int_;
  }
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.str_ == b.str_;
    case K::kList: {
      if (a.list_ == b.list_) return true;
      if (a.list_->tuple != b.list_->tuple || a.list_->items.size() != b.list_->items.size()) return false;
      for (size_t i = 0; i < a.list_->items.size(); ++i) {
        if (a.list_->items[i] != b.list_->items[i]) return false;
      }
      return true;
    }
    case K::kDict: {
      if (a.dict_ == b.dict_) return true;
      if (a.dict_->is_namespace || b.dict_->is_namespace) return false;
      if (a.dict_->items.size() != b.dict_->items.size()) return false;
      for (const auto& kv : a.dict_->items) {
        Value* other = b.dict_->find(kv.first);
        if (!other || *other != kv.second) return false;
      }
      return true;
    }
    case K::kFunction:
      return a.fn_ == b.fn_;
    default:
      return false;
  }
}

std::string py_repr_string(const std::string& s) {
  char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    size_t n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
    uint32_t cp = utf8_decode(s, i, n);
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == static_cast<uint32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (py_unprintable(cp)) {
      if (cp <= 0xFF) {
        std::snprintf(buf, sizeof buf, "\\x%02x", cp);
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      out += buf;
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  out += quote;
  return out;
}

std::string py_repr_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then CPython's repr layout: positional
  // when the decimal point falls in (-4, 16], scientific otherwise.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exp10 = std::stoi(sci.substr(e + 1));
  int decpt = exp10 + 1;
  int nd = static_cast<int>(digits.size());
  std::string out;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out = "0." + std::string(-decpt, '0') + digits;
    } else if (decpt < nd) {
      out = digits.substr(0, decpt) + "." + digits.substr(decpt);
    } else {
      out = digits + std::string(decpt - nd, '0') + ".0";
    }
  } else {
    out = digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += eb;
  }
  return sign + out;
}

namespace {
void json_string(const std::string& s, bool ensure_ascii, std::string* out) {
  char buf[16];
  *out += '"';
  if (ensure_ascii) {
    // Python's ESCAPE_ASCII: everything outside ' '..'~' is escaped.
    for (size_t i = 0; i < s.size();) {
      size_t n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
      uint32_t cp = utf8_decode(s, i, n);
      i += n;
      if (cp == '"') {
        *out += "\\\"";
        continue;
      }
      if (cp == '\\') {
        *out += "\\\\";
        continue;
      }
      if (cp >= 0x20 && cp <= 0x7E) {
        *out += static_cast<char>(cp);
        continue;
      }
      if (cp == '\n') {
        *out += "\\n";
        continue;
      }
      if (cp == '\r') {
        *out += "\\r";
        continue;
      }
      if (cp == '\t') {
        *out += "\\t";
        continue;
      }
      if (cp == '\b') {
        *out += "\\b";
        continue;
      }
      if (cp == '\f') {
        *out += "\\f";
        continue;
      }
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      *out += buf;
    }
    *out += '"';
    return;
  }
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (c < 0x20) {
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
  }
  *out += '"';
}

bool json_value(const Value& v, const JsonDumpOptions& o, int level, std::string* out, std::string* error) {
  auto newline = [&](int lvl) {
    *out += '\n';
    out->append(static_cast<size_t>(o.indent) * lvl, ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      *out += "null";
      return true;
    case Value::Kind::kBool:
      *out += v.as_bool() ? "true" : "false";
      return true;
    case Value::Kind::kInt:
      *out += std::to_string(v.as_int());
      return true;
    case Value::Kind::kFloat: {
      double d = v.as_double();
      *out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : py_repr_float(d);
      return true;
    }
    case Value::Kind::kString:
      json_string(v.as_string(), o.ensure_ascii, out);
      return true;
    case Value::Kind::kList: {
      const auto& items = v.as_list().items;
      if (items.empty()) {
        *out += "[]";
        return true;
      }
      *out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) *out += o.item_separator;
        if (o.indent >= 0) newline(level + 1);
        if (!json_value(items[i], o, level + 1, out, error)) return false;
      }
      if (o.indent >= 0) newline(level);
      *out += ']';
      return true;
    }
    case Value::Kind::kDict: {
      if (v.is_namespace()) break;
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.as_dict().items) items.push_back(&kv);
      if (o.sort_keys) {
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      }
      if (items.empty()) {
        *out += "{}";
        return true;
      }
      *out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) *out += o.item_separator;
        if (o.indent >= 0) newline(level + 1);
        json_string(items[i]->first, o.ensure_ascii, out);
        *out += o.key_separator;
        if (!json_value(items[i]->second, o, level + 1, out, error)) return false;
      }
      if (o.indent >= 0) newline(level);
      *out += '}';
      return true;
    }
    default:
      break;
  }
  *error = std::string("Object of type ") + v.type_name() + " is not JSON serializable";
  return false;
}
}  // namespace

bool json_dumps(const Value& v, const JsonDumpOptions& opts, std::string* out, std::string* error) {
  JsonDumpOptions o = opts;
  if (o.item_separator.empty() && o.key_separator.empty()) {
    o.item_separator = o.indent >= 0 ? "," : ", ";
    o.key_separator = ": ";
  }
  out->clear();
  return json_value(v, o, 0, out, error);
}

}  // namespace lema::jinja
