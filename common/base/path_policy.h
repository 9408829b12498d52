// Path confinement: where a job may read and write (docs/SECURITY.md). A job
// spec comes from the network, so every path in it is resolved the way the
// kernel would (lexical normalisation, then symlinks of the part that exists)
// and must land inside a root: the worker's --workdir for relative paths, an
// --allow-path root for absolute ones.
//
// Marker files: a directory lema creates for a stage gets a ".lema-owned"
// file; a stage deletes a directory only when that marker is there, so a
// spec pointing at somebody else's directory can never make lema delete it.
//
// Thread-safety: free functions; thread-safe (they touch only the filesystem).
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

// "a/./b//../c/" -> "a/c"; "/../x" -> "/x"; a relative path keeps leading
// ".." ("../x"); "" and "." -> ".". Purely lexical (no filesystem access).
std::string normalize_path(const std::string& path);

// The absolute path `path` names once every symlink in its longest existing
// prefix is resolved (realpath), with the rest appended lexically. A relative
// path is taken against `base` (which must be absolute or empty: cwd).
// Never fails for a path that does not exist yet.
std::string resolve_path(const std::string& path, const std::string& base = "");

// True when `path` is `root` or inside it. Both must already be resolved.
bool path_is_under(const std::string& path, const std::string& root);

// The roots a job's paths may use. `base` holds the relative paths (a
// worker's --workdir); `allowed` are the --allow-path roots for absolute
// paths (files or directories). Both are resolved by make().
struct PathRoots {
  std::string base;
  std::vector<std::string> allowed;

  static PathRoots make(const std::string& base, const std::vector<std::string>& allowed);
};

// The roots of LEMA_ALLOW_PATH (':'-separated), as given; empty when unset.
// `lema scheduler` and `lema worker` add them to their --allow-path.
std::vector<std::string> allowed_roots_from_env();

// Resolves `path` (relative: against roots.base) and checks it lies under
// roots.base (relative paths) or an allowed root (absolute paths). `what`
// names the field in the error: "job.work_dir '../../x' resolves to /y,
// outside the worker directory /w".
Result<std::string> confine_path(const std::string& what, const std::string& path, const PathRoots& roots);

// --- directories a stage made
constexpr const char* kOwnedMarker = ".lema-owned";
// Creates `dir` (and missing parents); every directory this call created
// gets a marker. An existing directory is left unmarked.
Status make_owned_dirs(const std::string& dir);
// Marks a directory lema built elsewhere and renamed into place.
Status mark_owned(const std::string& dir);
bool is_owned(const std::string& dir);
// Removes `dir` only when it carries the marker; else kInvalidArgument
// naming it. A missing `dir` is not an error.
Status remove_owned_dir(const std::string& dir);

}  // namespace lema
