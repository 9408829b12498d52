// libFuzzer target for the wire decoder (msgpack frame -> Message, with the
// field schema). Not part of the CMake build: scripts/fuzz.sh builds it.
#include <cstddef>
#include <cstdint>

#include "common/protocol/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = lema::protocol::decode(data, size);
  if (m.ok()) {
    // An accepted message encodes and decodes to the same message.
    std::string again = lema::protocol::encode(*m);
    auto back = lema::protocol::decode(again);
    if (!back.ok() || back->type != m->type || back->fields != m->fields) __builtin_trap();
  }
  return 0;
}
