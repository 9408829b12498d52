// WorkerSession: the worker's side of the scheduler protocol (Paranoid
// Pirate, ZeroMQ Guide ch. 4). It owns one DEALER socket and an I/O thread
// that sends HELLO, heartbeats every kHeartbeatIntervalMs (also while the
// caller is busy in a long GPU step), counts the scheduler dead after
// kHeartbeatLiveness silent intervals, and then reconnects with exponential
// backoff (protocol::kReconnectBackoffInitMs -> kReconnectBackoffMaxMs), saying HELLO again.
//
// Stage messages (PROGRESS, LOG, CHECKPOINT, DONE, FAILED) are queued by the
// caller and sent by the I/O thread once the scheduler has said WELCOME; the
// final DONE/FAILED is sent again after every reconnect until the next ASSIGN
// (the scheduler fences duplicates by attempt). Messages are those of
// common/protocol/protocol.h.
//
// Thread-safety: every public method may be called from any thread. The
// zmq socket is touched only by the I/O thread. No zmq type leaks out.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol/protocol.h"
#include "common/base/status.h"

namespace lema::worker {


struct GpuInfo {
  int index = 0;
  std::string name;
  uint64_t vram_bytes = 0;
};

// What the worker tells the scheduler in HELLO.
struct WorkerCapabilities {
  std::string host;
  std::string version;
  bool cpu_only = true;
  std::vector<GpuInfo> gpus;
  int cpu_cores = 1;
  uint64_t ram_bytes = 0;
};

// One stage handed out by ASSIGN.
// A checkpoint the scheduler recorded for the stage, with the digest the
// worker reported when it was written (checkpoint_digest.h).
struct ResumeCandidate {
  std::string path;    // checkpoints/step-N
  std::string sha256;  // "files:<hex>" over every file, or the adapter's hex (older rows)
  int64_t step = 0;
};

struct StageAssignment {
  int64_t job_id = 0;
  int64_t stage_id = 0;
  std::string kind;       // "dataset" | "train" | "eval" | "merge"
  int64_t attempt = 0;    // fencing: every report carries it
  std::string spec_json;  // the job spec, normalised JSON
  std::string work_dir;   // the job's directory, on a filesystem every worker sees
  std::string resume_checkpoint;  // "" or the path of checkpoints/step-N (the newest recorded)
  // The recorded checkpoints, newest first: the train stage resumes from the
  // newest intact one (F3 of issue 19).
  std::vector<ResumeCandidate> resume_candidates;
};

struct SessionOptions {
  std::string endpoint;   // tcp://host:7500
  std::string worker_id;  // stable name of this worker ("host/gpu0")
  std::string token;      // shared secret, when the scheduler asks for one
  WorkerCapabilities capabilities;
  // Optional CURVE (Z85, 40 chars each): the scheduler's public key and this
  // worker's key pair, which the scheduler must list (its --curve-authorized
  // directory) and which owns worker_id there. Empty server key = no CURVE
  // (a loopback scheduler, or one started --insecure).
  std::string curve_server_public_key;
  std::string curve_public_key;
  std::string curve_secret_key;
  // Defaults from common/protocol/protocol.h; WELCOME may change the first two.
  int64_t heartbeat_interval_ms = -1;
  int heartbeat_liveness = -1;
  int64_t reconnect_initial_ms = -1;
  int64_t reconnect_max_ms = -1;
};

class WorkerSession {
 public:
  // Creates the socket and starts the I/O thread. Connecting is lazy (ZeroMQ):
  // a scheduler that is not up yet is not an error.
  static Result<std::unique_ptr<WorkerSession>> start(SessionOptions options);
  ~WorkerSession();
  WorkerSession(const WorkerSession&) = delete;
  WorkerSession& operator=(const WorkerSession&) = delete;

  // Sends READY and blocks until ASSIGN arrives, `stop` becomes true
  // (returns nullopt) or timeout_ms passes (nullopt; -1 waits forever).
  Result<std::optional<StageAssignment>> wait_for_assignment(const std::atomic<bool>& stop,
                                                             int timeout_ms = -1);

  // Reports about the current stage; queued, never blocking on the network.
  void send_progress(int64_t step, int64_t total_steps, const std::string& metrics_json);
  void send_log(const std::string& level, const std::string& line);
  void send_checkpoint(int64_t step, const std::string& path, const std::string& sha256);
  // Ends the current stage.
  void send_done(const std::string& result_json);
  // The same, for a stage whose last lease answer (wait_for_lease) came
  // when freezes() and connections() were `freezes_before` and
  // `connections_before`, and logs `done_line` once the DONE counts (issue
  // 19): at the moment it leaves this process when the process was neither
  // frozen nor reconnected since (the lease held; the scheduler takes it),
  // else only when the scheduler, asked (HELLO naming the finished stage),
  // says the attempt succeeded or still holds its lease. Said as it leaves,
  // a worker killed just after still has the line; said after a freeze only
  // on the scheduler's word, a late DONE is never called done.
  void send_done_counted(const std::string& result_json, int64_t freezes_before, int64_t connections_before,
                         std::string done_line);
  // `crashed`: the stage's process died (stage_process.h); the scheduler
  // counts it against [retry] max_crashes.
  void send_failed(const std::string& error, bool retryable, bool crashed = false);

  // Waits until every queued message has been handed to a connected socket,
  // at most timeout_ms. Returns false on timeout (the scheduler is away).
  bool flush(int timeout_ms);

  // True once the scheduler sent CANCEL for the current stage.
  bool cancel_requested() const;
  // Self-fencing (issue 19 F2), asked before every write of a stage: OK at
  // once while the scheduler has been heard within the fence time (the
  // lease time less one heartbeat interval, so the worker stops before the
  // scheduler may hand the stage to another). Past it, the session asks the
  // scheduler (HELLO naming the stage) and blocks until WELCOME says the
  // lease is still held (OK) or not (kCancelled, and cancel_requested()),
  // or until `stop` (kCancelled). Measured on this worker's own clock, so a
  // worker frozen by SIGSTOP fences itself when it wakes.
  Status wait_for_lease(const std::atomic<bool>* stop);
  // How many times the I/O thread has noticed that this process was frozen
  // (a turn of its loop later than the fence time).
  int64_t freezes() const;
  // Waits until the DONE of send_done_counted is known to count (OK) or
  // not (kCancelled: the attempt lost its lease before it arrived). `stop`
  // ends the wait (OK: the DONE goes out with the last flush).
  Status confirm_report(const std::atomic<bool>* stop);
  // The last ERROR the scheduler sent ("code: text"), for diagnostics.
  std::string last_error() const;
  // True while the scheduler answers heartbeats.
  bool connected() const;
  // How many times the session has (re)connected: 1 after the first WELCOME.
  int64_t connections() const;
  // The worker id the scheduler confirmed in WELCOME ("" before).
  std::string worker_id() const;

 private:
  struct Impl;
  explicit WorkerSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lema::worker
