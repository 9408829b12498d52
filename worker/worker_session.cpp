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

#include "common/base/log.h"

namespace lema::worker {

using Clock = std::chrono::steady_clock;
using protocol::Message;
using protocol::MessageType;

struct WorkerSession::Impl {
  SessionOptions options;
  zmq::context_t context{1};

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> outbox;               // guarded by mu
  std::optional<Message> final_report;      // guarded by mu: DONE/FAILED, resent after reconnects
  std::optional<StageAssignment> assigned;  // guarded by mu: delivered by wait_for_assignment
  std::optional<StageAssignment> current;   // guarded by mu: the stage being run
  bool want_ready = false;                  // guarded by mu
  bool ready_sent = false;                  // guarded by mu
  bool connected = false;                   // guarded by mu
  int64_t connections = 0;                  // guarded by mu
  std::string worker_id;                    // guarded by mu
  std::string last_error;                   // guarded by mu
  bool hello_needed = false;                // guarded by mu: the scheduler forgot us
  Clock::time_point last_heard;             // guarded by mu: the last message from the scheduler
  bool fenced = false;                      // guarded by mu: writes wait for WELCOME's lease
  Clock::time_point next_heartbeat;         // I/O thread only
  Clock::time_point last_tick;              // I/O thread only: its loop's last turn
  bool stalled = false;                     // guarded by mu: frozen past the fence time, no WELCOME since
  int64_t hello_seq = 0;                    // guarded by mu: the number of the newest HELLO sent
  int64_t freezes = 0;                      // guarded by mu: freezes noticed (notice_freeze)
  // A DONE to be said done once it counts (send_done_counted): the
  // stage's last lease answer came at these counts.
  struct ReportWatch {
    int64_t freezes = 0;
    int64_t connections = 0;
    std::string done_line;
  };
  std::optional<ReportWatch> report_watch;  // guarded by mu
  bool confirming = false;                  // guarded by mu: asking whether the final report counts
  std::optional<bool> report_counts;        // guarded by mu: whether it counts, once known
  std::atomic<bool> cancel{false};
  std::atomic<bool> stopping{false};
  std::thread io_thread;

  void io_loop();
  std::unique_ptr<zmq::socket_t> open_socket();
  void send(zmq::socket_t& socket, const Message& m);
  void handle(zmq::socket_t& socket, const Message& m);
  // The I/O thread's own clock, read before anything it received is
  // handled: a gap longer than the fence time since its last reading means
  // the process was frozen, and what it reads next (an ASSIGN, a WELCOME)
  // was queued before and says nothing of the lease now. I/O thread only;
  // takes mu.
  void notice_freeze();
  // Marks a freeze of `gap` (the stage is fenced, HELLO asks). Takes mu.
  void note_freeze(Clock::duration gap);
  // The watched DONE has just been handed to the socket: says it done, or
  // asks first when the process was frozen or reconnected since the
  // stage's last lease answer. REQUIRES: mu held, report_watch, current.
  void settle_report();
  Message stage_message(MessageType type) const;  // REQUIRES: mu held
  // Fences the running stage when the scheduler has been silent past the
  // fence time (lease time less one interval). REQUIRES: mu held.
  void fence_if_silent();
  std::chrono::milliseconds fence_time() const {
    return std::chrono::milliseconds(options.heartbeat_interval_ms * (options.heartbeat_liveness - 1));
  }
};

namespace {
// Sleeps up to `ms`, waking early when the session stops. Returns the
// longest time between two of its readings of the clock: far more than
// its 20 ms steps means the process was frozen meanwhile.
Clock::duration interruptible_sleep(const std::atomic<bool>& stopping, int64_t ms) {
  auto last = Clock::now();
  const auto until = last + std::chrono::milliseconds(ms);
  Clock::duration longest{0};
  while (!stopping.load() && last < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms, 20)));
    const auto now = Clock::now();
    longest = std::max(longest, now - last);
    last = now;
  }
  return longest;
}
Message hello_message(const SessionOptions& o) {
  const WorkerCapabilities& caps = o.capabilities;
  uint64_t vram = 0;
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuInfo& g : caps.gpus) {
    vram = std::max(vram, g.vram_bytes);
    gpus.push_back({{"index", g.index}, {"name", g.name}, {"vram_bytes", g.vram_bytes}});
  }
  Message m(MessageType::kHello);
  m.fields = {{"worker_id", o.worker_id},
              {"host", caps.host},
              {"gpus", static_cast<int64_t>(caps.gpus.size())},
              {"vram_bytes", vram},
              {"cpu_only", caps.cpu_only},
              {"version", caps.version},
              {"cpu_cores", caps.cpu_cores},
              {"ram_bytes", caps.ram_bytes},
              {"gpu_list", gpus}};
  if (!o.token.empty()) m.fields["token"] = o.token;
  return m;
}

// decode() already checked the required fields and their types.
StageAssignment assignment_from(const Message& m) {
  StageAssignment a;
  a.job_id = m.i64("job_id");
  a.stage_id = m.i64("stage_id");
  a.attempt = m.i64("attempt");
  a.kind = m.str("kind");
  a.spec_json = m.fields.at("spec").dump();
  a.work_dir = m.str("work_dir");
  a.resume_checkpoint = m.str("resume_checkpoint");
  // decode() checked that it is an array; its items are checked here (a
  // malformed item is skipped: the newest intact one is looked for anyway).
  if (m.has("resume_candidates")) {
    for (const nlohmann::json& c : m.fields.at("resume_candidates")) {
      if (!c.is_object() || !c.contains("path") || !c["path"].is_string()) continue;
      ResumeCandidate rc;
      rc.path = c["path"].get<std::string>();
      if (c.contains("sha256") && c["sha256"].is_string()) rc.sha256 = c["sha256"].get<std::string>();
      if (c.contains("step") && c["step"].is_number_integer()) rc.step = c["step"].get<int64_t>();
      a.resume_candidates.push_back(std::move(rc));
    }
  }
  return a;
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
  // One frame per message (protocol.h); the ROUTER prepends our identity.
  std::string bytes = protocol::encode(m);
  (void)socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
}

Message WorkerSession::Impl::stage_message(MessageType type) const {
  Message m(type);
  if (current) {
    m.fields["stage_id"] = current->stage_id;
    m.fields["attempt"] = current->attempt;
  }
  return m;
}

void WorkerSession::Impl::handle(zmq::socket_t& socket, const Message& m) {
  std::unique_lock<std::mutex> lock(mu);
  // A message after a silence longer than the fence time (this process was
  // frozen, or the scheduler was) says nothing of the lease now: fence and
  // ask. Only WELCOME confirms (below), so a WELCOME is not itself fenced:
  // it is the answer (one read late, after this process was frozen, is
  // dropped there; notice_freeze saw the freeze first).
  if (m.type != MessageType::kWelcome) fence_if_silent();
  if (!fenced) last_heard = Clock::now();
  switch (m.type) {
    case MessageType::kWelcome: {
      if (hello_needed || (m.has("hello_seq") && m.i64("hello_seq") != hello_seq)) {
        // The answer to an earlier HELLO, read late (this process was
        // frozen with it queued, or a HELLO is about to go out): its lease
        // says nothing of now, and the answer to the newest HELLO follows.
        log_info("worker: WELCOME to an earlier HELLO (%lld; newest %lld%s) dropped",
                 static_cast<long long>(m.i64("hello_seq", -1)), static_cast<long long>(hello_seq),
                 hello_needed ? ", another to be sent" : "");
        break;
      }
      worker_id = m.str("worker_id");
      if (m.i64("heartbeat_interval_ms") > 0) options.heartbeat_interval_ms = m.i64("heartbeat_interval_ms");
      if (m.i64("liveness") > 0) options.heartbeat_liveness = static_cast<int>(m.i64("liveness"));
      // The scheduler's interval counts from now (it may be shorter than ours).
      next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_interval_ms);
      connected = true;
      hello_needed = false;
      ++connections;
      ready_sent = false;
      stalled = false;
      if (current && final_report && confirming) {
        // Asked after a freeze: did the DONE count? Yes when the attempt
        // succeeded (the DONE was taken) or still holds its lease (the DONE
        // sent again below is taken).
        const nlohmann::json lease = m.has("lease") ? m.fields.at("lease") : nlohmann::json();
        const bool same = lease.is_object() && lease.value("stage_id", int64_t(0)) == current->stage_id &&
                          lease.value("attempt", int64_t(0)) == current->attempt;
        report_counts = !lease.is_object() || (same && (lease.value("held", false) || lease.value("done", false)));
        confirming = false;
        if (*report_counts && report_watch) {
          log_info("%s", report_watch->done_line.c_str());
        } else {
          log_warn("worker: the lease of stage %lld attempt %lld lapsed before its report arrived: the report "
                   "does not count", static_cast<long long>(current->stage_id),
                   static_cast<long long>(current->attempt));
        }
      }
      // After a reconnect the scheduler hears again how the stage ended.
      if (final_report) send(socket, *final_report);
      if (current && !final_report) {
        // A WELCOME without "lease" (a scheduler that does not say) leaves
        // the stage to the fencing of its messages (stale_attempt).
        const nlohmann::json lease = m.has("lease") ? m.fields.at("lease") : nlohmann::json();
        const bool held = !lease.is_object() ||
                          (lease.value("stage_id", int64_t(0)) == current->stage_id &&
                           lease.value("attempt", int64_t(0)) == current->attempt && lease.value("held", false));
        if (held) {
          if (fenced) log_info("worker: the scheduler confirmed the lease of stage %lld: writing again",
                               static_cast<long long>(current->stage_id));
        } else {
          log_warn("worker: the lease of stage %lld attempt %lld is gone: stopping it",
                   static_cast<long long>(current->stage_id), static_cast<long long>(current->attempt));
          cancel = true;
        }
      }
      fenced = false;
      last_heard = Clock::now();
      break;
    }
    case MessageType::kHeartbeat:
      break;
    case MessageType::kAssign: {
      final_report.reset();
      report_watch.reset();
      report_counts.reset();
      confirming = false;
      cancel = false;
      // An ASSIGN read after this process was frozen may have been queued
      // before: its lease may be another worker's by now (chaos, issue 19:
      // a stale ASSIGN trained to the end). Its stage writes nothing until
      // WELCOME confirms the lease (the HELLO is on its way: stalled).
      fenced = stalled;
      last_heard = Clock::now();
      current = assignment_from(m);
      assigned = current;
      want_ready = false;
      cv.notify_all();
      break;
    }
    case MessageType::kCancel: {
      bool ours = current && ((m.has("stage_id") && m.i64("stage_id") == current->stage_id) ||
                              (m.has("job_id") && m.i64("job_id") == current->job_id));
      if (ours && !final_report) {
        log_info("worker: CANCEL for job %lld", static_cast<long long>(current->job_id));
        cancel = true;
      }
      break;
    }
    case MessageType::kError: {
      std::string code = m.str("code");
      last_error = code + ": " + m.str("error");
      if (code == protocol::error_code::kHelloRequired) {
        // The scheduler restarted and lost its memory of us: introduce again.
        hello_needed = true;
        connected = false;
      } else if (code == protocol::error_code::kStaleAttempt && current && !final_report) {
        // Our lease is gone (the stage went to another worker): stop working on it.
        log_warn("worker: scheduler fenced stage %lld attempt %lld: stopping it",
                 static_cast<long long>(current->stage_id), static_cast<long long>(current->attempt));
        cancel = true;
      } else {
        log_warn("worker: scheduler says %s", last_error.c_str());
      }
      break;
    }
    default:
      log_warn("worker: unexpected %s from the scheduler dropped", protocol::message_type_name(m.type));
  }
}

void WorkerSession::Impl::io_loop() {
  int64_t backoff_ms = options.reconnect_initial_ms;
  while (!stopping.load()) {
    std::unique_ptr<zmq::socket_t> socket;
    try {
      socket = open_socket();
    } catch (const zmq::error_t& e) {
      log_error("worker: cannot connect to %s: %s", options.endpoint.c_str(), e.what());
      if (Clock::duration gap = interruptible_sleep(stopping, backoff_ms); gap > fence_time()) note_freeze(gap);
      backoff_ms = std::min(backoff_ms * 2, options.reconnect_max_ms);
      continue;
    }
    auto say_hello = [&] {
      Message hello = hello_message(options);
      hello.fields["hello_seq"] = ++hello_seq;
      // A finished stage is named too, until the next ASSIGN: its DONE or
      // FAILED may not have reached the scheduler (it restarted, or the
      // connection dropped), and a scheduler that heard nothing of the
      // stage would release its lease and run it again (issue 19, F1).
      // The report itself follows WELCOME.
      if (current) {
        hello.fields["running"] = {{"job_id", current->job_id},
                                   {"stage_id", current->stage_id},
                                   {"attempt", current->attempt},
                                   {"finished", final_report.has_value()}};
      }
      send(*socket, hello);
      hello_needed = false;
    };
    {
      std::lock_guard<std::mutex> lock(mu);
      say_hello();
    }
    int liveness = options.heartbeat_liveness;
    next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_interval_ms);
    last_tick = Clock::now();
    bool lost = false;
    while (!stopping.load() && !lost) {
      notice_freeze();
      zmq::pollitem_t items[] = {{socket->handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, std::chrono::milliseconds(20));
        if (items[0].revents & ZMQ_POLLIN) {
          while (true) {
            std::vector<zmq::message_t> frames;
            zmq::recv_result_t r = zmq::recv_multipart(*socket, std::back_inserter(frames),
                                                       zmq::recv_flags::dontwait);
            if (!r) break;
            // Most freezes happen inside poll (where this thread spends its
            // time): checked again here, before the message is handled, so
            // that an ASSIGN queued during the freeze is fenced from the
            // start (chaos, issue 19: one read just after SIGCONT ran its
            // dataset stage to the end before the next turn's check).
            notice_freeze();
            liveness = options.heartbeat_liveness;
            backoff_ms = options.reconnect_initial_ms;
            if (frames.empty()) continue;
            Result<Message> m = protocol::decode(frames.back().data(), frames.back().size());
            if (!m.ok()) {
              log_warn("worker: malformed message dropped: %s", m.status().message().c_str());
              continue;
            }
            handle(*socket, m.value());
          }
        }
        // A freeze since the last check shows before anything leaves: a
        // DONE sent after one may be late (confirm_report).
        notice_freeze();
        {
          std::lock_guard<std::mutex> lock(mu);
          if (hello_needed) say_hello();
          if (connected) {
            while (!outbox.empty()) {
              send(*socket, outbox.front());
              if (outbox.front().type == MessageType::kDone && report_watch && current && !report_counts &&
                  !confirming) {
                settle_report();
              }
              outbox.pop_front();
            }
            // The question settle_report may ask goes right after the DONE.
            if (hello_needed) say_hello();
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
    log_warn("worker: scheduler at %s silent, reconnecting in %lld ms", options.endpoint.c_str(),
             static_cast<long long>(backoff_ms));
    // A freeze during the backoff counts as one anywhere else (the clock
    // is read anew when the next socket opens).
    if (Clock::duration gap = interruptible_sleep(stopping, backoff_ms); gap > fence_time()) note_freeze(gap);
    backoff_ms = std::min(backoff_ms * 2, options.reconnect_max_ms);
  }
}

Result<std::unique_ptr<WorkerSession>> WorkerSession::start(SessionOptions options) {
  if (options.endpoint.empty()) return Status::invalid_argument("worker: no scheduler endpoint");
  if (options.worker_id.empty()) return Status::invalid_argument("worker: no worker id");
  if (!options.curve_server_public_key.empty() &&
      (options.curve_public_key.size() != 40 || options.curve_secret_key.size() != 40)) {
    // A throwaway key pair would be refused by the scheduler's ZAP handler
    // and the worker would reconnect forever: say so now.
    return Status::invalid_argument(
        "worker: the scheduler's key is set but this worker has no CURVE key pair (lema worker "
        "--curve-secret-file WORKER.key; its .pub goes into the scheduler's --curve-authorized directory)");
  }
  {
    // A malformed endpoint or key fails the same way on every try: say so
    // and stop, instead of reconnecting forever. (An unreachable scheduler
    // does not fail here: connect is asynchronous, and the loop retries it.)
    zmq::context_t probe_context(1);
    zmq::socket_t probe(probe_context, zmq::socket_type::dealer);
    probe.set(zmq::sockopt::linger, 0);
    if (!options.curve_server_public_key.empty()) {
      try {
        probe.set(zmq::sockopt::curve_serverkey, options.curve_server_public_key);
        probe.set(zmq::sockopt::curve_publickey, options.curve_public_key);
        probe.set(zmq::sockopt::curve_secretkey, options.curve_secret_key);
      } catch (const zmq::error_t& e) {
        return Status::invalid_argument(std::string("worker: a CURVE key is not a 40-character Z85 key (") + e.what() +
                                        "); `lema keys NAME` writes valid ones");
      }
    }
    try {
      probe.connect(options.endpoint);
    } catch (const zmq::error_t& e) {
      return Status::invalid_argument("worker: malformed scheduler endpoint '" + options.endpoint + "' (" + e.what() +
                                      "); expected tcp://HOST:PORT");
    }
  }
  if (options.heartbeat_interval_ms <= 0) options.heartbeat_interval_ms = protocol::kHeartbeatIntervalMs;
  if (options.heartbeat_liveness <= 0) options.heartbeat_liveness = protocol::kHeartbeatLiveness;
  if (options.reconnect_initial_ms <= 0) options.reconnect_initial_ms = protocol::kReconnectBackoffInitMs;
  if (options.reconnect_max_ms <= 0) options.reconnect_max_ms = protocol::kReconnectBackoffMaxMs;
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
  nlohmann::json metrics = nlohmann::json::parse(metrics_json, nullptr, false);
  if (metrics.is_object()) m.fields["metrics"] = std::move(metrics);
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

void WorkerSession::send_done_counted(const std::string& result_json, int64_t freezes_before,
                                      int64_t connections_before, std::string done_line) {
  send_done(result_json);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->report_watch = Impl::ReportWatch{freezes_before, connections_before, std::move(done_line)};
  impl_->report_counts.reset();
  impl_->confirming = false;
}

void WorkerSession::send_done(const std::string& result_json) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kDone);
  nlohmann::json result = nlohmann::json::parse(result_json, nullptr, false);
  m.fields["result"] = result.is_discarded() ? nlohmann::json(result_json) : result;
  impl_->final_report = m;
  impl_->outbox.push_back(std::move(m));
}

void WorkerSession::send_failed(const std::string& error, bool retryable, bool crashed) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Message m = impl_->stage_message(MessageType::kFailed);
  m.fields["error"] = error;
  m.fields["retryable"] = retryable;
  if (crashed) m.fields["crashed"] = true;
  impl_->final_report = m;
  impl_->outbox.push_back(std::move(m));
}

bool WorkerSession::flush(int timeout_ms) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  return impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] {
    return impl_->outbox.empty() && impl_->connected;
  });
}

bool WorkerSession::cancel_requested() const { return impl_->cancel.load(); }

void WorkerSession::Impl::notice_freeze() {
  const Clock::time_point now = Clock::now();
  const Clock::duration gap = now - last_tick;
  last_tick = now;
  if (gap > fence_time()) note_freeze(gap);
}

void WorkerSession::Impl::note_freeze(Clock::duration gap) {
  std::lock_guard<std::mutex> lock(mu);
  // The stage (or the one an ASSIGN read next brings: stalled) writes
  // nothing until WELCOME, the answer to the HELLO this sends, confirms
  // its lease.
  stalled = true;
  hello_needed = true;
  ++freezes;
  if (current && !final_report) fenced = true;
  log_warn("worker: this process was frozen for %lld ms: asking the scheduler about the lease",
           static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(gap).count()));
}

void WorkerSession::Impl::fence_if_silent() {
  const auto fence_after = fence_time();
  if (fenced || !current || final_report || Clock::now() - last_heard <= fence_after) return;
  fenced = true;
  hello_needed = true;  // the I/O thread asks the scheduler about the lease
  log_warn("worker: no word from the scheduler for over %lld ms: stage %lld stops writing until it confirms the lease",
           static_cast<long long>(fence_after.count()), static_cast<long long>(current->stage_id));
}

Status WorkerSession::wait_for_lease(const std::atomic<bool>* stop) {
  Impl& d = *impl_;
  std::unique_lock<std::mutex> lock(d.mu);
  d.fence_if_silent();
  while (d.fenced) {
    if (d.cancel.load()) return Status::cancelled("fenced: the stage's lease was lost");
    if (stop && stop->load()) return Status::cancelled("worker stopping while fenced");
    d.cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  if (d.cancel.load()) return Status::cancelled("fenced: the stage's lease was lost");
  return Status();
}

int64_t WorkerSession::freezes() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->freezes;
}

Status WorkerSession::confirm_report(const std::atomic<bool>* stop) {
  Impl& d = *impl_;
  std::unique_lock<std::mutex> lock(d.mu);
  if (!d.report_watch) return Status();
  while (!d.report_counts) {
    // Stopping: the DONE still goes out with the last flush, and is said
    // done then if it counts.
    if (stop && stop->load()) return Status();
    d.cv.wait_for(lock, std::chrono::milliseconds(20));
  }
  if (*d.report_counts) return Status();
  return Status::cancelled(str_printf("attempt %lld of stage %lld lost its lease before its report arrived",
                                      static_cast<long long>(d.current ? d.current->attempt : 0),
                                      static_cast<long long>(d.current ? d.current->stage_id : 0)));
}

void WorkerSession::Impl::settle_report() {
  const ReportWatch& w = *report_watch;
  if (freezes == w.freezes && connections == w.connections) {
    // Out with no freeze or reconnect since the stage's last lease answer:
    // the lease held when it left, and the scheduler takes it.
    log_info("%s", w.done_line.c_str());
    report_counts = true;
    return;
  }
  log_warn("worker: %s as stage %lld ended: asking the scheduler whether its report counts",
           freezes != w.freezes ? "frozen" : "reconnected", static_cast<long long>(current->stage_id));
  confirming = true;
  hello_needed = true;
}

std::string WorkerSession::last_error() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->last_error;
}

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
