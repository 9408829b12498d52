// Generation with a KV cache against recomputing the whole sequence at every
// step with decoder_layer_forward (no cache), with and without LoRA; left
// padded batches against single prompts; sampling rules; stop strings and
// the streaming callback.
#include "engine/generator.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <map>

#include "tests/engine/tiny_model.h"

namespace lema::engine {
namespace {

using test_models::tiny_gqa_config;

ModelConfig tiny_config() {
  // Peaky logits (init 0.3): generation is not a constant token.
  return tiny_gqa_config(3, 97, 0.3);
}

struct Model {
  ModelConfig config = tiny_config();
  std::unique_ptr<InMemoryLayerSource> source;
  std::unique_ptr<LoraAdapter> adapter;
};

Model make_model(at::ScalarType dtype, bool with_lora) {
  Model m;
  auto src = InMemoryLayerSource::create(m.config, make_random_model(m.config, 7, dtype), dtype, at::kCPU);
  EXPECT_TRUE(src.ok()) << src.status().to_string();
  m.source = std::move(src).value();
  if (with_lora) {
    LoraConfig lc;
    lc.r = 4;
    lc.alpha = 8;
    m.adapter = std::make_unique<LoraAdapter>(LoraAdapter::init(m.config, lc, 11, dtype, at::kCPU));
    // B is zero after init: give it values so LoRA changes the output.
    at::Generator gen = at::detail::createCPUGenerator(5);
    at::NoGradGuard ng;
    for (int64_t l = 0; l < m.config.n_layers; ++l) {
      for (LoraTarget t : lc.targets) m.adapter->b(l, t).normal_(0.0, 0.2, gen);
    }
  }
  return m;
}

// Greedy without cache: the full sequence through every layer each step.
std::vector<int32_t> greedy_no_cache(Model& m, std::vector<int32_t> seq, int64_t n_new) {
  at::NoGradGuard ng;
  const Rope rope(m.config);
  std::vector<int32_t> out;
  for (int64_t s = 0; s < n_new; ++s) {
    const auto t = static_cast<int64_t>(seq.size());
    at::Tensor ids = at::empty({1, t}, at::TensorOptions().dtype(at::kLong));
    for (int64_t j = 0; j < t; ++j) ids[0][j] = static_cast<int64_t>(seq[static_cast<size_t>(j)]);
    LayerContext ctx;
    ctx.config = &m.config;
    std::tie(ctx.cos, ctx.sin) = rope.cos_sin(t, m.source->dtype(), at::kCPU);
    at::Tensor x = embed_tokens(ids, m.source->head(), m.config);
    for (int64_t l = 0; l < m.config.n_layers; ++l) {
      LayerLora lora;
      if (m.adapter) lora = m.adapter->layer(l, m.source->dtype(), false);
      x = decoder_layer_forward(x, m.source->acquire(l).value(), lora, ctx);
    }
    const at::Tensor logits = head_logits(x, m.source->head(), m.config)[0][t - 1];
    const auto tok = static_cast<int32_t>(logits.argmax().item<int64_t>());
    out.push_back(tok);
    seq.push_back(tok);
  }
  return out;
}

std::vector<int32_t> random_prompt(int64_t len, uint64_t seed, int64_t vocab) {
  std::vector<int32_t> p;
  uint64_t s = seed;
  for (int64_t i = 0; i < len; ++i) p.push_back(static_cast<int32_t>(mix_seed(s, static_cast<uint64_t>(i)) % vocab));
  return p;
}

void expect_cache_equals_recompute(at::ScalarType dtype, bool with_lora) {
  Model m = make_model(dtype, with_lora);
  Generator gen(*m.source, m.adapter.get(), nullptr);
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.eos_ids = {-1};  // never stop early
  for (uint64_t seed : {1, 2, 3}) {
    const auto prompt = random_prompt(5 + static_cast<int64_t>(seed), seed, m.config.vocab_size);
    auto r = gen.generate({prompt}, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    const auto ref = greedy_no_cache(m, prompt, o.max_new_tokens);
    EXPECT_EQ(r.value()[0].tokens, ref) << "seed " << seed;
    // Not a degenerate model: the reference uses several distinct tokens.
    EXPECT_GT(std::set<int32_t>(ref.begin(), ref.end()).size(), 1u);
  }
}

TEST(Generator, KvCacheEqualsRecomputeFp64) { expect_cache_equals_recompute(at::kDouble, false); }
TEST(Generator, KvCacheEqualsRecomputeFp64Lora) { expect_cache_equals_recompute(at::kDouble, true); }
TEST(Generator, KvCacheEqualsRecomputeFp32) { expect_cache_equals_recompute(at::kFloat, false); }
TEST(Generator, KvCacheEqualsRecomputeFp32Lora) { expect_cache_equals_recompute(at::kFloat, true); }

TEST(Generator, LeftPaddedBatchEqualsSinglePrompts) {
  Model m = make_model(at::kDouble, true);
  Generator gen(*m.source, m.adapter.get(), nullptr);
  GenerateOptions o;
  o.max_new_tokens = 10;
  o.eos_ids = {-1};
  std::vector<std::vector<int32_t>> prompts = {random_prompt(3, 21, 97), random_prompt(9, 22, 97),
                                               random_prompt(6, 23, 97)};
  auto batch = gen.generate(prompts, o);
  ASSERT_TRUE(batch.ok());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto single = gen.generate({prompts[i]}, o);
    ASSERT_TRUE(single.ok());
    EXPECT_EQ(batch.value()[i].tokens, single.value()[0].tokens) << "row " << i;
  }
}

TEST(Generator, SeededSamplingIsRepeatableAndSeedDependent) {
  Model m = make_model(at::kFloat, false);
  Generator gen(*m.source, nullptr, nullptr);
  GenerateOptions o;
  o.max_new_tokens = 16;
  o.eos_ids = {-1};
  o.sampling.temperature = 1.5;
  o.sampling.top_k = 40;
  o.sampling.top_p = 0.95;
  o.sampling.seed = 9;
  const auto prompt = random_prompt(4, 5, 97);
  auto a = gen.generate({prompt}, o), b = gen.generate({prompt}, o);
  o.sampling.seed = 10;
  auto c = gen.generate({prompt}, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a.value()[0].tokens, b.value()[0].tokens);
  EXPECT_NE(a.value()[0].tokens, c.value()[0].tokens);
}

TEST(Sampling, TopKOneAndTopPSmallAreGreedy) {
  at::Tensor logits = at::tensor({0.1f, 2.0f, 1.9f, -1.0f});
  uint64_t rng = 3;
  SamplingOptions o;
  o.temperature = 5.0;
  o.top_k = 1;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits, {}, o, rng), 1);
  o.top_k = 0;
  o.top_p = 1e-6;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits, {}, o, rng), 1);
  // top_k = 2: only ids 1 and 2 ever come out, and both do.
  o.top_p = 1.0;
  o.top_k = 2;
  std::map<int32_t, int> seen;
  for (int i = 0; i < 400; ++i) seen[sample_token(logits, {}, o, rng)]++;
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 100);
  EXPECT_GT(seen[2], 100);
}

TEST(Sampling, RepetitionPenaltyAsHf) {
  // Greedy: id 1 (2.0) is penalised to 2.0 / 3 < 1.9: id 2 wins; a negative
  // logit is multiplied (more negative).
  at::Tensor logits = at::tensor({0.1f, 2.0f, 1.9f, -1.0f});
  uint64_t rng = 0;
  SamplingOptions o;
  o.repetition_penalty = 3.0;
  EXPECT_EQ(sample_token(logits, {1}, o, rng), 2);
  EXPECT_EQ(sample_token(logits, {3}, o, rng), 1);
  EXPECT_EQ(sample_token(logits, {1, 2}, o, rng), 1);  // 2/3 = 0.667 > 1.9/3 = 0.633 > 0.1
}

// Byte tokenizer: id = byte value + 1 (0 is EOS), two-byte UTF-8 decoded
// only when whole. Enough to test stop strings and streaming.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& text, bool) const override {
    std::vector<int32_t> ids;
    for (unsigned char ch : text) ids.push_back(ch + 1);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t id : ids) s.push_back(static_cast<char>(id - 1));
    return s;
  }
  int64_t vocab_size() const override { return 257; }
  int32_t bos_id() const override { return -1; }
  int32_t eos_id() const override { return 0; }
  int32_t pad_id() const override { return -1; }
  std::string id_to_token(int32_t id) const override { return std::string(1, static_cast<char>(id - 1)); }
  int32_t token_to_id(const std::string& t) const override { return static_cast<unsigned char>(t[0]) + 1; }
  bool is_special(int32_t id) const override { return id == 0; }
};

TEST(Generator, StopStringsAndStreamedTextAgree) {
  Model m;
  m.config.vocab_size = 257;
  auto src = InMemoryLayerSource::create(m.config, make_random_model(m.config, 3, at::kFloat), at::kFloat, at::kCPU);
  ASSERT_TRUE(src.ok());
  m.source = std::move(src).value();
  ByteTokenizer tok;
  Generator gen(*m.source, nullptr, &tok);
  GenerateOptions o;
  o.max_new_tokens = 24;
  o.eos_ids = {-1};
  auto free_run = gen.generate({tok.encode("ab", false)}, o);
  ASSERT_TRUE(free_run.ok());
  const std::string full = free_run.value()[0].text;
  ASSERT_EQ(full.size(), 24u);
  // Stop on a substring the free run produced: the text ends right after it.
  const std::string stop = full.substr(5, 2);
  o.stop_strings = {stop};
  std::string streamed;
  auto r = gen.generate({tok.encode("ab", false)}, o, [&](int64_t row, const std::string& piece) {
    EXPECT_EQ(row, 0);
    streamed += piece;
  });
  ASSERT_TRUE(r.ok());
  const size_t end = full.find(stop) + stop.size();
  EXPECT_EQ(r.value()[0].text, full.substr(0, end));
  EXPECT_EQ(r.value()[0].stop, StopReason::kStopString);
  EXPECT_EQ(streamed, r.value()[0].text);
  // EOS: stopping at the first generated token's id ends with no tokens.
  o.stop_strings.clear();
  o.eos_ids = {free_run.value()[0].tokens[0]};
  auto e = gen.generate({tok.encode("ab", false)}, o);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e.value()[0].tokens.empty());
  EXPECT_EQ(e.value()[0].stop, StopReason::kEos);
}

TEST(Utf8, CompletePrefix) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("ab\xC3"), 2u);
  EXPECT_EQ(complete_utf8_prefix("ab\xC3\xA9"), 4u);
  EXPECT_EQ(complete_utf8_prefix("a\xE2\x82"), 1u);
  EXPECT_EQ(complete_utf8_prefix("a\xF0\x9F\x98\x80"), 5u);
}

TEST(Generator, RejectsBadPrompts) {
  Model m = make_model(at::kFloat, false);
  Generator gen(*m.source, nullptr, nullptr);
  GenerateOptions o;
  EXPECT_FALSE(gen.generate({{}}, o).ok());
  EXPECT_FALSE(gen.generate({{1, 500}}, o).ok());
  o.stop_strings = {"x"};
  EXPECT_FALSE(gen.generate({{1}}, o).ok());
}

}  // namespace
}  // namespace lema::engine
