// Keeps toml++ 3.3.0 (Debian 12) away from a hole in its generated
// whitespace table: for U+00A1..U+0499, U+2C5E..U+3057 and U+FB26..U+FEFE
// (but U+3000) its is_non_ascii_horizontal_whitespace() reaches
// __builtin_unreachable(): undefined behaviour in a release build, reached
// from a spec's bytes wherever toml++ asks whether a character is
// whitespace (between tokens, after a bare value, after a backslash in a
// multi-line string; tests/fuzz/findings/job_spec_toml_unreachable*.toml).
//
// Rather than guess where toml++ asks, the text it parses holds none of
// these characters: each one is moved to plane 15's private-use area
// (U+F0000 + c, where toml++ answers "not whitespace" without the table),
// and the strings of the parsed table and toml++'s error text are moved
// back. Valid TOML parses to the same values; a spec that already holds a
// plane-15 private-use character is refused (the mapping must be one to one).
#pragma once

#include <string>

#include "common/base/status.h"

namespace lema {

// True for the code points toml++ 3.3.0's whitespace table mis-handles.
bool in_tomlpp_whitespace_hole(char32_t c);

// `text` with every hole character (well-formed UTF-8) moved to U+F0000 + c;
// other bytes, invalid UTF-8 included, unchanged (toml++ judges them).
// kInvalidArgument "<source>:<line>: ..." for a plane-15 private-use character.
Result<std::string> shield_from_tomlpp(const std::string& text, const std::string& source);

// The inverse on a string toml++ gave back (a value, a key, an error).
std::string unshield(const std::string& s);

}  // namespace lema
