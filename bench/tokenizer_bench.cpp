// Tokenizer encode speed, one thread, on generated English-like text, for
// the three kinds lema reads: tokenizer.json byte-level BPE (Llama-3 regex,
// 256 added special tokens), tokenizer.json SentencePiece-BPE (Llama-2
// layout, byte fallback), and tokenizer.model (SentencePiece BPE). The
// tokenizers are trained here by a plain BPE on the same text so the bench
// needs no files; `--json PATH` / `--model PATH` measure real ones instead.
//
//   build/bench/bench_tokenizer_bench [--mb 8] [--json tokenizer.json] [--model tokenizer.model]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>

#include "common/base/file_util.h"
#include "common/text/tokenizer.h"

namespace {
using lema::Tokenizer;

const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kSpace[] = "\xE2\x96\x81";

// English-like text: Zipf-distributed pseudo-words, punctuation, numbers, lines.
std::vector<std::string> make_lines(size_t bytes) {
  std::mt19937 rng(42);
  const char* syl[] = {"th", "e", "an", "re", "in", "on", "er", "at", "en", "nd", "ti", "es", "or", "te", "of",
                       "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le",
                       "ve", "co", "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll"};
  std::vector<std::string> words;
  for (int i = 0; i < 20000; ++i) {
    std::string w;
    int n = 1 + (rng() % 3) + (i > 2000 ? 1 : 0);
    for (int k = 0; k < n; ++k) w += syl[rng() % (sizeof(syl) / sizeof(syl[0]))];
    if (rng() % 10 == 0) w[0] = static_cast<char>(std::toupper(w[0]));
    words.push_back(w);
  }
  std::vector<double> weights;
  for (size_t i = 0; i < words.size(); ++i) weights.push_back(1.0 / (i + 1));
  std::discrete_distribution<size_t> zipf(weights.begin(), weights.end());
  const char* punct[] = {",", ".", ";", ":", "!", "?", " -", "'s", "\"", ")"};
  std::vector<std::string> lines;
  size_t total = 0;
  while (total < bytes) {
    std::string line;
    int n = 5 + rng() % 40;
    for (int i = 0; i < n; ++i) {
      if (i) line += ' ';
      line += words[zipf(rng)];
      if (rng() % 8 == 0) line += punct[rng() % 10];
      if (rng() % 30 == 0) line += " " + std::to_string(rng() % 5000);
    }
    line += rng() % 4 == 0 ? "\n\n" : "\n";
    total += line.size();
    lines.push_back(std::move(line));
  }
  return lines;
}

// Plain BPE training over word counts; symbols are UTF-8 strings.
std::vector<std::pair<std::string, std::string>> train_bpe(const std::map<std::string, int64_t>& word_counts,
                                                           const std::vector<std::vector<std::string>>& word_syms_in,
                                                           int n_merges) {
  // Train on the most frequent words only: enough for a realistic vocab, fast.
  std::vector<std::pair<int64_t, size_t>> order;
  size_t idx = 0;
  for (auto& kv : word_counts) order.push_back({-kv.second, idx++});
  std::sort(order.begin(), order.end());
  if (order.size() > 3000) order.resize(3000);
  std::vector<std::vector<std::string>> syms;
  std::vector<int64_t> counts;
  for (auto& o : order) { syms.push_back(word_syms_in[o.second]); counts.push_back(-o.first); }
  std::vector<std::pair<std::string, std::string>> merges;
  for (int m = 0; m < n_merges; ++m) {
    std::unordered_map<std::string, int64_t> pairs;  // "a\x01b" -> count
    for (size_t w = 0; w < syms.size(); ++w)
      for (size_t i = 0; i + 1 < syms[w].size(); ++i) pairs[syms[w][i] + '\x01' + syms[w][i + 1]] += counts[w];
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second || (it->second == best->second && it->first < best->first)) best = it;
    size_t cut = best->first.find('\x01');
    std::pair<std::string, std::string> p{best->first.substr(0, cut), best->first.substr(cut + 1)};
    merges.push_back(p);
    for (auto& s : syms) {
      std::vector<std::string> out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == p.first && s[i + 1] == p.second) { out.push_back(p.first + p.second); ++i; }
        else out.push_back(s[i]);
      }
      s.swap(out);
    }
  }
  return merges;
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    out.push_back(s.substr(i, l));
    i += l;
  }
  return out;
}

std::string byte_char(int b) {
  // GPT-2 byte map (same as common/text/bpe_tokenizer.cpp), built independently.
  static std::vector<std::string> map = [] {
    std::vector<std::string> m(256);
    int n = 0;
    for (int x = 0; x < 256; ++x) {
      bool pr = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
      uint32_t cp = pr ? x : 256 + n++;
      std::string s;
      if (cp < 0x80) s.push_back(static_cast<char>(cp));
      else { s.push_back(static_cast<char>(0xC0 | (cp >> 6))); s.push_back(static_cast<char>(0x80 | (cp & 0x3F))); }
      m[x] = s;
    }
    return m;
  }();
  return map[b];
}

std::string make_byte_level_json(const std::vector<std::string>& lines) {
  // Words for training: space-prefixed letter runs, in byte-level characters.
  std::map<std::string, int64_t> wc;
  for (size_t i = 0; i < lines.size() && i < 20000; ++i) {
    std::string w;
    for (char c : lines[i] + " ") {
      if (std::isalpha(static_cast<unsigned char>(c))) { w += c; continue; }
      if (!w.empty()) { wc[" " + w]++; wc[w]++; w.clear(); }
    }
  }
  std::vector<std::vector<std::string>> syms;
  for (auto& kv : wc) {
    std::vector<std::string> s;
    for (unsigned char c : kv.first) s.push_back(byte_char(c));
    syms.push_back(s);
  }
  auto merges = train_bpe(wc, syms, 2000);
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = id++;
  nlohmann::json jm = nlohmann::json::array();
  for (auto& m : merges) {
    if (!vocab.contains(m.first + m.second)) vocab[m.first + m.second] = id++;
    jm.push_back(m.first + " " + m.second);
  }
  nlohmann::json added = nlohmann::json::array();
  for (int k = 0; k < 256; ++k)
    added.push_back({{"id", id + k}, {"content", "<|reserved_special_token_" + std::to_string(k) + "|>"}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  nlohmann::json root = {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                                                                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", jm}}}};
  return root.dump();
}

// SentencePiece-BPE kind: tokenizer.json (merges) and tokenizer.model (scores).
void make_spm_files(const std::vector<std::string>& lines, std::string* json_text, std::string* model_bytes) {
  std::map<std::string, int64_t> wc;
  for (size_t i = 0; i < lines.size() && i < 20000; ++i) {
    std::string w;
    for (char c : lines[i] + " ") {
      if (c != ' ' && c != '\n') { w += c; continue; }
      if (!w.empty()) { wc[kSpace + w]++; w.clear(); }
    }
  }
  std::vector<std::vector<std::string>> syms;
  std::map<std::string, int> chars;
  for (auto& kv : wc) { syms.push_back(utf8_chars(kv.first)); for (auto& c : syms.back()) chars[c]++; }
  auto merges = train_bpe(wc, syms, 2000);
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<int> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) { char buf[8]; std::snprintf(buf, sizeof(buf), "<0x%02X>", b); pieces.push_back(buf); types.push_back(6); }
  std::map<std::string, int> seen;
  for (auto& m : merges) if (!seen.count(m.first + m.second)) { seen[m.first + m.second] = 1; pieces.push_back(m.first + m.second); types.push_back(1); }
  for (auto& c : chars) if (!seen.count(c.first)) { seen[c.first] = 1; pieces.push_back(c.first); types.push_back(1); }
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  nlohmann::json jm = nlohmann::json::array();
  for (auto& m : merges) jm.push_back({m.first, m.second});
  nlohmann::json root = {
      {"added_tokens", {{{"id", 0}, {"content", "<unk>"}, {"special", true}}, {{"id", 1}, {"content", "<s>"}, {"special", true}}, {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", kSpace}}, {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}}}}},
      {"pre_tokenizer", nullptr},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}}, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", jm}}}};
  *json_text = root.dump();
  // ModelProto wire format: pieces (score = -rank), trainer_spec (BPE, byte_fallback), normalizer_spec.
  auto varint = [](uint64_t v, std::string* o) { while (v >= 0x80) { o->push_back(static_cast<char>((v & 0x7F) | 0x80)); v >>= 7; } o->push_back(static_cast<char>(v)); };
  auto bytes_field = [&](int f, const std::string& b, std::string* o) { varint((f << 3) | 2, o); varint(b.size(), o); *o += b; };
  std::string m;
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string p;
    bytes_field(1, pieces[i], &p);
    float score = types[i] == 1 ? -static_cast<float>(i) : 0.f;
    varint((2 << 3) | 5, &p);
    char f[4];
    std::memcpy(f, &score, 4);
    p.append(f, 4);
    varint(3 << 3, &p);
    varint(types[i], &p);
    bytes_field(1, p, &m);
  }
  std::string tr;
  varint(3 << 3, &tr); varint(2, &tr);
  varint(35 << 3, &tr); varint(1, &tr);
  bytes_field(2, tr, &m);
  std::string ns;
  bytes_field(1, "identity", &ns);
  varint(4 << 3, &ns); varint(0, &ns);
  bytes_field(3, ns, &m);
  *model_bytes = m;
}

void measure(const char* name, const Tokenizer& tok, const std::vector<std::string>& lines, size_t bytes) {
  // CPU time of this thread: the figure per core, even on a shared machine.
  auto cpu_now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  for (int pass = 0; pass < 2; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu_now();
    size_t n_tokens = 0;
    for (const auto& l : lines) n_tokens += tok.encode(l, false).size();
    double cpu = cpu_now() - c0;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-34s %s: %7.2f MB/s per core (CPU time %.2f s; wall %.2f s)  %zu tokens, %.2f bytes/token\n", name,
                pass == 0 ? "cold cache" : "warm cache", bytes / 1e6 / cpu, cpu, wall, n_tokens,
                static_cast<double>(bytes) / std::max<size_t>(n_tokens, 1));
  }
}
}  // namespace

int main(int argc, char** argv) {
  double mb = 8;
  std::string json_path, model_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mb")) mb = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--model")) model_path = argv[i + 1];
  }
  auto lines = make_lines(static_cast<size_t>(mb * 1e6));
  size_t bytes = 0;
  for (auto& l : lines) bytes += l.size();
  std::printf("tokenizer_bench: %.1f MB of generated English-like text, %zu lines, one thread\n", bytes / 1e6, lines.size());

  char tmpl[] = "/tmp/lema_tok_bench_XXXXXX";
  const std::string dir = mkdtemp(tmpl) ? tmpl : "/tmp";
  std::vector<std::pair<std::string, std::string>> files;
  if (json_path.empty() && model_path.empty()) {
    std::string spm_json, spm_model;
    make_spm_files(lines, &spm_json, &spm_model);
    (void)lema::write_file_atomic(dir + "/bl.json", make_byte_level_json(lines));
    (void)lema::write_file_atomic(dir + "/spm.json", spm_json);
    (void)lema::write_file_atomic(dir + "/spm.model", spm_model);
    files = {{"byte-level BPE tokenizer.json", dir + "/bl.json"},
             {"SentencePiece-BPE tokenizer.json", dir + "/spm.json"},
             {"SentencePiece tokenizer.model", dir + "/spm.model"}};
  }
  if (!json_path.empty()) files.push_back({"tokenizer.json " + json_path, json_path});
  if (!model_path.empty()) files.push_back({"tokenizer.model " + model_path, model_path});
  int rc = 0;
  for (auto& f : files) {
    auto tok = Tokenizer::load(f.second);
    if (!tok.ok()) { std::fprintf(stderr, "%s\n", tok.status().to_string().c_str()); rc = 1; continue; }
    measure(f.first.c_str(), *tok.value(), lines, bytes);
  }
  (void)lema::remove_all(dir);
  return rc;
}
