#include "common/data/training_example.h"

#include <algorithm>

#include "common/base/rng.h"

namespace lema {

TokenizedExample tokenize_example(const Tokenizer& tok, const Example& e, int32_t seq_len) {
  LEMA_CHECK(seq_len >= 2);
  TokenizedExample out;
  std::vector<int32_t> prompt = tok.encode(example_prompt(e), /*add_special=*/false);
  std::vector<int32_t> reply = tok.encode(example_reply(e), /*add_special=*/false);
  if (tok.bos_id() >= 0) {
    out.input_ids.push_back(tok.bos_id());
    out.labels.push_back(kIgnoreLabel);
  }
  out.input_ids.insert(out.input_ids.end(), prompt.begin(), prompt.end());
  out.labels.insert(out.labels.end(), prompt.size(), kIgnoreLabel);
  out.input_ids.insert(out.input_ids.end(), reply.begin(), reply.end());
  out.labels.insert(out.labels.end(), reply.begin(), reply.end());
  if (tok.eos_id() >= 0) {
    out.input_ids.push_back(tok.eos_id());
    out.labels.push_back(tok.eos_id());
  }
  if (static_cast<int64_t>(out.input_ids.size()) > seq_len) {
    out.input_ids.resize(static_cast<size_t>(seq_len));
    out.labels.resize(static_cast<size_t>(seq_len));
    out.truncated = true;
  }
  return out;
}

std::vector<TokenizedExample> tokenize_examples(const Tokenizer& tok, const std::vector<Example>& examples,
                                                int32_t seq_len, TokenizeStats* stats) {
  TokenizeStats s;
  std::vector<TokenizedExample> out;
  out.reserve(examples.size());
  for (const auto& e : examples) {
    TokenizedExample t = tokenize_example(tok, e, seq_len);
    int64_t labelled = std::count_if(t.labels.begin(), t.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
    if (labelled == 0) {
      ++s.dropped_no_labels;
      continue;
    }
    if (t.truncated) {
      ++s.truncated;
      // Length before truncation, for the report.
      s.max_len = std::max<int32_t>(s.max_len, static_cast<int32_t>(tok.encode(example_text(e), false).size()));
    }
    s.max_len = std::max<int32_t>(s.max_len, static_cast<int32_t>(t.input_ids.size()));
    ++s.examples;
    s.tokens += static_cast<int64_t>(t.input_ids.size());
    s.label_tokens += labelled;
    out.push_back(std::move(t));
  }
  if (stats) *stats = s;
  return out;
}

nlohmann::ordered_json example_template_messages(const Example& e) {
  LEMA_CHECK(!e.is_raw());
  nlohmann::ordered_json m = nlohmann::ordered_json::array();
  if (!e.is_chat()) {
    m.push_back({{"role", "user"}, {"content", e.question}});
    m.push_back({{"role", "assistant"}, {"content", render_reply(e.answer, e.explanation, e.confidence)}});
    return m;
  }
  for (const auto& msg : e.messages) m.push_back({{"role", msg.role}, {"content", msg.content}});
  return m;
}

Result<ChatTokens> tokenize_conversation(const ChatTemplate& chat_template, const Tokenizer& tok,
                                         const nlohmann::ordered_json& messages, bool* last_turn_only) {
  ChatRenderOptions options;
  *last_turn_only = false;
  Result<ChatTokens> chat = tokenize_chat(chat_template, tok, messages, options, /*last_assistant_only=*/false);
  if (chat.ok()) return chat;
  // Templates that rewrite history (see chat_template.h) still give an
  // exact mask for the final turn.
  Result<ChatTokens> last = tokenize_chat(chat_template, tok, messages, options, /*last_assistant_only=*/true);
  if (!last.ok()) return chat.status();
  *last_turn_only = true;
  return last;
}

namespace {

// One conversation through the template. Not cut to seq_len: the caller
// counts the full length first.
Result<TokenizedExample> tokenize_templated(const Tokenizer& tok, const ChatTemplate& tmpl, const Example& e,
                                            bool* last_turn_only) {
  LEMA_ASSIGN_OR_RETURN(ChatTokens chat, tokenize_conversation(tmpl, tok, example_template_messages(e), last_turn_only));
  TokenizedExample out;
  out.input_ids = std::move(chat.ids);
  out.labels.resize(out.input_ids.size());
  for (size_t i = 0; i < out.input_ids.size(); ++i) out.labels[i] = chat.loss_mask[i] ? out.input_ids[i] : kIgnoreLabel;
  return out;
}

}  // namespace

Result<std::vector<TokenizedExample>> tokenize_dataset(const Tokenizer& tok, const ChatTemplate* chat_template,
                                                       const std::vector<Example>& examples, int32_t seq_len,
                                                       TokenizeStats* stats) {
  if (!chat_template) {
    std::vector<TokenizedExample> out = tokenize_examples(tok, examples, seq_len, stats);
    return out;
  }
  TokenizeStats s;
  std::vector<TokenizedExample> out;
  out.reserve(examples.size());
  for (const auto& e : examples) {
    TokenizedExample t;
    int32_t full_len = 0;
    if (e.is_raw()) {
      t = tokenize_example(tok, e, seq_len);
      full_len = static_cast<int32_t>(t.input_ids.size());
      if (t.truncated) full_len = static_cast<int32_t>(tok.encode(example_text(e), false).size());
    } else {
      bool last_only = false;
      Result<TokenizedExample> r = tokenize_templated(tok, *chat_template, e, &last_only);
      if (!r.ok()) return r.status().with_context("line " + std::to_string(e.line));
      t = std::move(r).value();
      full_len = static_cast<int32_t>(t.input_ids.size());
      if (full_len > seq_len) {
        t.input_ids.resize(static_cast<size_t>(seq_len));
        t.labels.resize(static_cast<size_t>(seq_len));
        t.truncated = true;
      }
      if (last_only) ++s.last_turn_only;
    }
    int64_t labelled = std::count_if(t.labels.begin(), t.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
    if (labelled == 0) {
      ++s.dropped_no_labels;
      continue;
    }
    if (t.truncated) ++s.truncated;
    s.max_len = std::max(s.max_len, full_len);
    ++s.examples;
    s.tokens += static_cast<int64_t>(t.input_ids.size());
    s.label_tokens += labelled;
    out.push_back(std::move(t));
  }
  if (stats) *stats = s;
  return out;
}

std::vector<TokenizedExample> pack_examples(const std::vector<TokenizedExample>& examples, int32_t seq_len,
                                            PackStats* stats) {
  std::vector<TokenizedExample> rows;
  PackStats st;
  for (const TokenizedExample& e : examples) {
    const size_t len = e.input_ids.size();
    LEMA_CHECK(len > 0 && static_cast<int64_t>(len) <= seq_len && e.labels.size() == len);
    if (rows.empty() || rows.back().input_ids.size() + len > static_cast<size_t>(seq_len)) rows.emplace_back();
    TokenizedExample& row = rows.back();
    const int32_t segment = row.segment_ids.empty() ? 1 : row.segment_ids.back() + 1;
    row.input_ids.insert(row.input_ids.end(), e.input_ids.begin(), e.input_ids.end());
    row.labels.insert(row.labels.end(), e.labels.begin(), e.labels.end());
    row.labels[row.labels.size() - len] = kIgnoreLabel;  // see the header: no target across a boundary
    row.segment_ids.insert(row.segment_ids.end(), len, segment);
    for (size_t i = 0; i < len; ++i) row.position_ids.push_back(static_cast<int32_t>(i));
    row.truncated = row.truncated || e.truncated;
    ++st.examples;
    st.tokens += static_cast<int64_t>(len);
  }
  st.rows = static_cast<int64_t>(rows.size());
  if (stats) *stats = st;
  return rows;
}

Batcher::Batcher(std::vector<TokenizedExample> examples, BatcherOptions options)
    : examples_(std::move(examples)), options_(options) {
  LEMA_CHECK(!examples_.empty());
  LEMA_CHECK(options_.batch_size >= 1);
  for (const auto& e : examples_) LEMA_CHECK(static_cast<int64_t>(e.input_ids.size()) <= options_.seq_len);
}

void Batcher::set_cursor(const DataCursor& cursor) {
  LEMA_CHECK(cursor.epoch >= 0 && cursor.index >= 0 && cursor.index <= static_cast<int64_t>(examples_.size()));
  cursor_ = cursor;
}

void Batcher::build_order() {
  order_.resize(examples_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  if (options_.shuffle) {
    SplitMix64 rng(mix_seed(options_.seed, static_cast<uint64_t>(cursor_.epoch)));
    rng.shuffle(order_);
  }
  order_epoch_ = cursor_.epoch;
}

size_t Batcher::take() {
  if (cursor_.index >= static_cast<int64_t>(examples_.size())) {
    cursor_.epoch++;
    cursor_.index = 0;
  }
  if (order_epoch_ != cursor_.epoch) build_order();
  return order_[static_cast<size_t>(cursor_.index++)];
}

Batch Batcher::next() {
  const int32_t B = options_.batch_size;
  std::vector<size_t> rows(static_cast<size_t>(B));
  int32_t T = 0;
  for (size_t& row : rows) {
    row = take();
    T = std::max<int32_t>(T, static_cast<int32_t>(examples_[row].input_ids.size()));
  }
  Batch b;
  b.batch_size = B;
  b.seq_len = T;
  const size_t n = static_cast<size_t>(B) * static_cast<size_t>(T);
  b.input_ids.assign(n, options_.pad_id);
  b.labels.assign(n, kIgnoreLabel);
  b.attention_mask.assign(n, 0);
  b.segment_ids.assign(n, 0);
  b.position_ids.assign(n, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const TokenizedExample& e = examples_[rows[r]];
    const bool packed = !e.segment_ids.empty();
    const size_t row = r * static_cast<size_t>(T);
    for (size_t i = 0; i < e.input_ids.size(); ++i) {
      b.input_ids[row + i] = e.input_ids[i];
      b.labels[row + i] = e.labels[i];
      b.attention_mask[row + i] = 1;
      b.segment_ids[row + i] = packed ? e.segment_ids[i] : 1;
      b.position_ids[row + i] = packed ? e.position_ids[i] : static_cast<int32_t>(i);
      if (e.labels[i] != kIgnoreLabel) ++b.label_tokens;
    }
    b.examples += packed ? e.segment_ids.back() : 1;
  }
  return b;
}

}  // namespace lema
