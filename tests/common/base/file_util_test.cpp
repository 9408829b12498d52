#include "common/base/file_util.h"

#include <gtest/gtest.h>

#include <vector>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace lema {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/lema_file_util_XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

TEST(FileUtil, AtomicWriteReplacesWholeFileAndLeavesNoTemp) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "a.txt");
  ASSERT_TRUE(write_file_atomic(path, "first").ok());
  ASSERT_TRUE(write_file_atomic(path, "second version").ok());
  auto got = read_file(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "second version");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  remove_all(dir).ok();
}

TEST(FileUtil, AbandonedWriterLeavesOldContent) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "b.txt");
  ASSERT_TRUE(write_file_atomic(path, "old").ok());
  {
    AtomicFileWriter w;
    ASSERT_TRUE(w.open(path).ok());
    ASSERT_TRUE(w.append("new", 3).ok());
    // destroyed without commit
  }
  EXPECT_EQ(*read_file(path), "old");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  remove_all(dir).ok();
}

TEST(FileUtil, MissingFileIsNotFoundAndNamesThePath) {
  auto r = read_file("/nonexistent/lema/file");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/lema/file"), std::string::npos);
}

TEST(FileUtil, WriteIntoMissingDirectoryFailsWithPath) {
  Status s = write_file_atomic("/nonexistent/lema/dir/x", "data");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/lema/dir/x"), std::string::npos);
}

TEST(FileUtil, FullDiskIsAnIOError) {
  if (!path_exists("/dev/full")) GTEST_SKIP() << "/dev/full not present";
  // /dev/full fails every write with ENOSPC: the writer must report it.
  int fd = ::open("/dev/full", O_WRONLY);
  ASSERT_GE(fd, 0);
  char buf[4096] = {0};
  ssize_t n = ::write(fd, buf, sizeof(buf));
  int err = errno;
  ::close(fd);
  ASSERT_LT(n, 0);
  Status s = status_from_errno("write /dev/full", err);
  EXPECT_EQ(s.code(), Status::Code::kIOError);
  EXPECT_NE(s.message().find("No space left"), std::string::npos);
}

TEST(FileUtil, MappedFileSeesBytes) {
  std::string dir = temp_dir();
  std::string path = path_join(dir, "m.bin");
  ASSERT_TRUE(write_file_atomic(path, std::string("\x01\x02\x03", 3)).ok());
  MappedFile m;
  ASSERT_TRUE(m.open(path).ok());
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.data()[2], 3);
  MappedFile empty;
  ASSERT_TRUE(write_file_atomic(path, "").ok());
  ASSERT_TRUE(empty.open(path).ok());
  EXPECT_EQ(empty.size(), 0u);
  remove_all(dir).ok();
}

TEST(FileUtil, ParseBytes) {
  EXPECT_EQ(*parse_bytes("4GiB"), 4ull << 30);
  EXPECT_EQ(*parse_bytes("512MiB"), 512ull << 20);
  EXPECT_EQ(*parse_bytes("8GB"), 8000000000ull);
  EXPECT_EQ(*parse_bytes("1024"), 1024ull);
  EXPECT_EQ(*parse_bytes("1.5G"), 3ull << 29);
  EXPECT_FALSE(parse_bytes("lots").ok());
  EXPECT_FALSE(parse_bytes("4 parsecs").ok());
}

TEST(FileUtil, MakeDirsAndRemoveAllWithoutFollowingLinks) {
  const std::string dir = temp_dir();
  const std::string deep = path_join(dir, "a/b/c");
  ASSERT_TRUE(make_dirs(deep).ok());
  ASSERT_TRUE(make_dirs(deep).ok());  // exists already: fine
  ASSERT_TRUE(write_file_atomic(path_join(deep, "f"), "x").ok());
  // A link out of the tree: remove_all deletes the link, never the target.
  const std::string outside = temp_dir();
  ASSERT_TRUE(write_file_atomic(path_join(outside, "keep"), "k").ok());
  ASSERT_EQ(::symlink(outside.c_str(), path_join(dir, "a/link").c_str()), 0);

  const Status not_dir = make_dirs(path_join(deep, "f/g"));
  EXPECT_FALSE(not_dir.ok());
  EXPECT_NE(not_dir.message().find(path_join(deep, "f")), std::string::npos) << not_dir.to_string();

  ASSERT_TRUE(remove_all(path_join(dir, "a")).ok());
  EXPECT_FALSE(path_exists(path_join(dir, "a")));
  EXPECT_TRUE(path_exists(path_join(outside, "keep")));
  EXPECT_TRUE(remove_all(path_join(dir, "never-existed")).ok());
  ASSERT_TRUE(remove_all(dir).ok());
  ASSERT_TRUE(remove_all(outside).ok());
  EXPECT_FALSE(path_exists(outside));
}

// The peak follows this process's own pages: 96 MiB touched raise it by
// about that much, and it never reads below the current resident size.
TEST(FileUtil, PeakRssFollowsTouchedPages) {
  const uint64_t before = peak_rss_bytes();
  ASSERT_GT(before, 0u);
  std::vector<char> block(96u << 20);
  for (size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
  const uint64_t after = peak_rss_bytes();
  EXPECT_GE(after, before + (80u << 20));
  EXPECT_GE(after, current_rss_bytes());
  EXPECT_EQ(block[4096], static_cast<char>(4096));
}

TEST(FileUtil, DirnameAndBasename) {
  EXPECT_EQ(path_dirname("/a/b/c.json"), "/a/b");
  EXPECT_EQ(path_dirname("c.json"), ".");
  EXPECT_EQ(path_dirname("/c"), "/");
  EXPECT_EQ(path_basename("/a/b/c.json"), "c.json");
  EXPECT_EQ(path_basename("c.json"), "c.json");
  EXPECT_EQ(path_basename("/a/b/"), "");
}

}  // namespace
// Lines as read: CRLF and LF endings, blank lines kept, a last line with no
// newline, and no empty line after a final newline.
std::vector<std::pair<int64_t, std::string>> lines_of(std::string_view text) {
  std::vector<std::pair<int64_t, std::string>> out;
  Status s = for_each_line(text, "f", [&](int64_t n, std::string_view line) {
    out.emplace_back(n, std::string(line));
    return Status();
  });
  EXPECT_TRUE(s.ok()) << s.to_string();
  return out;
}

TEST(FileUtil, ForEachLineSplitsAsAJsonlReaderNeeds) {
  using Lines = std::vector<std::pair<int64_t, std::string>>;
  EXPECT_EQ(lines_of("a\nb\n"), (Lines{{1, "a"}, {2, "b"}}));
  EXPECT_EQ(lines_of("a\r\nb\r\n"), (Lines{{1, "a"}, {2, "b"}}));
  EXPECT_EQ(lines_of("a\n\n c\nlast"), (Lines{{1, "a"}, {2, ""}, {3, " c"}, {4, "last"}}));
  EXPECT_EQ(lines_of(""), Lines{});
  EXPECT_EQ(lines_of("\n"), (Lines{{1, ""}}));
  EXPECT_EQ(lines_of("a\r"), (Lines{{1, "a"}}));
}

TEST(FileUtil, ForEachLineStopsAtTheFirstErrorNamingFileAndLine) {
  int calls = 0;
  Status s = for_each_line("ok\nbad\nnever\n", "data/x.jsonl", [&](int64_t, std::string_view line) {
    ++calls;
    return line == "bad" ? Status::corruption("not JSON") : Status();
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(s.message(), "data/x.jsonl:2: not JSON");
}

}  // namespace lema
