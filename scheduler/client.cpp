#include "scheduler/client.h"

#include <chrono>
#include <random>

#include <zmq.hpp>

#include "common/base/file_util.h"
#include "common/base/log.h"

namespace lema {

using nlohmann::json;
using protocol::MessageType;

struct Client::Impl {
  ClientOptions options;
  zmq::context_t ctx{1};
  zmq::socket_t sock{ctx, zmq::socket_type::dealer};
  int64_t next_req = 1;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::connect(const ClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    impl->sock.set(zmq::sockopt::linger, 0);
    if (!options.curve_server_key.empty()) {
      impl->sock.set(zmq::sockopt::curve_serverkey, options.curve_server_key);
      impl->sock.set(zmq::sockopt::curve_publickey, options.curve_public_key);
      impl->sock.set(zmq::sockopt::curve_secretkey, options.curve_secret_key);
    }
    impl->sock.connect(options.endpoint);
  } catch (const zmq::error_t& e) {
    return Status::invalid_argument("connecting to " + options.endpoint + ": " + e.what());
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<json> Client::call(MessageType type, json fields) {
  Impl& d = *impl_;
  int64_t req = d.next_req++;
  fields["req"] = req;
  if (!d.options.token.empty()) fields["token"] = d.options.token;
  std::string body = protocol::encode(protocol::Message(type, std::move(fields)));
  // The scheduler drops a frame over the limit without a word (the socket's
  // maxmsgsize): refuse it here, or the user waits for "no answer".
  if (body.size() > size_t(protocol::kMaxMessageBytes)) {
    return Status::invalid_argument(str_printf("the %s request is %s, over the protocol's limit of %s",
                                               protocol::message_type_name(type), format_bytes(body.size()).c_str(),
                                               format_bytes(uint64_t(protocol::kMaxMessageBytes)).c_str()));
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(d.options.timeout_ms);
  try {
    d.sock.send(zmq::buffer(body), zmq::send_flags::none);
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      zmq::pollitem_t item = {d.sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      if (!d.sock.recv(msg, zmq::recv_flags::dontwait)) continue;
      Result<protocol::Message> reply = protocol::decode(msg.data(), msg.size());
      if (!reply.ok()) return reply.status().with_context("reply from " + d.options.endpoint);
      if (reply->i64("req", -1) != req) continue;  // a late answer to an earlier, timed-out call
      if (reply->type == MessageType::kError) {
        std::string code = reply->str("code");
        std::string text = reply->str("error");
        if (code == protocol::error_code::kNotFound) return Status::not_found(text);
        if (code == protocol::error_code::kInvalid || code == protocol::error_code::kMalformed) {
          return Status::invalid_argument(text);
        }
        return Status::internal(code + ": " + text);
      }
      if (reply->type != MessageType::kReply) return Status::internal("unexpected reply type");
      return reply->fields.value("data", json(nullptr));
    }
  } catch (const zmq::error_t& e) {
    return Status::unavailable(std::string("scheduler at ") + d.options.endpoint + ": " + e.what());
  }
  return Status::unavailable(str_printf("no answer from the scheduler at %s within %d ms (is `lema scheduler` running?)",
                                        d.options.endpoint.c_str(), d.options.timeout_ms));
}

Result<int64_t> Client::submit(const std::string& spec_toml, const std::string& source,
                               const std::string& request_id) {
  std::string id = request_id;
  if (id.empty()) {
    std::random_device rd;
    id = str_printf("%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  }
  LEMA_ASSIGN_OR_RETURN(json r, call(MessageType::kSubmit, {{"spec", spec_toml}, {"source", source}, {"request_id", id}}));
  if (!r.contains("job_id") || !r["job_id"].is_number_integer()) return Status::internal("SUBMIT reply without job_id");
  return r["job_id"].get<int64_t>();
}
Result<json> Client::list(const std::string& state, int64_t limit) {
  json f = {{"limit", limit}};
  if (!state.empty()) f["state"] = state;
  return call(MessageType::kList, f);
}
Result<json> Client::show(int64_t job_id) { return call(MessageType::kShow, {{"job_id", job_id}}); }
Result<json> Client::logs(int64_t job_id, int64_t after_id, int64_t limit) {
  return call(MessageType::kLogs, {{"job_id", job_id}, {"after_id", after_id}, {"limit", limit}});
}
Result<json> Client::cancel(int64_t job_id) { return call(MessageType::kCancel, {{"job_id", job_id}}); }
Result<json> Client::retry(int64_t job_id) { return call(MessageType::kRetry, {{"job_id", job_id}}); }
Result<json> Client::workers(bool include_lost) { return call(MessageType::kWorkers, {{"all", include_lost}}); }
Result<json> Client::ping() { return call(MessageType::kPing); }

}  // namespace lema
