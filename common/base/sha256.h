// SHA-256 of bytes, as lower-case hex. Used for migration checksums and
// checkpoint digests. Pure function; thread-safe.
#pragma once

#include <cstddef>
#include <string>

namespace lema {

std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(const std::string& s) { return sha256_hex(s.data(), s.size()); }

}  // namespace lema
