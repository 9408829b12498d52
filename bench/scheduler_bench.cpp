// Scheduler throughput and latency: N queued jobs (4 stages each), W
// simulated workers on loopback TCP (or ipc). Three runs, each on a fresh
// database (docs/SCHEDULER.md, Performance):
//  1. saturated: every stage finishes at once, so the scheduler is the
//     bottleneck: assignments/s. In this closed loop the READY->ASSIGN wait
//     is queueing, W / throughput on average (Little's law).
//  2. paced: each stage takes an exponentially distributed time with mean
//     --stage-ms (default 30: 64 workers offer 2,133/s, ~2,030/s arrive):
//     READY->ASSIGN p50/p99 is the scheduler's response time at that load.
//  3. echo: run 2 against a bare ROUTER that answers at once, the
//     reference for what ZeroMQ and the machine cost; printed as a ratio.
// Each prints the server thread's CPU time.
//
//   bench_scheduler_bench [--jobs 10000] [--workers 64] [--stage-ms 30] [--transport tcp|ipc]
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/base/file_util.h"
#include "common/protocol/job_spec.h"
#include "common/base/log.h"
#include "common/base/progress.h"
#include "common/protocol/protocol.h"
#include "scheduler/broker.h"
#include "scheduler/job_store.h"

using namespace lema;
using protocol::Message;
using protocol::MessageType;
using Steady = std::chrono::steady_clock;

namespace {

double thread_cpu_s(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void send(zmq::socket_t& s, const Message& m) {
  std::string b = protocol::encode(m);
  s.send(zmq::buffer(b), zmq::send_flags::none);
}

// The reference: a bare ROUTER on its own thread and context, as the
// broker has, that answers HELLO with WELCOME and READY with an ASSIGN at
// once (no store, no matching). Its READY->ASSIGN is what ZeroMQ and this
// machine cost; the broker's minus this is the scheduler's own share.
class EchoServer {
 public:
  // `spec` goes into every ASSIGN, so that it is as large as the broker's.
  EchoServer(const std::string& bind, nlohmann::json spec) : spec_(std::move(spec)) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind(bind);
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
  }
  std::string endpoint() const { return endpoint_; }
  uint64_t assignments() const { return assignments_; }
  void request_stop() { stop_ = true; }
  Status run() {
    int64_t next_stage = 1;
    while (!stop_) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      for (;;) {
        std::vector<zmq::message_t> frames;
        if (!zmq::recv_multipart(sock_, std::back_inserter(frames), zmq::recv_flags::dontwait)) break;
        if (frames.size() != 2) continue;
        auto m = protocol::decode(frames[1].data(), frames[1].size());
        if (!m.ok()) continue;
        Message reply;
        if (m->type == MessageType::kHello) {
          reply = Message(MessageType::kWelcome, {{"worker_id", m->str("worker_id")},
                                                  {"heartbeat_interval_ms", protocol::kHeartbeatIntervalMs},
                                                  {"liveness", protocol::kHeartbeatLiveness}});
        } else if (m->type == MessageType::kReady) {
          const int64_t stage = next_stage++;
          reply = Message(MessageType::kAssign, {{"job_id", (stage + 3) / 4}, {"stage_id", stage}, {"attempt", 1},
                                                 {"kind", "train"}, {"spec", spec_},
                                                 {"work_dir", "/var/lib/lema/jobs/" + std::to_string(stage)}});
          ++assignments_;
        } else {
          continue;
        }
        std::string body = protocol::encode(reply);
        sock_.send(frames[0], zmq::send_flags::sndmore);
        sock_.send(zmq::buffer(body), zmq::send_flags::none);
      }
    }
    return Status();
  }

 private:
  nlohmann::json spec_;
  zmq::context_t ctx_{1};
  zmq::socket_t sock_{ctx_, zmq::socket_type::router};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> assignments_{0};
};

// What one run measured.
struct RunResult {
  uint64_t assignments = 0;
  size_t samples = 0, all_samples = 0;  // READY->ASSIGN: measured / all
  double wall_s = 0, p50_ms = 0, p99_ms = 0, max_ms = 0, all_max_ms = 0;
  double server_cpu_s = 0, workers_cpu_s = 0;
  int64_t missed_edges = 0;
  BrokerStats stats;  // zero for the echo reference
};

// One run against the broker, or the echo reference when `echo_only`.
// `stage_ms` 0 finishes every stage at once (saturated).
int run_bench(int jobs, int n_workers, const std::string& transport, double stage_ms, bool echo_only,
              RunResult* out) {
  char tmpl[] = "/tmp/lema_bench_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  const std::string db = dir + "/bench.db";

  // Queue the jobs directly in the store (submission speed is not measured here).
  std::string spec_text = "[job]\nname = \"bench\"\n[model]\npath = \"/models/tiny\"\n";
  JobSpec spec = JobSpec::parse(spec_text).value();
  if (!echo_only) {
    auto store = JobStore::open(db).value();
    Progress progress("queue jobs", jobs, "jobs");
    for (int i = 0; i < jobs; ++i) {
      // One live job per work_dir (docs/SECURITY.md): each its own.
      JobSpec job = spec;
      job.job.work_dir = "runs/bench/" + std::to_string(i);
      auto id = store->submit(spec_text, job, 0);
      if (!id.ok()) {
        std::fprintf(stderr, "submit: %s\n", id.status().to_string().c_str());
        return 1;
      }
      progress.update(i + 1);
    }
    progress.finish();
  }
  const int64_t total_stages = int64_t(jobs) * 4;

  BrokerOptions o;
  o.db_path = db;
  o.workers_bind = transport == "ipc" ? "ipc://" + dir + "/workers.sock" : "tcp://127.0.0.1:*";
  o.clients_bind = transport == "ipc" ? "ipc://" + dir + "/clients.sock" : "tcp://127.0.0.1:*";
  o.max_messages_per_s = 0;  // the bench's workers are the broker's limit, not the per-peer rate
  std::unique_ptr<Broker> broker;
  std::unique_ptr<EchoServer> echo;
  std::string ep;
  if (echo_only) {
    echo = std::make_unique<EchoServer>(o.workers_bind, spec.to_json());
    ep = echo->endpoint();
  } else {
    auto created = Broker::create(o);
    if (!created.ok()) {
      std::fprintf(stderr, "scheduler: %s\n", created.status().to_string().c_str());
      return 1;
    }
    broker = std::move(created).value();
    ep = broker->workers_endpoint();
  }
  double sched_cpu_s = 0;
  std::thread sched([&] {
    pthread_setname_np(pthread_self(), echo ? "echo" : "scheduler");  // for perf and top
    clockid_t cid;
    pthread_getcpuclockid(pthread_self(), &cid);
    double t0 = thread_cpu_s(cid);
    Status s = echo ? echo->run() : broker->run();
    sched_cpu_s = thread_cpu_s(cid) - t0;
    if (!s.ok()) std::fprintf(stderr, "server: %s\n", s.to_string().c_str());
  });

  zmq::context_t ctx(1);
  std::vector<zmq::socket_t> socks;
  for (int w = 0; w < n_workers; ++w) {
    socks.emplace_back(ctx, zmq::socket_type::dealer);
    socks.back().set(zmq::sockopt::linger, 0);
    socks.back().connect(ep);
    send(socks.back(), Message(MessageType::kHello, {{"worker_id", "bench" + std::to_string(w)},
                                                     {"gpus", 1}, {"vram_bytes", int64_t(80) << 30}}));
  }
  std::vector<Steady::time_point> ready_at(n_workers);
  // Paced run: the stage a worker holds finishes at due[w] (DONE + READY then).
  std::vector<Steady::time_point> due(n_workers, Steady::time_point::max());
  struct Held {
    int64_t job_id = 0, stage_id = 0, attempt = 0;
  };
  std::vector<Held> holding(n_workers);
  // Which READYs measure the scheduler: one sent while no stage was runnable
  // (the rest of every job waits on a stage still running: the drain at the
  // end) waits for work to exist, up to a whole stage, not for the
  // scheduler. The bench knows the jobs' shape (4 stages in a chain), so it
  // counts the runnable stages itself. The echo reference always answers.
  int64_t runnable = jobs;  // every job's first stage
  std::unordered_map<int64_t, int> stages_done;  // job id -> stages finished
  std::vector<char> ready_without_work(n_workers, 0);
  const std::chrono::duration<double, std::milli> stage_time(stage_ms);
  std::mt19937_64 rng(1);
  std::exponential_distribution<double> exp_dist(1.0);
  auto send_ready = [&](int w) {
    ready_without_work[w] = !echo_only && runnable <= 0;
    ready_at[w] = Steady::now();
    send(socks[w], Message(MessageType::kReady));
  };
  auto finish_stage = [&](int w, const Held& held) {
    send(socks[w], Message(MessageType::kDone, {{"stage_id", held.stage_id}, {"attempt", held.attempt}}));
    if (++stages_done[held.job_id] < 4) ++runnable;
    send_ready(w);
  };
  std::vector<double> latency_ms;  // every READY->ASSIGN
  std::vector<double> steady;      // those that measure the scheduler
  latency_ms.reserve(total_stages);
  steady.reserve(total_stages);
  int64_t done = 0;
  Steady::time_point start{}, end{};
  bool started = false;
  // The simulated workers share one thread and must cost the 2 cores as
  // little as possible: zmq_poll over 64 sockets checks all 64 on every
  // wake-up, so wait with epoll on their ZMQ_FDs (edge-triggered "something
  // changed" signals) and look only at the sockets that signalled; a socket
  // is drained until ZMQ_EVENTS shows no more input.
  int epfd = epoll_create1(0);
  for (int w = 0; w < n_workers; ++w) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = uint32_t(w);
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, socks[w].get(zmq::sockopt::fd), &ev) != 0) {
      std::perror("epoll_ctl");
      return 1;
    }
  }
  std::vector<epoll_event> events(n_workers);
  std::vector<int> signalled;
  Progress progress("stages", total_stages, "stages");
  const double workers_cpu_t0 = thread_cpu_s(CLOCK_THREAD_CPUTIME_ID);
  bool check_all = true;  // first turn, and after a quiet 100 ms: a safety net
  int64_t missed_edges = 0;  // messages only the safety net found
  while (done < total_stages) {
    signalled.clear();
    int timeout_ms = 100;
    if (stage_ms > 0) {
      const auto now = Steady::now();
      for (int w = 0; w < n_workers; ++w) {
        if (due[w] <= now) {
          due[w] = Steady::time_point::max();
          finish_stage(w, holding[w]);
          // A send can consume the ZMQ_FD edge of input already queued:
          // look at this socket's ZMQ_EVENTS now, not at its next edge.
          signalled.push_back(w);
        } else if (due[w] != Steady::time_point::max()) {
          // Rounded up: a zero timeout for a stage due in under 1 ms would
          // spin this thread and take a core from the scheduler. A stage that
          // ends up to 1 ms late does not change READY->ASSIGN.
          const auto left = std::chrono::ceil<std::chrono::milliseconds>(due[w] - now).count();
          timeout_ms = std::min<int>(timeout_ms, int(std::max<int64_t>(left, 0)));
        }
      }
    }
    const bool checking_all = check_all;
    if (check_all) {
      for (int w = 0; w < n_workers; ++w) signalled.push_back(w);
      check_all = false;
    } else if (signalled.empty()) {
      int n = epoll_wait(epfd, events.data(), n_workers, timeout_ms);
      for (int i = 0; i < n; ++i) signalled.push_back(int(events[i].data.u32));
      check_all = n == 0 && timeout_ms >= 100;
    }
    for (int w : signalled) {
      zmq::message_t msg;
      while ((socks[w].get(zmq::sockopt::events) & ZMQ_POLLIN) && socks[w].recv(msg, zmq::recv_flags::dontwait)) {
        auto m = protocol::decode(msg.data(), msg.size());
        if (!m.ok()) continue;
        if (checking_all && started) ++missed_edges;
        if (m->type == MessageType::kWelcome) {
          if (!started) {
            started = true;
            start = Steady::now();
          }
          send_ready(w);
        } else if (m->type == MessageType::kAssign) {
          auto now = Steady::now();
          const double ms = std::chrono::duration<double, std::milli>(now - ready_at[w]).count();
          latency_ms.push_back(ms);
          // The first READYs arrive in one burst and queue behind each other.
          if (done >= n_workers && !ready_without_work[w]) steady.push_back(ms);
          --runnable;
          holding[w] = {m->i64("job_id"), m->i64("stage_id"), m->i64("attempt")};
          if (stage_ms > 0) {
            // Exponential durations (mean stage_ms): Poisson-like arrivals.
            // Fixed durations would keep the workers that started together in
            // lock-step, every READY of a group landing in the same round.
            due[w] = now + std::chrono::duration_cast<Steady::duration>(stage_time * exp_dist(rng));
          } else {
            finish_stage(w, holding[w]);
          }
          ++done;
          if (done % 1000 == 0) progress.update(done);
        } else if (m->type == MessageType::kError) {
          std::fprintf(stderr, "worker %d: ERROR %s\n", w, m->str("error").c_str());
        }
      }
    }
  }
  end = Steady::now();
  close(epfd);
  const double workers_cpu_s = thread_cpu_s(CLOCK_THREAD_CPUTIME_ID) - workers_cpu_t0;
  progress.finish();
  if (echo) echo->request_stop();
  else broker->request_stop();
  sched.join();
  if (steady.empty()) steady = latency_ms;
  std::sort(steady.begin(), steady.end());
  auto pct = [&](double p) { return steady[std::min(steady.size() - 1, size_t(p * steady.size()))]; };
  out->wall_s = std::chrono::duration<double>(end - start).count();
  out->samples = steady.size();
  out->all_samples = latency_ms.size();
  out->p50_ms = pct(0.50);
  out->p99_ms = pct(0.99);
  out->max_ms = steady.back();
  out->all_max_ms = *std::max_element(latency_ms.begin(), latency_ms.end());
  out->server_cpu_s = sched_cpu_s;
  out->workers_cpu_s = workers_cpu_s;
  out->missed_edges = missed_edges;
  if (broker) out->stats = broker->stats();
  out->assignments = echo ? echo->assignments() : out->stats.assignments;
  remove_all(dir).ok();
  return out->stats.errors == 0 ? 0 : 1;
}

void print_run(const char* title, const RunResult& r, const RunResult* echo) {
  std::printf("%s\n", title);
  std::printf("  assignments        %llu in %.2f s = %.0f assignments/s\n", (unsigned long long)r.assignments, r.wall_s,
              r.assignments / r.wall_s);
  std::printf("  READY->ASSIGN      p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", r.p50_ms, r.p99_ms, r.max_ms);
  std::printf("                     (%zu of %zu: not the first %s, nor those sent while no stage was runnable;"
              " max of all %.1f ms)\n", r.samples, r.all_samples, "burst", r.all_max_ms);
  if (echo) {
    std::printf("  echo reference     p50 %.3f ms  p99 %.3f ms  max %.3f ms (bare ROUTER, same load)\n", echo->p50_ms,
                echo->p99_ms, echo->max_ms);
    std::printf("  scheduler / echo   p50 %.2fx  p99 %.2fx\n", r.p50_ms / echo->p50_ms, r.p99_ms / echo->p99_ms);
  }
  std::printf("  scheduler CPU      %.2f s (%.0f%% of one core; %.1f us per assignment)\n", r.server_cpu_s,
              100 * r.server_cpu_s / r.wall_s, 1e6 * r.server_cpu_s / r.assignments);
  std::printf("  simulated workers  %.2f s CPU (one thread; %lld messages seen late, by the 100 ms safety net)\n",
              r.workers_cpu_s, (long long)r.missed_edges);
  const BrokerStats& st = r.stats;
  std::printf("  store commits      %llu rounds (%.1f assignments each), COMMIT mean %.3f ms max %.3f ms\n",
              (unsigned long long)st.rounds, double(st.assignments) / std::max<uint64_t>(st.rounds, 1),
              st.commit_ms_total / std::max<uint64_t>(st.rounds, 1), st.commit_ms_max);
  std::printf("  errors %llu, malformed %llu, stale %llu\n", (unsigned long long)st.errors,
              (unsigned long long)st.malformed, (unsigned long long)st.stale);
}

}  // namespace

int main(int argc, char** argv) {
  int jobs = 10000, n_workers = 64;
  double stage_ms = 30;
  std::string transport = "tcp";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--jobs")) jobs = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--workers")) n_workers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--stage-ms")) stage_ms = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--transport")) transport = argv[i + 1];
  }
  if (transport != "tcp" && transport != "ipc") {
    std::fprintf(stderr, "--transport must be tcp or ipc, not '%s'\n", transport.c_str());
    return 2;
  }
  set_log_level(LogLevel::kWarn);
  std::printf("scheduler bench: %d jobs (%d stages), %d simulated workers, %s\n", jobs, jobs * 4, n_workers,
              transport == "ipc" ? "ipc" : "loopback tcp");
  RunResult saturated, paced, echo;
  int rc = run_bench(jobs, n_workers, transport, 0, false, &saturated);
  print_run("saturated: every stage finishes at once (READY->ASSIGN is queueing: workers / throughput)", saturated,
            nullptr);
  if (stage_ms > 0) {
    rc |= run_bench(jobs, n_workers, transport, stage_ms, false, &paced);
    rc |= run_bench(jobs, n_workers, transport, stage_ms, true, &echo);
    char title[200];
    std::snprintf(title, sizeof title,
                  "paced: stages take %.1f ms on average (exponential), %d workers offer %.0f assignments/s", stage_ms,
                  n_workers, 1000.0 * n_workers / stage_ms);
    print_run(title, paced, &echo);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("process CPU: %.2f s user + %.2f s sys (all runs: servers, simulated workers, zmq I/O threads)\n",
              ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6);
  return rc;
}
