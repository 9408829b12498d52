// libFuzzer target for the job spec (TOML text -> JobSpec with every check).
// Not part of the CMake build: scripts/fuzz.sh builds it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/protocol/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto spec = lema::JobSpec::parse(text, "fuzz.toml");
  if (spec.ok()) {
    // An accepted spec reads back from its normalised form, unchanged.
    auto back = lema::JobSpec::from_json(spec->to_json(), "fuzz.json");
    if (!back.ok() || back->to_json() != spec->to_json()) __builtin_trap();
  }
  return 0;
}
