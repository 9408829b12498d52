#include "common/data/training_example.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "common/base/file_util.h"

namespace lema {
namespace {

// Test-only tokenizer: one id per byte (id = byte + 3), BOS 1, EOS 2, pad 0.
// Exact positions are easy to check with it; RealTokenizer below runs the
// same invariants through Tokenizer::load.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(bool with_bos = true) : bos_(with_bos ? 1 : -1) {}
  std::vector<int32_t> encode(const std::string& text, bool add_special) const override {
    std::vector<int32_t> ids;
    if (add_special && bos_ >= 0) ids.push_back(bos_);
    for (unsigned char c : text) ids.push_back(static_cast<int32_t>(c) + 3);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += static_cast<char>(id - 3);
      else if (!skip_special) s += "<" + std::to_string(id) + ">";
    return s;
  }
  int64_t vocab_size() const override { return 259; }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return 2; }
  int32_t pad_id() const override { return 0; }
  std::string id_to_token(int32_t id) const override { return decode({id}, false); }
  int32_t token_to_id(const std::string& t) const override { return t.size() == 1 ? static_cast<unsigned char>(t[0]) + 3 : -1; }
  bool is_special(int32_t id) const override { return id < 3; }

 private:
  int32_t bos_;
};

Example make(const std::string& q, const std::string& a) {
  Example e;
  e.question = q;
  e.answer = a;
  e.explanation = "Because.";
  e.confidence = Confidence::kHigh;
  return e;
}

TEST(TrainingExample, MasksBosAndPromptLabelsReplyAndEos) {
  ByteTokenizer tok;
  Example e = make("What is 2 plus 2?", "4");
  TokenizedExample t = tokenize_example(tok, e, 4096);
  std::string prompt = example_prompt(e), reply = example_reply(e);
  ASSERT_EQ(t.input_ids.size(), 1 + prompt.size() + reply.size() + 1);
  ASSERT_EQ(t.labels.size(), t.input_ids.size());
  EXPECT_FALSE(t.truncated);
  EXPECT_EQ(t.input_ids.front(), 1);
  EXPECT_EQ(t.input_ids.back(), 2);
  // BOS and every prompt token ignored; reply and EOS labelled with themselves.
  for (size_t i = 0; i < 1 + prompt.size(); ++i) EXPECT_EQ(t.labels[i], kIgnoreLabel) << i;
  for (size_t i = 1 + prompt.size(); i < t.labels.size(); ++i) EXPECT_EQ(t.labels[i], t.input_ids[i]) << i;
  // The labelled part decodes to exactly the reply.
  std::vector<int32_t> labelled(t.labels.begin() + 1 + prompt.size(), t.labels.end());
  EXPECT_EQ(tok.decode(labelled, true), reply);
  EXPECT_EQ(tok.decode(t.input_ids, true), example_text(e));

  ByteTokenizer no_bos(false);
  TokenizedExample u = tokenize_example(no_bos, e, 4096);
  EXPECT_EQ(u.input_ids.size(), t.input_ids.size() - 1);
  EXPECT_EQ(u.labels.front(), kIgnoreLabel);
}

// A Llama-style tokenizer.json (SentencePiece BPE with byte fallback, a
// prepended "▁"), small enough to write here.
std::string write_llama_style_tokenizer(const std::string& dir) {
  using nlohmann::json;
  const std::string ws = "\xE2\x96\x81";  // U+2581
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  int id = 3;
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab[buf] = id++;
  }
  vocab[ws] = id++;
  for (char c = 33; c < 127; ++c) vocab[std::string(1, c)] = id++;
  json merges = json::array();
  auto merge = [&](const std::string& a, const std::string& b) {
    if (!vocab.contains(a + b)) vocab[a + b] = id++;
    merges.push_back(a + " " + b);
  };
  merge("A", "n"); merge("An", "s"); merge("Ans", "w"); merge("e", "r"); merge("Answ", "er");
  merge(ws, "W"); merge("h", "a"); merge("ha", "t");
  json root;
  root["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", true},
                   {"unk_token", "<unk>"}, {"fuse_unk", true}};
  root["added_tokens"] = json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                      {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                      {{"id", 2}, {"content", "</s>"}, {"special", true}}});
  root["normalizer"] = {{"type", "Sequence"},
                        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", ws}},
                                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", ws}}})}};
  root["decoder"] = {{"type", "Sequence"},
                     {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", ws}}}, {"content", " "}},
                                               {{"type", "ByteFallback"}},
                                               {{"type", "Fuse"}},
                                               {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  std::string path = path_join(dir, "tokenizer.json");
  EXPECT_TRUE(write_file_atomic(path, root.dump()).ok());
  return path;
}

TEST(TrainingExample, RealTokenizerKeepsThePromptReplyBoundary) {
  char tmpl[] = "/tmp/lema_tok_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto tok = Tokenizer::load(write_llama_style_tokenizer(dir));
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  const Tokenizer& t = **tok;
  ASSERT_EQ(t.bos_id(), 1);
  ASSERT_EQ(t.eos_id(), 2);
  Example e = make("What is 2 plus 2?", "4");
  TokenizedExample x = tokenize_example(t, e, 4096);
  std::vector<int32_t> prompt = t.encode(example_prompt(e), false);
  std::vector<int32_t> reply = t.encode(example_reply(e), false);
  ASSERT_EQ(x.input_ids.size(), 1 + prompt.size() + reply.size() + 1);
  EXPECT_EQ(x.input_ids.front(), t.bos_id());
  EXPECT_EQ(x.input_ids.back(), t.eos_id());
  EXPECT_EQ(std::vector<int32_t>(x.input_ids.begin() + 1, x.input_ids.begin() + 1 + static_cast<long>(prompt.size())),
            prompt);  // generation encodes the same prompt text the same way
  for (size_t i = 0; i <= prompt.size(); ++i) EXPECT_EQ(x.labels[i], kIgnoreLabel);
  std::vector<int32_t> labelled(x.labels.begin() + 1 + static_cast<long>(prompt.size()), x.labels.end());
  EXPECT_EQ(labelled.back(), t.eos_id());
  EXPECT_EQ(t.decode(labelled, true), example_reply(e));
  EXPECT_EQ(t.decode(prompt, true), example_prompt(e));
  ASSERT_TRUE(remove_all(dir).ok());
}

TEST(TrainingExample, TruncationIsCountedAndPromptOnlyExamplesDropped) {
  ByteTokenizer tok;
  std::vector<Example> ex = {make("short?", "a"), make(std::string(300, 'q') + "?", "b"), make("mid?", "c")};
  int32_t full0 = static_cast<int32_t>(tokenize_example(tok, ex[0], 10000).input_ids.size());
  int32_t seq_len = full0 - 5;  // cuts the first and third, the second loses its whole reply
  TokenizeStats s;
  auto out = tokenize_examples(tok, ex, seq_len, &s);
  EXPECT_EQ(s.dropped_no_labels, 1);
  EXPECT_EQ(s.examples, 2);
  EXPECT_EQ(s.truncated, 2);
  ASSERT_EQ(out.size(), 2u);
  for (const auto& t : out) {
    EXPECT_EQ(static_cast<int32_t>(t.input_ids.size()), seq_len);
    EXPECT_TRUE(t.truncated);
    EXPECT_NE(t.input_ids.back(), 2);  // EOS was cut
  }
  EXPECT_GT(s.max_len, seq_len);
  EXPECT_EQ(s.tokens, 2 * seq_len);
}

std::vector<TokenizedExample> synthetic(int n) {
  std::vector<TokenizedExample> v;
  for (int i = 0; i < n; ++i) {
    TokenizedExample t;
    int len = 3 + i % 5;
    for (int k = 0; k < len; ++k) {
      t.input_ids.push_back(1000 * (i + 1) + k);  // identifies the example and position
      t.labels.push_back(k < 2 ? kIgnoreLabel : 1000 * (i + 1) + k);
    }
    v.push_back(t);
  }
  return v;
}

int example_of(int32_t id) { return id / 1000 - 1; }

TEST(Batcher, RightPaddedBatchesWithMasks) {
  BatcherOptions o;
  o.batch_size = 4;
  o.seq_len = 16;
  o.seed = 3;
  o.pad_id = 7;
  Batcher b(synthetic(10), o);
  Batch batch = b.next();
  ASSERT_EQ(batch.batch_size, 4);
  const int T = batch.seq_len;
  ASSERT_EQ(batch.input_ids.size(), static_cast<size_t>(4 * T));
  int max_len = 0;
  for (int r = 0; r < 4; ++r) {
    int len = 0;
    while (len < T && batch.attention_mask[r * T + len]) ++len;
    max_len = std::max(max_len, len);
    int ex = example_of(batch.input_ids[r * T]);
    EXPECT_EQ(len, 3 + ex % 5);
    for (int t = 0; t < T; ++t) {
      size_t i = static_cast<size_t>(r * T + t);
      if (t < len) {
        EXPECT_EQ(batch.input_ids[i], 1000 * (ex + 1) + t);
        EXPECT_EQ(batch.position_ids[i], t);
        EXPECT_EQ(batch.segment_ids[i], 1);
      } else {  // right padding
        EXPECT_EQ(batch.attention_mask[i], 0);
        EXPECT_EQ(batch.input_ids[i], 7);
        EXPECT_EQ(batch.labels[i], kIgnoreLabel);
        EXPECT_EQ(batch.segment_ids[i], 0);
      }
    }
  }
  EXPECT_EQ(T, max_len);  // T is the longest row
}

TEST(Batcher, EpochsArePermutationsAndResumeIsExact) {
  BatcherOptions o;
  o.batch_size = 3;
  o.seq_len = 16;
  o.seed = 11;
  Batcher a(synthetic(10), o);
  // 10 batches of 3 = 30 examples = 3 epochs: each epoch sees each example once.
  std::vector<int> seen;
  std::vector<Batch> first;
  for (int i = 0; i < 10; ++i) {
    Batch b = a.next();
    first.push_back(b);
    for (int r = 0; r < 3; ++r) seen.push_back(example_of(b.input_ids[static_cast<size_t>(r * b.seq_len)]));
  }
  for (int ep = 0; ep < 3; ++ep) {
    std::set<int> s(seen.begin() + ep * 10, seen.begin() + ep * 10 + 10);
    EXPECT_EQ(s.size(), 10u) << "epoch " << ep;
  }
  EXPECT_NE(std::vector<int>(seen.begin(), seen.begin() + 10), std::vector<int>(seen.begin() + 10, seen.begin() + 20));
  // Resume after 4 batches from the stored cursor: identical batches after.
  Batcher b(synthetic(10), o);
  for (int i = 0; i < 4; ++i) b.next();
  DataCursor c = b.cursor();
  EXPECT_EQ(c.epoch, 1);
  EXPECT_EQ(c.index, 2);
  Batcher resumed(synthetic(10), o);
  resumed.set_cursor(c);
  for (int i = 4; i < 10; ++i) {
    Batch x = resumed.next();
    EXPECT_EQ(x.input_ids, first[static_cast<size_t>(i)].input_ids) << "batch " << i;
    EXPECT_EQ(x.labels, first[static_cast<size_t>(i)].labels);
  }
  // A different seed gives a different order.
  o.seed = 12;
  Batcher other(synthetic(10), o);
  EXPECT_NE(other.next().input_ids, first[0].input_ids);
}

// Examples whose every token has a label (plain text): packing must mask
// the first label of each, and only it.
std::vector<TokenizedExample> all_labelled(const std::vector<int>& lengths) {
  std::vector<TokenizedExample> v;
  for (size_t i = 0; i < lengths.size(); ++i) {
    TokenizedExample t;
    for (int k = 0; k < lengths[i]; ++k) {
      t.input_ids.push_back(1000 * static_cast<int32_t>(i + 1) + k);
      t.labels.push_back(t.input_ids.back());
    }
    v.push_back(t);
  }
  return v;
}

TEST(Packing, RowsKeepOrderBoundariesLabelsAndPositions) {
  // seq_len 10: [4, 5] fill 9 (the next, 3, does not fit), [3, 6] 9, [10]
  // alone, then [2]. Next-fit: the 2 at the end does not go back into an
  // earlier row, so the dataset order is kept.
  const std::vector<int> lengths = {4, 5, 3, 6, 10, 2};
  const std::vector<TokenizedExample> examples = all_labelled(lengths);
  PackStats stats;
  const std::vector<TokenizedExample> rows = pack_examples(examples, 10, &stats);
  const std::vector<std::vector<int>> want = {{0, 1}, {2, 3}, {4}, {5}};
  ASSERT_EQ(rows.size(), want.size());
  EXPECT_EQ(stats.rows, 4);
  EXPECT_EQ(stats.examples, 6);
  EXPECT_EQ(stats.tokens, 30);
  for (size_t r = 0; r < rows.size(); ++r) {
    const TokenizedExample& row = rows[r];
    ASSERT_EQ(row.labels.size(), row.input_ids.size());
    ASSERT_EQ(row.segment_ids.size(), row.input_ids.size());
    ASSERT_EQ(row.position_ids.size(), row.input_ids.size());
    size_t i = 0;
    for (size_t s = 0; s < want[r].size(); ++s) {
      const int ex = want[r][s];
      for (int k = 0; k < lengths[static_cast<size_t>(ex)]; ++k, ++i) {
        EXPECT_EQ(row.input_ids[i], 1000 * (ex + 1) + k) << "row " << r << " token " << i;
        EXPECT_EQ(row.segment_ids[i], static_cast<int32_t>(s + 1));
        EXPECT_EQ(row.position_ids[i], k);
        // The first label of every example is masked; the rest are kept.
        EXPECT_EQ(row.labels[i], k == 0 ? kIgnoreLabel : row.input_ids[i]) << "row " << r << " token " << i;
      }
    }
    EXPECT_EQ(i, row.input_ids.size());
    EXPECT_LE(row.input_ids.size(), 10u);
  }
}

TEST(Packing, BatcherShufflesRowsAndCarriesSegments) {
  // 40 examples of 3..7 tokens in rows of 16: every example once per epoch,
  // in rows that the batcher shuffles whole; resume is exact.
  const std::vector<TokenizedExample> rows = pack_examples(synthetic(40), 16, nullptr);
  ASSERT_LT(rows.size(), 40u);
  BatcherOptions o;
  o.batch_size = 2;
  o.seq_len = 16;
  o.seed = 5;
  o.pad_id = 9;
  Batcher b(rows, o);
  EXPECT_EQ(b.size(), rows.size());
  std::multiset<int> seen;
  std::vector<Batch> batches;
  const size_t n_batches = rows.size() / 2;
  for (size_t step = 0; step < n_batches; ++step) {
    Batch batch = b.next();
    batches.push_back(batch);
    const int T = batch.seq_len;
    int examples = 0;
    for (int r = 0; r < 2; ++r) {
      int prev_seg = 0;
      for (int t = 0; t < T; ++t) {
        const size_t i = static_cast<size_t>(r * T + t);
        if (!batch.attention_mask[i]) {  // right padding only
          EXPECT_EQ(batch.segment_ids[i], 0);
          EXPECT_EQ(batch.position_ids[i], 0);
          EXPECT_EQ(batch.input_ids[i], 9);
          EXPECT_EQ(batch.labels[i], kIgnoreLabel);
          continue;
        }
        const int ex = example_of(batch.input_ids[i]);
        EXPECT_EQ(batch.input_ids[i], 1000 * (ex + 1) + batch.position_ids[i]);
        if (batch.segment_ids[i] != prev_seg) {
          EXPECT_EQ(batch.segment_ids[i], prev_seg + 1);
          EXPECT_EQ(batch.position_ids[i], 0);
          seen.insert(ex);
          prev_seg = batch.segment_ids[i];
        }
      }
      examples += prev_seg;
    }
    EXPECT_EQ(batch.examples, examples);
  }
  // The first rows.size() / 2 * 2 rows of epoch 0 are distinct rows: no example twice.
  for (int ex = 0; ex < 40; ++ex) EXPECT_LE(seen.count(ex), 1u) << ex;
  // The order is not the packing order.
  EXPECT_NE(batches[0].input_ids[0], rows[0].input_ids[0]);
  Batcher resumed(rows, o);
  Batcher ahead(rows, o);
  for (int i = 0; i < 3; ++i) ahead.next();
  resumed.set_cursor(ahead.cursor());
  for (size_t i = 3; i < n_batches; ++i) {
    const Batch x = resumed.next();
    EXPECT_EQ(x.input_ids, batches[i].input_ids) << i;
    EXPECT_EQ(x.segment_ids, batches[i].segment_ids) << i;
    EXPECT_EQ(x.position_ids, batches[i].position_ids) << i;
  }
}

}  // namespace
}  // namespace lema
