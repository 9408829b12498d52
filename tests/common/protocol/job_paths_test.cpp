// Path confinement on a real filesystem: temp directories, real symlinks,
// real marker files.
#include "common/protocol/job_paths.h"

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/base/file_util.h"
#include "common/protocol/job_spec.h"

namespace lema {
namespace {

std::string temp_dir() {
  std::string tmpl = "/tmp/lema_paths_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return resolve_path(tmpl);  // /tmp may itself be a link
}

TEST(PathPolicy, NormalizeIsLexical) {
  EXPECT_EQ(normalize_path("a/./b//../c/"), "a/c");
  EXPECT_EQ(normalize_path("/../x"), "/x");
  EXPECT_EQ(normalize_path("../../x"), "../../x");
  EXPECT_EQ(normalize_path("a/../../x"), "../x");
  EXPECT_EQ(normalize_path(""), ".");
  EXPECT_EQ(normalize_path("runs/a/"), "runs/a");
}

TEST(PathPolicy, UnderRootIsByComponent) {
  EXPECT_TRUE(path_is_under("/w/a", "/w"));
  EXPECT_TRUE(path_is_under("/w", "/w"));
  EXPECT_FALSE(path_is_under("/wx/a", "/w"));
  EXPECT_TRUE(path_is_under("/anything", "/"));
}

TEST(PathPolicy, WorkDirStaysInsideTheWorkerDirectory) {
  std::string root = temp_dir();
  std::string w = root + "/w", outside = root + "/outside";
  ASSERT_TRUE(make_dirs(w).ok());
  ASSERT_TRUE(make_dirs(outside).ok());
  PathRoots roots = PathRoots::make(w, {});
  EXPECT_EQ(*confine_work_dir("runs/a", roots), w + "/runs/a");
  EXPECT_EQ(*confine_work_dir("runs/../b", roots), w + "/b");

  auto climb = confine_work_dir("../../x", roots);
  ASSERT_FALSE(climb.ok());
  EXPECT_NE(climb.status().message().find("job.work_dir '../../x' resolves to"), std::string::npos);
  EXPECT_NE(climb.status().message().find("outside the work directory " + w), std::string::npos)
      << climb.status().to_string();

  // A symlink inside W that leads out is followed, also when it dangles, and
  // ".." after it climbs from where it leads (as the kernel does).
  ASSERT_EQ(symlink(outside.c_str(), (w + "/link").c_str()), 0);
  ASSERT_EQ(symlink((outside + "/not-yet").c_str(), (w + "/dangling").c_str()), 0);
  EXPECT_FALSE(confine_work_dir("link/job", roots).ok());
  EXPECT_FALSE(confine_work_dir("dangling", roots).ok());
  EXPECT_FALSE(confine_work_dir("dangling/deeper", roots).ok());
  EXPECT_EQ(resolve_path("link/../x", w), root + "/x");

  // Absolute: only under an --allow-path root.
  auto abs = confine_work_dir(outside + "/job", roots);
  ASSERT_FALSE(abs.ok());
  EXPECT_NE(abs.status().message().find("none is configured"), std::string::npos);
  PathRoots allowed = PathRoots::make(w, {outside});
  EXPECT_EQ(*confine_work_dir(outside + "/job", allowed), outside + "/job");
  EXPECT_EQ(*confine_work_dir("link/job", allowed), outside + "/job");
  auto elsewhere = confine_work_dir("/etc", allowed);
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_NE(elsewhere.status().message().find("outside every --allow-path root (" + outside + ")"),
            std::string::npos)
      << elsewhere.status().to_string();
  remove_all(root).ok();
}

TEST(PathPolicy, SpecInputsAreConfinedAndRewritten) {
  std::string root = temp_dir();
  std::string w = root + "/w", models = root + "/models";
  ASSERT_TRUE(make_dirs(w + "/data").ok());
  ASSERT_TRUE(make_dirs(models + "/tiny").ok());
  PathRoots roots = PathRoots::make(w, {models});
  nlohmann::json spec = {{"model", {{"path", models + "/tiny"}, {"tokenizer", ""}}},
                         {"data", {{"jsonl", "data/x.jsonl"}}}};
  ASSERT_TRUE(confine_spec_inputs(&spec, roots).ok());
  EXPECT_EQ(spec["data"]["jsonl"], w + "/data/x.jsonl");  // what the stage will read
  EXPECT_EQ(spec["model"]["path"], models + "/tiny");

  spec["data"]["jsonl"] = "/etc/passwd";
  Status s = confine_spec_inputs(&spec, roots);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("data.jsonl '/etc/passwd'"), std::string::npos) << s.to_string();
  spec["data"]["jsonl"] = "";
  spec["model"]["tokenizer"] = "../../../etc/shadow";
  s = confine_spec_inputs(&spec, roots);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model.tokenizer"), std::string::npos);
  remove_all(root).ok();
}

TEST(PathPolicy, SubmitRefusesClimbsAndUnlistedAbsolutePaths) {
  auto spec = [](const std::string& extra) {
    return JobSpec::parse("[job]\nname = \"j\"\n" + extra + "[model]\npath = \"m\"\n").value();
  };
  EXPECT_TRUE(check_submitted_paths(spec(""), {}).ok());
  EXPECT_TRUE(check_submitted_paths(spec("work_dir = \"a/../b\"\n"), {}).ok());
  Status climb = check_submitted_paths(spec("work_dir = \"a/../../b\"\n"), {});
  EXPECT_NE(climb.message().find("climbs out"), std::string::npos) << climb.to_string();
  EXPECT_FALSE(check_submitted_paths(spec("work_dir = \"/srv/jobs/a\"\n"), {}).ok());
  EXPECT_TRUE(check_submitted_paths(spec("work_dir = \"/srv/jobs/a\"\n"), {"/srv/jobs"}).ok());
  EXPECT_FALSE(check_submitted_paths(spec("work_dir = \"/srv/jobs/../etc\"\n"), {"/srv/jobs"}).ok());
}

TEST(PathPolicy, OnlyMarkedDirectoriesAreDeleted) {
  std::string root = temp_dir();
  // Somebody's directory: never deleted, whatever a spec says.
  ASSERT_TRUE(make_dirs(root + "/theirs/merged").ok());
  ASSERT_TRUE(write_file_atomic(root + "/theirs/merged/precious", "x").ok());
  Status s = remove_owned_dir(root + "/theirs/merged");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("was not made by lema"), std::string::npos);
  EXPECT_TRUE(path_exists(root + "/theirs/merged/precious"));
  // A symlink to a marked directory is not followed.
  ASSERT_TRUE(make_owned_dirs(root + "/ours/a/b").ok());
  ASSERT_EQ(symlink((root + "/ours/a/b").c_str(), (root + "/link").c_str()), 0);
  EXPECT_FALSE(remove_owned_dir(root + "/link").ok());
  EXPECT_TRUE(is_directory(root + "/ours/a/b"));
  // Directories lema made (each level it created) go.
  EXPECT_TRUE(is_owned(root + "/ours") && is_owned(root + "/ours/a") && is_owned(root + "/ours/a/b"));
  EXPECT_FALSE(is_owned(root));  // existed before
  EXPECT_TRUE(remove_owned_dir(root + "/ours/a/b").ok());
  EXPECT_FALSE(path_exists(root + "/ours/a/b"));
  EXPECT_TRUE(remove_owned_dir(root + "/missing").ok());
  remove_all(root).ok();
}

}  // namespace
}  // namespace lema
