// JobStore: the scheduler's system of record in SQLite (WAL). Owns the
// database connection, runs the migrations, and implements the job/stage
// state machine, leases and fencing (docs/SCHEDULER.md). Every mutating call
// is one transaction; every time is passed in (now_ms) so tests control the
// clock. All SQL of lema lives in job_store.cpp.
//
// Thread-safety: not thread-safe; one owner (the broker loop). Several
// processes may open the same file (SQLite locking, busy_timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/status.h"
#include "common/protocol/protocol.h"

namespace lema {

struct JobSpec;

struct Migration {
  int version;
  std::string name;
  std::string sql;
};
// migrations/*.sql embedded at build time, in version order.
const std::vector<Migration>& embedded_migrations();

struct StoreOptions {
  // The retry policy: a FAILED(retryable) stage waits this long before it is
  // assigned again, doubled per attempt up to the max (a lost lease is
  // retried at once: the worker died, not the stage).
  int64_t retry_backoff_init_ms = protocol::kRetryBackoffInitMs;
  int64_t retry_backoff_max_ms = protocol::kRetryBackoffMaxMs;
  int busy_timeout_ms = 5000;
  bool synchronous_full = false;  // NORMAL survives process crashes; FULL also power loss
  int cache_mib = 64;             // SQLite page cache of the connection
};

// What a worker offers, from its HELLO.
struct WorkerInfo {
  std::string id;
  std::string host;
  int64_t gpus = 0;
  int64_t vram_bytes = 0;
  bool cpu_only = true;
  std::string version;
  // The CURVE public key (Z85) the worker authenticated with; "" without
  // CURVE. The first key to register an id owns it (upsert_worker).
  std::string curve_key;
};

struct Assignment {
  int64_t job_id = 0;
  int64_t stage_id = 0;
  int64_t attempt = 0;
  std::string kind;  // dataset | train | eval | merge
  // The job's normalised spec and the same as msgpack (what ASSIGN carries);
  // shared with the store's per-job cache: neither changes after submit.
  std::shared_ptr<const nlohmann::json> spec;
  std::shared_ptr<const std::string> spec_msgpack;
  std::string work_dir;
  std::string resume_checkpoint;  // newest checkpoint of a train stage, or ""
  // Its recorded checkpoints newest first, one per path, at most
  // kResumeCandidates: [{path, sha256, step}] (the worker resumes from the
  // newest intact one).
  nlohmann::json resume_candidates = nlohmann::json::array();
};

// A lease that lapsed or was cut (cancel): who held what.
struct LeaseRef {
  int64_t stage_id = 0;
  int64_t attempt = 0;
  std::string worker_id;
};

class JobStore {
 public:
  // Opens (creating) the database and applies pending migrations. Refuses a
  // database whose schema is newer than `migrations` or whose applied
  // migration checksums differ.
  static Result<std::unique_ptr<JobStore>> open(const std::string& path, StoreOptions options = {},
                                                const std::vector<Migration>& migrations = embedded_migrations());
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  int schema_version() const;
  // The statements prepared so far whose plans build a temporary b-tree on
  // every run (tests keep the scheduler's statements off this list).
  std::vector<std::string> temp_btree_statements() const;

  // Group commit: between begin_batch() and commit_batch() every call runs in
  // a savepoint of one outer transaction, so N operations cost one commit.
  // Nothing is durable (and no reply may be sent) before commit_batch().
  Status begin_batch();
  Status commit_batch();

  // --- jobs
  // Refuses (kInvalidArgument) a spec whose job.work_dir (normalised) is the
  // directory of a queued or running job: two live jobs would overwrite each
  // other's outputs.
  // `request_id` (SUBMIT's, "" for none): a second submit with the same id
  // returns the first job's id and creates nothing; the same id with
  // another spec is refused.
  Result<int64_t> submit(const std::string& spec_toml, const JobSpec& spec, int64_t now_ms,
                         const std::string& request_id = "");
  // Cancels the job and its unfinished stages (their leases are cut: see
  // take_cut_leases).
  Status cancel_job(int64_t job_id, int64_t now_ms);
  // A failed or cancelled job goes back to the queue with a fresh attempt budget.
  Status retry_job(int64_t job_id, int64_t now_ms);

  // --- assignment and leases
  // The best runnable stage for this worker (priority, then age), assigned
  // under a new attempt with a lease until now_ms + lease_ms; nullopt if none.
  Result<std::optional<Assignment>> assign_next(const WorkerInfo& worker, int64_t lease_ms, int64_t now_ms);
  // Heartbeat: every lease of the worker now ends at expires_ms.
  Status renew_leases(const std::string& worker_id, int64_t expires_ms);
  // After a restart: no lease ends before min_expires_ms (workers reconnect).
  Status extend_all_leases(int64_t min_expires_ms);
  // Lapsed leases: their stages go to retrying (attempt budget left) or fail.
  Result<std::vector<LeaseRef>> expire_leases(int64_t now_ms);
  // A worker that re-registers without the stage lost it: release its leases
  // except `keep_stage_id` (0: none).
  Result<std::vector<LeaseRef>> release_worker_leases(const std::string& worker_id, int64_t keep_stage_id,
                                                      int64_t now_ms);

  // Leases cut by cancel_job or by a job failing (sibling stages) since the
  // last call: their workers must be sent CANCEL.
  std::vector<LeaseRef> take_cut_leases();

  // --- messages from a worker about its stage. All are fenced: they return
  // kNotFound ("stale ...") unless (stage, attempt, worker) holds the lease.
  // check_lease asks first, so that a stale message is told apart by type,
  // not by its text: held false is a stale attempt (the broker answers
  // stale_attempt); an error is the database's.
  struct LeaseCheck {
    bool held = false;
    std::string why;  // when not held: "stage 5 is leased as attempt 2 to 'w2', not attempt 1 to 'w1'"
    // When not held: this very attempt of this worker succeeded (its DONE
    // was taken; the lease went with it). A worker that asks after a
    // freeze whether its DONE counted is told so (WELCOME's lease.done).
    bool succeeded = false;
  };
  Result<LeaseCheck> check_lease(int64_t stage_id, int64_t attempt, const std::string& worker_id);
  Status record_progress(int64_t stage_id, int64_t attempt, const std::string& worker_id, int64_t step,
                         int64_t total_steps, const nlohmann::json& metrics, int64_t now_ms);
  Status record_checkpoint(int64_t stage_id, int64_t attempt, const std::string& worker_id, int64_t step,
                           const std::string& path, const std::string& sha256, int64_t now_ms);
  Status complete_stage(int64_t stage_id, int64_t attempt, const std::string& worker_id,
                        const nlohmann::json& result, int64_t now_ms);
  // `crashed`: the stage's process died (the worker's FAILED says so); the
  // stage's crash count goes up, and at the spec's [retry] max_crashes the
  // job fails with that reason whatever attempts are left.
  Status fail_stage(int64_t stage_id, int64_t attempt, const std::string& worker_id, const std::string& error,
                    bool retryable, int64_t now_ms, bool crashed = false);
  // job_id/stage_id/attempt may be 0 (unknown).
  Status add_event(int64_t job_id, int64_t stage_id, int64_t attempt, const std::string& level,
                   const std::string& line, int64_t now_ms);

  // --- workers
  // Registers (or refreshes) a worker. kInvalidArgument when the id is bound
  // to another CURVE key: no peer may speak for another worker.
  Status upsert_worker(const WorkerInfo& worker, int64_t now_ms);
  Status mark_worker_lost(const std::string& worker_id, int64_t now_ms);
  // Deletes rows of workers lost before lost_before_ms, then the oldest lost
  // rows beyond max_lost_rows. Returns how many rows went.
  Result<int64_t> expire_workers(int64_t lost_before_ms, int64_t max_lost_rows);

  // --- queries (JSON for the client API; docs/PROTOCOL.md)
  Result<nlohmann::json> list_jobs(const std::string& state, int64_t limit);
  Result<nlohmann::json> show_job(int64_t job_id);
  Result<nlohmann::json> job_logs(int64_t job_id, int64_t after_id, int64_t limit);
  // Online workers; with include_lost also the lost ones still retained.
  Result<nlohmann::json> list_workers(bool include_lost = true);
  // {"queued": n, "running": n, ...} over jobs.
  Result<nlohmann::json> job_counts();

 private:
  struct Impl;
  explicit JobStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Stage transitions allowed by the state machine (docs/SCHEDULER.md).
bool stage_transition_allowed(const std::string& from, const std::string& to);
bool job_transition_allowed(const std::string& from, const std::string& to);

}  // namespace lema
