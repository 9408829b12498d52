// Scheduler throughput and latency on loopback TCP: N queued jobs (4 stages
// each), W simulated workers. Two runs, each on a fresh database:
//  1. saturated: every stage finishes at once, so the scheduler is the
//     bottleneck: assignments/s. In this closed loop the READY->ASSIGN wait
//     is queueing, W / throughput on average (Little's law), not response time.
//  2. paced: each stage takes an exponentially distributed time with mean
//     --stage-ms (default 32: 64 workers offer 2,000 assignments/s):
//     READY->ASSIGN p50/p99 is the scheduler's response time at that load.
// Each prints the scheduler thread's CPU time.
//
//   bench_scheduler_bench [--jobs 10000] [--workers 64] [--stage-ms 32] [--transport tcp|ipc]
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/file_util.h"
#include "common/job_spec.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/protocol.h"
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

// One run: `stage_ms` 0 finishes every stage at once (saturated).
int run_bench(int jobs, int n_workers, const std::string& transport, double stage_ms) {
  char tmpl[] = "/tmp/lema_bench_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  const std::string db = dir + "/bench.db";

  // Queue the jobs directly in the store (submission speed is not measured here).
  std::string spec_text = "[job]\nname = \"bench\"\n[model]\npath = \"/models/tiny\"\n";
  JobSpec spec = JobSpec::parse(spec_text).value();
  {
    auto store = JobStore::open(db).value();
    Progress progress("queue jobs", jobs, "jobs");
    for (int i = 0; i < jobs; ++i) {
      auto id = store->submit(spec_text, spec, 0);
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
  auto created = Broker::create(o);
  if (!created.ok()) {
    std::fprintf(stderr, "scheduler: %s\n", created.status().to_string().c_str());
    return 1;
  }
  auto broker = std::move(created).value();
  std::string ep = broker->workers_endpoint();
  double sched_cpu_s = 0;
  std::thread sched([&] {
    clockid_t cid;
    pthread_getcpuclockid(pthread_self(), &cid);
    double t0 = thread_cpu_s(cid);
    Status s = broker->run();
    sched_cpu_s = thread_cpu_s(cid) - t0;
    if (!s.ok()) std::fprintf(stderr, "broker: %s\n", s.to_string().c_str());
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
  std::vector<std::pair<int64_t, int64_t>> holding(n_workers);  // stage_id, attempt
  const std::chrono::duration<double, std::milli> stage_time(stage_ms);
  std::mt19937_64 rng(1);
  std::exponential_distribution<double> exp_dist(1.0);
  auto finish_stage = [&](int w, int64_t stage_id, int64_t attempt) {
    send(socks[w], Message(MessageType::kDone, {{"stage_id", stage_id}, {"attempt", attempt}}));
    ready_at[w] = Steady::now();
    send(socks[w], Message(MessageType::kReady));
  };
  std::vector<double> latency_ms;
  latency_ms.reserve(total_stages);
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
  std::vector<zmq::pollitem_t> items(n_workers);
  std::vector<int> signalled;
  Progress progress("stages", total_stages, "stages");
  const double workers_cpu_t0 = thread_cpu_s(CLOCK_THREAD_CPUTIME_ID);
  bool check_all = true;  // first turn, and after a quiet 100 ms: a safety net
  while (done < total_stages) {
    signalled.clear();
    int timeout_ms = 100;
    if (stage_ms > 0) {
      const auto now = Steady::now();
      for (int w = 0; w < n_workers; ++w) {
        if (due[w] <= now) {
          due[w] = Steady::time_point::max();
          finish_stage(w, holding[w].first, holding[w].second);
        } else if (due[w] != Steady::time_point::max()) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due[w] - now).count();
          timeout_ms = std::min<int>(timeout_ms, int(std::max<int64_t>(left, 0)));
        }
      }
    }
    if (check_all) {
      for (int w = 0; w < n_workers; ++w) signalled.push_back(w);
    } else if (stage_ms > 0) {
      // Paced: zmq_poll, level-triggered. A send can consume a socket's
      // ZMQ_FD edge, and an ASSIGN noticed late would be counted against
      // the scheduler; at this load the poll's cost does not matter.
      for (int w = 0; w < n_workers; ++w) items[w] = {socks[w].handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));
      for (int w = 0; w < n_workers; ++w) {
        if (items[w].revents & ZMQ_POLLIN) signalled.push_back(w);
      }
    } else {
      int n = epoll_wait(epfd, events.data(), n_workers, timeout_ms);
      for (int i = 0; i < n; ++i) signalled.push_back(int(events[i].data.u32));
    }
    check_all = signalled.empty() && stage_ms <= 0;
    for (int w : signalled) {
      zmq::message_t msg;
      while ((socks[w].get(zmq::sockopt::events) & ZMQ_POLLIN) && socks[w].recv(msg, zmq::recv_flags::dontwait)) {
        auto m = protocol::decode(msg.data(), msg.size());
        if (!m.ok()) continue;
        if (m->type == MessageType::kWelcome) {
          if (!started) {
            started = true;
            start = Steady::now();
          }
          ready_at[w] = Steady::now();
          send(socks[w], Message(MessageType::kReady));
        } else if (m->type == MessageType::kAssign) {
          auto now = Steady::now();
          latency_ms.push_back(std::chrono::duration<double, std::milli>(now - ready_at[w]).count());
          if (stage_ms > 0) {
            holding[w] = {m->i64("stage_id"), m->i64("attempt")};
            // Exponential durations (mean stage_ms): Poisson-like arrivals.
            // Fixed durations would keep the workers that started together in
            // lock-step, every READY of a group landing in the same round.
            due[w] = now + std::chrono::duration_cast<Steady::duration>(stage_time * exp_dist(rng));
          } else {
            finish_stage(w, m->i64("stage_id"), m->i64("attempt"));
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
  broker->request_stop();
  sched.join();
  double wall_s = std::chrono::duration<double>(end - start).count();
  std::sort(latency_ms.begin(), latency_ms.end());
  auto pct = [&](double p) { return latency_ms[std::min(latency_ms.size() - 1, size_t(p * latency_ms.size()))]; };
  BrokerStats st = broker->stats();
  if (stage_ms > 0) {
    std::printf("paced: stages take %.1f ms on average (exponential), %d workers offer %.0f assignments/s\n", stage_ms, n_workers,
                1000.0 * n_workers / stage_ms);
  } else {
    std::printf("saturated: every stage finishes at once (READY->ASSIGN is queueing: %d workers / throughput)\n",
                n_workers);
  }
  std::printf("scheduler bench: %d jobs, %lld stages, %d workers, %s\n", jobs, (long long)total_stages,
              n_workers, transport == "ipc" ? "ipc" : "loopback tcp");
  std::printf("  assignments        %llu in %.2f s = %.0f assignments/s\n", (unsigned long long)st.assignments,
              wall_s, st.assignments / wall_s);
  std::printf("  READY->ASSIGN      p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", pct(0.50), pct(0.99), latency_ms.back());
  std::printf("  scheduler CPU      %.2f s (%.0f%% of one core; %.1f us per assignment)\n", sched_cpu_s,
              100 * sched_cpu_s / wall_s, 1e6 * sched_cpu_s / st.assignments);
  std::printf("  simulated workers  %.2f s CPU (one thread, epoll over the %d sockets' ZMQ_FDs)\n", workers_cpu_s, n_workers);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("  process CPU        %.2f s user + %.2f s sys (scheduler, 64 simulated workers, zmq I/O threads)\n",
              ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6);
  std::printf("  store commits      %llu rounds (%.1f assignments each), COMMIT mean %.3f ms max %.3f ms\n",
              (unsigned long long)st.rounds, double(st.assignments) / std::max<uint64_t>(st.rounds, 1),
              st.commit_ms_total / std::max<uint64_t>(st.rounds, 1), st.commit_ms_max);
  std::printf("  errors %llu, malformed %llu, stale %llu\n", (unsigned long long)st.errors,
              (unsigned long long)st.malformed, (unsigned long long)st.stale);
  remove_all(dir).ok();
  return st.errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int jobs = 10000, n_workers = 64;
  double stage_ms = 32;
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
  int rc = run_bench(jobs, n_workers, transport, 0);
  if (stage_ms > 0) rc |= run_bench(jobs, n_workers, transport, stage_ms);
  return rc;
}
