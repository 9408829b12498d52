// All of lema's SQL. SQLiteCpp throws SQLite::Exception; every public method
// catches at its boundary (guard()) and returns a Status.
#include "scheduler/job_store.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <unordered_map>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include "common/protocol/job_spec.h"
#include "common/base/log.h"
#include "common/base/path_policy.h"
#include "common/base/sha256.h"

namespace lema {
namespace {

using nlohmann::json;

Status status_from_sqlite(const std::string& context, int rc, const char* what) {
  std::string msg = context + ": " + what;
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return Status::unavailable(msg);
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) return Status::corruption(msg);
  if (primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN ||
      primary == SQLITE_READONLY || primary == SQLITE_PERM) {
    return Status::io_error(msg);
  }
  return Status::internal(msg);
}


// How many recorded checkpoints an ASSIGN of a train stage offers.
constexpr size_t kResumeCandidates = 8;

std::string col_str(SQLite::Statement& st, int i) {
  return st.getColumn(i).isNull() ? std::string() : st.getColumn(i).getString();
}

json parse_json_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(text) : j;
}

}  // namespace

namespace {

using TransitionTable = std::map<std::string, std::vector<std::string>>;

const TransitionTable& stage_transitions() {
  static const TransitionTable kAllowed = {
      {"pending", {"queued", "cancelled"}},
      {"queued", {"assigned", "cancelled"}},
      {"retrying", {"assigned", "cancelled", "failed"}},
      {"assigned", {"running", "succeeded", "retrying", "failed", "cancelled"}},
      {"running", {"succeeded", "retrying", "failed", "cancelled"}},
      {"failed", {"queued", "pending"}},
      {"cancelled", {"queued", "pending"}},
      {"succeeded", {}},
  };
  return kAllowed;
}

// For each target state, one UPDATE that moves a stage there only from a
// state the table allows ("... WHERE id = ?3 AND (state = 'a' OR ...)"), so
// a transition is one statement instead of SELECT + UPDATE. Not "state IN
// (...)": for three or more values SQLite builds a temporary b-tree on every
// execution (see migrations/002). The strings live for the whole program:
// JobStore::Impl::stmt keys its cache by address.
const std::map<std::string, std::string>& stage_update_sql() {
  static const std::map<std::string, std::string> kSql = [] {
    std::map<std::string, std::vector<std::string>> from_of;
    for (const auto& [from, tos] : stage_transitions()) {
      for (const std::string& to : tos) from_of[to].push_back(from);
    }
    std::map<std::string, std::string> sql;
    for (const auto& [to, froms] : from_of) {
      std::string any_of;
      for (const std::string& f : froms) any_of += (any_of.empty() ? "state = '" : " OR state = '") + f + "'";
      sql[to] = "UPDATE stages SET state = ?1, updated_ms = ?2 WHERE id = ?3 AND (" + any_of + ")";
    }
    return sql;
  }();
  return kSql;
}

}  // namespace

bool stage_transition_allowed(const std::string& from, const std::string& to) {
  const TransitionTable& allowed = stage_transitions();
  auto it = allowed.find(from);
  return it != allowed.end() && std::find(it->second.begin(), it->second.end(), to) != it->second.end();
}

namespace {
// Every job state (the keys) and where it may go.
const TransitionTable& job_transitions() {
  static const TransitionTable kAllowed = {
      {"queued", {"running", "cancelled", "failed"}},
      {"running", {"succeeded", "failed", "cancelled"}},
      {"failed", {"queued"}},
      {"cancelled", {"queued"}},
      {"succeeded", {}},
  };
  return kAllowed;
}
}  // namespace

bool job_transition_allowed(const std::string& from, const std::string& to) {
  const TransitionTable& kAllowed = job_transitions();
  auto it = kAllowed.find(from);
  return it != kAllowed.end() && std::find(it->second.begin(), it->second.end(), to) != it->second.end();
}

struct JobStore::Impl {
  Impl(const std::string& path, StoreOptions opts)
      : db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX), options(opts) {}

  SQLite::Database db;
  StoreOptions options;
  int schema_version = 0;
  std::map<const char*, std::unique_ptr<SQLite::Statement>> cache;
  std::vector<std::string> temp_btree_sql;  // see JobStore::temp_btree_statements
  std::vector<LeaseRef> cut_leases;
  bool in_batch = false;
  // job id -> (parsed spec_json, work_dir): neither changes after submit, and
  // each job is assigned once per stage, so ASSIGN need not re-read and
  // re-parse the spec every time. At most kSpecCacheJobs entries.
  static constexpr size_t kSpecCacheJobs = 4096;
  struct CachedJob {
    std::shared_ptr<const json> spec;
    std::shared_ptr<const std::string> spec_msgpack;
    std::string work_dir;
  };
  std::unordered_map<int64_t, CachedJob> job_specs;

  // Whether the statement's program opens a temporary b-tree (a sort, or an
  // IN list of 3+ values): a cost on every run that an index or an OR chain
  // avoids. Checked once per statement, when it is prepared.
  bool uses_temp_btree(const char* sql) {
    SQLite::Statement explain(db, std::string("EXPLAIN ") + sql);
    while (explain.executeStep()) {
      if (explain.getColumn(1).getString() == "OpenEphemeral") return true;
    }
    return false;
  }
  // A cached prepared statement, reset and unbound. Keyed by the literal's
  // address: callers pass string literals only.
  SQLite::Statement& stmt(const char* sql) {
    auto& slot = cache[sql];
    if (!slot) {
      slot = std::make_unique<SQLite::Statement>(db, sql);
      if (uses_temp_btree(sql)) temp_btree_sql.push_back(sql);
    } else {
      slot->reset();
      slot->clearBindings();
    }
    return *slot;
  }

  // BEGIN IMMEDIATE ... COMMIT, rolled back unless committed. Inside a batch
  // (JobStore::begin_batch) it is a savepoint instead, so one failed
  // operation rolls back alone and the batch commits once. Its statements are
  // prepared once (stmt()): every store operation opens one of these.
  class Tx {
   public:
    explicit Tx(Impl& impl) : impl_(impl), nested_(impl.in_batch) {
      impl_.stmt(nested_ ? "SAVEPOINT op" : "BEGIN IMMEDIATE").exec();
    }
    ~Tx() {
      if (!done_) {
        try {
          if (nested_) {
            impl_.stmt("ROLLBACK TO op").exec();
            impl_.stmt("RELEASE op").exec();
          } else {
            impl_.stmt("ROLLBACK").exec();
          }
        } catch (...) {
        }
      }
    }
    void commit() {
      impl_.stmt(nested_ ? "RELEASE op" : "COMMIT").exec();
      done_ = true;
    }
    Tx(const Tx&) = delete;
    Tx& operator=(const Tx&) = delete;

   private:
    Impl& impl_;
    bool nested_;
    bool done_ = false;
  };

  template <typename F>
  Status guard(const char* what, F&& fn) {
    try {
      return fn();
    } catch (const SQLite::Exception& e) {
      return status_from_sqlite(what, e.getErrorCode(), e.what());
    } catch (const std::exception& e) {
      return Status::internal(std::string(what) + ": " + e.what());
    }
  }

  Status apply_migrations(const std::vector<Migration>& migrations);

  std::string stage_state(int64_t stage_id) {
    auto& st = stmt("SELECT state FROM stages WHERE id = ?");
    st.bind(1, stage_id);
    return st.executeStep() ? st.getColumn(0).getString() : std::string();
  }
  // The error for a refused stage transition (the UPDATE changed nothing).
  Status refuse_stage_transition(int64_t stage_id, const std::string& to) {
    std::string from = stage_state(stage_id);
    log_warn("store: stage %lld: transition %s -> %s refused", (long long)stage_id, from.c_str(), to.c_str());
    return Status::invalid_argument(str_printf("stage %lld: transition %s -> %s is not allowed", (long long)stage_id,
                                               from.c_str(), to.c_str()));
  }
  // REQUIRES: inside a transaction.
  Status set_stage_state(int64_t stage_id, const std::string& to, int64_t now_ms) {
    const auto& sql = stage_update_sql();
    auto it = sql.find(to);
    if (it == sql.end()) return refuse_stage_transition(stage_id, to);
    auto& st = stmt(it->second.c_str());
    st.bind(1, to);
    st.bind(2, now_ms);
    st.bind(3, stage_id);
    if (st.exec() == 0) return refuse_stage_transition(stage_id, to);
    return Status();
  }
  std::string job_state(int64_t job_id) {
    auto& st = stmt("SELECT state FROM jobs WHERE id = ?");
    st.bind(1, job_id);
    return st.executeStep() ? st.getColumn(0).getString() : std::string();
  }
  Status set_job_state(int64_t job_id, const std::string& to, int64_t now_ms, const std::string& error = "") {
    std::string from = job_state(job_id);
    if (from.empty()) return Status::not_found(str_printf("job %lld does not exist", (long long)job_id));
    if (!job_transition_allowed(from, to)) {
      log_warn("store: job %lld: transition %s -> %s refused", (long long)job_id, from.c_str(), to.c_str());
      return Status::invalid_argument(
          str_printf("job %lld is %s: cannot become %s", (long long)job_id, from.c_str(), to.c_str()));
    }
    bool terminal = to == "succeeded" || to == "failed" || to == "cancelled";
    auto& st = stmt(
        "UPDATE jobs SET state = ?, updated_ms = ?, error = ?, finished_ms = ? WHERE id = ?");
    st.bind(1, to);
    st.bind(2, now_ms);
    if (error.empty()) st.bind(3); else st.bind(3, error);
    if (terminal) st.bind(4, now_ms); else st.bind(4);
    st.bind(5, job_id);
    st.exec();
    return Status();
  }
  int64_t job_of_stage(int64_t stage_id) {
    auto& st = stmt("SELECT job_id FROM stages WHERE id = ?");
    st.bind(1, stage_id);
    return st.executeStep() ? st.getColumn(0).getInt64() : 0;
  }
  void event(int64_t job_id, int64_t stage_id, int64_t attempt, const std::string& level, const std::string& line,
             int64_t now_ms) {
    auto& st = stmt(
        "INSERT INTO events (job_id, stage_id, attempt, level, line, created_ms) VALUES (?, ?, ?, ?, ?, ?)");
    if (job_id) st.bind(1, job_id); else st.bind(1);
    if (stage_id) st.bind(2, stage_id); else st.bind(2);
    if (attempt) st.bind(3, attempt); else st.bind(3);
    st.bind(4, level);
    st.bind(5, line);
    st.bind(6, now_ms);
    st.exec();
  }
  JobStore::LeaseCheck lease_of(int64_t stage_id, int64_t attempt, const std::string& worker_id) {
    auto& st = stmt("SELECT attempt, worker_id FROM leases WHERE stage_id = ?");
    st.bind(1, stage_id);
    if (!st.executeStep()) {
      return {false, str_printf("stage %lld attempt %lld holds no lease", (long long)stage_id, (long long)attempt)};
    }
    int64_t cur = st.getColumn(0).getInt64();
    std::string holder = st.getColumn(1).getString();
    if (cur != attempt || holder != worker_id) {
      return {false, str_printf("stage %lld is leased as attempt %lld to '%s', not attempt %lld to '%s'",
                                (long long)stage_id, (long long)cur, holder.c_str(), (long long)attempt,
                                worker_id.c_str())};
    }
    return {true, ""};
  }
  Status check_lease(int64_t stage_id, int64_t attempt, const std::string& worker_id) {
    JobStore::LeaseCheck lease = lease_of(stage_id, attempt, worker_id);
    return lease.held ? Status() : Status::not_found("stale: " + lease.why);
  }
  void end_attempt(int64_t stage_id, int64_t attempt, const char* state, const std::string& error, int64_t now_ms) {
    auto& st = stmt("UPDATE attempts SET state = ?, error = ?, ended_ms = ? WHERE stage_id = ? AND attempt = ?");
    st.bind(1, state);
    if (error.empty()) st.bind(2); else st.bind(2, error);
    st.bind(3, now_ms);
    st.bind(4, stage_id);
    st.bind(5, attempt);
    st.exec();
  }
  void delete_lease(int64_t stage_id) {
    auto& st = stmt("DELETE FROM leases WHERE stage_id = ?");
    st.bind(1, stage_id);
    st.exec();
  }
  // Cancels every open stage of the job, cutting their leases.
  Status cancel_open_stages(int64_t job_id, int64_t now_ms) {
    std::vector<int64_t> open;
    {
      auto& st = stmt(
          "SELECT id FROM stages WHERE job_id = ? AND (state = 'pending' OR state = 'queued' OR state = 'assigned' "
          "OR state = 'running' OR state = 'retrying')");
      st.bind(1, job_id);
      while (st.executeStep()) open.push_back(st.getColumn(0).getInt64());
    }
    for (int64_t sid : open) {
      auto& lease = stmt("SELECT attempt, worker_id FROM leases WHERE stage_id = ?");
      lease.bind(1, sid);
      if (lease.executeStep()) {
        LeaseRef ref{sid, lease.getColumn(0).getInt64(), lease.getColumn(1).getString()};
        end_attempt(sid, ref.attempt, "cancelled", "job cancelled or failed", now_ms);
        delete_lease(sid);
        cut_leases.push_back(ref);
      }
      LEMA_RETURN_IF_ERROR(set_stage_state(sid, "cancelled", now_ms));
    }
    return Status();
  }
  // The attempt ended without success: retry (budget left) or fail the job.
  Status retry_or_fail(int64_t stage_id, int64_t attempt, const std::string& error, bool retryable,
                       int64_t backoff_ms, int64_t now_ms) {
    auto& st = stmt("SELECT job_id, kind, max_attempts FROM stages WHERE id = ?");
    st.bind(1, stage_id);
    if (!st.executeStep()) return Status::not_found("stage vanished");
    int64_t job_id = st.getColumn(0).getInt64();
    std::string kind = st.getColumn(1).getString();
    int64_t max_attempts = st.getColumn(2).getInt64();
    if (retryable && attempt < max_attempts) {
      LEMA_RETURN_IF_ERROR(set_stage_state(stage_id, "retrying", now_ms));
      auto& up = stmt("UPDATE stages SET not_before_ms = ?, error = ? WHERE id = ?");
      up.bind(1, now_ms + backoff_ms);
      up.bind(2, error);
      up.bind(3, stage_id);
      up.exec();
      event(job_id, stage_id, attempt, "warn",
            str_printf("%s attempt %lld failed (%s); retrying in %lld ms", kind.c_str(), (long long)attempt,
                       error.c_str(), (long long)backoff_ms),
            now_ms);
      return Status();
    }
    LEMA_RETURN_IF_ERROR(set_stage_state(stage_id, "failed", now_ms));
    auto& up = stmt("UPDATE stages SET error = ? WHERE id = ?");
    up.bind(1, error);
    up.bind(2, stage_id);
    up.exec();
    std::string job_error = str_printf("stage %s failed after %lld attempt(s): %s", kind.c_str(),
                                       (long long)attempt, error.c_str());
    event(job_id, stage_id, attempt, "error", job_error, now_ms);
    LEMA_RETURN_IF_ERROR(cancel_open_stages(job_id, now_ms));
    return set_job_state(job_id, "failed", now_ms, job_error);
  }
  int64_t backoff_for(int64_t attempt) const {
    int64_t b = options.retry_backoff_init_ms;
    for (int64_t i = 1; i < attempt && b < options.retry_backoff_max_ms; ++i) b *= 2;
    return std::min(b, options.retry_backoff_max_ms);
  }
  // Lapsed/released lease: the attempt is lost; always retryable.
  Status lose_lease(const LeaseRef& ref, const std::string& why, int64_t now_ms) {
    end_attempt(ref.stage_id, ref.attempt, "lost", why, now_ms);
    delete_lease(ref.stage_id);
    return retry_or_fail(ref.stage_id, ref.attempt, why, /*retryable=*/true, /*backoff_ms=*/0, now_ms);
  }
};

Status JobStore::Impl::apply_migrations(const std::vector<Migration>& migrations) {
  for (size_t i = 1; i < migrations.size(); ++i) LEMA_CHECK(migrations[i - 1].version < migrations[i].version);
  db.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
      "sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)");
  std::map<int, std::pair<std::string, std::string>> applied;
  {
    SQLite::Statement st(db, "SELECT version, name, sha256 FROM schema_migrations ORDER BY version");
    while (st.executeStep()) {
      applied[st.getColumn(0).getInt()] = {st.getColumn(1).getString(), st.getColumn(2).getString()};
    }
  }
  int known_max = migrations.empty() ? 0 : migrations.back().version;
  if (!applied.empty() && applied.rbegin()->first > known_max) {
    return Status::unsupported(str_printf(
        "%s: database schema version %d (%s) is newer than this lema binary, which knows up to version %d: "
        "use a newer lema",
        db.getFilename().c_str(), applied.rbegin()->first, applied.rbegin()->second.first.c_str(), known_max));
  }
  for (const Migration& m : migrations) {
    std::string sum = sha256_hex(m.sql);
    auto it = applied.find(m.version);
    if (it != applied.end()) {
      if (it->second.second != sum || it->second.first != m.name) {
        return Status::corruption(str_printf(
            "%s: migration %03d_%s was changed after it was applied (checksum %s, applied %03d_%s with %s); "
            "restore the original file and put changes in a new migration",
            db.getFilename().c_str(), m.version, m.name.c_str(), sum.substr(0, 12).c_str(), m.version,
            it->second.first.c_str(), it->second.second.substr(0, 12).c_str()));
      }
      schema_version = m.version;
      continue;
    }
    Tx tx(*this);
    try {
      db.exec(m.sql);
    } catch (const SQLite::Exception& e) {
      return status_from_sqlite(str_printf("migration %03d_%s", m.version, m.name.c_str()), e.getErrorCode(),
                                e.what());
    }
    {
      SQLite::Statement fk(db, "PRAGMA foreign_key_check");
      if (fk.executeStep()) {
        return Status::corruption(str_printf("migration %03d_%s leaves a broken foreign key in table %s (row %lld)",
                                             m.version, m.name.c_str(), fk.getColumn(0).getString().c_str(),
                                             (long long)fk.getColumn(1).getInt64()));
      }
    }
    SQLite::Statement st(db,
                         "INSERT INTO schema_migrations (version, name, sha256, applied_at) "
                         "VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))");
    st.bind(1, m.version);
    st.bind(2, m.name);
    st.bind(3, sum);
    st.exec();
    tx.commit();
    log_info("store: applied migration %03d_%s", m.version, m.name.c_str());
    schema_version = m.version;
  }
  return Status();
}

JobStore::JobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JobStore::~JobStore() = default;

Result<std::unique_ptr<JobStore>> JobStore::open(const std::string& path, StoreOptions options,
                                                 const std::vector<Migration>& migrations) {
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(path, options);
    impl->db.exec("PRAGMA busy_timeout = " + std::to_string(options.busy_timeout_ms));
    impl->db.exec("PRAGMA journal_mode = WAL");
    impl->db.exec(options.synchronous_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
    // Temporary b-trees (sorts, IN lists) in memory, never in a temp file.
    impl->db.exec("PRAGMA temp_store = MEMORY");
    // Off while migrating: a migration may rebuild a table (create, copy,
    // drop, rename), and dropping a parent with foreign keys on would cascade.
    // Each migration runs foreign_key_check before it commits.
    impl->db.exec("PRAGMA foreign_keys = OFF");
    // Negative: KiB. The default 2 MiB holds a fraction of a busy queue
    // (jobs rows carry their specs), and every miss is a read syscall.
    impl->db.exec("PRAGMA cache_size = -" + std::to_string(std::max(1, options.cache_mib) * 1024));
  } catch (const SQLite::Exception& e) {
    return status_from_sqlite("opening " + path, e.getErrorCode(), e.what());
  }
  Status s = impl->guard("migrating", [&] { return impl->apply_migrations(migrations); });
  if (!s.ok()) return s;
  try {
    impl->db.exec("PRAGMA foreign_keys = ON");
  } catch (const SQLite::Exception& e) {
    return status_from_sqlite("opening " + path, e.getErrorCode(), e.what());
  }
  return std::unique_ptr<JobStore>(new JobStore(std::move(impl)));
}

std::vector<std::string> JobStore::temp_btree_statements() const { return impl_->temp_btree_sql; }

int JobStore::schema_version() const { return impl_->schema_version; }

Status JobStore::begin_batch() {
  LEMA_CHECK(!impl_->in_batch);
  return impl_->guard("begin batch", [&]() -> Status {
    impl_->db.exec("BEGIN IMMEDIATE");
    impl_->in_batch = true;
    return Status();
  });
}

Status JobStore::commit_batch() {
  LEMA_CHECK(impl_->in_batch);
  impl_->in_batch = false;
  Status s = impl_->guard("commit batch", [&]() -> Status {
    impl_->db.exec("COMMIT");
    return Status();
  });
  if (!s.ok()) {
    try {
      impl_->db.exec("ROLLBACK");
    } catch (...) {
    }
  }
  return s;
}

std::vector<LeaseRef> JobStore::take_cut_leases() {
  std::vector<LeaseRef> out;
  out.swap(impl_->cut_leases);
  return out;
}

Result<int64_t> JobStore::submit(const std::string& spec_toml, const JobSpec& spec, int64_t now_ms,
                                 const std::string& request_id) {
  int64_t job_id = 0;
  Status s = impl_->guard("submit", [&]() -> Status {
    auto& db = impl_->db;
    Impl::Tx tx(*impl_);
    if (!request_id.empty()) {
      auto& seen = impl_->stmt("SELECT id, spec_toml FROM jobs WHERE request_id = ?");
      seen.bind(1, request_id);
      if (seen.executeStep()) {
        const int64_t first = seen.getColumn(0).getInt64();
        const bool same = col_str(seen, 1) == spec_toml;
        seen.reset();
        if (!same) {
          return Status::invalid_argument("request id '" + request_id + "' was used by job " + std::to_string(first) +
                                          " for another spec");
        }
        job_id = first;
        return Status();
      }
      seen.reset();
    }
    const std::string work_dir = normalize_path(spec.job.work_dir);
    auto& live = impl_->stmt(
        "SELECT id, state FROM jobs WHERE work_dir = ? AND (state = 'queued' OR state = 'running') LIMIT 1");
    live.bind(1, work_dir);
    bool in_use = live.executeStep();
    if (in_use) {
      Status busy = Status::invalid_argument(
          "job.work_dir '" + spec.job.work_dir + "' is the directory of job " +
          std::to_string(live.getColumn(0).getInt64()) + " (" + live.getColumn(1).getString() +
          "): one live job per directory; wait for it, cancel it, or choose another work_dir");
      live.reset();
      return busy;
    }
    live.reset();
    // Without an id the statement names no request_id column (a store on an
    // older schema, as the migration tests run it, still submits).
    auto& ins = request_id.empty()
                    ? impl_->stmt("INSERT INTO jobs (name, state, priority, max_attempts, work_dir, spec_toml, "
                                  "spec_json, created_ms, updated_ms) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)")
                    : impl_->stmt("INSERT INTO jobs (name, state, priority, max_attempts, work_dir, spec_toml, "
                                  "spec_json, created_ms, updated_ms, request_id) "
                                  "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)");
    ins.bind(1, spec.job.name);
    ins.bind(2, spec.job.priority);
    ins.bind(3, spec.job.max_attempts);
    ins.bind(4, work_dir);
    ins.bind(5, spec_toml);
    ins.bind(6, spec.to_json().dump());
    ins.bind(7, now_ms);
    ins.bind(8, now_ms);
    if (!request_id.empty()) ins.bind(9, request_id);
    ins.exec();
    job_id = db.getLastInsertRowid();
    auto add_stage = [&](const char* kind, bool gpu_stage, const char* state) -> int64_t {
      auto& st = impl_->stmt(
          "INSERT INTO stages (job_id, kind, state, priority, max_attempts, gpu_memory_bytes, cpu_ok, "
          "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      st.bind(1, job_id);
      st.bind(2, kind);
      st.bind(3, state);
      st.bind(4, spec.job.priority);
      st.bind(5, spec.job.max_attempts);
      // Building a dataset needs no GPU; the other stages need what [resources] says.
      st.bind(6, gpu_stage ? int64_t(spec.resources.gpu_memory_bytes) : int64_t(0));
      st.bind(7, gpu_stage ? int(spec.resources.cpu_ok) : 1);
      st.bind(8, now_ms);
      st.bind(9, now_ms);
      st.exec();
      return db.getLastInsertRowid();
    };
    auto depend = [&](int64_t stage, int64_t on) {
      auto& st = impl_->stmt("INSERT INTO stage_deps (stage_id, depends_on) VALUES (?, ?)");
      st.bind(1, stage);
      st.bind(2, on);
      st.exec();
    };
    int64_t dataset = add_stage("dataset", false, "queued");
    int64_t train = add_stage("train", true, "pending");
    depend(train, dataset);
    if (spec.eval.enabled) depend(add_stage("eval", true, "pending"), train);
    if (spec.merge.enabled) {
      const int64_t merge = add_stage("merge", true, "pending");
      depend(merge, train);
      // The GGUF export reads the merged model; it needs no GPU.
      if (!spec.export_.gguf.empty()) depend(add_stage("export", false, "pending"), merge);
    }
    if (impl_->schema_version >= 6) {
      auto& mc = impl_->stmt("UPDATE stages SET max_crashes = ? WHERE job_id = ?");
      mc.bind(1, spec.retry.max_crashes);
      mc.bind(2, job_id);
      mc.exec();
    }
    impl_->event(job_id, 0, 0, "info", "job '" + spec.job.name + "' submitted", now_ms);
    tx.commit();
    return Status();
  });
  if (!s.ok()) return s;
  return job_id;
}

Status JobStore::cancel_job(int64_t job_id, int64_t now_ms) {
  return impl_->guard("cancel", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->set_job_state(job_id, "cancelled", now_ms, "cancelled by user"));
    LEMA_RETURN_IF_ERROR(impl_->cancel_open_stages(job_id, now_ms));
    impl_->event(job_id, 0, 0, "info", "job cancelled", now_ms);
    tx.commit();
    return Status();
  });
}

Status JobStore::retry_job(int64_t job_id, int64_t now_ms) {
  return impl_->guard("retry", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->set_job_state(job_id, "queued", now_ms));
    auto& st = impl_->stmt(
        "SELECT s.id, s.attempt, j.max_attempts, "
        "  (SELECT count(*) FROM stage_deps d JOIN stages p ON p.id = d.depends_on "
        "   WHERE d.stage_id = s.id AND p.state != 'succeeded') "
        "FROM stages s JOIN jobs j ON j.id = s.job_id WHERE s.job_id = ? AND s.state IN ('failed','cancelled')");
    st.bind(1, job_id);
    std::vector<std::array<int64_t, 4>> rows;
    while (st.executeStep()) {
      rows.push_back({st.getColumn(0).getInt64(), st.getColumn(1).getInt64(), st.getColumn(2).getInt64(),
                      st.getColumn(3).getInt64()});
    }
    for (const auto& r : rows) {
      LEMA_RETURN_IF_ERROR(impl_->set_stage_state(r[0], r[3] == 0 ? "queued" : "pending", now_ms));
      auto& up = impl_->stmt("UPDATE stages SET max_attempts = ?, not_before_ms = 0, error = NULL WHERE id = ?");
      up.bind(1, r[1] + r[2]);  // a fresh budget of max_attempts
      up.bind(2, r[0]);
      up.exec();
      if (impl_->schema_version >= 6) {
        auto& crashes = impl_->stmt("UPDATE stages SET crashes = 0 WHERE id = ?");  // and of max_crashes
        crashes.bind(1, r[0]);
        crashes.exec();
      }
    }
    impl_->event(job_id, 0, 0, "info", "job retried", now_ms);
    tx.commit();
    return Status();
  });
}

Result<std::optional<Assignment>> JobStore::assign_next(const WorkerInfo& worker, int64_t lease_ms, int64_t now_ms) {
  std::optional<Assignment> out;
  Status s = impl_->guard("assign", [&]() -> Status {
    Impl::Tx tx(*impl_);
    // The WHERE repeats the partial index's condition so SQLite walks
    // stages_runnable in (priority DESC, job_id, id) order without sorting.
    auto& pick = impl_->stmt(
        "SELECT id, job_id, kind, attempt FROM stages "
        "WHERE state IN ('queued','retrying') AND not_before_ms <= ?1 "
        "  AND ((?2 = 0 AND gpu_memory_bytes <= ?3) OR (?2 = 1 AND cpu_ok = 1)) "
        "ORDER BY priority DESC, job_id, id LIMIT 1");
    pick.bind(1, now_ms);
    pick.bind(2, worker.cpu_only ? 1 : 0);
    pick.bind(3, worker.vram_bytes);
    if (!pick.executeStep()) return Status();
    Assignment a;
    a.stage_id = pick.getColumn(0).getInt64();
    a.job_id = pick.getColumn(1).getInt64();
    a.kind = pick.getColumn(2).getString();
    a.attempt = pick.getColumn(3).getInt64() + 1;
    pick.reset();
    // State and attempt in one statement; the pick just saw it runnable.
    auto& up = impl_->stmt(
        "UPDATE stages SET state = 'assigned', attempt = ?1, updated_ms = ?2 "
        "WHERE id = ?3 AND state IN ('queued','retrying')");
    up.bind(1, a.attempt);
    up.bind(2, now_ms);
    up.bind(3, a.stage_id);
    if (up.exec() == 0) return impl_->refuse_stage_transition(a.stage_id, "assigned");
    if (a.kind == "train") {
      // Newest first; a path recorded twice (a step redone by a later
      // attempt) counts once, with its newest digest.
      auto& ck = impl_->stmt(
          "SELECT path, sha256, step FROM checkpoints WHERE stage_id = ? ORDER BY step DESC, id DESC LIMIT 64");
      ck.bind(1, a.stage_id);
      std::set<std::string> seen;
      while (ck.executeStep() && a.resume_candidates.size() < kResumeCandidates) {
        std::string path = ck.getColumn(0).getString();
        if (!seen.insert(path).second) continue;
        a.resume_candidates.push_back({{"path", path}, {"sha256", col_str(ck, 1)}, {"step", ck.getColumn(2).getInt64()}});
      }
      ck.reset();
      if (!a.resume_candidates.empty()) a.resume_checkpoint = a.resume_candidates[0]["path"].get<std::string>();
    }
    auto& att = impl_->stmt(
        "INSERT INTO attempts (stage_id, attempt, worker_id, state, resume_checkpoint, started_ms) "
        "VALUES (?, ?, ?, 'running', ?, ?)");
    att.bind(1, a.stage_id);
    att.bind(2, a.attempt);
    att.bind(3, worker.id);
    if (a.resume_checkpoint.empty()) att.bind(4); else att.bind(4, a.resume_checkpoint);
    att.bind(5, now_ms);
    att.exec();
    auto& lease = impl_->stmt("INSERT OR REPLACE INTO leases (stage_id, attempt, worker_id, expires_ms) VALUES (?, ?, ?, ?)");
    lease.bind(1, a.stage_id);
    lease.bind(2, a.attempt);
    lease.bind(3, worker.id);
    lease.bind(4, now_ms + lease_ms);
    lease.exec();
    auto cached = impl_->job_specs.find(a.job_id);
    if (cached == impl_->job_specs.end()) {
      auto& job = impl_->stmt("SELECT spec_json, work_dir FROM jobs WHERE id = ?");
      job.bind(1, a.job_id);
      if (!job.executeStep()) return Status::internal("stage without job");
      Impl::CachedJob entry;
      auto spec = std::make_shared<json>(json::parse(job.getColumn(0).getString(), nullptr, false));
      if (spec->is_discarded()) *spec = nullptr;
      std::vector<uint8_t> packed = json::to_msgpack(*spec);
      entry.spec_msgpack = std::make_shared<const std::string>(packed.begin(), packed.end());
      entry.spec = std::move(spec);
      entry.work_dir = job.getColumn(1).getString();
      job.reset();
      // Evict one entry per miss: clearing all 4096 at once (freeing every
      // spec tree) stalled the loop for tens of ms, one whole round of replies.
      if (impl_->job_specs.size() >= Impl::kSpecCacheJobs) impl_->job_specs.erase(impl_->job_specs.begin());
      cached = impl_->job_specs.emplace(a.job_id, std::move(entry)).first;
    }
    a.spec = cached->second.spec;
    a.spec_msgpack = cached->second.spec_msgpack;
    a.work_dir = cached->second.work_dir;
    // queued -> running on the first assignment (job_transition_allowed).
    auto& run = impl_->stmt(
        "UPDATE jobs SET state = 'running', updated_ms = ?1, error = NULL, finished_ms = NULL "
        "WHERE id = ?2 AND state = 'queued'");
    run.bind(1, now_ms);
    run.bind(2, a.job_id);
    run.exec();
    impl_->event(a.job_id, a.stage_id, a.attempt, "info",
                 str_printf("%s attempt %lld assigned to %s%s%s", a.kind.c_str(), (long long)a.attempt,
                            worker.id.c_str(), a.resume_checkpoint.empty() ? "" : ", resuming from ",
                            a.resume_checkpoint.c_str()),
                 now_ms);
    tx.commit();
    out = std::move(a);
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Status JobStore::renew_leases(const std::string& worker_id, int64_t expires_ms) {
  return impl_->guard("renew", [&]() -> Status {
    auto& st = impl_->stmt("UPDATE leases SET expires_ms = max(expires_ms, ?) WHERE worker_id = ?");
    st.bind(1, expires_ms);
    st.bind(2, worker_id);
    st.exec();
    return Status();
  });
}

Status JobStore::extend_all_leases(int64_t min_expires_ms) {
  return impl_->guard("extend leases", [&]() -> Status {
    auto& st = impl_->stmt("UPDATE leases SET expires_ms = max(expires_ms, ?)");
    st.bind(1, min_expires_ms);
    st.exec();
    return Status();
  });
}

Result<std::vector<LeaseRef>> JobStore::expire_leases(int64_t now_ms) {
  std::vector<LeaseRef> lapsed;
  Status s = impl_->guard("expire", [&]() -> Status {
    {
      auto& st = impl_->stmt("SELECT stage_id, attempt, worker_id FROM leases WHERE expires_ms < ?");
      st.bind(1, now_ms);
      while (st.executeStep()) {
        lapsed.push_back({st.getColumn(0).getInt64(), st.getColumn(1).getInt64(), st.getColumn(2).getString()});
      }
    }
    if (lapsed.empty()) return Status();
    Impl::Tx tx(*impl_);
    for (const LeaseRef& ref : lapsed) {
      LEMA_RETURN_IF_ERROR(impl_->lose_lease(ref, "lease lapsed: worker '" + ref.worker_id + "' went silent", now_ms));
    }
    tx.commit();
    return Status();
  });
  if (!s.ok()) return s;
  return lapsed;
}

Result<std::vector<LeaseRef>> JobStore::release_worker_leases(const std::string& worker_id, int64_t keep_stage_id,
                                                              int64_t now_ms) {
  std::vector<LeaseRef> released;
  Status s = impl_->guard("release", [&]() -> Status {
    Impl::Tx tx(*impl_);
    {
      auto& st = impl_->stmt("SELECT stage_id, attempt FROM leases WHERE worker_id = ? AND stage_id != ?");
      st.bind(1, worker_id);
      st.bind(2, keep_stage_id);
      while (st.executeStep()) released.push_back({st.getColumn(0).getInt64(), st.getColumn(1).getInt64(), worker_id});
    }
    for (const LeaseRef& ref : released) {
      LEMA_RETURN_IF_ERROR(impl_->lose_lease(ref, "worker '" + worker_id + "' restarted without the stage", now_ms));
    }
    tx.commit();
    return Status();
  });
  if (!s.ok()) return s;
  return released;
}

Result<JobStore::LeaseCheck> JobStore::check_lease(int64_t stage_id, int64_t attempt, const std::string& worker_id) {
  LeaseCheck lease;
  LEMA_RETURN_IF_ERROR(impl_->guard("check lease", [&] {
    lease = impl_->lease_of(stage_id, attempt, worker_id);
    if (!lease.held) {
      auto& st = impl_->stmt("SELECT 1 FROM attempts WHERE stage_id = ? AND attempt = ? AND worker_id = ? "
                             "AND state = 'succeeded'");
      st.bind(1, stage_id);
      st.bind(2, attempt);
      st.bind(3, worker_id);
      lease.succeeded = st.executeStep();
      st.reset();
    }
    return Status();
  }));
  return lease;
}

Status JobStore::record_progress(int64_t stage_id, int64_t attempt, const std::string& worker_id, int64_t step,
                                 int64_t total_steps, const json& metrics, int64_t now_ms) {
  return impl_->guard("progress", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->check_lease(stage_id, attempt, worker_id));
    if (impl_->stage_state(stage_id) == "assigned") {
      LEMA_RETURN_IF_ERROR(impl_->set_stage_state(stage_id, "running", now_ms));
    }
    auto& st = impl_->stmt(
        "INSERT INTO metrics (stage_id, attempt, step, total_steps, loss, lr, tokens_per_s, memory_bytes, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    st.bind(1, stage_id);
    st.bind(2, attempt);
    st.bind(3, step);
    if (total_steps > 0) st.bind(4, total_steps); else st.bind(4);
    int i = 5;
    for (const char* key : {"loss", "lr", "tokens_per_s"}) {
      auto it = metrics.is_object() ? metrics.find(key) : metrics.end();
      if (it != metrics.end() && it->is_number()) st.bind(i, it->get<double>()); else st.bind(i);
      ++i;
    }
    auto mem = metrics.is_object() ? metrics.find("memory_bytes") : metrics.end();
    if (mem != metrics.end() && mem->is_number_integer()) st.bind(8, mem->get<int64_t>()); else st.bind(8);
    st.bind(9, now_ms);
    st.exec();
    tx.commit();
    return Status();
  });
}

Status JobStore::record_checkpoint(int64_t stage_id, int64_t attempt, const std::string& worker_id, int64_t step,
                                   const std::string& path, const std::string& sha256, int64_t now_ms) {
  return impl_->guard("checkpoint", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->check_lease(stage_id, attempt, worker_id));
    auto& st = impl_->stmt(
        "INSERT INTO checkpoints (stage_id, attempt, step, path, sha256, created_ms) VALUES (?, ?, ?, ?, ?, ?)");
    st.bind(1, stage_id);
    st.bind(2, attempt);
    st.bind(3, step);
    st.bind(4, path);
    st.bind(5, sha256);
    st.bind(6, now_ms);
    st.exec();
    impl_->event(impl_->job_of_stage(stage_id), stage_id, attempt, "info",
                 str_printf("checkpoint step %lld: %s", (long long)step, path.c_str()), now_ms);
    tx.commit();
    return Status();
  });
}

Status JobStore::complete_stage(int64_t stage_id, int64_t attempt, const std::string& worker_id, const json& result,
                                int64_t now_ms) {
  return impl_->guard("complete", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->check_lease(stage_id, attempt, worker_id));
    // The succeeded transition (from assigned or running) and the result in one statement.
    auto& up = impl_->stmt(
        "UPDATE stages SET state = 'succeeded', result_json = ?1, error = NULL, updated_ms = ?2 "
        "WHERE id = ?3 AND state IN ('assigned','running')");
    up.bind(1, result.dump());
    up.bind(2, now_ms);
    up.bind(3, stage_id);
    if (up.exec() == 0) return impl_->refuse_stage_transition(stage_id, "succeeded");
    impl_->end_attempt(stage_id, attempt, "succeeded", "", now_ms);
    impl_->delete_lease(stage_id);
    // Dependents whose dependencies have all succeeded become runnable.
    std::vector<int64_t> ready;
    {
      auto& dep = impl_->stmt(
          "SELECT s.id FROM stage_deps d JOIN stages s ON s.id = d.stage_id "
          "WHERE d.depends_on = ? AND s.state = 'pending' AND NOT EXISTS ("
          "  SELECT 1 FROM stage_deps d2 JOIN stages p ON p.id = d2.depends_on "
          "  WHERE d2.stage_id = s.id AND p.state != 'succeeded')");
      dep.bind(1, stage_id);
      while (dep.executeStep()) ready.push_back(dep.getColumn(0).getInt64());
    }
    for (int64_t r : ready) LEMA_RETURN_IF_ERROR(impl_->set_stage_state(r, "queued", now_ms));
    auto& left = impl_->stmt(
        "SELECT s.job_id, (SELECT count(*) FROM stages o WHERE o.job_id = s.job_id AND o.state != 'succeeded') "
        "FROM stages s WHERE s.id = ?");
    left.bind(1, stage_id);
    if (!left.executeStep()) return Status::not_found("stage vanished");
    int64_t job_id = left.getColumn(0).getInt64();
    int64_t remaining = left.getColumn(1).getInt64();
    left.reset();
    impl_->event(job_id, stage_id, attempt, "info", "stage done", now_ms);
    if (remaining == 0) {
      LEMA_RETURN_IF_ERROR(impl_->set_job_state(job_id, "succeeded", now_ms));
      impl_->event(job_id, 0, 0, "info", "job succeeded", now_ms);
    }
    tx.commit();
    return Status();
  });
}

Status JobStore::fail_stage(int64_t stage_id, int64_t attempt, const std::string& worker_id, const std::string& error,
                            bool retryable, int64_t now_ms, bool crashed) {
  return impl_->guard("fail", [&]() -> Status {
    Impl::Tx tx(*impl_);
    LEMA_RETURN_IF_ERROR(impl_->check_lease(stage_id, attempt, worker_id));
    impl_->end_attempt(stage_id, attempt, "failed", error, now_ms);
    impl_->delete_lease(stage_id);
    if (crashed && impl_->schema_version >= 6) {
      auto& up = impl_->stmt("UPDATE stages SET crashes = crashes + 1 WHERE id = ?");
      up.bind(1, stage_id);
      up.exec();
      auto& count = impl_->stmt("SELECT crashes, max_crashes FROM stages WHERE id = ?");
      count.bind(1, stage_id);
      if (!count.executeStep()) return Status::not_found("stage vanished");
      const int64_t crashes = count.getColumn(0).getInt64();
      const int64_t max_crashes = count.getColumn(1).getInt64();
      count.reset();
      if (crashes >= max_crashes) {
        // A stage that kills its process kills it on every worker: stop
        // here, with the reason, instead of spending the attempts.
        LEMA_RETURN_IF_ERROR(impl_->retry_or_fail(
            stage_id, attempt,
            str_printf("its process crashed %lld times ([retry] max_crashes = %lld); the last: %s",
                       static_cast<long long>(crashes), static_cast<long long>(max_crashes), error.c_str()),
            /*retryable=*/false, 0, now_ms));
        tx.commit();
        return Status();
      }
    }
    LEMA_RETURN_IF_ERROR(
        impl_->retry_or_fail(stage_id, attempt, error, retryable, impl_->backoff_for(attempt), now_ms));
    tx.commit();
    return Status();
  });
}

Status JobStore::add_event(int64_t job_id, int64_t stage_id, int64_t attempt, const std::string& level,
                           const std::string& line, int64_t now_ms) {
  return impl_->guard("event", [&]() -> Status {
    int64_t job = job_id ? job_id : (stage_id ? impl_->job_of_stage(stage_id) : 0);
    impl_->event(job, stage_id, attempt, level, line, now_ms);
    return Status();
  });
}

Status JobStore::upsert_worker(const WorkerInfo& w, int64_t now_ms) {
  if (schema_version() < 3) {
    // A store opened with older migrations only (tests of the upgrade path):
    // no key column yet, so no binding.
    return impl_->guard("worker", [&]() -> Status {
      auto& st = impl_->stmt(
          "INSERT INTO workers (id, host, gpus, vram_bytes, cpu_only, version, state, first_seen_ms, last_seen_ms) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'online', ?7, ?7) ON CONFLICT(id) DO UPDATE SET host = ?2, gpus = ?3, "
          "vram_bytes = ?4, cpu_only = ?5, version = ?6, state = 'online', last_seen_ms = ?7");
      st.bind(1, w.id);
      st.bind(2, w.host);
      st.bind(3, w.gpus);
      st.bind(4, w.vram_bytes);
      st.bind(5, w.cpu_only ? 1 : 0);
      st.bind(6, w.version);
      st.bind(7, now_ms);
      st.exec();
      return Status();
    });
  }
  return impl_->guard("worker", [&]() -> Status {
    auto& owner = impl_->stmt("SELECT curve_key FROM workers WHERE id = ?");
    owner.bind(1, w.id);
    std::string bound = owner.executeStep() ? owner.getColumn(0).getString() : std::string();
    owner.reset();
    if (!bound.empty() && bound != w.curve_key) {
      return Status::invalid_argument("worker id '" + w.id + "' belongs to key " + bound + ", not " +
                                      (w.curve_key.empty() ? std::string("an unauthenticated peer") : w.curve_key));
    }
    auto& st = impl_->stmt(
        "INSERT INTO workers (id, host, gpus, vram_bytes, cpu_only, version, state, first_seen_ms, last_seen_ms, "
        "curve_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'online', ?7, ?7, ?8) ON CONFLICT(id) DO UPDATE SET host = ?2, "
        "gpus = ?3, vram_bytes = ?4, cpu_only = ?5, version = ?6, state = 'online', last_seen_ms = ?7, "
        "curve_key = ?8");
    st.bind(1, w.id);
    st.bind(2, w.host);
    st.bind(3, w.gpus);
    st.bind(4, w.vram_bytes);
    st.bind(5, w.cpu_only ? 1 : 0);
    st.bind(6, w.version);
    st.bind(7, now_ms);
    st.bind(8, w.curve_key);
    st.exec();
    return Status();
  });
}

Result<int64_t> JobStore::expire_workers(int64_t lost_before_ms, int64_t max_lost_rows) {
  int64_t deleted = 0;
  Status s = impl_->guard("expire workers", [&]() -> Status {
    Impl::Tx tx(*impl_);
    auto& old = impl_->stmt("DELETE FROM workers WHERE state = 'lost' AND last_seen_ms < ?");
    old.bind(1, lost_before_ms);
    deleted += old.exec();
    auto& excess = impl_->stmt(
        "DELETE FROM workers WHERE id IN (SELECT id FROM workers WHERE state = 'lost' "
        "ORDER BY last_seen_ms DESC LIMIT -1 OFFSET ?)");
    excess.bind(1, max_lost_rows);
    deleted += excess.exec();
    tx.commit();
    return Status();
  });
  if (!s.ok()) return s;
  return deleted;
}

Status JobStore::mark_worker_lost(const std::string& worker_id, int64_t now_ms) {
  return impl_->guard("worker lost", [&]() -> Status {
    auto& st = impl_->stmt("UPDATE workers SET state = 'lost', last_seen_ms = ? WHERE id = ?");
    st.bind(1, now_ms);
    st.bind(2, worker_id);
    st.exec();
    return Status();
  });
}

Result<json> JobStore::list_jobs(const std::string& state, int64_t limit) {
  // An unknown state would match no row: an empty list that reads as "no
  // such jobs" instead of a typo.
  if (!state.empty() && !job_transitions().count(state)) {
    return Status::invalid_argument("unknown job state '" + state +
                                    "' (queued, running, succeeded, failed, cancelled)");
  }
  json out = json::array();
  Status s = impl_->guard("list", [&]() -> Status {
    auto& st = impl_->stmt(
        "SELECT id, name, state, priority, created_ms, updated_ms, error, "
        "  (SELECT group_concat(kind || ':' || state, ' ') FROM stages WHERE job_id = jobs.id) "
        "FROM jobs WHERE (?1 = '' OR state = ?1) ORDER BY id DESC LIMIT ?2");
    st.bind(1, state);
    st.bind(2, limit > 0 ? limit : 100);
    while (st.executeStep()) {
      out.push_back({{"id", st.getColumn(0).getInt64()}, {"name", col_str(st, 1)}, {"state", col_str(st, 2)},
                     {"priority", st.getColumn(3).getInt64()}, {"created_ms", st.getColumn(4).getInt64()},
                     {"updated_ms", st.getColumn(5).getInt64()}, {"error", col_str(st, 6)},
                     {"stages", col_str(st, 7)}});
    }
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<json> JobStore::show_job(int64_t job_id) {
  json out;
  Status s = impl_->guard("show", [&]() -> Status {
    auto& st = impl_->stmt(
        "SELECT id, name, state, priority, max_attempts, work_dir, spec_toml, spec_json, error, created_ms, "
        "updated_ms, finished_ms FROM jobs WHERE id = ?");
    st.bind(1, job_id);
    if (!st.executeStep()) return Status::not_found(str_printf("job %lld does not exist", (long long)job_id));
    out = {{"id", st.getColumn(0).getInt64()}, {"name", col_str(st, 1)}, {"state", col_str(st, 2)},
           {"priority", st.getColumn(3).getInt64()}, {"max_attempts", st.getColumn(4).getInt64()},
           {"work_dir", col_str(st, 5)}, {"spec_toml", col_str(st, 6)},
           {"spec", parse_json_or_null(col_str(st, 7))}, {"error", col_str(st, 8)},
           {"created_ms", st.getColumn(9).getInt64()}, {"updated_ms", st.getColumn(10).getInt64()},
           {"finished_ms", st.getColumn(11).isNull() ? json(nullptr) : json(st.getColumn(11).getInt64())}};
    st.reset();
    json stages = json::array();
    auto& ss = impl_->stmt(
        "SELECT id, kind, state, attempt, max_attempts, error, result_json, "
        "  (SELECT path FROM checkpoints c WHERE c.stage_id = stages.id ORDER BY step DESC, id DESC LIMIT 1), "
        "  (SELECT worker_id FROM leases l WHERE l.stage_id = stages.id) "
        "FROM stages WHERE job_id = ? ORDER BY id");
    ss.bind(1, job_id);
    while (ss.executeStep()) {
      stages.push_back({{"id", ss.getColumn(0).getInt64()}, {"kind", col_str(ss, 1)}, {"state", col_str(ss, 2)},
                        {"attempt", ss.getColumn(3).getInt64()}, {"max_attempts", ss.getColumn(4).getInt64()},
                        {"error", col_str(ss, 5)}, {"result", parse_json_or_null(col_str(ss, 6))},
                        {"checkpoint", col_str(ss, 7)}, {"worker", col_str(ss, 8)}});
    }
    for (json& stage : stages) {
      auto& m = impl_->stmt(
          "SELECT step, total_steps, loss, lr, tokens_per_s, memory_bytes FROM metrics WHERE stage_id = ? "
          "ORDER BY step DESC LIMIT 1");
      m.bind(1, stage["id"].get<int64_t>());
      if (m.executeStep()) {
        auto num = [&](int i) { return m.getColumn(i).isNull() ? json(nullptr) : json(m.getColumn(i).getDouble()); };
        stage["progress"] = {{"step", m.getColumn(0).getInt64()}, {"total_steps", num(1)}, {"loss", num(2)},
                             {"lr", num(3)}, {"tokens_per_s", num(4)}, {"memory_bytes", num(5)}};
      }
    }
    out["stages"] = std::move(stages);
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<json> JobStore::job_logs(int64_t job_id, int64_t after_id, int64_t limit) {
  json out = json::array();
  Status s = impl_->guard("logs", [&]() -> Status {
    auto& st = impl_->stmt(
        "SELECT e.id, s.kind, e.attempt, e.level, e.line, e.created_ms FROM events e "
        "LEFT JOIN stages s ON s.id = e.stage_id WHERE e.job_id = ? AND e.id > ? ORDER BY e.id LIMIT ?");
    st.bind(1, job_id);
    st.bind(2, after_id);
    st.bind(3, limit > 0 ? limit : 1000);
    while (st.executeStep()) {
      out.push_back({{"id", st.getColumn(0).getInt64()}, {"stage", col_str(st, 1)},
                     {"attempt", st.getColumn(2).isNull() ? 0 : st.getColumn(2).getInt64()},
                     {"level", col_str(st, 3)}, {"line", col_str(st, 4)}, {"time_ms", st.getColumn(5).getInt64()}});
    }
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<json> JobStore::list_workers(bool include_lost) {
  json out = json::array();
  Status s = impl_->guard("workers", [&]() -> Status {
    auto& st = impl_->stmt(
        "SELECT id, host, gpus, vram_bytes, cpu_only, version, state, first_seen_ms, last_seen_ms, "
        "  (SELECT count(*) FROM leases l WHERE l.worker_id = workers.id) FROM workers "
        "WHERE ?1 OR state = 'online' ORDER BY id");
    st.bind(1, include_lost ? 1 : 0);
    while (st.executeStep()) {
      out.push_back({{"id", col_str(st, 0)}, {"host", col_str(st, 1)}, {"gpus", st.getColumn(2).getInt64()},
                     {"vram_bytes", st.getColumn(3).getInt64()}, {"cpu_only", st.getColumn(4).getInt() != 0},
                     {"version", col_str(st, 5)}, {"state", col_str(st, 6)},
                     {"first_seen_ms", st.getColumn(7).getInt64()}, {"last_seen_ms", st.getColumn(8).getInt64()},
                     {"leases", st.getColumn(9).getInt64()}});
    }
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<json> JobStore::job_counts() {
  json out = {{"queued", 0}, {"running", 0}, {"succeeded", 0}, {"failed", 0}, {"cancelled", 0}};
  Status s = impl_->guard("counts", [&]() -> Status {
    auto& st = impl_->stmt("SELECT state, count(*) FROM jobs GROUP BY state");
    while (st.executeStep()) out[st.getColumn(0).getString()] = st.getColumn(1).getInt64();
    return Status();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace lema
