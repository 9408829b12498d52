// Unicode normalization forms (NFC, NFD, NFKC, NFKD) of UTF-8 text, as the
// Hugging Face tokenizers' normalizers of the same names apply them (Qwen2
// and Qwen3's tokenizer.json has {"type": "NFC"}). Backed by ICU (libicuuc);
// ICU stays inside unicode_normalizer.cpp.
//
// Thread-safety: plain functions over ICU's immutable singletons; safe from
// many threads.
#pragma once

#include <string>
#include <string_view>

#include "common/base/status.h"

namespace lema {

enum class UnicodeForm { kNFC, kNFD, kNFKC, kNFKD };

// "NFC", "NFD", "NFKC", "NFKD" (tokenizer.json's normalizer type names);
// anything else is kNotFound.
Result<UnicodeForm> unicode_form_from_name(const std::string& name);
const char* unicode_form_name(UnicodeForm form);

// Checks that ICU can give the form's normalizer (its data is part of
// libicudata; a broken install fails here, at load, not while encoding).
Status unicode_normalizer_check(UnicodeForm form);

// The normal form of `utf8`. REQUIRES: valid UTF-8 (the tokenizer sanitizes
// its input first) and unicode_normalizer_check(form) passed once; ICU
// failing after that is a bug (LEMA_CHECK). ASCII text is returned as is
// (it is its own normal form in all four).
std::string unicode_normalize(std::string_view utf8, UnicodeForm form);

}  // namespace lema
