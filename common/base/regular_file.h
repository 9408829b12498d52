// Opening a file that must be a regular file. Readers of user-named paths
// (read_file, MappedFile, the safetensors and layer-file readers) go through
// it: a FIFO, a device or a directory would block the open or the read
// forever (`lema inspect FIFO` hung), or read garbage.
#pragma once

#include <string>

#include "common/base/status.h"

namespace lema {

// Opens `path` read-only (O_CLOEXEC) and returns the descriptor, or
// "PATH: not a regular file". The open does not block (O_NONBLOCK, cleared
// after the check). The caller closes the descriptor.
Result<int> open_regular_file(const std::string& path);

}  // namespace lema
