// The record formats a dataset file may hold (docs/DATASET.md "Formats"),
// their detection, and the conversion of one record into an Example.
//
//   lema               {"question",...} or {"messages":[...]} (both may mix)
//   messages           {"messages":[{"role":"system"|"user"|"assistant","content"}...]}
//   sharegpt           {"conversations":[{"from":"system"|"human"|"gpt","value"}...]}
//                      ("user"/"assistant" are accepted for "from" as well)
//   alpaca             {"instruction", "input" (optional, may be ""), "output"}
//                      -> user: instruction, or instruction + "\n\n" + input;
//                         assistant: output
//   prompt-completion  {"prompt", "completion"}: raw text, loss on the completion
//   text               {"text"}: raw text, every token trained (continued pretraining)
//   tokenized          {"input_ids":[...], "labels":[...]}: read by the engine
//                      (engine/data_loader.h), not converted here
//
// Detection (kAuto) looks at the keys of a file's first record, in the order
// above; every record of the file is then parsed as that format, so a record
// of another shape is a bad line naming the missing field.
//
// Free functions; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/base/status.h"

namespace lema {

struct Example;
struct BadLine;

enum class DataFormat {
  kAuto = 0,
  kLema,
  kMessages,
  kShareGpt,
  kAlpaca,
  kPromptCompletion,
  kText,
  kTokenized,
};

// "auto", "lema", "messages", "sharegpt", "alpaca", "prompt-completion",
// "text", "tokenized".
const char* data_format_name(DataFormat f);
// The inverse; an unknown name is kInvalidArgument listing the known ones.
Result<DataFormat> parse_data_format(const std::string& name);

// The format of a file whose first record is `first` (kLema when nothing
// matches: the lema parser then names the missing keys).
DataFormat detect_data_format(const nlohmann::json& first);

// Converts one record of `format` (not kAuto, not kTokenized). On failure
// returns false with the reason in `bad` (its line left for the caller).
bool parse_record(const nlohmann::json& record, DataFormat format, Example* out, BadLine* bad);

}  // namespace lema
