// The checkpoint digest on real files: any byte of any file, a file added
// or removed, a missing DONE or directory changes the verdict; the older
// digest (the adapter's bare hex) is still understood.
#include "worker/checkpoint_digest.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/base/file_util.h"
#include "common/base/sha256.h"

namespace lema::worker {
namespace {

std::string make_checkpoint() {
  std::string t = "/tmp/lema_ckdigest_XXXXXX";
  EXPECT_NE(mkdtemp(t.data()), nullptr);
  EXPECT_TRUE(write_file_atomic(t + "/adapter_model.safetensors", std::string(1000, 'a')).ok());
  EXPECT_TRUE(write_file_atomic(t + "/optimizer.safetensors", std::string(2000, 'o')).ok());
  EXPECT_TRUE(write_file_atomic(t + "/trainer_state.json", "{\"step\": 5}").ok());
  EXPECT_TRUE(write_file_atomic(t + "/DONE", "step 5\n").ok());
  return t;
}

TEST(CheckpointDigest, EveryFileCounts) {
  std::string dir = make_checkpoint();
  Result<std::string> d = checkpoint_digest(dir);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->rfind("files:", 0), 0u);
  EXPECT_EQ(d->size(), 6u + 64u);
  EXPECT_TRUE(verify_checkpoint(dir, *d).ok());
  // One byte of the optimizer state.
  std::string opt = std::string(1999, 'o') + "p";
  ASSERT_TRUE(write_file_atomic(dir + "/optimizer.safetensors", opt).ok());
  Status s = verify_checkpoint(dir, *d);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find(dir + ": digest"), std::string::npos) << s.to_string();
  ASSERT_TRUE(write_file_atomic(dir + "/optimizer.safetensors", std::string(2000, 'o')).ok());
  EXPECT_TRUE(verify_checkpoint(dir, *d).ok());
  // A file added.
  ASSERT_TRUE(write_file_atomic(dir + "/extra", "x").ok());
  EXPECT_FALSE(verify_checkpoint(dir, *d).ok());
  (void)remove_all(dir);
}

TEST(CheckpointDigest, MissingUnfinishedAndOlderDigests) {
  std::string dir = make_checkpoint();
  Result<std::string> d = checkpoint_digest(dir);
  ASSERT_TRUE(d.ok());
  // The older form: the adapter's bare hex.
  EXPECT_TRUE(verify_checkpoint(dir, sha256_hex(std::string(1000, 'a'))).ok());
  EXPECT_FALSE(verify_checkpoint(dir, sha256_hex(std::string(1000, 'b'))).ok());
  // Nothing recorded: DONE is what is checked.
  EXPECT_TRUE(verify_checkpoint(dir, "").ok());
  ASSERT_EQ(::unlink((dir + "/DONE").c_str()), 0);
  Status s = verify_checkpoint(dir, "");
  EXPECT_NE(s.message().find("no DONE"), std::string::npos) << s.to_string();
  (void)remove_all(dir);
  s = verify_checkpoint(dir, *d);
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_NE(s.message().find(dir + ": missing"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace lema::worker
