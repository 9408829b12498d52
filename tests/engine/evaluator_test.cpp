// The evaluator against independent computations on tiny random models:
// the eval loss equals a plain per-example forward plus a cross-entropy
// over reply labels built here; a non-zero LoRA B moves the loss; greedy
// replies of a random model all fail the strict validator and are counted
// by reason and category; bad eval files are named with their line.
#include "engine/evaluator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/byte_tokenizer.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "common/text/chat_format.h"
#include "common/base/file_util.h"
#include "common/formats/layer_file.h"
#include "common/formats/model_presets.h"
#include "tests/engine/tiny_model.h"
#include "engine/checkpoint.h"
#include "engine/generator.h"
#include "engine/llama_model.h"
#include "engine/memory_planner.h"

namespace lema::engine {
namespace {

constexpr int32_t kBos = 0, kEos = 1;

// id = byte + 2; BOS 0, EOS 1 (special, skipped when decoding).
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(const std::string& text, bool add_special) const override {
    std::vector<int32_t> ids;
    if (add_special) ids.push_back(kBos);
    for (unsigned char ch : text) ids.push_back(ch + 2);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override {
    std::string s;
    for (int32_t id : ids) {
      if (id >= 2 && id < 258)
        s.push_back(static_cast<char>(id - 2));
      else if (!skip_special && id == kBos)
        s += "<s>";
      else if (!skip_special && id == kEos)
        s += "</s>";
    }
    return s;
  }
  int64_t vocab_size() const override { return 258; }
  int32_t bos_id() const override { return kBos; }
  int32_t eos_id() const override { return kEos; }
  int32_t pad_id() const override { return -1; }
  std::string id_to_token(int32_t id) const override { return decode({id}, false); }
  int32_t token_to_id(const std::string& t) const override {
    return t.size() == 1 ? static_cast<unsigned char>(t[0]) + 2 : -1;
  }
  bool is_special(int32_t id) const override { return id < 2; }
};

std::vector<Example> eval_examples() {
  std::vector<Example> out;
  const char* categories[] = {"math", "science", "math", "", "science"};
  for (int i = 0; i < 5; ++i) {
    Example e;
    e.question = "What is " + std::to_string(i) + " plus " + std::to_string(2 * i + 1) + "?";
    e.answer = std::to_string(3 * i + 1);
    e.explanation = "Adding the two numbers gives " + std::to_string(3 * i + 1) + ".";
    e.confidence = static_cast<Confidence>(i % 3);
    e.category = categories[i];
    out.push_back(e);
  }
  Example chat;
  chat.messages = {{"user", "Name a prime."},
                   {"assistant", render_reply("7", "It has no divisors but 1 and 7.", Confidence::kHigh)}};
  chat.category = "chat";
  out.push_back(chat);
  return out;
}

struct Model {
  ModelConfig config;
  std::unique_ptr<InMemoryLayerSource> source;
};

Model make_model(at::ScalarType dtype, double init, uint64_t seed) {
  Model m;
  m.config = test_models::tiny_gqa_config(2, 260, init);
  auto src = InMemoryLayerSource::create(m.config, make_random_model(m.config, seed, dtype), dtype, at::kCPU);
  EXPECT_TRUE(src.ok()) << src.status().to_string();
  m.source = std::move(src).value();
  return m;
}

// The prompt and reply text of an example, from the chat format.
std::pair<std::string, std::string> prompt_and_reply(const Example& e) {
  if (!e.is_chat()) return {render_prompt(e.question), render_reply(e.answer, e.explanation, e.confidence)};
  Result<RenderedChat> r = render_messages(e.messages);
  EXPECT_TRUE(r.ok());
  return {r->prompt, r->reply};
}

// Mean cross-entropy of the reply tokens and EOS, each example run alone
// through decoder_layer_forward and head_logits, cut to seq_len.
std::pair<double, int64_t> reference_loss(LayerSource& source, const LoraAdapter* adapter,
                                          const ByteTokenizer& tok, const std::vector<Example>& examples,
                                          size_t seq_len) {
  const ModelConfig& c = source.config();
  const Rope rope(c);
  double sum = 0.0;
  int64_t count = 0;
  at::NoGradGuard no_grad;
  for (const Example& e : examples) {
    const auto [prompt, reply] = prompt_and_reply(e);
    std::vector<int32_t> ids = {kBos};
    for (int32_t id : tok.encode(prompt, false)) ids.push_back(id);
    const size_t reply_start = ids.size();
    for (int32_t id : tok.encode(reply, false)) ids.push_back(id);
    ids.push_back(kEos);
    if (ids.size() > seq_len) ids.resize(seq_len);
    const auto t = static_cast<int64_t>(ids.size());
    LayerContext ctx;
    ctx.config = &c;
    std::tie(ctx.cos, ctx.sin) = rope.cos_sin(t, source.dtype(), at::kCPU);
    const at::Tensor input = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, t});
    at::Tensor x = embed_tokens(input, source.head(), c);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const LayerLora lora = adapter ? adapter->layer(l, source.dtype(), false) : LayerLora{};
      x = decoder_layer_forward(x, source.acquire(l).value(), lora, ctx);
    }
    const at::Tensor logp =
        at::log_softmax(head_logits(x, source.head(), c).to(at::kDouble)[0], -1);  // [T, V]
    // Position p predicts token p + 1; the targets are the reply and EOS.
    for (size_t p = reply_start - 1; p + 1 < ids.size(); ++p) {
      sum -= logp[static_cast<int64_t>(p)][ids[p + 1]].item<double>();
      ++count;
    }
  }
  return {sum / static_cast<double>(count), count};
}

EvalOptions loss_only_options() {
  EvalOptions o;
  o.questions = 0;
  o.batch = 4;              // two passes, the first one padded
  o.loss_chunk_tokens = 7;  // several chunks per pass
  o.show_progress = false;
  return o;
}

TEST(Evaluator, LossEqualsAPlainForwardOverReplyLabels) {
  Model m = make_model(at::kDouble, 0.1, 3);
  ByteTokenizer tok;
  const std::vector<Example> examples = eval_examples();
  EvalOptions o = loss_only_options();
  Result<EvalModelResult> r = evaluate_model(o, *m.source, nullptr, tok, examples, "base");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const auto [ref, count] = reference_loss(*m.source, nullptr, tok, examples, 1u << 20);
  EXPECT_NEAR(r->eval_loss, ref, 1e-6);
  EXPECT_EQ(r->eval_tokens, count);
  EXPECT_EQ(r->name, "base");
  EXPECT_EQ(r->total, 0);
  EXPECT_GT(r->eval_loss, 1.0);  // a random model: far from 0

  // Cut to seq_len as training cuts: only the reply tokens inside count.
  o.seq_len = 100;
  Result<EvalModelResult> cut = evaluate_model(o, *m.source, nullptr, tok, examples, "base");
  ASSERT_TRUE(cut.ok()) << cut.status().to_string();
  const auto [ref_cut, count_cut] = reference_loss(*m.source, nullptr, tok, examples, 100);
  EXPECT_LT(count_cut, count);
  EXPECT_EQ(cut->eval_tokens, count_cut);
  EXPECT_NEAR(cut->eval_loss, ref_cut, 1e-6);
}

TEST(Evaluator, AdapterWithNonZeroBChangesTheLoss) {
  Model m = make_model(at::kDouble, 0.1, 5);
  ByteTokenizer tok;
  const std::vector<Example> examples = eval_examples();
  const EvalOptions o = loss_only_options();
  LoraConfig lc;
  lc.r = 4;
  lc.alpha = 8;
  LoraAdapter adapter = LoraAdapter::init(m.config, lc, 9, at::kDouble, at::kCPU);
  Result<EvalModelResult> base = evaluate_model(o, *m.source, nullptr, tok, examples, "base");
  Result<EvalModelResult> zero_b = evaluate_model(o, *m.source, &adapter, tok, examples, "tuned");
  ASSERT_TRUE(base.ok() && zero_b.ok());
  EXPECT_NEAR(zero_b->eval_loss, base->eval_loss, 1e-12);  // B = 0: the base exactly
  {
    at::NoGradGuard no_grad;
    at::Generator gen = at::detail::createCPUGenerator(21);
    for (int64_t l = 0; l < m.config.n_layers; ++l) {
      for (LoraTarget t : lc.targets) adapter.b(l, t).normal_(0.0, 0.5, gen);
    }
  }
  Result<EvalModelResult> tuned = evaluate_model(o, *m.source, &adapter, tok, examples, "tuned");
  ASSERT_TRUE(tuned.ok()) << tuned.status().to_string();
  EXPECT_GT(std::fabs(tuned->eval_loss - base->eval_loss), 1e-3);
  const auto [ref, count] = reference_loss(*m.source, &adapter, tok, examples, 1u << 20);
  EXPECT_NEAR(tuned->eval_loss, ref, 1e-6);
  EXPECT_EQ(tuned->eval_tokens, count);
}

TEST(Evaluator, RandomModelRepliesFailTheValidatorAndAreCounted) {
  Model m = make_model(at::kDouble, 0.3, 7);
  ByteTokenizer tok;
  const std::vector<Example> examples = eval_examples();
  EvalOptions o;
  o.questions = 7;  // more than the 6 examples: all of them
  o.max_new_tokens = 20;
  o.batch = 4;  // two generate calls, the last one with two prompts
  o.show_progress = false;
  std::vector<int64_t> generate_done;
  o.on_progress = [&](const std::string& phase, const std::string& model, int64_t done, int64_t total) {
    EXPECT_EQ(model, "base");
    if (phase == "generate") {
      EXPECT_EQ(total, 6);
      generate_done.push_back(done);
    }
    return Status();
  };
  Result<EvalModelResult> r = evaluate_model(o, *m.source, nullptr, tok, examples, "base");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(generate_done, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(r->total, 6);
  EXPECT_EQ(r->valid, 0);
  EXPECT_EQ(r->adherence(), 0.0);
  ASSERT_EQ(r->samples.size(), 6u);

  // Each sample: the reply a single greedy run gives to the training prompt,
  // and the validator's reason for it.
  Generator gen(*m.source, nullptr, &tok);
  GenerateOptions g;
  g.max_new_tokens = 20;
  g.stop_strings = {kReplyCloseTag};
  std::map<std::string, int64_t> reasons;
  std::map<std::string, int64_t> categories;
  for (int i = 0; i < 6; ++i) {
    const Example& e = examples[i];
    auto single = gen.generate({tok.encode(prompt_and_reply(e).first, /*add_special=*/true)}, g);
    ASSERT_TRUE(single.ok());
    EXPECT_EQ(r->samples[i].output, single.value()[0].text) << i;
    EXPECT_EQ(r->samples[i].question, e.is_chat() ? "Name a prime." : e.question);
    const ReplyCheck check = validate_reply(single.value()[0].text);
    EXPECT_FALSE(check.ok());
    EXPECT_EQ(r->samples[i].reason, reply_error_name(check.error));
    ++reasons[reply_error_name(check.error)];
    ++categories[e.category.empty() ? "(none)" : e.category];
  }
  EXPECT_EQ(r->failures_by_reason, reasons);
  int64_t failures = 0;
  for (const auto& [reason, n] : r->failures_by_reason) failures += n;
  EXPECT_EQ(failures, 6);
  ASSERT_EQ(r->by_category.size(), categories.size());
  for (const auto& [cat, n] : categories) {
    EXPECT_EQ(r->by_category[cat].total, n) << cat;
    EXPECT_EQ(r->by_category[cat].valid, 0) << cat;
  }
  EXPECT_EQ(r->by_category["math"].total, 2);
  EXPECT_EQ(r->by_category["(none)"].total, 1);
  EXPECT_EQ(r->by_category["chat"].total, 1);
}

TEST(Evaluator, ProgressCallbackCancels) {
  Model m = make_model(at::kFloat, 0.02, 1);
  ByteTokenizer tok;
  EvalOptions o = loss_only_options();
  o.on_progress = [](const std::string&, const std::string&, int64_t, int64_t) {
    return Status::cancelled("stop");
  };
  Result<EvalModelResult> r = evaluate_model(o, *m.source, nullptr, tok, eval_examples(), "base");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCancelled);
}

TEST(Evaluator, TokenIdsOutsideTheModelVocabularyAreRefused) {
  Model m = make_model(at::kFloat, 0.02, 1);
  m.config.vocab_size = 50;
  auto src =
      InMemoryLayerSource::create(m.config, make_random_model(m.config, 1, at::kFloat), at::kFloat, at::kCPU);
  ASSERT_TRUE(src.ok());
  ByteTokenizer tok;
  Result<EvalModelResult> r =
      evaluate_model(loss_only_options(), **src, nullptr, tok, eval_examples(), "base");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocabulary has 50"), std::string::npos) << r.status().to_string();
}

TEST(Evaluator, BadEvalFilesNameTheFileAndLine) {
  char tmpl[] = "/tmp/lema_evaluator_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string good = examples_to_jsonl(eval_examples());
  const std::string path = path_join(dir, "eval.jsonl");
  ASSERT_TRUE(write_file_atomic(path, good).ok());
  Result<std::vector<Example>> ok = read_eval_examples(path);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->size(), 6u);
  EXPECT_EQ((*ok)[1].category, "science");

  ASSERT_TRUE(write_file_atomic(path, good + "{\"question\": \"q\", \"answer\": 3}\n").ok());
  Result<std::vector<Example>> bad = read_eval_examples(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path + ":7"), std::string::npos) << bad.status().to_string();

  ASSERT_TRUE(write_file_atomic(path, "\n").ok());
  EXPECT_FALSE(read_eval_examples(path).ok());
  Result<std::vector<Example>> missing = read_eval_examples(path_join(dir, "nope.jsonl"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.jsonl"), std::string::npos);
  ASSERT_TRUE(remove_all(dir).ok());
}


class RunEval : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lema_evaluator_XXXXXX";
    dir_ = mkdtemp(tmpl);
    config_ = test_models::tiny_gqa_config(2, 260, 0.02);
    ASSERT_TRUE(write_random_hf_model(config_, path_join(dir_, "model"), 3).ok());
    test::write_byte_tokenizer(path_join(dir_, "model"));
    ASSERT_TRUE(write_file_atomic(path_join(dir_, "eval.jsonl"), examples_to_jsonl(eval_examples())).ok());
    ASSERT_TRUE(write_file_atomic(path_join(dir_, "metrics.jsonl"),
                                  "{\"step\": 1, \"loss\": 5.5}\n{\"step\": 2, \"loss\": 4.25}\n")
                    .ok());
    o_.model = path_join(dir_, "model");
    o_.data = path_join(dir_, "eval.jsonl");
    o_.out = path_join(dir_, "report");
    o_.questions = 2;
    o_.max_new_tokens = 6;
    o_.show_progress = false;
  }
  void TearDown() override { (void)remove_all(dir_); }
  std::string dir_;
  ModelConfig config_;
  EvalOptions o_;
};

TEST_F(RunEval, BaseAndTunedSideBySideWithTheLossCurve) {
  LoraConfig lc;
  lc.r = 2;
  LoraAdapter adapter = LoraAdapter::init(config_, lc, 1, at::kFloat, at::kCPU);
  {
    at::NoGradGuard no_grad;
    for (int64_t l = 0; l < config_.n_layers; ++l) adapter.b(l, LoraTarget::kV).fill_(0.05);
  }
  ASSERT_TRUE(save_adapter(path_join(dir_, "adapter"), adapter, o_.model).ok());
  o_.adapter = path_join(dir_, "adapter");
  o_.metrics = path_join(dir_, "metrics.jsonl");
  Result<EvalReport> r = run_eval(o_);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->models.size(), 2u);
  EXPECT_EQ(r->models[0].name, "base");
  EXPECT_EQ(r->models[1].name, "tuned");
  EXPECT_EQ(r->models[1].adapter, o_.adapter);
  EXPECT_EQ(r->models[0].total, 2);
  EXPECT_NE(r->models[0].eval_loss, r->models[1].eval_loss);
  EXPECT_EQ(r->models[0].eval_tokens, r->models[1].eval_tokens);
  EXPECT_EQ(*read_file(path_join(o_.out, "report.json")), eval_report_json(*r));
  EXPECT_EQ(*read_file(path_join(o_.out, "report.md")), eval_report_markdown(*r));
  Result<std::string> svg = read_file(path_join(o_.out, "loss_curve.svg"));
  ASSERT_TRUE(svg.ok());
  EXPECT_NE(svg->find("<polyline"), std::string::npos);
  EXPECT_NE(eval_report_markdown(*r).find("](loss_curve.svg)"), std::string::npos);
}

TEST_F(RunEval, RefusesAnAdapterForAnotherShape) {
  ModelConfig other = config_;
  other.hidden_size = 48;
  other.head_dim = 12;
  LoraConfig lc;
  lc.r = 2;
  ASSERT_TRUE(
      save_adapter(path_join(dir_, "adapter"), LoraAdapter::init(other, lc, 1, at::kFloat, at::kCPU), "x")
          .ok());
  o_.adapter = path_join(dir_, "adapter");
  Result<EvalReport> r = run_eval(o_);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("adapter " + o_.adapter), std::string::npos) << msg;
  EXPECT_NE(msg.find("lora_A"), std::string::npos) << msg;  // names the tensor
  EXPECT_FALSE(path_exists(path_join(o_.out, "report.json")));
}

TEST_F(RunEval, NoTokenizerIsAClearError) {
  ASSERT_TRUE(remove_all(path_join(dir_, "model/tokenizer.json")).ok());
  Result<EvalReport> r = run_eval(o_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no tokenizer for model"), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find("--tokenizer"), std::string::npos) << r.status().to_string();
}

// `lema eval --vram` on a layer file: the base streams through 2-3 device
// slots (forward only) and the report is the one the resident model gives,
// bit for bit (same weights, same batch, the same kernels on the CPU).
TEST_F(RunEval, VramBudgetStreamsTheBaseWithTheSameReport) {
  config_ = test_models::tiny_gqa_config(6, 260, 0.02);
  ASSERT_TRUE(write_random_hf_model(config_, path_join(dir_, "deep"), 4).ok());
  const std::string layer_file = path_join(dir_, "deep.lema.safetensors");
  ASSERT_TRUE(convert_hf_to_layer_file(path_join(dir_, "deep"), layer_file, ConvertOptions{}).ok());
  LoraConfig lc;
  lc.r = 2;
  LoraAdapter adapter = LoraAdapter::init(config_, lc, 1, at::kFloat, at::kCPU);
  {
    at::NoGradGuard no_grad;
    for (int64_t l = 0; l < config_.n_layers; ++l) adapter.b(l, LoraTarget::kQ).fill_(0.05);
  }
  ASSERT_TRUE(save_adapter(path_join(dir_, "adapter"), adapter, layer_file).ok());
  o_.model = layer_file;
  o_.tokenizer = path_join(dir_, "model");
  o_.adapter = path_join(dir_, "adapter");
  o_.out.clear();
  o_.batch = 2;
  Result<EvalReport> resident = run_eval(o_);
  ASSERT_TRUE(resident.ok()) << resident.status().to_string();

  // A budget for the head, the KV cache, the working memory and 3 of the 6
  // layers: the plan keeps at most 1 resident and streams the rest.
  InferenceRequest req;
  req.config = config_;
  req.batch = o_.batch;
  // As run_eval sizes it: the longest prompt asked (the tokens before the
  // first label) plus max_new_tokens.
  std::unique_ptr<Tokenizer> tokenizer = std::move(Tokenizer::load(o_.tokenizer).value());
  const std::vector<Example> examples = eval_examples();
  int64_t longest_prompt = 0;
  for (int64_t i = 0; i < o_.questions; ++i) {
    const TokenizedExample t = tokenize_example(*tokenizer, examples[i], INT32_MAX);
    const auto first = std::find_if(t.labels.begin(), t.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
    longest_prompt = std::max<int64_t>(longest_prompt, first - t.labels.begin());
  }
  req.kv_tokens = longest_prompt + o_.max_new_tokens;
  req.forward_tokens = o_.seq_len;
  req.lora_r = 2;
  req.dtype_bytes = 4;
  req.cuda = false;
  req.flash_attention = false;
  Result<MemoryPlan> whole = plan_inference_memory(req);
  ASSERT_TRUE(whole.ok());
  req.vram_budget = whole->device_bytes - 3 * whole->layer_bytes;
  Result<MemoryPlan> plan = plan_inference_memory(req);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  ASSERT_NE(plan->mode, PlanMode::kResident);
  EXPECT_LT(plan->resident_layers, 6);
  EXPECT_EQ(plan->micro_batch, 2);

  o_.vram_budget = req.vram_budget;
  Result<EvalReport> streamed = run_eval(o_);
  ASSERT_TRUE(streamed.ok()) << streamed.status().to_string();
  ASSERT_EQ(streamed->models.size(), 2u);
  EXPECT_EQ(eval_report_json(*streamed), eval_report_json(*resident));
  EXPECT_NE(streamed->models[0].eval_loss, streamed->models[1].eval_loss);

  // A directory is refused with what to do.
  o_.model = path_join(dir_, "deep");
  Result<EvalReport> dir = run_eval(o_);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("lema convert"), std::string::npos) << dir.status().to_string();
}

}  // namespace
}  // namespace lema::engine
