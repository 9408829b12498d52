// The field readers shared by the dataset record parsers (dataset.cpp,
// dataset_format.cpp): each failure fills a BadLine naming the key.
//
// Free functions; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/data/dataset.h"

namespace lema {

// True when `s` holds only spaces, tabs and newlines.
bool is_blank(const std::string& s);

// Fills `bad` and returns false, so a parser can `return reject(...)`.
bool reject(BadLine* bad, LineError e, std::string detail);

// Reads obj[key] as a non-blank string (single-line when asked).
bool read_text_field(const nlohmann::json& obj, const char* key, bool single_line, std::string* out, BadLine* bad);

}  // namespace lema
