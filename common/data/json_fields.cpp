#include "common/data/json_fields.h"

namespace lema {

bool is_blank(const std::string& s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

bool reject(BadLine* bad, LineError e, std::string detail) {
  bad->error = e;
  bad->detail = std::move(detail);
  return false;
}

bool read_text_field(const nlohmann::json& obj, const char* key, bool single_line, std::string* out, BadLine* bad) {
  auto it = obj.find(key);
  if (it == obj.end()) return reject(bad, LineError::kMissingField, std::string("missing \"") + key + "\"");
  if (!it->is_string())
    return reject(bad, LineError::kWrongType, std::string("\"") + key + "\": expected a string, got " + it->type_name());
  *out = it->get<std::string>();
  if (is_blank(*out)) return reject(bad, LineError::kEmptyField, std::string("\"") + key + "\" is empty");
  if (single_line && out->find('\n') != std::string::npos)
    return reject(bad, LineError::kMultiline, std::string("\"") + key + "\" contains a newline");
  return true;
}

}  // namespace lema
