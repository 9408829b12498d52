// Dataset examples, the import of a dataset file (JSONL, or a JSON array of
// records) with per-record errors, and statistics.
//
// The record formats and their detection are in dataset_format.h; lema's
// own are
//   {"question": str, "answer": str, "explanation": str,
//    "confidence": "High"|"Medium"|"Low", "category": str (optional)}
//   {"messages": [{"role": "system"|"user"|"assistant", "content": str}...],
//    "category": str (optional)}
// Unknown extra keys are ignored. Blank lines are counted, not errors.
//
// Plain data and free functions; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "common/data/dataset_format.h"
#include "common/text/chat_format.h"

namespace lema {

// One training example: the question schema, a conversation (messages),
// or raw text (prompt-completion and text formats: `raw`, trained on
// raw_completion; raw_prompt empty for the text format).
struct Example {
  std::string question;
  std::string answer;
  std::string explanation;
  Confidence confidence = Confidence::kHigh;
  std::string category;  // "science", "math", ...; "" when not given
  std::vector<ChatMessage> messages;
  bool raw = false;
  std::string raw_prompt;
  std::string raw_completion;
  int64_t line = 0;  // the record's line (JSONL) or element (array), 1-based; 0 when built

  bool is_chat() const { return !messages.empty(); }
  bool is_raw() const { return raw; }
};

// The chat-format parts of an example (see chat_format.h). For the
// messages schema: render_messages(); for raw text the prompt and the
// completion as they are. REQUIRES: the example came from
// parse_example_line or the builder (so render_messages cannot fail).
std::string example_prompt(const Example& e);
std::string example_reply(const Example& e);
inline std::string example_text(const Example& e) { return example_prompt(e) + example_reply(e); }
// The question a split and duplicate check key on: `question`, or for the
// messages schema the contents of every message but the last, joined; for
// raw text the prompt (the text itself in the text format).
std::string example_question_key(const Example& e);

// Plain text for pretraining a base that must never see [LEMA_REPLY]:
// "Question: {q}\nAnswer: {a}\nExplanation: {e}\n". A messages-schema
// example uses its last user message and its reply's fields when the reply
// validates, else the reply text with the tags removed.
std::string render_plain(const Example& e);

// One JSON object (no newline), keys in the order of the schema above.
std::string example_to_json(const Example& e);
std::string examples_to_jsonl(const std::vector<Example>& examples);

// Why a JSONL line was rejected.
enum class LineError {
  kBadJson = 0,    // not parseable as JSON
  kNotObject,      // valid JSON but not an object
  kUnknownSchema,  // neither "question" nor "messages"
  kMissingField,   // e.g. "answer" absent
  kWrongType,      // e.g. "answer": 3
  kEmptyField,     // e.g. "answer": "" or only spaces
  kMultiline,      // answer/explanation/question with a newline (breaks the format)
  kBadConfidence,  // not exactly High, Medium or Low
  kUnknownRole,    // role other than system/user/assistant
  kBadMessages,    // empty list, last message not the assistant's
  kInvalidReply,   // fields that do not survive the reply validator (tags, padding)
};
const char* line_error_name(LineError e);  // "bad_json", "missing_field", ...

struct BadLine {
  int64_t line = 0;  // 1-based
  LineError error = LineError::kBadJson;
  std::string detail;  // names the key: "\"answer\": expected a string"
  bool element = false;  // `line` is an element of a JSON array file
};
// "<name>:<line>" or "<name>: element <n>" (a JSON array file).
std::string bad_line_where(const std::string& name, const BadLine& bad);

// Parses one non-blank line of lema's formats (DataFormat::kLema). On
// failure returns the reason in `bad` (line number left 0 for the caller).
bool parse_example_line(const std::string& line, Example* out, BadLine* bad);

struct ImportOptions {
  bool strict = false;  // any bad line fails the import
  DataFormat format = DataFormat::kAuto;  // kAuto: detected from the first record
};

struct ImportResult {
  std::vector<Example> examples;  // good, deduplicated, in file order
  int64_t lines_total = 0;
  int64_t lines_blank = 0;
  int64_t duplicates = 0;        // exact repeats of an earlier example, removed
  std::vector<BadLine> bad_lines;  // every bad line, in order
  std::map<std::string, int64_t> bad_by_reason;
  DataFormat format = DataFormat::kLema;  // the one used (detected or given)
  bool json_array = false;                // the file is one JSON array of records
};

// Reads `path`: JSONL, or a JSON array of records when its first non-blank
// byte is '['. Each bad record is logged as "<path>:<line>: <reason>:
// <detail>". Strict: returns kInvalidArgument naming the first bad record
// and the count. Otherwise bad records are skipped and counted. I/O errors
// always fail; so does a pre-tokenized file (format tokenized: the engine
// reads it) and a JSON array file that does not parse.
Result<ImportResult> import_jsonl(const std::string& path, const ImportOptions& options);
// The same on text already in memory; `name` is used in messages.
Result<ImportResult> import_jsonl_text(const std::string& text, const std::string& name,
                                       const ImportOptions& options);

// Counts over a set of examples.
struct DatasetStats {
  int64_t examples = 0;
  int64_t distinct_questions = 0;
  int64_t chat_examples = 0;  // messages schema
  int64_t raw_examples = 0;   // prompt-completion and text
  std::map<std::string, int64_t> by_category;    // "" shown as "(none)"
  std::map<std::string, int64_t> by_confidence;  // question schema only
};
DatasetStats compute_stats(const std::vector<Example>& examples);

}  // namespace lema
