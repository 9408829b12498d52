#include "common/text/bpe_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <queue>

namespace lema {

namespace {
const char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581, SentencePiece's "▁"
const char kReplacementChar[] = "\xEF\xBF\xBD";

enum PieceType : uint8_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

bool starts_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.compare(0, p.size(), p) == 0; }

void replace_all(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t f = s->find(from, pos);
    if (f == std::string::npos) break;
    out.append(*s, pos, f - pos);
    out.append(to);
    pos = f + from.size();
  }
  if (pos == 0) return;
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

std::string byte_piece(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

// "<0xNN>" -> NN, or -1.
int parse_byte_piece(const std::string& s) {
  if (s.size() != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };  // HF parses either case
  int hi = hex(s[3]), lo = hex(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

// One symbol of a word during merging: a byte range of the word and its id.
struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t start, len;
};
// A candidate merge of symbols[left] and symbols[right]; lower priority first,
// then leftmost (both SentencePiece and HF break ties by position).
struct Candidate {
  double priority;
  int32_t left, right, new_id;
  uint32_t size;
};
struct CandidateWorse {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
  }
};
}  // namespace

// ---------------------------------------------------------------- UTF-8

namespace utf8 {
size_t valid_char_len(const char* s, size_t n) {
  if (n == 0) return 0;
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  unsigned char c = u[0];
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((u[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (u[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  return len;
}

std::string sanitize(const std::string& s) {
  size_t i = 0;
  // Fast path: most text is valid.
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
    size_t l = valid_char_len(s.data() + i, s.size() - i);
    if (l == 0) break;
    i += l;
  }
  if (i == s.size()) return s;
  std::string out(s, 0, i);
  while (i < s.size()) {
    size_t l = valid_char_len(s.data() + i, s.size() - i);
    if (l == 0) { out += kReplacementChar; ++i; }
    else { out.append(s, i, l); i += l; }
  }
  return out;
}

std::string from_bytes_lossy(const std::string& s) {
  std::string out;
  size_t i = 0;
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    size_t l = valid_char_len(s.data() + i, s.size() - i);
    if (l > 0) { out.append(s, i, l); i += l; continue; }
    // Maximal subpart: the longest prefix of a well-formed sequence.
    unsigned char c = u[i];
    size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 1;
    size_t j = 1;
    while (j < need && i + j < s.size()) {
      unsigned char d = u[i + j];
      unsigned char lo = 0x80, hi = 0xBF;
      if (j == 1) {
        if (c == 0xE0) lo = 0xA0; else if (c == 0xED) hi = 0x9F;
        else if (c == 0xF0) lo = 0x90; else if (c == 0xF4) hi = 0x8F;
      }
      if (d < lo || d > hi) break;
      ++j;
    }
    out += kReplacementChar;
    i += j;
  }
  return out;
}

void append_codepoint(uint32_t cp, std::string* out) {
  if (cp < 0x80) { out->push_back(static_cast<char>(cp)); }
  else if (cp < 0x800) { out->push_back(static_cast<char>(0xC0 | (cp >> 6))); out->push_back(static_cast<char>(0x80 | (cp & 0x3F))); }
  else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12))); out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18))); out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F))); out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}
}  // namespace utf8

// ---------------------------------------------------------------- byte level

namespace {
struct ByteMap {
  std::string chars[256];
  int from_cp[512];
  ByteMap() {
    std::fill(std::begin(from_cp), std::end(from_cp), -1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
      utf8::append_codepoint(cp, &chars[b]);
      from_cp[cp] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
// Decodes the code point at s[i] (valid UTF-8 assumed); advances i.
uint32_t next_codepoint(const std::string& s, size_t* i) {
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  size_t l = utf8::valid_char_len(s.data() + *i, s.size() - *i);
  if (l == 0) { ++*i; return 0xFFFD; }
  uint32_t cp = l == 1 ? u[*i] : l == 2 ? (u[*i] & 0x1F) : l == 3 ? (u[*i] & 0x0F) : (u[*i] & 0x07);
  for (size_t k = 1; k < l; ++k) cp = (cp << 6) | (u[*i + k] & 0x3F);
  *i += l;
  return cp;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().chars[b]; }
int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().from_cp[cp] : -1; }

// ---------------------------------------------------------------- setup

BpeTokenizer::BpeTokenizer(BpeSpec spec) : spec_(std::move(spec)) {}

Result<std::unique_ptr<BpeTokenizer>> BpeTokenizer::create(BpeSpec spec) {
  const std::string& src = spec.source;
  const int64_t n = static_cast<int64_t>(spec.pieces.size());
  if (n == 0) return Status::invalid_argument(src + ": empty vocabulary");
  auto in_range = [n](int32_t id) { return id >= 0 && id < n; };
  for (const auto& kv : spec.piece_ids)
    if (!in_range(kv.second))
      return Status::invalid_argument(src + ": token '" + kv.first + "' has id " + std::to_string(kv.second) +
                                      " outside the vocabulary of " + std::to_string(n));
  for (const auto& t : spec.added_tokens)
    if (!in_range(t.id)) return Status::invalid_argument(src + ": added token '" + t.content + "' has id " + std::to_string(t.id) + " out of range");
  for (int32_t id : spec.prefix_ids) if (!in_range(id)) return Status::invalid_argument(src + ": post-processor id " + std::to_string(id) + " out of range");
  for (int32_t id : spec.suffix_ids) if (!in_range(id)) return Status::invalid_argument(src + ": post-processor id " + std::to_string(id) + " out of range");
  if (spec.unk_id >= n) return Status::invalid_argument(src + ": unk id out of range");
  if (spec.mode == BpeSpec::Mode::kSentencePiece && (spec.scores.size() != spec.pieces.size() || spec.types.size() != spec.pieces.size()))
    return Status::internal(src + ": scores/types do not match the pieces");

  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer(std::move(spec)));
  BpeSpec& s = t->spec_;
  t->is_special_.assign(s.pieces.size(), 0);
  for (const auto& a : s.added_tokens) if (a.special) t->is_special_[a.id] = 1;
  if (s.mode == BpeSpec::Mode::kSentencePiece) {
    for (size_t i = 0; i < s.types.size(); ++i) {
      if (s.types[i] == kControl || s.types[i] == kUnknown) t->is_special_[i] = 1;
      if (s.types[i] == kUserDefined) t->user_defined_.push_back(s.pieces[i]);
    }
    std::sort(t->user_defined_.begin(), t->user_defined_.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
  t->added_sorted_ = s.added_tokens;
  std::stable_sort(t->added_sorted_.begin(), t->added_sorted_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  t->added_first_.resize(256);
  for (size_t k = 0; k < t->added_sorted_.size(); ++k)
    if (!t->added_sorted_[k].content.empty())
      t->added_first_[static_cast<unsigned char>(t->added_sorted_[k].content[0])].push_back(static_cast<int32_t>(k));
  // Chunking the normalized text at each "▁" that follows another character
  // is exact only if no token spans such a boundary (see encode_spm).
  for (const auto& p : s.pieces) {
    size_t f = p.find(kSpaceSymbol, 1);
    while (f != std::string::npos) {
      if (!(f >= 3 && p.compare(f - 3, 3, kSpaceSymbol) == 0)) { t->chunkable_ = false; break; }
      f = p.find(kSpaceSymbol, f + 3);
    }
    if (!t->chunkable_) break;
  }
  if (s.mode == BpeSpec::Mode::kHuggingFace && (s.ignore_merges || (!s.byte_fallback && s.fuse_unk))) t->chunkable_ = false;
  return t;
}

void BpeTokenizer::set_post_processor(std::vector<int32_t> prefix, std::vector<int32_t> suffix) {
  spec_.prefix_ids = std::move(prefix);
  spec_.suffix_ids = std::move(suffix);
}

void BpeTokenizer::set_special_ids(int32_t bos, int32_t eos, int32_t pad) {
  spec_.bos_id = bos;
  spec_.eos_id = eos;
  spec_.pad_id = pad;
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
  return id >= 0 && id < vocab_size() ? spec_.pieces[id] : std::string();
}

int32_t BpeTokenizer::token_to_id(const std::string& token) const {
  for (const auto& a : spec_.added_tokens) if (a.content == token) return a.id;
  auto it = spec_.piece_ids.find(token);
  return it == spec_.piece_ids.end() ? -1 : it->second;
}

bool BpeTokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && is_special_[id]; }

// ---------------------------------------------------------------- BPE core

void BpeTokenizer::bpe_word(const std::string& word, std::vector<int32_t>* out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bpe_word_uncached(word, &ids);
  out->insert(out->end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() > 200000) cache_.clear();  // bounds memory on endless input
  cache_.emplace(word, std::move(ids));
}

// Chunks of a normalized SentencePiece word: a run of "▁" plus the
// characters up to the next run. BPE never merges across such a boundary
// in these models (chunkable_), so each chunk can go through the word cache.
void BpeTokenizer::bpe_chunked(const std::string& norm, std::vector<int32_t>* out) const {
  size_t start = 0;
  std::string chunk;
  for (size_t p = 1; p <= norm.size(); ++p) {
    bool boundary = p == norm.size();
    if (!boundary && norm.compare(p, 3, kSpaceSymbol) == 0 && !(p >= 3 && norm.compare(p - 3, 3, kSpaceSymbol) == 0)) boundary = true;
    if (boundary) {
      chunk.assign(norm, start, p - start);
      bpe_word(chunk, out);
      start = p;
    }
  }
}

void BpeTokenizer::bpe_word_uncached(const std::string& word, std::vector<int32_t>* out) const {
  const bool spm = spec_.mode == BpeSpec::Mode::kSentencePiece;
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;
  sym.clear();
  heap.clear();
  std::vector<uint8_t> frozen;
  auto find_piece = [&](const char* p, size_t len) -> int32_t {
    auto it = spec_.piece_ids.find(std::string(p, len));
    return it == spec_.piece_ids.end() ? -1 : it->second;
  };

  if (!spm && spec_.ignore_merges) {
    int32_t id = find_piece(word.data(), word.size());
    if (id >= 0) { out->push_back(id); return; }
  }
  // Initial symbols: characters (SentencePiece: user-defined pieces first).
  for (size_t i = 0; i < word.size();) {
    size_t l = 0;
    bool freeze = false;
    if (spm && !user_defined_.empty()) {
      for (const auto& u : user_defined_)
        if (word.compare(i, u.size(), u) == 0) { l = u.size(); freeze = true; break; }
    }
    if (l == 0) {
      l = utf8::valid_char_len(word.data() + i, word.size() - i);
      if (l == 0) l = 1;
    }
    int32_t id = find_piece(word.data() + i, l);
    if (!spm && id < 0) {
      if (spec_.byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < l && all; ++k) all = spec_.piece_ids.count(byte_piece(static_cast<uint8_t>(word[i + k]))) > 0;
        if (all) {
          for (size_t k = 0; k < l; ++k) {
            int32_t bid = spec_.piece_ids.at(byte_piece(static_cast<uint8_t>(word[i + k])));
            sym.push_back({bid, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1,
                           static_cast<uint32_t>(i + k), 1});
            frozen.push_back(0);
          }
          i += l;
          continue;
        }
      }
      if (spec_.unk_id < 0) { i += l; continue; }  // HF drops it too (no unk token)
      id = spec_.unk_id;
      if (spec_.fuse_unk && !sym.empty() && sym.back().id == spec_.unk_id) { sym.back().len += l; i += l; continue; }
    }
    sym.push_back({id, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1,
                   static_cast<uint32_t>(i), static_cast<uint32_t>(l)});
    frozen.push_back(freeze);
    i += l;
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  std::unordered_map<std::string, std::pair<std::string, std::string>> rev_merge;  // SentencePiece unused pieces
  auto add_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    if (spm) {
      if (frozen[l] || frozen[r]) return;
      uint32_t size = sym[l].len + sym[r].len;
      int32_t id = find_piece(word.data() + sym[l].start, size);
      if (id < 0) return;
      uint8_t ty = spec_.types[id];
      if (ty != kNormal && ty != kUserDefined && ty != kUnused) return;
      heap.push_back({-static_cast<double>(spec_.scores[id]), l, r, id, size});
      if (ty == kUnused)
        rev_merge[std::string(word, sym[l].start, size)] = {std::string(word, sym[l].start, sym[l].len), std::string(word, sym[r].start, sym[r].len)};
    } else {
      if (sym[l].id < 0 || sym[r].id < 0) return;
      auto it = spec_.merges.find((static_cast<uint64_t>(static_cast<uint32_t>(sym[l].id)) << 32) | static_cast<uint32_t>(sym[r].id));
      if (it == spec_.merges.end()) return;
      heap.push_back({static_cast<double>(it->second.first), l, r, it->second.second, sym[l].len + sym[r].len});
    }
    std::push_heap(heap.begin(), heap.end(), CandidateWorse());
  };
  for (size_t i = 1; i < sym.size(); ++i) add_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateWorse());
    Candidate c = heap.back();
    heap.pop_back();
    Symbol& L = sym[c.left];
    Symbol& R = sym[c.right];
    if (L.len == 0 || R.len == 0 || L.next != c.right || L.len + R.len != c.size) continue;  // stale
    L.len += R.len;
    L.id = c.new_id;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = c.left;
    R.len = 0;
    add_pair(L.prev, c.left);
    add_pair(c.left, L.next);
  }

  // Emit, with SentencePiece's resegmentation of unused pieces and byte fallback.
  std::function<void(const std::string&)> emit_spm = [&](const std::string& piece) {
    auto it = spec_.piece_ids.find(piece);
    if (it != spec_.piece_ids.end() && spec_.types[it->second] == kUnused) {
      auto rm = rev_merge.find(piece);
      if (rm != rev_merge.end()) { emit_spm(rm->second.first); emit_spm(rm->second.second); return; }
    }
    if (it != spec_.piece_ids.end() && spec_.types[it->second] != kUnknown) { out->push_back(it->second); return; }
    if (spec_.byte_fallback) {
      for (char b : piece) {
        auto bt = spec_.piece_ids.find(byte_piece(static_cast<uint8_t>(b)));
        out->push_back(bt == spec_.piece_ids.end() ? spec_.unk_id : bt->second);
      }
      return;
    }
    out->push_back(spec_.unk_id);  // runs are merged by the caller
  };
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const int32_t id = sym[i].id;
    if (!spm || (id >= 0 && spec_.types[id] != kUnused && spec_.types[id] != kUnknown)) out->push_back(id);
    else emit_spm(std::string(word, sym[i].start, sym[i].len));
  }
}

// ---------------------------------------------------------------- encode

void BpeTokenizer::encode_spm(const std::string& raw, std::vector<int32_t>* out) const {
  const std::string text = utf8::sanitize(raw);
  const bool rm_ws = spec_.spm_remove_extra_whitespaces;
  const std::string space = spec_.spm_escape_whitespaces ? kSpaceSymbol : " ";
  // The normalizer of SentencePiece with the identity rule: only spaces change.
  size_t i = 0;
  if (rm_ws) while (i < text.size() && text[i] == ' ') ++i;
  if (i == text.size()) return;
  std::string norm;
  norm.reserve(text.size() * 2);
  if (spec_.spm_add_dummy_prefix) norm += space;
  bool prev_space = rm_ws;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c == ' ') {
      if (prev_space) continue;
      norm += space;
      prev_space = rm_ws;
    } else {
      norm += c;
      prev_space = false;
    }
  }
  if (rm_ws) while (norm.size() >= space.size() && norm.compare(norm.size() - space.size(), space.size(), space) == 0) norm.resize(norm.size() - space.size());
  if (norm.empty()) return;

  const size_t first = out->size();
  if (!chunkable_ || !user_defined_.empty()) {
    bpe_word_uncached(norm, out);
  } else {
    bpe_chunked(norm, out);
  }
  if (!spec_.byte_fallback && spec_.unk_id >= 0) {
    // SentencePiece merges consecutive unknown pieces into one.
    size_t w = first;
    for (size_t r = first; r < out->size(); ++r) {
      if ((*out)[r] == spec_.unk_id && w > first && (*out)[w - 1] == spec_.unk_id) continue;
      (*out)[w++] = (*out)[r];
    }
    out->resize(w);
  }
}

void BpeTokenizer::encode_hf_segment(const std::string& raw, bool first_segment, std::vector<int32_t>* out) const {
  std::string text = utf8::sanitize(raw);
  for (const auto& st : spec_.normalizer) {
    switch (st.kind) {
      case TextStep::Kind::kPrepend: if (!text.empty()) text = st.text + text; break;
      case TextStep::Kind::kReplace:
        if (st.regex) text = st.regex->replace(text, st.content); else replace_all(&text, st.text, st.content);
        break;
      case TextStep::Kind::kStrip: {
        size_t b = 0, e = text.size();
        if (st.flag_a) while (b < e && is_space_byte(text[b])) ++b;
        if (st.flag_b) while (e > b && is_space_byte(text[e - 1])) --e;
        text = text.substr(b, e - b);
        break;
      }
      case TextStep::Kind::kUnicode: text = unicode_normalize(text, st.unicode_form); break;
      default: break;
    }
  }
  if (text.empty()) return;
  std::vector<std::string> words{text};
  std::vector<std::string_view> views;
  for (const auto& st : spec_.pre_tokenizer) {
    std::vector<std::string> next;
    for (size_t wi = 0; wi < words.size(); ++wi) {
      std::string& w = words[wi];
      switch (st.kind) {
        case TextStep::Kind::kSplit:
          views.clear();
          st.regex->split(w, static_cast<RegexSplitter::Behavior>(st.behavior), st.invert, &views);
          for (auto v : views) next.emplace_back(v);
          break;
        case TextStep::Kind::kDigits:
          views.clear();
          st.regex->split(w, st.flag_a ? RegexSplitter::kIsolated : RegexSplitter::kContiguous, false, &views);
          for (auto v : views) next.emplace_back(v);
          break;
        case TextStep::Kind::kMetaspace: {
          replace_all(&w, " ", st.text);
          bool prepend = st.prepend_scheme == 0 || (st.prepend_scheme == 1 && first_segment && wi == 0 && next.empty());
          if (prepend && !starts_with(w, st.text)) w = st.text + w;
          if (st.flag_a) {
            views.clear();
            st.regex->split(w, RegexSplitter::kMergedWithNext, false, &views);
            for (auto v : views) next.emplace_back(v);
          } else {
            next.push_back(std::move(w));
          }
          break;
        }
        case TextStep::Kind::kByteLevel: {
          if (st.flag_a && !starts_with(w, " ")) w = " " + w;
          views.clear();
          if (st.regex) st.regex->split(w, RegexSplitter::kIsolated, false, &views); else views.push_back(w);
          for (auto v : views) {
            std::string m;
            m.reserve(v.size() * 2);
            for (char c : v) m += byte_to_unicode(static_cast<uint8_t>(c));
            next.push_back(std::move(m));
          }
          break;
        }
        default: next.push_back(std::move(w)); break;
      }
    }
    words.swap(next);
  }
  const size_t first = out->size();
  if (spec_.pre_tokenizer.empty() && chunkable_) {
    // SentencePiece-BPE kind: one word, chunked for the cache.
    bpe_chunked(words[0], out);
    if (spec_.fuse_unk && spec_.unk_id >= 0) {
      size_t w = first;
      for (size_t r = first; r < out->size(); ++r) {
        if ((*out)[r] == spec_.unk_id && w > first && (*out)[w - 1] == spec_.unk_id) continue;
        (*out)[w++] = (*out)[r];
      }
      out->resize(w);
    }
  } else {
    for (const auto& w : words) bpe_word(w, out);
  }
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text, bool add_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out.insert(out.end(), spec_.prefix_ids.begin(), spec_.prefix_ids.end());
  if (spec_.mode == BpeSpec::Mode::kSentencePiece) {
    encode_spm(text, &out);
  } else if (added_sorted_.empty()) {
    encode_hf_segment(text, true, &out);
  } else {
    // Added tokens split the input first (leftmost, then longest).
    size_t seg_start = 0, pos = 0;
    bool first = true;
    while (pos < text.size()) {
      const AddedToken* hit = nullptr;
      for (int32_t k : added_first_[static_cast<unsigned char>(text[pos])]) {
        const AddedToken& a = added_sorted_[k];
        if (!a.content.empty() && text.compare(pos, a.content.size(), a.content) == 0) {
          if (a.single_word) {
            size_t e = pos + a.content.size();
            if ((pos > 0 && is_word_byte(text[pos - 1])) || (e < text.size() && is_word_byte(text[e]))) continue;
          }
          hit = &a;
          break;
        }
      }
      if (hit == nullptr) { ++pos; continue; }
      size_t b = pos, e = pos + hit->content.size();
      if (hit->lstrip) while (b > seg_start && is_space_byte(text[b - 1])) --b;
      if (hit->rstrip) while (e < text.size() && is_space_byte(text[e])) ++e;
      if (b > seg_start) encode_hf_segment(text.substr(seg_start, b - seg_start), first, &out);
      first = false;
      out.push_back(hit->id);
      seg_start = pos = e;
    }
    if (seg_start < text.size()) encode_hf_segment(text.substr(seg_start), first, &out);
  }
  if (add_special) out.insert(out.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  return out;
}

// ---------------------------------------------------------------- decode

std::string BpeTokenizer::decode_spm(const std::vector<int32_t>& ids) const {
  std::string text, bytes;
  auto flush_bytes = [&]() {
    size_t off = 0;
    while (off < bytes.size()) {
      size_t l = utf8::valid_char_len(bytes.data() + off, bytes.size() - off);
      if (l == 0) { text += kReplacementChar; ++off; }
      else { text.append(bytes, off, l); off += l; }
    }
    bytes.clear();
  };
  bool is_bos_ws = true, bos_ws_seen = false;
  const bool strip_first = spec_.spm_add_dummy_prefix || spec_.spm_remove_extra_whitespaces;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    const uint8_t ty = spec_.types[id];
    if (ty == kByte) {
      int b = parse_byte_piece(spec_.pieces[id]);
      if (b >= 0) bytes.push_back(static_cast<char>(b));
      continue;
    }
    flush_bytes();
    if (bos_ws_seen || !text.empty()) is_bos_ws = false;
    bos_ws_seen = false;
    if (ty == kControl) continue;
    if (ty == kUnknown) { text += spec_.spm_unk_surface; continue; }
    std::string_view piece = spec_.pieces[id];
    if (is_bos_ws && strip_first && starts_with(piece, kSpaceSymbol)) {
      piece.remove_prefix(3);
      bos_ws_seen = !spec_.spm_remove_extra_whitespaces;
    }
    std::string s(piece);
    replace_all(&s, kSpaceSymbol, " ");
    text += s;
  }
  flush_bytes();
  return text;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  if (spec_.mode == BpeSpec::Mode::kSentencePiece) {
    if (!skip_special) return decode_spm(ids);
    std::vector<int32_t> kept;
    for (int32_t id : ids) if (!is_special(id)) kept.push_back(id);
    return decode_spm(kept);
  }
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && is_special_[id]) continue;
    toks.push_back(spec_.pieces[id]);
  }
  if (spec_.decoder.empty()) {
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) { if (i) out += ' '; out += toks[i]; }
    return out;
  }
  for (const auto& st : spec_.decoder) {
    switch (st.kind) {
      case TextStep::Kind::kDecReplace:
        for (auto& t : toks) { if (st.regex) t = st.regex->replace(t, st.content); else replace_all(&t, st.text, st.content); }
        break;
      case TextStep::Kind::kDecByteFallback: {
        std::vector<std::string> next;
        std::string run;
        size_t run_len = 0;
        auto flush = [&]() {
          if (run_len == 0) return;
          if (utf8::sanitize(run) == run) next.push_back(run);
          else for (size_t k = 0; k < run_len; ++k) next.push_back(kReplacementChar);
          run.clear(); run_len = 0;
        };
        for (auto& t : toks) {
          int b = parse_byte_piece(t);
          if (b >= 0) { run.push_back(static_cast<char>(b)); ++run_len; continue; }
          flush();
          next.push_back(std::move(t));
        }
        flush();
        toks.swap(next);
        break;
      }
      case TextStep::Kind::kDecFuse: {
        std::string all;
        for (auto& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
      case TextStep::Kind::kDecStrip:
        for (auto& t : toks) {
          int b = 0, e = static_cast<int>(t.size());
          const std::string& c = st.content;
          for (int k = 0; k < st.start && b + static_cast<int>(c.size()) <= e && t.compare(b, c.size(), c) == 0; ++k) b += c.size();
          for (int k = 0; k < st.stop && e - static_cast<int>(c.size()) >= b && t.compare(e - c.size(), c.size(), c) == 0; ++k) e -= c.size();
          t = t.substr(b, e - b);
        }
        break;
      case TextStep::Kind::kDecByteLevel: {
        std::string raw;
        for (auto& t : toks) {
          std::string tb;
          bool ok = true;
          for (size_t i = 0; i < t.size() && ok;) {
            int b = unicode_to_byte(next_codepoint(t, &i));
            if (b < 0) ok = false; else tb.push_back(static_cast<char>(b));
          }
          raw += ok ? tb : t;
        }
        toks.assign(1, utf8::from_bytes_lossy(raw));
        break;
      }
      case TextStep::Kind::kDecMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          std::string out;
          const std::string& t = toks[i];
          for (size_t p = 0; p < t.size();) {
            if (t.compare(p, st.text.size(), st.text) == 0 && !st.text.empty()) {
              if (!(i == 0 && st.prepend_scheme != 2)) out += ' ';
              p += st.text.size();
            } else {
              out += t[p++];
            }
          }
          toks[i] = std::move(out);
        }
        break;
      default: break;
    }
  }
  std::string out;
  for (auto& t : toks) out += t;
  return out;
}

// ---------------------------------------------------------------- streaming

TokenStreamDecoder::TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string TokenStreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  // Decode a short window: the tokens before read_offset_ give context (a
  // leading-space rule, a pending byte), the rest is new.
  std::vector<int32_t> prev(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  std::vector<int32_t> all(ids_.begin() + prefix_offset_, ids_.end());
  std::string prev_text = tokenizer_.decode(prev, skip_special_);
  std::string new_text = tokenizer_.decode(all, skip_special_);
  if (new_text.size() > prev_text.size() && new_text.compare(0, prev_text.size(), prev_text) == 0 &&
      !(new_text.size() >= 3 && new_text.compare(new_text.size() - 3, 3, kReplacementChar) == 0)) {
    prefix_offset_ = read_offset_;
    read_offset_ = ids_.size();
    return new_text.substr(prev_text.size());
  }
  return std::string();
}

std::string TokenStreamDecoder::flush() {
  std::vector<int32_t> prev(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  std::vector<int32_t> all(ids_.begin() + prefix_offset_, ids_.end());
  std::string prev_text = tokenizer_.decode(prev, skip_special_);
  std::string new_text = tokenizer_.decode(all, skip_special_);
  prefix_offset_ = read_offset_ = ids_.size();
  if (new_text.size() > prev_text.size() && new_text.compare(0, prev_text.size(), prev_text) == 0)
    return new_text.substr(prev_text.size());
  return std::string();
}

}  // namespace lema
