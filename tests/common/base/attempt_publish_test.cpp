// AttemptFence with real processes and files: an older attempt is refused,
// two processes publishing into one directory leave the newer attempt's
// output, and a writer killed at any moment leaves its output complete or
// absent, with nothing but attempt-scoped temp names beside it.
#include "common/base/attempt_publish.h"

#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/base/file_util.h"

namespace lema {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = "/tmp/lema_attempt_publish_" + name + "_" + std::to_string(::getpid());
  EXPECT_TRUE(remove_all(dir).ok());
  EXPECT_TRUE(make_dirs(dir).ok());
  return dir;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

// A directory of two files that name the same (tag), published by `fence`.
Status publish_tagged(const AttemptFence& fence, const std::string& final_dir, const std::string& tag) {
  const std::string tmp = fence.temp_path(final_dir);
  LEMA_RETURN_IF_ERROR(make_dirs(tmp));
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "a.txt"), tag));
  LEMA_RETURN_IF_ERROR(write_file_atomic(path_join(tmp, "b.txt"), tag));
  return fence.publish_dir(tmp, final_dir);
}

std::string read_or_empty(const std::string& path) {
  Result<std::string> r = read_file(path);
  return r.ok() ? r.value() : "";
}

TEST(AttemptPublishTest, TempNamesCarryTheAttempt) {
  const std::string dir = fresh_dir("names");
  auto f = AttemptFence::claim(dir, "train", 3);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->temp_path(dir + "/adapter"), dir + "/adapter.tmp.a3." + std::to_string(::getpid()));
}

TEST(AttemptPublishTest, AnOlderAttemptIsRefusedEverywhere) {
  const std::string dir = fresh_dir("older");
  const std::string out = path_join(dir, "adapter");
  auto a1 = AttemptFence::claim(dir, "train", 1);
  ASSERT_TRUE(a1.ok());
  ASSERT_TRUE(publish_tagged(*a1, out, "one").ok());
  EXPECT_EQ(published_attempt(out).value(), 1);

  auto a2 = AttemptFence::claim(dir, "train", 2);
  ASSERT_TRUE(a2.ok());
  // Attempt 1 goes on (it was stopped, then continued): every write refused.
  Status s = publish_tagged(*a1, out, "late");
  EXPECT_EQ(s.code(), Status::Code::kCancelled) << s.message();
  EXPECT_NE(s.message().find("attempt 2"), std::string::npos) << s.message();
  EXPECT_EQ(read_or_empty(path_join(out, "a.txt")), "one");
  EXPECT_FALSE(path_exists(a1->temp_path(out))) << "a refused temp directory is removed";
  EXPECT_EQ(a1->write_file(path_join(dir, "metrics.jsonl"), "late\n").code(), Status::Code::kCancelled);
  EXPECT_FALSE(path_exists(path_join(dir, "metrics.jsonl")));
  bool ran = false;
  EXPECT_FALSE(a1->run_locked([&] { ran = true; return Status(); }).ok());
  EXPECT_FALSE(ran);
  EXPECT_EQ(AttemptFence::claim(dir, "train", 1).status().code(), Status::Code::kCancelled);

  ASSERT_TRUE(publish_tagged(*a2, out, "two").ok());
  EXPECT_EQ(read_or_empty(path_join(out, "b.txt")), "two");
  EXPECT_EQ(published_attempt(out).value(), 2);
  // Stages are fenced apart: another stage's attempt 1 still writes.
  EXPECT_TRUE(AttemptFence::claim(dir, "eval", 1).ok());
}

TEST(AttemptPublishTest, APublishedDirectoryOfANewerAttemptIsNeverReplaced) {
  // A newer attempt's output, whoever's record says otherwise (a record
  // lost with a copied directory): its ATTEMPT file is checked too.
  const std::string dir = fresh_dir("newer_dir");
  const std::string out = path_join(dir, "merged");
  ASSERT_TRUE(make_dirs(out).ok());
  ASSERT_TRUE(write_file_atomic(path_join(out, "ATTEMPT"), "5\n").ok());
  auto a2 = AttemptFence::claim(dir, "merge", 2);
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(publish_tagged(*a2, out, "two").code(), Status::Code::kCancelled);
  EXPECT_EQ(published_attempt(out).value(), 5);
}

TEST(AttemptPublishTest, TwoProcessesRacingLeaveTheNewerAttemptsOutput) {
  const std::string dir = fresh_dir("race");
  const std::string out = path_join(dir, "adapter");
  const std::string stop = path_join(dir, "stop");
  ASSERT_TRUE(AttemptFence::claim(dir, "train", 1).ok());
  // Process 1: attempt 1 publishing as fast as it can, and once more after
  // attempt 2 said it is done (the late write of a continued process).
  const pid_t p1 = ::fork();
  ASSERT_GE(p1, 0);
  if (p1 == 0) {
    AttemptFence a1 = AttemptFence::claim(dir, "train", 1).value();
    int published = 0;
    for (int i = 0;; ++i) {
      const bool last = path_exists(stop);
      if (publish_tagged(a1, out, "a1-" + std::to_string(i)).ok()) ++published;
      if (last) break;
    }
    ::_exit(published > 0 ? 0 : 3);
  }
  // Process 2: attempt 2 claims while process 1 publishes, then publishes.
  const pid_t p2 = ::fork();
  ASSERT_GE(p2, 0);
  if (p2 == 0) {
    // Once attempt 1 has published (its output is there), so that the
    // claim lands in the middle of its loop.
    while (!path_exists(out)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto a2 = AttemptFence::claim(dir, "train", 2);
    if (!a2.ok()) ::_exit(4);
    for (int i = 0; i < 30; ++i) {
      if (!publish_tagged(*a2, out, "a2-" + std::to_string(i)).ok()) ::_exit(5);
    }
    ::_exit(write_file_atomic(stop, "").ok() ? 0 : 6);
  }
  int st1 = 0, st2 = 0;
  ASSERT_EQ(::waitpid(p2, &st2, 0), p2);
  ASSERT_EQ(::waitpid(p1, &st1, 0), p1);
  EXPECT_TRUE(WIFEXITED(st2) && WEXITSTATUS(st2) == 0) << st2;
  EXPECT_TRUE(WIFEXITED(st1) && WEXITSTATUS(st1) == 0) << "attempt 1 published before attempt 2 claimed: " << st1;
  EXPECT_EQ(read_or_empty(path_join(out, "a.txt")), "a2-29");
  EXPECT_EQ(read_or_empty(path_join(out, "b.txt")), "a2-29");
  EXPECT_EQ(published_attempt(out).value(), 2);
  for (const std::string& n : list_dir(dir)) {
    EXPECT_TRUE(n == "adapter" || n == "stop" || n == ".publish.lock" || n == ".attempt-train") << n;
  }
}

TEST(AttemptPublishTest, AWriterKilledAnywhereLeavesOnlyTempNames) {
  const std::string dir = fresh_dir("crash");
  const std::string out = path_join(dir, "checkpoint");
  std::srand(19);
  for (int trial = 0; trial < 20; ++trial) {
    const pid_t p = ::fork();
    ASSERT_GE(p, 0);
    if (p == 0) {
      AttemptFence a = AttemptFence::claim(dir, "train", 1).value();
      const std::string big(1 << 20, 'x');
      for (int i = 0;; ++i) {
        const std::string tmp = a.temp_path(out);
        if (!make_dirs(tmp).ok()) ::_exit(2);
        if (!write_file_atomic(path_join(tmp, "a.txt"), big).ok()) ::_exit(2);
        if (!write_file_atomic(path_join(tmp, "b.txt"), std::to_string(i)).ok()) ::_exit(2);
        if (!a.write_file(path_join(dir, "metrics.jsonl"), std::to_string(i)).ok()) ::_exit(2);
        if (!a.publish_dir(tmp, out).ok()) ::_exit(2);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + std::rand() % 30000));
    ::kill(p, SIGKILL);
    int st = 0;
    ASSERT_EQ(::waitpid(p, &st, 0), p);
    ASSERT_TRUE(WIFSIGNALED(st)) << "the writer stopped by itself: " << st;
    const std::string tag = ".tmp.a1." + std::to_string(p);
    for (const std::string& n : list_dir(dir)) {
      if (n == "checkpoint") {
        // Published means complete: both files and the attempt.
        EXPECT_EQ(read_or_empty(path_join(out, "a.txt")).size(), size_t{1} << 20);
        EXPECT_FALSE(read_or_empty(path_join(out, "b.txt")).empty());
        EXPECT_EQ(published_attempt(out).value(), 1);
        continue;
      }
      if (n == ".publish.lock" || n == ".attempt-train" || n == "metrics.jsonl") continue;
      EXPECT_NE(n.find(tag), std::string::npos) << "trial " << trial << ": " << n << " is no temp name of the writer";
      EXPECT_TRUE(remove_all(path_join(dir, n)).ok());
    }
  }
}

}  // namespace
}  // namespace lema
