// Helpers shared by the scheduler tests: temp dirs, a minimal job spec, a
// broker running on a thread, and waiting for a condition.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "common/base/file_util.h"
#include "common/protocol/job_spec.h"
#include "scheduler/broker.h"

namespace lema::testing {

inline std::string make_temp_dir(const char* tag) {
  std::string tmpl = std::string("/tmp/lema_") + tag + "_XXXXXX";
  char* d = mkdtemp(tmpl.data());
  EXPECT_NE(d, nullptr);
  return tmpl;
}

inline std::string small_spec(const std::string& name, int priority = 0, int max_attempts = 3,
                              const std::string& extra = "") {
  return "[job]\nname = \"" + name + "\"\npriority = " + std::to_string(priority) +
         "\nmax_attempts = " + std::to_string(max_attempts) + "\n[model]\npath = \"/models/tiny\"\n" + extra;
}

inline JobSpec parse_spec(const std::string& text) {
  auto r = JobSpec::parse(text, "test.toml");
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return *r;
}

// Polls `cond` every 10 ms until it holds or timeout_ms passes.
inline bool wait_for(const std::function<bool()>& cond, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

// A broker serving on its own thread until destroyed.
class BrokerThread {
 public:
  explicit BrokerThread(BrokerOptions options) {
    auto b = Broker::create(options);
    EXPECT_TRUE(b.ok()) << b.status().to_string();
    if (!b.ok()) return;
    broker_ = std::move(*b);
    thread_ = std::thread([this] { status_ = broker_->run(); });
  }
  ~BrokerThread() {
    if (broker_) broker_->request_stop();
    if (thread_.joinable()) thread_.join();
  }
  Broker* operator->() { return broker_.get(); }
  bool ok() const { return broker_ != nullptr; }

 private:
  std::unique_ptr<Broker> broker_;
  std::thread thread_;
  Status status_;
};

inline BrokerOptions test_broker_options(const std::string& dir) {
  BrokerOptions o;
  o.db_path = dir + "/sched.db";
  o.workers_bind = "ipc://" + dir + "/workers.sock";
  o.clients_bind = "ipc://" + dir + "/clients.sock";
  o.heartbeat_interval_ms = 100;
  o.heartbeat_liveness = 3;
  o.store.retry_backoff_init_ms = 20;
  o.store.retry_backoff_max_ms = 100;
  o.allowed_roots = {"/models"};  // small_spec's model.path
  return o;
}

}  // namespace lema::testing
