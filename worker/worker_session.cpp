// The only file of the worker that speaks ZeroMQ. One I/O thread owns the
// DEALER socket; callers talk to it through a queue and a few flags under mu_.
#include "worker/worker_session.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/log.h"
#include "worker/worker_messages.h"

namespace lema::worker {

using Clock = std::chrono::steady_clock;

struct WorkerSession::Impl {
  SessionOptions options;
  zmq::context_t context{1};

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> outbox;               // guarded by mu
  std::optional<Message> final_report;      // guarded by mu: DONE/FAILED until ACK
  std::optional<StageAssignment> assigned;  // guarded by mu: delivered by wait_for_assignment
  std::optional<StageAssignment> current;   // guarded by mu: the stage being run
  bool want_ready = false;                  // guarded by mu
  bool ready_sent = false;                  // guarded by mu
  bool connected = false;                   // guarded by mu
  int64_t connections = 0;                  // guarded by mu
  std::string worker_id;                    // guarded by mu
  std::atomic<bool> cancel{false};
  std::atomic<bool> stopping{false};
  std::thread io_thread;

  void io_loop();
  std::unique_ptr<zmq::socket_t> open_socket();
  void send(zmq::socket_t& socket, const Message& m);
  void handle(zmq::socket_t& socket, const Message& m);
  Message stage_message(MessageType type) const;  // REQUIRES: mu held
};

namespace {
// Sleeps up to `ms`, waking early when the session stops.
void interruptible_sleep(const std::atomic<bool>& stopping, int ms) {
  auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!stopping.load() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 20)));
  }
}
}  // namespace

std::unique_ptr<zmq::socket_t> WorkerSession::Impl::open_socket() {
  auto socket = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
  socket->set(zmq::sockopt::linger, 0);
  if (!options.curve_server_public_key.empty()) {
    socket->set(zmq::sockopt::curve_serverkey, options.curve_server_public_key);
    socket->set(zmq::sockopt::curve_publickey, options.curve_public_key);
    socket->set(zmq::sockopt::curve_secretkey, options.curve_secret_key);
  }
  socket->connect(options.endpoint);
  return socket;
}

void WorkerSession::Impl::send(zmq::socket_t& socket, const Message& m) {
  std::string bytes = encode_message(m);
  // An empty delimiter frame, as a REQ socket would add: the broker's ROUTER
  // sees [identity, "", payload] from workers and clients alike.
  socket.send(zmq::const_buffer("", 0), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
}

Message WorkerSession::Impl::stage_message(MessageType type) const {
  Message m(type);
  if (current) {
    m.fields["job_id"] = current->job_id;
    m.fields["stage_id"] = current->stage_id;
    m.fields["attempt"] = current->attempt;
  }
  return m;
}

void WorkerSession::Impl::handle(zmq::socket_t& socket, const Message& m) {
  std::unique_lock<std::mutex> lock(mu);
  switch (m.type) {
    case MessageType::kWelcome: {
      worker_id = m.fields.value("worker_id", std::string());
      connected = true;
      ++connections;
      ready_sent = false;
      // After a reconnect the scheduler learns again what we are doing.
      if (final_report) send(socket, *final_report);
      break;
    }
    case MessageType::kHeartbeat:
      break;
    case MessageType::kAssign: {
      Result<StageAssignment> a = assignment_from_message(m);
      if (!a.ok()) {
        log_warn("worker: bad ASSIGN dropped: %s", a.status().message().c_str());
        break;
      }
      final_report.reset();
      cancel = false;
      current = a.value();
      assigned = std::move(a).value();
      want_ready = false;
      cv.notify_all();
      break;
    }
    case MessageType::kCancel: {
      if (current && m.fields.value("job_id", std::string()) == current->job_id) {
        log_info("worker: CANCEL for job %s", current->job_id.c_str());
        cancel = true;
      }
      break;
    }
    case MessageType::kAck: {
      if (final_report && current &&
          m.fields.value("stage_id", std::string()) == current->stage_id &&
          m.fields.value("attempt", int64_t{-1}) == current->attempt) {
        final_report.reset();
        current.reset();
        cv.notify_all();
      }
      break;
    }
    case MessageType::kError:
      log_warn("worker: scheduler says: %s", m.fields.value("error", std::string("?")).c_str());
      break;
    default:
      log_warn("worker: unexpected %s from the scheduler dropped", message_type_name(m.type));
  }
}

void WorkerSession::Impl::io_loop() {
  int backoff_ms = options.reconnect_initial_ms;
  while (!stopping.load()) {
    std::unique_ptr<zmq::socket_t> socket;
    try {
      socket = open_socket();
    } catch (const zmq::error_t& e) {
      log_error("worker: cannot connect to %s: %s", options.endpoint.c_str(), e.what());
      interruptible_sleep(stopping, backoff_ms);
      backoff_ms = std::min(backoff_ms * 2, options.reconnect_max_ms);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      Message hello = hello_message(options.capabilities);
      if (current) hello.fields["running"] = stage_message(MessageType::kHello).fields;
      send(*socket, hello);
    }
    int liveness = options.heartbeat_liveness;
    auto next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_interval_ms);
    bool lost = false;
    while (!stopping.load() && !lost) {
      zmq::pollitem_t items[] = {{socket->handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(20));
        if (items[0].revents & ZMQ_POLLIN) {
          while (true) {
            std::vector<zmq::message_t> frames;
            zmq::recv_result_t r = zmq::recv_multipart(*socket, std::back_inserter(frames),
                                                       zmq::recv_flags::dontwait);
            if (!r) break;
            liveness = options.heartbeat_liveness;
            backoff_ms = options.reconnect_initial_ms;
            if (frames.empty()) continue;
            Result<Message> m = decode_message(frames.back().to_string());
            if (!m.ok()) {
              log_warn("worker: malformed message dropped: %s", m.status().message().c_str());
              continue;
            }
            handle(*socket, m.value());
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          if (connected) {
            while (!outbox.empty()) {
              send(*socket, outbox.front());
              outbox.pop_front();
            }
            if (want_ready && !ready_sent) {
              send(*socket, Message(MessageType::kReady));
              ready_sent = true;
            }
          }
          cv.notify_all();
        }
        if (Clock::now() >= next_heartbeat) {
          if (--liveness <= 0) {
            lost = true;
            break;
          }
          std::lock_guard<std::mutex> lock(mu);
          Message hb = stage_message(MessageType::kHeartbeat);
          send(*socket, hb);
          // Resend the unacknowledged end of the stage with every heartbeat:
          // the scheduler ignores duplicates (fencing by attempt).
          if (final_report && connected) send(*socket, *final_report);
          next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_interval_ms);
        }
      } catch (const zmq::error_t& e) {
        log_warn("worker: socket error: %s", e.what());
        lost = true;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      connected = false;
      ready_sent = false;
    }
    socket.reset();
    if (stopping.load()) break;
    log_warn("worker: scheduler at %s silent, reconnecting in %d ms", options.endpoint.c_str(),
             backoff_ms);
    interruptible_sleep(stopping, backoff_ms);
    backoff_ms = std::min(backoff_ms * 2, options.reconnect_max_ms);
  }
}

Result<std::unique_ptr<WorkerSession>> WorkerSession::start(SessionOptions options) {
  if (options.endpoint.empty()) return Status::invalid_argument("worker: no scheduler endpoint");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  Impl* raw = impl.get();
  impl->io_thread = std::thread([raw] { raw->io_loop(); });
  return std::unique_ptr<WorkerSession>(new WorkerSession(std::move(impl)));
}

WorkerSession::WorkerSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerSession::~WorkerSession() {
  impl_->stopping = true;
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
}

Result<std::optional<StageAssignment>> WorkerSession::wait_for_assignment(
    const std::atomic<bool>& stop, int timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->want_ready = true;
  impl_->ready_sent = false;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  while (!impl_->assigned) {
    if (stop.load()) return std::optional<StageAssignment>();
    if (timeout_ms >= 0 && Clock::now() >= deadline) return std::optional<StageAssignment>();
    impl_->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  std::optional<StageAssignment> a = std::move(impl_->assigned);
  impl_->assigned.reset();
  return a;
}

void WorkerSession::send_progress(int64_t step, int64_t total_steps, const std::string& metrics_json) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kProgress);
  m.fields["step"] = step;
  m.fields["total_steps"] = total_steps;
  m.fields["metrics"] = json_or_string(metrics_json);
  // While the scheduler is away, keep only recent progress: it is a gauge.
  if (impl_->outbox.size() > 1000) impl_->outbox.pop_front();
  impl_->outbox.push_back(std::move(m));
}

void WorkerSession::send_log(const std::string& level, const std::string& line) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kLog);
  m.fields["level"] = level;
  m.fields["line"] = line;
  if (impl_->outbox.size() > 1000) impl_->outbox.pop_front();
  impl_->outbox.push_back(std::move(m));
}

void WorkerSession::send_checkpoint(int64_t step, const std::string& path, const std::string& sha256) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kCheckpoint);
  m.fields["step"] = step;
  m.fields["path"] = path;
  m.fields["sha256"] = sha256;
  impl_->outbox.push_back(std::move(m));
}

void WorkerSession::send_done(const std::string& result_json) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kDone);
  m.fields["result"] = json_or_string(result_json);
  impl_->final_report = m;
  impl_->outbox.push_back(std::move(m));
}

void WorkerSession::send_failed(const std::string& error, bool retryable) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kFailed);
  m.fields["error"] = error;
  m.fields["retryable"] = retryable;
  impl_->final_report = m;
  impl_->outbox.push_back(std::move(m));
}

bool WorkerSession::flush(int timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] {
    return impl_->outbox.empty() && !impl_->final_report;
  });
}

bool WorkerSession::cancel_requested() const { return impl_->cancel.load(); }

bool WorkerSession::connected() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->connected;
}

int64_t WorkerSession::connections() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->connections;
}

std::string WorkerSession::worker_id() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->worker_id;
}

}  // namespace lema::worker
