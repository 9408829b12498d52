// libFuzzer target for tokenizer.json (HF tokenizers' file -> BpeSpec).
// Not part of the CMake build: scripts/fuzz.sh builds it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/text/tokenizer_loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)lema::parse_tokenizer_json(text, "fuzz/tokenizer.json");
  return 0;
}
