// JobStore against real SQLite files: migrations, state machine, leases,
// fencing, retries. Times are passed explicitly (the injectable clock).
#include "scheduler/job_store.h"

#include <gtest/gtest.h>
#include <SQLiteCpp/SQLiteCpp.h>

#include "common/base/sha256.h"
#include "tests/scheduler/scheduler_test_util.h"

namespace lema {
namespace {

using namespace lema::testing;

WorkerInfo gpu_worker(const std::string& id, int64_t vram = int64_t(24) << 30) {
  WorkerInfo w;
  w.id = id;
  w.gpus = 1;
  w.vram_bytes = vram;
  w.cpu_only = false;
  return w;
}

WorkerInfo cpu_worker(const std::string& id) {
  WorkerInfo w;
  w.id = id;
  w.cpu_only = true;
  return w;
}

struct StoreFixture : ::testing::Test {
  void SetUp() override {
    dir = make_temp_dir("store");
    StoreOptions o;
    o.retry_backoff_init_ms = 1000;
    o.retry_backoff_max_ms = 4000;
    auto s = JobStore::open(dir + "/s.db", o);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    store = std::move(*s);
  }
  void TearDown() override {
    store.reset();
    remove_all(dir).ok();
  }
  int64_t submit(const std::string& text) {
    auto id = store->submit(text, parse_spec(text), now);
    EXPECT_TRUE(id.ok()) << id.status().to_string();
    return *id;
  }
  Assignment assign(const WorkerInfo& w) {
    auto a = store->assign_next(w, 300, now);
    EXPECT_TRUE(a.ok()) << a.status().to_string();
    EXPECT_TRUE(a->has_value());
    return a->value_or(Assignment{});
  }
  nlohmann::json show(int64_t job) { return *store->show_job(job); }

  std::string dir;
  std::unique_ptr<JobStore> store;
  int64_t now = 1'000'000;
};

TEST(Migrations, ApplyReapplyAndRefuseTampering) {
  std::string dir = make_temp_dir("migr");
  std::string db = dir + "/m.db";
  {
    auto s = JobStore::open(db);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ((*s)->schema_version(), embedded_migrations().back().version);
  }
  {
    // Re-open: nothing to apply, same rows.
    auto s = JobStore::open(db);
    ASSERT_TRUE(s.ok());
    SQLite::Database raw(db);
    EXPECT_EQ(raw.execAndGet("SELECT count(*) FROM schema_migrations").getInt(), int(embedded_migrations().size()));
    EXPECT_EQ(raw.execAndGet("SELECT sha256 FROM schema_migrations WHERE version = 1").getString(),
              sha256_hex(embedded_migrations()[0].sql));
    EXPECT_EQ(raw.execAndGet("PRAGMA journal_mode").getString(), "wal");
  }
  {
    // A migration file edited after it was applied is refused.
    std::vector<Migration> edited = embedded_migrations();
    edited[0].sql += "\n-- edited\n";
    auto s = JobStore::open(db, {}, edited);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("changed after it was applied"), std::string::npos) << s.status().to_string();
  }
  {
    // A new migration applies on top, in its own transaction.
    std::vector<Migration> more = embedded_migrations();
    more.push_back({more.back().version + 1, "add_note", "ALTER TABLE jobs ADD COLUMN note TEXT;"});
    auto s = JobStore::open(db, {}, more);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ((*s)->schema_version(), more.back().version);
  }
  {
    // The older binary now meets a newer database: refused.
    auto s = JobStore::open(db);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("newer than this lema binary"), std::string::npos);
  }
  {
    // A failing migration leaves nothing behind.
    std::string db2 = dir + "/bad.db";
    std::vector<Migration> bad = embedded_migrations();
    bad.push_back({bad.back().version + 1, "broken", "CREATE TABLE t (x); SELECT * FROM no_such_table;"});
    auto s = JobStore::open(db2, {}, bad);
    ASSERT_FALSE(s.ok());
    SQLite::Database raw(db2);
    EXPECT_FALSE(raw.tableExists("t"));
    EXPECT_EQ(raw.execAndGet("SELECT max(version) FROM schema_migrations").getInt(), embedded_migrations().back().version);
  }
  remove_all(dir).ok();
}

TEST(StateMachine, TransitionTable) {
  EXPECT_TRUE(stage_transition_allowed("pending", "queued"));
  EXPECT_TRUE(stage_transition_allowed("running", "retrying"));
  EXPECT_FALSE(stage_transition_allowed("succeeded", "queued"));
  EXPECT_FALSE(stage_transition_allowed("pending", "running"));
  EXPECT_FALSE(stage_transition_allowed("queued", "succeeded"));
  EXPECT_TRUE(job_transition_allowed("failed", "queued"));
  EXPECT_FALSE(job_transition_allowed("succeeded", "cancelled"));
}

TEST_F(StoreFixture, PipelineFollowsDependencies) {
  int64_t job = submit(small_spec("p"));
  auto w = gpu_worker("w");
  Assignment d = assign(w);
  EXPECT_EQ(d.kind, "dataset");
  EXPECT_EQ(d.attempt, 1);
  ASSERT_TRUE(d.spec && d.spec_msgpack);
  EXPECT_EQ((*d.spec)["model"]["path"], "/models/tiny");
  EXPECT_EQ(nlohmann::json::from_msgpack(*d.spec_msgpack), *d.spec);
  // Train waits for the dataset.
  auto none = store->assign_next(w, 300, now);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(show(job)["state"], "running");
  ASSERT_TRUE(store->complete_stage(d.stage_id, 1, "w", {{"rows", 10}}, now).ok());
  Assignment t = assign(w);
  EXPECT_EQ(t.kind, "train");
  ASSERT_TRUE(store->record_progress(t.stage_id, 1, "w", 5, 10, {{"loss", 2.5}, {"memory_bytes", 123}}, now).ok());
  ASSERT_TRUE(store->complete_stage(t.stage_id, 1, "w", nullptr, now).ok());
  Assignment e = assign(w);
  Assignment m = assign(w);
  EXPECT_EQ(e.kind, "eval");
  EXPECT_EQ(m.kind, "merge");
  ASSERT_TRUE(store->complete_stage(e.stage_id, 1, "w", nullptr, now).ok());
  EXPECT_EQ(show(job)["state"], "running");
  ASSERT_TRUE(store->complete_stage(m.stage_id, 1, "w", nullptr, now).ok());
  auto j = show(job);
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["stages"][1]["progress"]["loss"], 2.5);
  EXPECT_EQ(j["stages"][0]["result"]["rows"], 10);
  // Succeeded is terminal: completing again is refused (no lease).
  EXPECT_FALSE(store->complete_stage(m.stage_id, 1, "w", nullptr, now).ok());
}

TEST_F(StoreFixture, DisabledStagesAreNotCreated) {
  int64_t job = submit(small_spec("x", 0, 3, "[eval]\nenabled = false\n[merge]\nenabled = false\n"));
  EXPECT_EQ(show(job)["stages"].size(), 2u);
}

// [export] gguf: an export stage that waits for the merge and needs no GPU.
TEST_F(StoreFixture, ExportStageFollowsMerge) {
  int64_t job = submit(small_spec("g", 0, 3, "[eval]\nenabled = false\n[export]\ngguf = \"q8_0\"\n[resources]\n"
                                             "gpu_memory = \"8GiB\"\ncpu_ok = false\n"));
  ASSERT_EQ(show(job)["stages"].size(), 4u);
  auto w = gpu_worker("w");
  for (const char* kind : {"dataset", "train"}) {
    Assignment a = assign(w);
    ASSERT_EQ(a.kind, kind);
    ASSERT_TRUE(store->complete_stage(a.stage_id, 1, "w", nullptr, now).ok());
  }
  Assignment m = assign(w);
  ASSERT_EQ(m.kind, "merge");
  auto none = store->assign_next(cpu_worker("c"), 300, now);  // the export waits for the merge
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(store->complete_stage(m.stage_id, 1, "w", nullptr, now).ok());
  auto c = cpu_worker("c");
  Assignment x = assign(c);  // a CPU-only worker takes it, whatever [resources] says of GPU stages
  EXPECT_EQ(x.kind, "export");
  ASSERT_TRUE(store->complete_stage(x.stage_id, 1, "c", {{"file", "/w/model.q8_0.gguf"}}, now).ok());
  auto j = show(job);
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["stages"][3]["kind"], "export");
  EXPECT_EQ(j["stages"][3]["result"]["file"], "/w/model.q8_0.gguf");
}

TEST_F(StoreFixture, PriorityThenAgeAndCapabilities) {
  submit(small_spec("a", 0));
  int64_t b = submit(small_spec("b", 7));
  int64_t c = submit(small_spec("c", 7));
  EXPECT_EQ(assign(gpu_worker("w")).job_id, b);
  EXPECT_EQ(assign(gpu_worker("w")).job_id, c);
  // A job needing 40 GiB and no CPU fallback: its train stage goes to the big worker only.
  int64_t big = submit(small_spec("big", 100, 3, "[resources]\ngpu_memory = \"40GiB\"\ncpu_ok = false\n"));
  Assignment d = assign(cpu_worker("cpu"));  // datasets run anywhere
  EXPECT_EQ(d.job_id, big);
  ASSERT_TRUE(store->complete_stage(d.stage_id, 1, "cpu", nullptr, now).ok());
  // The small GPU and the CPU worker skip it and take other work.
  int64_t d_job = submit(small_spec("d", 0));
  EXPECT_EQ(assign(gpu_worker("small", int64_t(24) << 30)).kind, "dataset");  // job a
  EXPECT_EQ(assign(cpu_worker("cpu2")).job_id, d_job);
  EXPECT_FALSE(store->assign_next(cpu_worker("cpu3"), 300, now)->has_value());
  Assignment t = assign(gpu_worker("large", int64_t(80) << 30));
  EXPECT_EQ(t.job_id, big);
  EXPECT_EQ(t.kind, "train");
}

// The broker tells a stale message apart by check_lease's typed answer,
// never by the text of an error.
TEST_F(StoreFixture, CheckLeaseSaysWhoHoldsTheStage) {
  submit(small_spec("c"));
  Assignment d = assign(gpu_worker("w1"));
  auto held = store->check_lease(d.stage_id, d.attempt, "w1");
  ASSERT_TRUE(held.ok()) << held.status().to_string();
  EXPECT_TRUE(held->held);
  auto other = store->check_lease(d.stage_id, d.attempt, "w2");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->held);
  EXPECT_NE(other->why.find("leased as attempt 1 to 'w1'"), std::string::npos) << other->why;
  auto old = store->check_lease(d.stage_id, d.attempt + 1, "w1");
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->held);
  ASSERT_TRUE(store->complete_stage(d.stage_id, d.attempt, "w1", nullptr, now).ok());
  auto done = store->check_lease(d.stage_id, d.attempt, "w1");
  ASSERT_TRUE(done.ok());
  EXPECT_FALSE(done->held);
  EXPECT_NE(done->why.find("holds no lease"), std::string::npos) << done->why;
  // That attempt succeeded (a worker that asks after a freeze is told its
  // DONE counted); no other attempt or worker did.
  EXPECT_TRUE(done->succeeded);
  EXPECT_FALSE(held->succeeded);
  EXPECT_FALSE(store->check_lease(d.stage_id, d.attempt, "w2")->succeeded);
  EXPECT_FALSE(store->check_lease(d.stage_id, d.attempt + 1, "w1")->succeeded);
}

TEST_F(StoreFixture, LapsedLeaseRequeuesWithCheckpointAndFencesOldAttempt) {
  int64_t job = submit(small_spec("l"));
  auto w1 = gpu_worker("w1"), w2 = gpu_worker("w2");
  Assignment d = assign(w1);
  ASSERT_TRUE(store->complete_stage(d.stage_id, 1, "w1", nullptr, now).ok());
  Assignment t = assign(w1);
  ASSERT_TRUE(store->record_checkpoint(t.stage_id, 1, "w1", 100, "/ck/step-100", "ab", now).ok());
  ASSERT_TRUE(store->record_checkpoint(t.stage_id, 1, "w1", 200, "/ck/step-200", "cd", now).ok());
  // Heartbeats keep the lease alive...
  now += 200;
  ASSERT_TRUE(store->renew_leases("w1", now + 300).ok());
  now += 200;
  EXPECT_TRUE(store->expire_leases(now)->empty());
  // ...until they stop.
  now += 400;
  auto lapsed = store->expire_leases(now);
  ASSERT_TRUE(lapsed.ok());
  ASSERT_EQ(lapsed->size(), 1u);
  EXPECT_EQ((*lapsed)[0].worker_id, "w1");
  EXPECT_EQ(show(job)["stages"][1]["state"], "retrying");
  Assignment again = assign(w2);
  EXPECT_EQ(again.stage_id, t.stage_id);
  EXPECT_EQ(again.attempt, 2);
  EXPECT_EQ(again.resume_checkpoint, "/ck/step-200");
  // Every recorded checkpoint with its digest, newest first (issue 19 F3:
  // the worker falls back to the newest intact one).
  EXPECT_EQ(again.resume_candidates,
            nlohmann::json::parse(R"([{"path": "/ck/step-200", "sha256": "cd", "step": 200},
                                      {"path": "/ck/step-100", "sha256": "ab", "step": 100}])"));
  // w1 comes back with attempt 1: every message is refused.
  Status s = store->record_progress(t.stage_id, 1, "w1", 201, 0, nullptr, now);
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_NE(s.message().find("stale"), std::string::npos);
  EXPECT_FALSE(store->record_checkpoint(t.stage_id, 1, "w1", 300, "/ck/bad", "ff", now).ok());
  EXPECT_FALSE(store->complete_stage(t.stage_id, 1, "w1", nullptr, now).ok());
  EXPECT_FALSE(store->complete_stage(t.stage_id, 2, "w1", nullptr, now).ok());  // right attempt, wrong worker
  ASSERT_TRUE(store->complete_stage(t.stage_id, 2, "w2", nullptr, now).ok());
  EXPECT_EQ(show(job)["stages"][1]["checkpoint"], "/ck/step-200");
}

TEST_F(StoreFixture, RetriesWithBackoffThenJobFailsWithLastError) {
  int64_t job = submit(small_spec("r", 0, 2));
  auto w = gpu_worker("w");
  Assignment d = assign(w);
  ASSERT_TRUE(store->fail_stage(d.stage_id, 1, "w", "disk full", true, now).ok());
  // Backoff: not runnable for 1000 ms.
  EXPECT_FALSE(store->assign_next(w, 300, now + 999)->has_value());
  now += 1000;
  Assignment d2 = assign(w);
  EXPECT_EQ(d2.attempt, 2);
  ASSERT_TRUE(store->fail_stage(d2.stage_id, 2, "w", "disk still full", true, now).ok());
  auto j = show(job);
  EXPECT_EQ(j["state"], "failed");
  EXPECT_NE(j["error"].get<std::string>().find("disk still full"), std::string::npos);
  EXPECT_EQ(j["stages"][1]["state"], "cancelled");
  // RETRY gives a fresh budget.
  ASSERT_TRUE(store->retry_job(job, now).ok());
  EXPECT_EQ(show(job)["state"], "queued");
  Assignment d3 = assign(w);
  EXPECT_EQ(d3.stage_id, d.stage_id);
  EXPECT_EQ(d3.attempt, 3);
  // A non-retryable failure fails at once.
  ASSERT_TRUE(store->fail_stage(d3.stage_id, 3, "w", "bad spec", false, now).ok());
  EXPECT_EQ(show(job)["state"], "failed");
  auto logs = store->job_logs(job, 0, 100);
  ASSERT_TRUE(logs.ok());
  EXPECT_GE(logs->size(), 5u);
}

// Issue 19: a stage whose process crashes fails the job after [retry]
// max_crashes crashes, with attempts left; other failures do not count,
// and RETRY starts the count again.
TEST_F(StoreFixture, CrashesFailTheJobAtMaxCrashes) {
  int64_t job = submit(small_spec("crashy", 0, 10, "[retry]\nmax_crashes = 2\n"));
  auto w = gpu_worker("w");
  Assignment d = assign(w);
  ASSERT_TRUE(store->fail_stage(d.stage_id, 1, "w", "crashed: signal 6 (SIGABRT)", true, now, true).ok());
  EXPECT_EQ(show(job)["state"], "running");
  now += 1000;
  Assignment d2 = assign(w);
  ASSERT_TRUE(store->fail_stage(d2.stage_id, 2, "w", "disk full", true, now).ok());  // not a crash
  EXPECT_EQ(show(job)["state"], "running");
  now += 2000;
  Assignment d3 = assign(w);
  EXPECT_EQ(d3.attempt, 3);
  ASSERT_TRUE(store->fail_stage(d3.stage_id, 3, "w", "crashed: signal 11 (SIGSEGV)", true, now, true).ok());
  auto j = show(job);
  EXPECT_EQ(j["state"], "failed");
  const std::string error = j["error"].get<std::string>();
  EXPECT_NE(error.find("crashed 2 times ([retry] max_crashes = 2)"), std::string::npos) << error;
  EXPECT_NE(error.find("signal 11 (SIGSEGV)"), std::string::npos) << error;
  // RETRY: a fresh count (one more crash is not yet the end).
  ASSERT_TRUE(store->retry_job(job, now).ok());
  Assignment d4 = assign(w);
  ASSERT_TRUE(store->fail_stage(d4.stage_id, d4.attempt, "w", "crashed: signal 6 (SIGABRT)", true, now, true).ok());
  EXPECT_EQ(show(job)["state"], "running");
}

TEST_F(StoreFixture, MaxCrashesDefaultsToTwo) {
  int64_t job = submit(small_spec("d", 0, 10));
  auto w = gpu_worker("w");
  for (int i = 0; i < 2; ++i) {
    Assignment d = assign(w);
    ASSERT_TRUE(store->fail_stage(d.stage_id, d.attempt, "w", "crashed: signal 9 (SIGKILL)", true, now, true).ok());
    now += 60000;
  }
  EXPECT_EQ(show(job)["state"], "failed");
}

TEST_F(StoreFixture, CancelCutsLeasesAndRefusesInvalidTransitions) {
  int64_t job = submit(small_spec("c"));
  Assignment d = assign(gpu_worker("w"));
  ASSERT_TRUE(store->cancel_job(job, now).ok());
  auto cut = store->take_cut_leases();
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0].stage_id, d.stage_id);
  EXPECT_TRUE(store->take_cut_leases().empty());
  EXPECT_FALSE(store->cancel_job(job, now).ok());
  EXPECT_EQ(store->cancel_job(999, now).code(), Status::Code::kNotFound);
  EXPECT_FALSE(store->complete_stage(d.stage_id, 1, "w", nullptr, now).ok());
}

TEST_F(StoreFixture, WorkerRestartReleasesItsLeasesButKeepsTheNamedOne) {
  submit(small_spec("a"));
  submit(small_spec("b"));
  auto w = gpu_worker("w");
  Assignment a = assign(w);
  Assignment b = assign(w);
  auto released = store->release_worker_leases("w", b.stage_id, now);
  ASSERT_TRUE(released.ok());
  ASSERT_EQ(released->size(), 1u);
  EXPECT_EQ((*released)[0].stage_id, a.stage_id);
  EXPECT_TRUE(store->complete_stage(b.stage_id, 1, "w", nullptr, now).ok());
}

// Every statement on the path of a worker's messages runs thousands of times
// a second under load: none may build a temporary b-tree per run (an IN list
// of 3+ values, in a WHERE, a CHECK or a partial index, or a sort an index
// could give). The store EXPLAINs each statement when it prepares it.
TEST_F(StoreFixture, WorkerPathStatementsBuildNoTemporaryBTrees) {
  int64_t job = submit(small_spec("hot"));
  int64_t other = submit(small_spec("cold"));
  auto w = gpu_worker("w");
  ASSERT_TRUE(store->upsert_worker(w, now).ok());
  ASSERT_TRUE(store->begin_batch().ok());
  Assignment d = assign(w);
  ASSERT_TRUE(store->complete_stage(d.stage_id, 1, "w", {{"rows", 3}}, now).ok());
  Assignment t = assign(w);
  ASSERT_TRUE(store->commit_batch().ok());
  ASSERT_TRUE(store->record_progress(t.stage_id, 1, "w", 1, 10, {{"loss", 2.0}}, now).ok());
  ASSERT_TRUE(store->record_checkpoint(t.stage_id, 1, "w", 1, "/ck/1", "ab", now).ok());
  ASSERT_TRUE(store->add_event(0, t.stage_id, 1, "info", "a log line", now).ok());
  ASSERT_TRUE(store->renew_leases("w", now + 300).ok());
  ASSERT_TRUE(store->extend_all_leases(now + 300).ok());
  ASSERT_TRUE(store->fail_stage(t.stage_id, 1, "w", "oom", true, now).ok());
  now += 1000;
  Assignment t2 = assign(w);
  ASSERT_TRUE(store->check_lease(t2.stage_id, t2.attempt, "w").ok());
  EXPECT_TRUE(store->expire_leases(now + 10'000)->size() == 1u);
  Assignment t3 = assign(w);
  EXPECT_TRUE(store->release_worker_leases("w", 0, now)->size() == 1u);
  ASSERT_TRUE(store->mark_worker_lost("w", now).ok());
  (void)t3;
  ASSERT_TRUE(store->cancel_job(other, now).ok());
  for (const std::string& sql : store->temp_btree_statements()) ADD_FAILURE() << "temporary b-tree per run: " << sql;
}

TEST_F(StoreFixture, SurvivesReopen) {
  int64_t job = submit(small_spec("s"));
  Assignment d = assign(gpu_worker("w"));
  store.reset();
  auto s = JobStore::open(dir + "/s.db");
  ASSERT_TRUE(s.ok());
  store = std::move(*s);
  ASSERT_TRUE(store->complete_stage(d.stage_id, 1, "w", nullptr, now).ok());
  EXPECT_EQ(show(job)["stages"][1]["state"], "queued");
  EXPECT_EQ(show(job)["spec_toml"], small_spec("s"));
}

// 002 rebuilds jobs, stages, attempts and workers (CHECKs without IN lists):
// a database in use under version 1 keeps every row, its foreign keys and
// its constraints, and the store carries on from where it was.
TEST(Migrations, RebuildKeepsAVersion1DatabaseWorking) {
  std::string dir = make_temp_dir("migr2");
  std::string db = dir + "/v1.db";
  const std::vector<Migration>& all = embedded_migrations();
  ASSERT_GE(all.size(), 2u);
  ASSERT_EQ(all[1].version, 2);
  int64_t now = 1'000'000;
  int64_t job = 0, other = 0;
  Assignment d;
  {
    auto s = JobStore::open(db, {}, {all[0]});
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    ASSERT_EQ((*s)->schema_version(), 1);
    job = *(*s)->submit(small_spec("a"), parse_spec(small_spec("a")), now);
    other = *(*s)->submit(small_spec("b"), parse_spec(small_spec("b")), now);
    ASSERT_TRUE((*s)->upsert_worker(gpu_worker("w"), now).ok());
    d = *(*(*s)->assign_next(gpu_worker("w"), 300, now));
    ASSERT_TRUE((*s)->record_checkpoint(d.stage_id, d.attempt, "w", 5, "/ck/5", "ab", now).ok());
  }
  auto s = JobStore::open(db);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  std::unique_ptr<JobStore> store = std::move(*s);
  EXPECT_EQ(store->schema_version(), all.back().version);
  // The lease survived the rebuild and still fences.
  EXPECT_FALSE(store->complete_stage(d.stage_id, d.attempt, "intruder", nullptr, now).ok());
  ASSERT_TRUE(store->complete_stage(d.stage_id, d.attempt, "w", nullptr, now).ok());
  nlohmann::json shown = *store->show_job(job);
  EXPECT_EQ(shown["state"], "running");
  EXPECT_EQ(shown["stages"][0]["state"], "succeeded");
  EXPECT_EQ(shown["stages"][0]["checkpoint"], "/ck/5");
  EXPECT_EQ(shown["stages"][1]["state"], "queued");  // the dependency (stage_deps -> stages) still resolves
  EXPECT_EQ((*store->show_job(other))["state"], "queued");
  EXPECT_EQ((*store->list_workers())[0]["id"], "w");
  auto logs = store->job_logs(job, 0, 100);
  ASSERT_TRUE(logs.ok());
  EXPECT_GE(logs->size(), 3u);  // submitted, assigned, checkpoint, done
  store.reset();
  SQLite::Database raw(db, SQLite::OPEN_READWRITE);
  raw.exec("PRAGMA foreign_keys = ON");
  SQLite::Statement fk(raw, "PRAGMA foreign_key_check");
  EXPECT_FALSE(fk.executeStep());  // no broken references
  fk.reset();
  EXPECT_EQ(raw.execAndGet("PRAGMA integrity_check").getString(), "ok");
  // The rewritten CHECKs still refuse what the old ones refused.
  EXPECT_THROW(raw.exec("UPDATE stages SET state = 'bogus' WHERE id = 1"), SQLite::Exception);
  EXPECT_THROW(raw.exec("UPDATE jobs SET state = 'done' WHERE id = 1"), SQLite::Exception);
  EXPECT_THROW(raw.exec("UPDATE attempts SET state = 'x'"), SQLite::Exception);
  EXPECT_THROW(raw.exec("UPDATE workers SET state = 'x'"), SQLite::Exception);
  // Foreign keys point at the rebuilt tables: deleting a job cascades.
  raw.exec("DELETE FROM jobs WHERE id = " + std::to_string(other));
  EXPECT_EQ(raw.execAndGet("SELECT count(*) FROM stages WHERE job_id = " + std::to_string(other)).getInt(), 0);
  remove_all(dir).ok();
}

}  // namespace
}  // namespace lema
