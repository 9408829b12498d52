// libFuzzer target for the safetensors header parser. Not part of the CMake
// build: scripts/fuzz.sh builds it with clang++ -fsanitize=fuzzer,address.
#include <cstddef>
#include <cstdint>

#include "common/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = lema::parse_safetensors_header(data, size, size, "fuzz.safetensors");
  if (r.ok()) {
    // An accepted header must describe ranges inside the input.
    for (const auto& t : r->tensors) {
      if (t.offset + t.nbytes > size) __builtin_trap();
    }
  }
  return 0;
}
