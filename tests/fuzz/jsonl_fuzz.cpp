// libFuzzer target for dataset JSONL lines (import: schema, roles, replies).
// Not part of the CMake build: scripts/fuzz.sh builds it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lema::ImportOptions options;
  auto r = lema::import_jsonl_text(text, "fuzz.jsonl", options);
  if (r.ok() && static_cast<int64_t>(r->examples.size() + r->bad_lines.size()) > r->lines_total) __builtin_trap();
  return 0;
}
