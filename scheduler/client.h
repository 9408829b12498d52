// Client: the CLI's connection to a running scheduler (the clients ROUTER).
// Owns a ZeroMQ context and DEALER socket; each call sends one request with a
// fresh "req" id and waits up to timeout_ms for the REPLY carrying that id.
// Replies are the JSON documented in docs/PROTOCOL.md.
//
// Thread-safety: not thread-safe; one Client per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/protocol/protocol.h"
#include "common/base/status.h"

namespace lema {

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:7501";
  std::string token;  // sent with every request when not empty
  int timeout_ms = 5000;
  // CURVE: the scheduler's public key and this client's key pair (Z85).
  std::string curve_server_key;
  std::string curve_public_key;
  std::string curve_secret_key;
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> connect(const ClientOptions& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One request/reply. ERROR replies become a Status (kUnavailable when the
  // scheduler does not answer in time).
  Result<nlohmann::json> call(protocol::MessageType type, nlohmann::json fields = nlohmann::json::object());

  // `source` names the spec in error messages ("job.toml:4: ..."). The
  // request id makes a repeated SUBMIT return the first job (a retry, or a
  // re-delivery after a scheduler restart); "" draws a random one per call.
  Result<int64_t> submit(const std::string& spec_toml, const std::string& source = "spec",
                         const std::string& request_id = "");
  Result<nlohmann::json> list(const std::string& state = "", int64_t limit = 100);
  Result<nlohmann::json> show(int64_t job_id);
  Result<nlohmann::json> logs(int64_t job_id, int64_t after_id = 0, int64_t limit = 1000);
  Result<nlohmann::json> cancel(int64_t job_id);
  Result<nlohmann::json> retry(int64_t job_id);
  // Connected workers; with include_lost also the retained history.
  Result<nlohmann::json> workers(bool include_lost = true);
  Result<nlohmann::json> ping();

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lema
