// A tokenizer file the tests can write without training one.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "common/base/file_util.h"

namespace lema::test {

// A byte-level BPE tokenizer.json without merges (every byte one token,
// GPT-2's byte-to-unicode map), <s> = 0 and </s> = 1: enough to run the
// text path (dataset JSONL -> chat format -> tokenizer -> masks) end to end.
inline void write_byte_tokenizer(const std::string& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  int next_extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const int cp = printable ? b : 256 + next_extra++;
    std::string utf8;
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[utf8] = b + 2;
  }
  vocab["<s>"] = 0;
  vocab["</s>"] = 1;
  auto added = [](int id, const char* content) {
    return nlohmann::json{
        {"id", id},        {"content", content}, {"special", true},    {"single_word", false},
        {"lstrip", false}, {"rstrip", false},    {"normalized", false}};
  };
  nlohmann::json tok = {
      {"version", "1.0"},
      {"added_tokens", {added(0, "<s>"), added(1, "</s>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  ASSERT_TRUE(write_file_atomic(path_join(dir, "tokenizer.json"), tok.dump()).ok());
  ASSERT_TRUE(
      write_file_atomic(
          path_join(dir, "tokenizer_config.json"),
          R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true, "add_eos_token": false})")
          .ok());
}

}  // namespace lema::test
