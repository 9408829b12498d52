// The Unicode normalization forms against the standard's own examples
// (UAX #15) and against Python's unicodedata.normalize on generated strings
// from the blocks where the forms differ (skips that part without python3).
#include "common/text/unicode_normalizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/text/bpe_tokenizer.h"

namespace lema {
namespace {

std::string u8(uint32_t cp) {
  std::string s;
  utf8::append_codepoint(cp, &s);
  return s;
}

TEST(UnicodeNormalizer, FormsOfKnownStrings) {
  const std::string e_acute = u8(0xE9), e_combining = "e" + u8(0x301);
  EXPECT_EQ(unicode_normalize(e_combining, UnicodeForm::kNFC), e_acute);
  EXPECT_EQ(unicode_normalize(e_acute, UnicodeForm::kNFD), e_combining);
  // Compatibility characters change only under the K forms: the "fi"
  // ligature, a circled digit, a full-width letter, the Angstrom sign.
  EXPECT_EQ(unicode_normalize(u8(0xFB01), UnicodeForm::kNFC), u8(0xFB01));
  EXPECT_EQ(unicode_normalize(u8(0xFB01), UnicodeForm::kNFKC), "fi");
  EXPECT_EQ(unicode_normalize(u8(0x2460), UnicodeForm::kNFKD), "1");
  EXPECT_EQ(unicode_normalize(u8(0xFF21), UnicodeForm::kNFKC), "A");
  EXPECT_EQ(unicode_normalize(u8(0x212B), UnicodeForm::kNFC), u8(0xC5));  // canonical singleton
  // Canonical ordering of combining marks (UAX #15: dot below before dot above).
  EXPECT_EQ(unicode_normalize("q" + u8(0x307) + u8(0x323), UnicodeForm::kNFC), "q" + u8(0x323) + u8(0x307));
  // Hangul: a syllable decomposes into its jamo and composes back.
  const std::string han = u8(0xD55C), jamo = u8(0x1112) + u8(0x1161) + u8(0x11AB);
  EXPECT_EQ(unicode_normalize(han, UnicodeForm::kNFD), jamo);
  EXPECT_EQ(unicode_normalize(jamo, UnicodeForm::kNFC), han);
  // ASCII, the empty string and emoji are unchanged in every form.
  for (UnicodeForm f : {UnicodeForm::kNFC, UnicodeForm::kNFD, UnicodeForm::kNFKC, UnicodeForm::kNFKD}) {
    EXPECT_EQ(unicode_normalize("", f), "");
    EXPECT_EQ(unicode_normalize("plain ASCII {{ x }}\n\t", f), "plain ASCII {{ x }}\n\t");
    EXPECT_EQ(unicode_normalize(u8(0x1F44B) + u8(0x1F3FD), f), u8(0x1F44B) + u8(0x1F3FD));
  }
}

TEST(UnicodeNormalizer, NamesAsTokenizerJsonWritesThem) {
  for (const char* n : {"NFC", "NFD", "NFKC", "NFKD"}) {
    auto f = unicode_form_from_name(n);
    ASSERT_TRUE(f.ok()) << n;
    EXPECT_STREQ(unicode_form_name(*f), n);
    EXPECT_TRUE(unicode_normalizer_check(*f).ok());
  }
  EXPECT_FALSE(unicode_form_from_name("nfc").ok());
  EXPECT_FALSE(unicode_form_from_name("Lowercase").ok());
}

// Strings mixing the characters where the forms differ, drawn with a fixed
// seed. Only characters assigned by Unicode 13 (Python 3.9's unicodedata
// and later, and ICU 72's 15.0 agree on them).
std::vector<std::string> generated_strings(size_t n) {
  const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x41, 0x7A},     {0xC0, 0x17F},    {0x1E00, 0x1EFF}, {0x300, 0x36F},   {0x370, 0x3FF},
      {0x400, 0x4FF},   {0x5D0, 0x5EA},   {0x591, 0x5C7},   {0x621, 0x655},   {0x900, 0x97F},
      {0x1100, 0x11FF}, {0xAC00, 0xAC40}, {0xD7A0, 0xD7A3}, {0x3040, 0x30FF}, {0xF900, 0xFA2D},
      {0xFB00, 0xFB06}, {0xFB1D, 0xFB4F}, {0xFE70, 0xFEFC}, {0xFF01, 0xFFEE}, {0x2150, 0x2189},
      {0x2460, 0x24FF}, {0x3300, 0x33FF}, {0x1D400, 0x1D4FF}, {0x2000, 0x200A}, {0x1F600, 0x1F64F}};
  std::mt19937 rng(20261204);
  std::vector<std::string> out;
  while (out.size() < n) {
    std::string s;
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) {
      const auto& r = ranges[rng() % ranges.size()];
      const uint32_t cp = r.first + rng() % (r.second - r.first + 1);
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      s += u8(cp);
    }
    out.push_back(s);
  }
  return out;
}

TEST(UnicodeNormalizer, EqualsPythonUnicodedata) {
  if (std::system("python3 -c 'import unicodedata' >/dev/null 2>&1") != 0) GTEST_SKIP() << "python3 not found";
  const std::vector<std::string> strings = generated_strings(3000);
  char tmpl[] = "/tmp/lema_unorm_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  {
    std::ofstream f(dir + "/in.jsonl", std::ios::binary);
    for (const auto& s : strings) f << nlohmann::json(s).dump() << "\n";
  }
  // One line per input: [NFC, NFD, NFKC, NFKD], as Python computes them.
  const std::string script =
      "import json, sys, unicodedata\n"
      "for line in sys.stdin:\n"
      "    s = json.loads(line)\n"
      "    print(json.dumps([unicodedata.normalize(f, s) for f in ('NFC', 'NFD', 'NFKC', 'NFKD')]))\n";
  ASSERT_TRUE(write_file_atomic(dir + "/norm.py", script).ok());
  ASSERT_EQ(std::system(("python3 " + dir + "/norm.py < " + dir + "/in.jsonl > " + dir + "/out.jsonl").c_str()), 0);
  std::ifstream f(dir + "/out.jsonl", std::ios::binary);
  std::string line;
  size_t i = 0, same = 0, changed = 0;
  const UnicodeForm forms[] = {UnicodeForm::kNFC, UnicodeForm::kNFD, UnicodeForm::kNFKC, UnicodeForm::kNFKD};
  while (std::getline(f, line) && i < strings.size()) {
    const nlohmann::json want = nlohmann::json::parse(line);
    for (int k = 0; k < 4; ++k) {
      const std::string got = unicode_normalize(strings[i], forms[k]);
      if (got == want[k].get<std::string>()) ++same;
      else ADD_FAILURE() << unicode_form_name(forms[k]) << " of " << nlohmann::json(strings[i]).dump() << ": lema "
                         << nlohmann::json(got).dump() << ", python " << want[k].dump();
      if (got != strings[i]) ++changed;
    }
    ++i;
  }
  EXPECT_EQ(i, strings.size());
  std::printf("unicode normalization: %zu/%zu equal to python's unicodedata (%zu changed the input)\n", same,
              4 * strings.size(), changed);
  EXPECT_GT(changed, strings.size());  // the strings exercise the forms
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema
