#include "common/text/unicode_normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

namespace lema {

namespace {

// ICU owns the instances (process-wide, never freed); nullptr with `err`
// set when its data is missing.
const icu::Normalizer2* instance(UnicodeForm form, UErrorCode* err) {
  switch (form) {
    case UnicodeForm::kNFC: return icu::Normalizer2::getNFCInstance(*err);
    case UnicodeForm::kNFD: return icu::Normalizer2::getNFDInstance(*err);
    case UnicodeForm::kNFKC: return icu::Normalizer2::getNFKCInstance(*err);
    case UnicodeForm::kNFKD: return icu::Normalizer2::getNFKDInstance(*err);
  }
  return nullptr;
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

Result<UnicodeForm> unicode_form_from_name(const std::string& name) {
  if (name == "NFC") return UnicodeForm::kNFC;
  if (name == "NFD") return UnicodeForm::kNFD;
  if (name == "NFKC") return UnicodeForm::kNFKC;
  if (name == "NFKD") return UnicodeForm::kNFKD;
  return Status::not_found("'" + name + "' is not a Unicode normalization form (NFC, NFD, NFKC, NFKD)");
}

const char* unicode_form_name(UnicodeForm form) {
  switch (form) {
    case UnicodeForm::kNFC: return "NFC";
    case UnicodeForm::kNFD: return "NFD";
    case UnicodeForm::kNFKC: return "NFKC";
    case UnicodeForm::kNFKD: return "NFKD";
  }
  return "?";
}

Status unicode_normalizer_check(UnicodeForm form) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = instance(form, &err);
  if (n == nullptr || U_FAILURE(err)) {
    return Status::unavailable(std::string("ICU cannot give the ") + unicode_form_name(form) +
                               " normalizer (" + u_errorName(err) + "): is libicu's data installed?");
  }
  return Status();
}

std::string unicode_normalize(std::string_view utf8, UnicodeForm form) {
  // Most training text is ASCII: skip ICU (and its copy) for it.
  if (is_ascii(utf8)) return std::string(utf8);
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = instance(form, &err);
  LEMA_CHECK(n != nullptr && U_SUCCESS(err));
  std::string out;
  out.reserve(utf8.size() + utf8.size() / 4);
  icu::StringByteSink<std::string> sink(&out);
  // normalizeUTF8 works on the bytes directly (no UTF-16 round trip for NFC/NFKC).
  n->normalizeUTF8(0, icu::StringPiece(utf8.data(), static_cast<int32_t>(utf8.size())), sink, nullptr, err);
  LEMA_CHECK(U_SUCCESS(err));
  return out;
}

}  // namespace lema
