// Trains a BPE byte-fallback model with libsentencepiece on a generated
// corpus, then checks that lema's tokenizer (from tokenizer.model and from the
// tokenizer.json we derive) encodes and decodes exactly as SentencePiece does.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"
#include "tools/spm_train/spm_train_args.h"

namespace {

const std::vector<std::string> kWords = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at",
    "by", "I", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you",
    "were", "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will",
    "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can",
    "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any",
    "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did",
    "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "Mr", "how", "too", "little", "state", "good",
    "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both",
    "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us",
    "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three",
    "tokenizer", "streaming", "gradient", "checkpoint", "LoRA", "adapter", "Answer", "Explanation",
    "Confidence", "High", "Medium", "Low", "café", "naïve", "résumé", "Zürich", "señor", "façade", "Ålborg",
    "東京", "中文", "日本語", "한국어", "Привет", "мир", "Ελλάδα", "עברית", "مرحبا", "😀", "🚀", "👍🏽"};
const std::vector<std::string> kPunct = {".", ",", "!", "?", ";", ":", "-", "--", "(", ")", "\"", "'", "...",
                                         "[", "]", "{", "}", "/", "\\", "#", "$", "%", "&", "*", "+", "=",
                                         "<", ">", "@", "^", "_", "`", "|", "~"};
const std::string kChat =
    "<|system|>\nYou are a precise assistant trained using LEMA.\n\n<|user|>\nWhat is 17 * 23?\n\n"
    "<|assistant|>\n[LEMA_REPLY]\nAnswer: 391\nExplanation: 17 * 23 = 391.\nConfidence: High\n[/LEMA_REPLY]\n";

std::string sentence(std::mt19937& rng, int n_words) {
  std::string s;
  for (int i = 0; i < n_words; ++i) {
    if (i) s += ' ';
    s += kWords[rng() % kWords.size()];
    if (rng() % 7 == 0) s += kPunct[rng() % kPunct.size()];
    if (rng() % 11 == 0) s += " " + std::to_string(rng() % 100000);
  }
  return s;
}

// Diverse test strings: whitespace runs, newlines, tabs, digits, punctuation,
// accents, CJK, emoji, control characters, the chat template, odd bytes.
std::vector<std::string> test_strings(int n) {
  std::mt19937 rng(1234);
  const std::vector<std::string> pieces = {" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t ", "\x01",
                                           "\x7f", "\x1b[0m", "\u200b", "\u00a0", "\u2581", "\u2581\u2581", "0",
                                           "42", "3.14159", "1,000,000", "2026-11-29", "🤖🤖", "👨‍👩‍👧", "é",
                                           "e\u0301", "ß", "ﬁ", "Ⅻ", "①", "𝔘", "\xEF\xBF\xBD"};
  std::vector<std::string> out = {"", " ", "  ", "\n", "a", " a", "a ", "  a  b  ", "Hello world", kChat,
                                  "\t\tindent\n    code()", "1234567890", "\xF0\x9F\x98\x80", "\u2581x", "x\u2581",
                                  "\xff\xfe bad bytes \xc3", "\xe2\x82", "trailing   ", "   leading"};
  while (static_cast<int>(out.size()) < n) {
    std::string s;
    int parts = 1 + rng() % 6;
    for (int p = 0; p < parts; ++p) {
      switch (rng() % 5) {
        case 0: s += pieces[rng() % pieces.size()]; break;
        case 1: s += kPunct[rng() % kPunct.size()]; break;
        case 2: s += std::to_string(rng() % 1000000); break;
        default: s += sentence(rng, 1 + rng() % 8); break;
      }
      if (rng() % 3 == 0) s += pieces[rng() % 8];
    }
    if (rng() % 20 == 0) s = kChat + s;
    out.push_back(s);
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (l == 0 || i + l > s.size()) return false;
    for (size_t k = 1; k < l; ++k) if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += l;
  }
  return true;
}

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_tok_parity_XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "/tmp";
}

class TokenizerParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(temp_dir());
    std::mt19937 rng(7);
    std::string corpus;
    for (int i = 0; i < 6000; ++i) corpus += sentence(rng, 4 + rng() % 20) + "\n";
    for (int i = 0; i < 50; ++i) corpus += kChat;
    ASSERT_TRUE(lema::write_file_atomic(*dir_ + "/corpus.txt", corpus).ok());
    auto st = sentencepiece::SentencePieceTrainer::Train(
        lema::spm_train_args(*dir_ + "/corpus.txt", *dir_ + "/tokenizer", 1200, false) + " --minloglevel=2");
    ASSERT_TRUE(st.ok()) << st.ToString();
    auto json = lema::sentencepiece_model_to_hf_json(*dir_ + "/tokenizer.model");
    ASSERT_TRUE(json.ok()) << json.status().to_string();
    ASSERT_TRUE(lema::write_file_atomic(*dir_ + "/tokenizer.json", json.value()).ok());
  }
  static void TearDownTestSuite() {
    (void)lema::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* TokenizerParity::dir_ = nullptr;

TEST_F(TokenizerParity, EncodeDecodeMatchSentencePiece) {
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(*dir_ + "/tokenizer.model").ok());
  auto from_model = lema::Tokenizer::load(*dir_ + "/tokenizer.model");
  ASSERT_TRUE(from_model.ok()) << from_model.status().to_string();
  auto from_json = lema::Tokenizer::load(*dir_ + "/tokenizer.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status().to_string();
  const lema::Tokenizer& model = *from_model.value();
  const lema::Tokenizer& hf = *from_json.value();
  ASSERT_EQ(model.vocab_size(), sp.GetPieceSize());
  EXPECT_EQ(model.bos_id(), sp.bos_id());
  EXPECT_EQ(model.eos_id(), sp.eos_id());

  const auto strings = test_strings(1500);
  int enc_ok = 0, dec_ok = 0, json_ok = 0, json_dec_ok = 0, shown = 0;
  for (const auto& s : strings) {
    std::vector<int> ref;
    ASSERT_TRUE(sp.Encode(s, &ref).ok());
    std::vector<int32_t> ours = model.encode(s, false);
    std::vector<int32_t> ref32(ref.begin(), ref.end());
    if (ours == ref32) ++enc_ok;
    else if (shown++ < 5) ADD_FAILURE() << "encode differs for '" << s << "'";
    std::string ref_text;
    ASSERT_TRUE(sp.Decode(ref, &ref_text).ok());
    if (model.decode(ref32, false) == ref_text) ++dec_ok;
    else if (shown++ < 10) ADD_FAILURE() << "decode differs for '" << s << "': '" << model.decode(ref32, false) << "' vs '" << ref_text << "'";
    if (hf.encode(s, false) == ref32) ++json_ok;
    else if (shown++ < 15) ADD_FAILURE() << "tokenizer.json encode differs for '" << s << "'";
    if (hf.decode(ref32, false) == ref_text) ++json_dec_ok;
    else if (shown++ < 20) ADD_FAILURE() << "tokenizer.json decode differs for '" << s << "': '" << hf.decode(ref32, false) << "' vs '" << ref_text << "'";
    // add_special: BOS first, as LlamaTokenizer does.
    std::vector<int32_t> with_bos = model.encode(s, true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], sp.bos_id());
  }
  const int n = static_cast<int>(strings.size());
  std::printf("parity over %d strings: encode %d/%d, decode %d/%d, tokenizer.json encode %d/%d, decode %d/%d\n", n,
              enc_ok, n, dec_ok, n, json_ok, n, json_dec_ok, n);
  EXPECT_EQ(enc_ok, n);
  EXPECT_EQ(dec_ok, n);
  EXPECT_EQ(json_ok, n);
  EXPECT_EQ(json_dec_ok, n);
}

TEST_F(TokenizerParity, RandomIdsDecodeLikeSentencePiece) {
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(*dir_ + "/tokenizer.model").ok());
  auto model = lema::Tokenizer::load(*dir_ + "/tokenizer.model");
  ASSERT_TRUE(model.ok());
  std::mt19937 rng(99);
  int ok = 0;
  const int n = 1000;
  for (int i = 0; i < n; ++i) {
    std::vector<int> ids;
    int len = 1 + rng() % 12;
    for (int k = 0; k < len; ++k) ids.push_back(rng() % 4 == 0 ? 3 + rng() % 256 : rng() % sp.GetPieceSize());
    std::string ref;
    ASSERT_TRUE(sp.Decode(ids, &ref).ok());
    std::string ours = model.value()->decode(std::vector<int32_t>(ids.begin(), ids.end()), false);
    if (ours == ref) ++ok;
    else if (i - ok < 5) ADD_FAILURE() << "random ids decode differs: '" << ours << "' vs '" << ref << "'";
  }
  std::printf("random id sequences: decode %d/%d identical\n", ok, n);
  EXPECT_EQ(ok, n);
}

TEST_F(TokenizerParity, StreamingDecoderMatchesDecode) {
  auto model = lema::Tokenizer::load(*dir_ + "/tokenizer.model");
  ASSERT_TRUE(model.ok());
  for (const auto& s : test_strings(200)) {
    auto ids = model.value()->encode(s, false);
    lema::TokenStreamDecoder dec(*model.value(), false);
    std::string text;
    for (int32_t id : ids) {
      std::string piece = dec.push(id);
      // Never half a character: what is emitted must itself be valid UTF-8.
      EXPECT_TRUE(valid_utf8(piece)) << "for '" << s << "'";
      text += piece;
    }
    text += dec.flush();
    EXPECT_EQ(text, model.value()->decode(ids, false)) << "for '" << s << "'";
  }
}

}  // namespace
