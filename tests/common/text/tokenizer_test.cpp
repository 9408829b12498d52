// Unit tests of the tokenizer components on small hand-made tokenizers. The
// expected splits come from the formats' definitions (HF's documented Split
// behaviours, GPT-2's byte map and regex); parity against the reference
// libraries is in tests/tokenizer_parity/ and tests/gpu/tokenizer_parity.py.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "common/text/bpe_tokenizer.h"
#include "common/base/file_util.h"
#include "common/text/regex_splitter.h"
#include "common/text/tokenizer.h"
#include "common/text/tokenizer_loaders.h"

namespace lema {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_tok_test_XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

std::unique_ptr<Tokenizer> from_json(const std::string& text) {
  auto spec = parse_tokenizer_json(text, "test.json");
  EXPECT_TRUE(spec.ok()) << spec.status().to_string();
  if (!spec.ok()) return nullptr;
  auto t = BpeTokenizer::create(std::move(spec).value());
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return t.ok() ? std::unique_ptr<Tokenizer>(std::move(t).value()) : nullptr;
}

std::vector<std::string> tokens(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.id_to_token(id));
  return out;
}

TEST(ByteLevel, MapIsABijectionOverPrintableCharacters) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string& c = byte_to_unicode(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.insert(c).second) << b;
    size_t i = 0;
    uint32_t cp = 0;
    // decode the one code point
    const unsigned char* u = reinterpret_cast<const unsigned char*>(c.data());
    if (u[0] < 0x80) { cp = u[0]; i = 1; } else { cp = ((u[0] & 0x1F) << 6) | (u[1] & 0x3F); i = 2; }
    EXPECT_EQ(i, c.size());
    EXPECT_EQ(unicode_to_byte(cp), b);
    if (b >= '!' && b <= '~') EXPECT_EQ(c, std::string(1, static_cast<char>(b)));
  }
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // "Ġ" U+0120
  EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // "Ċ" U+010A
}

TEST(RegexSplitter, Gpt2PatternSplitsWordsNumbersAndSpaces) {
  auto re = RegexSplitter::compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false);
  ASSERT_TRUE(re.ok());
  std::vector<std::string_view> out;
  std::string text = "Hello world's 123  café!!\n";
  re.value()->split(text, RegexSplitter::kIsolated, false, &out);
  std::vector<std::string> got(out.begin(), out.end());
  EXPECT_EQ(got, (std::vector<std::string>{"Hello", " world", "'s", " 123", " ", " café", "!!", "\n"}));
}

TEST(RegexSplitter, BehavioursMatchHuggingFaceDocs) {
  // The example of tokenizers' SplitDelimiterBehavior documentation.
  auto re = RegexSplitter::compile("-", true);
  ASSERT_TRUE(re.ok());
  const std::string text = "the-final--countdown";
  auto run = [&](RegexSplitter::Behavior b) {
    std::vector<std::string_view> out;
    re.value()->split(text, b, false, &out);
    return std::vector<std::string>(out.begin(), out.end());
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(run(RegexSplitter::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(run(RegexSplitter::kIsolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(run(RegexSplitter::kMergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(run(RegexSplitter::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(run(RegexSplitter::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
}

TEST(RegexSplitter, BadPatternIsAClearError) {
  auto re = RegexSplitter::compile("(unclosed", false);
  ASSERT_FALSE(re.ok());
  EXPECT_NE(re.status().message().find("(unclosed"), std::string::npos);
}

// A byte-level tokenizer.json with the given merges over the vocab {a,b,c,ab,bc,abc,Ġ}.
std::string byte_level_json(const std::string& merges, const std::string& extra_added = "") {
  return R"({"added_tokens":[{"id":7,"content":"<|end|>","special":true,"lstrip":false,"rstrip":false,"normalized":false,"single_word":false})" +
         extra_added + R"(],
    "normalizer":null,
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
    "post_processor":{"type":"ByteLevel"},
    "decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5,"Ġ":6},"merges":)" + merges + "}}";
}

TEST(Merges, RankOrderDecidesTheSegmentation) {
  // "b c" first: a + bc, then no merge (a bc) exists -> [a, bc].
  auto t1 = from_json(byte_level_json(R"(["b c", "a b", "ab c"])"));
  ASSERT_TRUE(t1);
  EXPECT_EQ(tokens(*t1, t1->encode("abc", false)), (std::vector<std::string>{"a", "bc"}));
  // "a b" first, then "ab c" -> [abc]; merges as [a, b] pairs are accepted too.
  auto t2 = from_json(byte_level_json(R"([["a","b"], ["b","c"], ["ab","c"]])"));
  ASSERT_TRUE(t2);
  EXPECT_EQ(tokens(*t2, t2->encode("abc", false)), (std::vector<std::string>{"abc"}));
  // Ties between equal ranks go leftmost: "abab" -> [ab, ab].
  EXPECT_EQ(tokens(*t2, t2->encode("abab", false)), (std::vector<std::string>{"ab", "ab"}));
  // The space becomes "Ġ" and starts its own pre-token.
  EXPECT_EQ(tokens(*t2, t2->encode("ab c", false)), (std::vector<std::string>{"ab", "Ġ", "c"}));
  EXPECT_EQ(t2->decode(t2->encode("ab c", false), false), "ab c");
}

TEST(AddedTokens, SplitTheInputBeforeTheModel) {
  auto t = from_json(byte_level_json(R"(["a b"])", R"(,{"id":8,"content":"<x>","special":false,"lstrip":true,"rstrip":true,"normalized":false,"single_word":false})"));
  ASSERT_TRUE(t);
  // "<|end|>" is recognised inside the text; "ab" around it is encoded alone.
  EXPECT_EQ(tokens(*t, t->encode("ab<|end|>ab", false)), (std::vector<std::string>{"ab", "<|end|>", "ab"}));
  // lstrip/rstrip: the spaces around "<x>" belong to it.
  EXPECT_EQ(tokens(*t, t->encode("ab <x> ab", false)), (std::vector<std::string>{"ab", "<x>", "ab"}));
  EXPECT_TRUE(t->is_special(7));
  EXPECT_FALSE(t->is_special(8));
  EXPECT_EQ(t->decode(t->encode("ab<|end|>c", false), true), "abc");
  EXPECT_EQ(t->decode(t->encode("ab<|end|>c", false), false), "ab<|end|>c");
}

// A SentencePiece-BPE tokenizer.json (Llama-2 layout) over a tiny vocab.
std::string spm_json(bool legacy_normalizer) {
  std::string norm = legacy_normalizer
      ? R"({"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]})"
      : "null";
  std::string pre = legacy_normalizer ? "null" : R"({"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false})";
  std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2,"▁":3,"h":4,"i":5,"▁h":6,"▁hi":7)";
  for (int b = 0; b < 256; ++b) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), ",\"<0x%02X>\":%d", b, 8 + b);
    vocab += buf;
  }
  return R"({"added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}],
    "normalizer":)" + norm + R"(,"pre_tokenizer":)" + pre + R"(,
    "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
      "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
    "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
    "model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":{)" + vocab + R"(},"merges":["▁ h","▁h i"]}})";
}

TEST(SentencePieceJson, PrependReplaceByteFallbackAndDecoders) {
  for (bool legacy : {true, false}) {
    auto t = from_json(spm_json(legacy));
    ASSERT_TRUE(t);
    // "hi hi" -> "▁hi▁hi"; "é" is not in the vocab -> its two UTF-8 bytes.
    EXPECT_EQ(tokens(*t, t->encode("hi hié", true)),
              (std::vector<std::string>{"<s>", "▁hi", "▁hi", "<0xC3>", "<0xA9>"}));
    EXPECT_EQ(t->decode(t->encode("hi hié", true), true), "hi hié");
    // An invalid byte run decodes to one U+FFFD per byte (ByteFallback).
    EXPECT_EQ(t->decode({7, 8 + 0xC3}, false), "hi\xEF\xBF\xBD");
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
  }
}

// The Unicode normalizers run before the rest of the sequence (as in
// Qwen2/Qwen3's {"type": "NFC"}), on the text between added tokens.
TEST(SentencePieceJson, UnicodeNormalizersRunFirst) {
  auto with_form = [](const std::string& form) {
    std::string j = spm_json(true);
    const std::string at = R"({"type":"Prepend")";
    j.insert(j.find(at), R"({"type":")" + form + R"("},)");
    return from_json(j);
  };
  const std::string e_combining = "e\xCC\x81";  // e + U+0301
  auto plain = from_json(spm_json(true));
  auto nfc = with_form("NFC"), nfd = with_form("NFD"), nfkc = with_form("NFKC");
  ASSERT_TRUE(plain && nfc && nfd && nfkc);
  EXPECT_EQ(tokens(*plain, plain->encode("hi " + e_combining, false)),
            (std::vector<std::string>{"▁hi", "▁", "<0x65>", "<0xCC>", "<0x81>"}));
  EXPECT_EQ(tokens(*nfc, nfc->encode("hi " + e_combining, false)),
            (std::vector<std::string>{"▁hi", "▁", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(tokens(*nfd, nfd->encode("hi \xC3\xA9", false)),
            (std::vector<std::string>{"▁hi", "▁", "<0x65>", "<0xCC>", "<0x81>"}));
  // NFKC: the "fi" ligature U+FB01 becomes "f" "i"; NFC keeps it.
  EXPECT_EQ(tokens(*nfkc, nfkc->encode("\xEF\xAC\x81", false)),
            (std::vector<std::string>{"▁", "<0x66>", "i"}));
  EXPECT_EQ(tokens(*nfc, nfc->encode("\xEF\xAC\x81", false)),
            (std::vector<std::string>{"▁", "<0xEF>", "<0xAC>", "<0x81>"}));
  // Added tokens split the text first: "<s>" inside survives the normalizer.
  EXPECT_EQ(tokens(*nfc, nfc->encode("hi<s>hi", false)), (std::vector<std::string>{"▁hi", "<s>", "▁hi"}));
}

TEST(StreamDecoder, HoldsBackIncompleteCharacters) {
  auto t = from_json(spm_json(true));
  ASSERT_TRUE(t);
  std::vector<int32_t> ids = t->encode("hi 東 hi", false);
  TokenStreamDecoder dec(*t, false);
  std::string text;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    // Never a partial character: no continuation byte at the start, no lead byte at the end.
    if (!piece.empty()) {
      EXPECT_NE(static_cast<unsigned char>(piece[0]) & 0xC0, 0x80);
      EXPECT_LT(static_cast<unsigned char>(piece.back()), 0xC0);
    }
    text += piece;
  }
  text += dec.flush();
  EXPECT_EQ(text, "hi 東 hi");
}

// --- protobuf ------------------------------------------------------------

void put_varint(uint64_t v, std::string* out) {
  while (v >= 0x80) { out->push_back(static_cast<char>((v & 0x7F) | 0x80)); v >>= 7; }
  out->push_back(static_cast<char>(v));
}
void put_bytes(int field, const std::string& b, std::string* out) {
  put_varint((static_cast<uint64_t>(field) << 3) | 2, out);
  put_varint(b.size(), out);
  *out += b;
}
void put_int(int field, uint64_t v, std::string* out) {
  put_varint(static_cast<uint64_t>(field) << 3, out);
  put_varint(v, out);
}
std::string piece(const std::string& text, float score, int type) {
  std::string p;
  put_bytes(1, text, &p);
  put_varint((2 << 3) | 5, &p);
  char f[4];
  std::memcpy(f, &score, 4);
  p.append(f, 4);
  put_int(3, type, &p);
  return p;
}
// A SentencePiece BPE ModelProto: <unk> <s> </s>, bytes, then ▁ h i ▁h ▁hi.
std::string model_proto(int model_type, bool with_charsmap) {
  std::string m;
  put_bytes(1, piece("<unk>", 0, 2), &m);
  put_bytes(1, piece("<s>", 0, 3), &m);
  put_bytes(1, piece("</s>", 0, 3), &m);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    put_bytes(1, piece(buf, 0, 6), &m);
  }
  put_bytes(1, piece("▁h", -1, 1), &m);
  put_bytes(1, piece("▁hi", -2, 1), &m);
  put_bytes(1, piece("▁", -3, 1), &m);
  put_bytes(1, piece("h", -4, 1), &m);
  put_bytes(1, piece("i", -5, 1), &m);
  std::string trainer;
  put_int(3, model_type, &trainer);
  put_int(35, 1, &trainer);  // byte_fallback
  put_bytes(2, trainer, &m);
  std::string norm;
  put_bytes(1, with_charsmap ? "nmt_nfkc" : "identity", &norm);
  if (with_charsmap) put_bytes(2, "\x04\x00\x00\x00garbage", &norm);
  put_int(4, 0, &norm);  // remove_extra_whitespaces = false
  put_bytes(3, norm, &m);
  return m;
}

TEST(SentencePieceModel, ParsesPiecesScoresAndSpecs) {
  auto spec = parse_sentencepiece_model(model_proto(2, false), "t.model");
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_TRUE(spec->byte_fallback);
  EXPECT_FALSE(spec->spm_remove_extra_whitespaces);
  EXPECT_TRUE(spec->spm_add_dummy_prefix);
  auto t = BpeTokenizer::create(std::move(spec).value());
  ASSERT_TRUE(t.ok());
  // Highest score first: ▁h (-1) before h+i (not a piece), then ▁h+i -> ▁hi.
  EXPECT_EQ(tokens(*t.value(), t.value()->encode("hi  hi", false)), (std::vector<std::string>{"▁hi", "▁", "▁hi"}));
  EXPECT_EQ(t.value()->decode(t.value()->encode("hi  hi", false), false), "hi  hi");
  EXPECT_EQ(tokens(*t.value(), t.value()->encode("hé", true)), (std::vector<std::string>{"<s>", "▁h", "<0xC3>", "<0xA9>"}));
}

TEST(SentencePieceModel, RefusesUnigramAndNfkc) {
  auto u = parse_sentencepiece_model(model_proto(1, false), "u.model");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("unigram"), std::string::npos);
  auto n = parse_sentencepiece_model(model_proto(2, true), "n.model");
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("nmt_nfkc"), std::string::npos);
}

TEST(SentencePieceModel, TruncatedOrGarbledBytesAreErrorsNotCrashes) {
  const std::string good = model_proto(2, false);
  for (size_t cut : {size_t(1), size_t(5), good.size() / 2, good.size() - 1}) {
    auto r = parse_sentencepiece_model(good.substr(0, cut), "cut.model");
    EXPECT_FALSE(r.ok()) << cut;
    if (!r.ok()) EXPECT_NE(r.status().message().find("cut.model"), std::string::npos);
  }
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string bad = good;
    for (int k = 0; k < 8; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
    auto r = parse_sentencepiece_model(bad, "bad.model");  // must not crash; may parse
    if (r.ok()) {
      auto t = BpeTokenizer::create(std::move(r).value());
      if (t.ok()) (void)t.value()->encode("hi there", true);
    }
  }
}

// --- bad tokenizer.json -----------------------------------------------------

TEST(TokenizerJson, BadFilesGiveClearErrors) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    auto r = parse_tokenizer_json(text, "bad.json");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_NE(r.status().message().find("bad.json"), std::string::npos);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  expect_error("{not json", "not valid JSON");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0}}})", "merges");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":-4},"merges":[]}})", "out of range");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a q"]}})", "outside the vocab");
  expect_error(R"({"model":{"type":"Unigram","vocab":[]}})", "Unigram");
  expect_error(R"({"normalizer":{"type":"Lowercase"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})", "Lowercase");
  expect_error(R"({"normalizer":{"type":"BertNormalizer"},"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})", "BertNormalizer");
  expect_error(R"({"added_tokens":[{"id":99999999,"content":"x"}],"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})", "out of range");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]}})", "not an integer");
}

TEST(TokenizerLoad, DirectoryAndConfig) {
  const std::string dir = temp_dir();
  ASSERT_TRUE(write_file_atomic(dir + "/tokenizer.json", spm_json(true)).ok());
  auto t = Tokenizer::load(dir);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t.value()->encode("hi", true), (std::vector<int32_t>{1, 7}));
  ASSERT_TRUE(write_file_atomic(dir + "/tokenizer_config.json", R"({"add_bos_token":false,"add_eos_token":true,"eos_token":{"content":"</s>"}})").ok());
  t = Tokenizer::load(dir);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value()->encode("hi", true), (std::vector<int32_t>{7, 2}));
  // null: the tokenizer has no such token (Qwen's "bos_token": null), even
  // when tokenizer.json's vocab or post-processor has a "<s>".
  ASSERT_TRUE(write_file_atomic(dir + "/tokenizer_config.json", R"({"bos_token":null,"pad_token":null,"add_bos_token":false})").ok());
  t = Tokenizer::load(dir);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t.value()->bos_id(), -1);
  EXPECT_EQ(t.value()->pad_id(), -1);
  EXPECT_EQ(t.value()->eos_id(), 2);
  EXPECT_EQ(t.value()->encode("hi", true), (std::vector<int32_t>{7}));
  // A token the tokenizer does not have, or a value of the wrong type, is named.
  for (const char* bad : {R"({"eos_token":"<|nope|>"})", R"({"bos_token":7})", R"({"pad_token":""})"}) {
    ASSERT_TRUE(write_file_atomic(dir + "/tokenizer_config.json", bad).ok());
    t = Tokenizer::load(dir);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("tokenizer_config.json"), std::string::npos) << t.status().message();
    EXPECT_NE(t.status().message().find(std::string(bad).substr(2, 9)), std::string::npos) << t.status().message();
  }
  auto missing = Tokenizer::load(dir + "/nothing");
  EXPECT_FALSE(missing.ok());
  (void)remove_all(dir);
}

}  // namespace
}  // namespace lema
