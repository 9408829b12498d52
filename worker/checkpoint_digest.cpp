#include "worker/checkpoint_digest.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/sha256.h"

namespace lema::worker {

namespace fs = std::filesystem;

Result<std::string> checkpoint_digest(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) {
      return Status::corruption(dir + ": " + it->path().filename().string() + " is not a regular file");
    }
    names.push_back(it->path().filename().string());
  }
  if (ec) return status_from_errno("listing " + dir, ec.value());
  std::sort(names.begin(), names.end());
  std::string manifest;
  for (const std::string& name : names) {
    LEMA_ASSIGN_OR_RETURN(std::string bytes, read_file(path_join(dir, name)));
    manifest += sha256_hex(bytes) + "  " + name + "\n";
  }
  return "files:" + sha256_hex(manifest);
}

Status verify_checkpoint(const std::string& dir, const std::string& recorded) {
  if (!is_directory(dir)) return Status::not_found(dir + ": missing");
  if (!path_exists(path_join(dir, "DONE"))) return Status::corruption(dir + ": no DONE (an unfinished write)");
  if (recorded.empty()) return Status();
  std::string actual;
  if (recorded.rfind("files:", 0) == 0) {
    LEMA_ASSIGN_OR_RETURN(actual, checkpoint_digest(dir));
  } else {
    LEMA_ASSIGN_OR_RETURN(std::string bytes, read_file(path_join(dir, "adapter_model.safetensors")));
    actual = sha256_hex(bytes);
  }
  if (actual != recorded) {
    return Status::corruption(dir + ": digest " + actual + " differs from the recorded " + recorded);
  }
  return Status();
}

}  // namespace lema::worker
