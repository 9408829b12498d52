#include "common/base/path_policy.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "common/base/file_util.h"

namespace lema {
namespace {

std::vector<std::string> split_components(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  return parts;
}

std::string parent_of(const std::string& abs) {
  size_t slash = abs.find_last_of('/');
  return slash == 0 || slash == std::string::npos ? "/" : abs.substr(0, slash);
}

std::string join_abs(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string current_dir() {
  char buf[PATH_MAX];
  return getcwd(buf, sizeof(buf)) ? std::string(buf) : std::string("/");
}

// Walks the components the way the kernel does: ".." goes to the parent of
// what the path resolved to so far (after symlinks), not of its spelling.
std::string resolve_abs(const std::string& abs, int depth) {
  std::string cur = "/";
  bool exists = true;  // `cur` exists and is resolved
  for (const std::string& c : split_components(abs)) {
    if (c == ".") continue;
    if (c == "..") {
      cur = parent_of(cur);
      continue;
    }
    std::string next = join_abs(cur, c);
    if (!exists) {
      cur = next;
      continue;
    }
    struct stat st;
    if (lstat(next.c_str(), &st) != 0) {
      exists = false;
      cur = next;
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(next.c_str(), target, sizeof(target) - 1);
      if (n < 0 || depth > 40) {  // unreadable or a loop: treat as its own spelling
        exists = false;
        cur = next;
        continue;
      }
      std::string t(target, static_cast<size_t>(n));
      // A dangling link still says where a write through it would land.
      cur = resolve_abs(t[0] == '/' ? t : join_abs(cur, t), depth + 1);
      exists = path_exists(cur);
      continue;
    }
    cur = next;
  }
  return cur;
}

}  // namespace

std::string normalize_path(const std::string& path) {
  const bool absolute = !path.empty() && path[0] == '/';
  std::vector<std::string> out;
  for (const std::string& c : split_components(path)) {
    if (c == ".") continue;
    if (c == "..") {
      if (!out.empty() && out.back() != "..") {
        out.pop_back();
      } else if (!absolute) {
        out.push_back("..");
      }
      continue;
    }
    out.push_back(c);
  }
  std::string s = absolute ? "/" : "";
  for (size_t i = 0; i < out.size(); ++i) s += (i ? "/" : "") + out[i];
  return s.empty() ? "." : s;
}

std::string resolve_path(const std::string& path, const std::string& base) {
  std::string abs = path;
  if (abs.empty() || abs[0] != '/') abs = (base.empty() ? current_dir() : base) + "/" + path;
  return resolve_abs(abs, 0);
}

bool path_is_under(const std::string& path, const std::string& root) {
  if (root == "/") return !path.empty() && path[0] == '/';
  if (path.compare(0, root.size(), root) != 0) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

PathRoots PathRoots::make(const std::string& base, const std::vector<std::string>& allowed) {
  PathRoots r;
  r.base = resolve_path(base.empty() ? "." : base);
  for (const std::string& a : allowed) {
    if (!a.empty()) r.allowed.push_back(resolve_path(a));
  }
  return r;
}

std::vector<std::string> allowed_roots_from_env() {
  std::vector<std::string> roots;
  const char* env = std::getenv("LEMA_ALLOW_PATH");
  if (env == nullptr) return roots;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ':')) {
    if (!item.empty()) roots.push_back(item);
  }
  return roots;
}

Result<std::string> confine_path(const std::string& what, const std::string& path, const PathRoots& roots) {
  if (path.empty()) return Status::invalid_argument(what + " is empty");
  if (path.find('\0') != std::string::npos) return Status::invalid_argument(what + " contains a NUL byte");
  const bool absolute = path[0] == '/';
  const std::string resolved = resolve_path(path, roots.base);
  if (!absolute && path_is_under(resolved, roots.base)) return resolved;
  for (const std::string& root : roots.allowed) {
    if (path_is_under(resolved, root)) return resolved;
  }
  if (!absolute) {
    return Status::invalid_argument(what + " '" + path + "' resolves to " + resolved +
                                    ", outside the work directory " + roots.base);
  }
  std::string list;
  for (const std::string& root : roots.allowed) list += (list.empty() ? "" : ", ") + root;
  return Status::invalid_argument(what + " '" + path + "' resolves to " + resolved +
                                  (list.empty() ? ": absolute paths need an --allow-path root, and none is configured"
                                                : ", outside every --allow-path root (" + list + ")"));
}

Status make_owned_dirs(const std::string& dir) {
  if (dir.empty() || is_directory(dir)) return Status();
  std::string parent = path_dirname(dir);
  if (!parent.empty() && parent != dir) LEMA_RETURN_IF_ERROR(make_owned_dirs(parent));
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return status_from_errno("mkdir " + dir, errno);
  return mark_owned(dir);
}

Status mark_owned(const std::string& dir) {
  return write_file_atomic(path_join(dir, kOwnedMarker), "made by lema; a stage may delete this directory\n");
}

bool is_owned(const std::string& dir) {
  struct stat st;
  // lstat: a symlink named like the marker does not count.
  return lstat(path_join(dir, kOwnedMarker).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status remove_owned_dir(const std::string& dir) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return Status();
  if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode) || !is_owned(dir)) {
    return Status::invalid_argument(dir + " exists but was not made by lema (no " + kOwnedMarker +
                                    "); not deleting it: move it away or choose another job.work_dir");
  }
  return remove_all(dir);
}

}  // namespace lema
