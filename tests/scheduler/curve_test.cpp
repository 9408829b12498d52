// CURVE on the client socket: only authorized keys get answers.
#include "scheduler/curve_keys.h"

#include <gtest/gtest.h>

#include "scheduler/client.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace lema {
namespace {

using namespace lema::testing;

TEST(Curve, OnlyAuthorizedKeysAreServed) {
  if (!curve_available()) GTEST_SKIP() << "libzmq without CURVE";
  std::string dir = make_temp_dir("curve");
  auto server = make_curve_keypair().value();
  auto alice = make_curve_keypair().value();
  auto mallory = make_curve_keypair().value();
  ASSERT_TRUE(write_curve_keypair(dir + "/keys", "alice", alice).ok());
  EXPECT_EQ(read_curve_key(dir + "/keys/alice.pub").value(), alice.public_z85);
  EXPECT_EQ(read_curve_key(dir + "/keys/alice.key").value(), alice.secret_z85);
  ASSERT_TRUE(write_file_atomic(dir + "/bad.pub", "# comment\nnot-a-key\n").ok());
  EXPECT_NE(read_curve_key_list(dir + "/bad.pub").status().message().find("bad.pub:2"), std::string::npos);

  BrokerOptions o = test_broker_options(dir);
  o.curve_secret_key = server.secret_z85;
  o.curve_authorized_keys = {alice.public_z85};
  BrokerThread broker(o);
  ASSERT_TRUE(broker.ok());
  auto connect = [&](const CurveKeyPair* who) {
    ClientOptions co;
    co.endpoint = broker->clients_endpoint();
    co.timeout_ms = 700;
    if (who) {
      co.curve_server_key = server.public_z85;
      co.curve_public_key = who->public_z85;
      co.curve_secret_key = who->secret_z85;
    }
    return Client::connect(co).value();
  };
  EXPECT_TRUE(connect(&alice)->ping().ok());
  EXPECT_EQ(connect(&mallory)->ping().status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(connect(nullptr)->ping().status().code(), Status::Code::kUnavailable);
  remove_all(dir).ok();
}

}  // namespace
}  // namespace lema
