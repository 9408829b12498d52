#!/usr/bin/env python3
"""Chaos test of the scheduler and workers (issue 19), with the real `lema`.

Each trial runs one training job (tiny model, CPU) with a scheduler and two
workers on loopback, while a disturber hits a random process at random
moments: kill -9 (then restarts it) or SIGSTOP for a random time (then
SIGCONT), of a worker or of the scheduler. After the job ends the trial is
checked for:
  - the job succeeded;
  - its adapter is byte-identical to an uninterrupted run's;
  - metrics.jsonl holds exactly steps 1..N, once each, and the attempts of
    the lines never go back;
  - no two attempts wrote at once: the ATTEMPT files of the checkpoints
    (common/base/attempt_publish.h) never go back in step order, and the
    adapter's is the newest of them (an older attempt publishing after a
    newer one shows as a step-N of attempt a after a step-M < N of a
    newer attempt);
  - no finished stage ran again: each stage's "done" line appears once in
    all the worker logs together.

Not in the default ctest run (tests/CMakeLists.txt runs --trials 3 under
the label "chaos" only when LEMA_CHAOS is set). Usage:
  tests/chaos/chaos.py --lema build/cli/lema --trials 100 [--parallel K] [--seed 1] [--keep]
--parallel K runs K trials at once, each with its own directory and ports
(each trial's three processes take about one core). Prints one line per
trial and a summary (lost jobs, re-runs of finished stages, concurrent
writers, byte-identical adapters); exit 1 when any trial failed.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

STEPS = 40
CHECKPOINT_EVERY = 5
HEARTBEAT_MS = 300
JOB_TIMEOUT_S = 600
KILL_MARK = "=== chaos: kill -9 ===\n"


_ports_lock = threading.Lock()
_ports_given = set()


def free_port():
    # Parallel trials ask at once: never hand out one port twice.
    with _ports_lock:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port


class Cluster:
    """A scheduler and two workers, each a `lema` process logging to a file."""

    def __init__(self, lema, root):
        self.lema = lema
        self.root = root
        self.workers_ep = "tcp://127.0.0.1:%d" % free_port()
        self.clients_ep = "tcp://127.0.0.1:%d" % free_port()
        self.procs = {}
        self.stopped = set()

    def spawn(self, name):
        if name == "scheduler":
            args = ["scheduler", "--db", self.root + "/sched.db", "--workers-bind", self.workers_ep,
                    "--clients-bind", self.clients_ep, "--heartbeat-ms", str(HEARTBEAT_MS)]
        else:
            args = ["worker", "--scheduler", self.workers_ep, "--cpu", "--threads", "1", "--id", name]
        log = open(os.path.join(self.root, name + ".log"), "ab")
        env = dict(os.environ, LEMA_ALLOW_PATH="/tmp:" + self.root)
        self.procs[name] = subprocess.Popen([self.lema] + args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def start(self):
        for name in ("scheduler", "w0", "w1"):
            self.spawn(name)

    def kill9_and_restart(self, name):
        p = self.procs[name]
        p.kill()
        p.wait()
        with open(os.path.join(self.root, name + ".log"), "a") as log:
            log.write(KILL_MARK)
        self.stopped.discard(name)
        time.sleep(0.2)
        self.spawn(name)

    def stop(self, name):
        self.procs[name].send_signal(signal.SIGSTOP)
        self.stopped.add(name)

    def cont(self, name):
        self.procs[name].send_signal(signal.SIGCONT)
        self.stopped.discard(name)

    def shutdown(self):
        for p in self.procs.values():
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass

    def client(self, *args):
        r = subprocess.run([self.lema] + list(args) + ["--scheduler", self.clients_ep, "--timeout-ms", "2000"],
                           capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


def make_inputs(lema, root):
    subprocess.run([lema, "model", "init", "--preset", "tiny", "--out", root + "/model"], check=True,
                   capture_output=True)
    rng = random.Random(7)
    with open(root + "/tokens.jsonl", "w") as f:
        for _ in range(48):
            n = 16 + rng.randrange(32)
            ids = [3 + rng.randrange(500) for _ in range(n)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100 if t < n // 3 else i for t, i in enumerate(ids)]}) + "\n")


def spec(root, name):
    return ("[job]\nname = \"%s\"\nwork_dir = \"%s/%s\"\nmax_attempts = 100\n[model]\npath = \"%s/model\"\n"
            "[data]\njsonl = \"%s/tokens.jsonl\"\n[train]\nsteps = %d\nbatch = 4\nmicro_batch = 2\nseq_len = 64\n"
            "lora_r = 4\nlora_alpha = 8\nlora_dropout = 0.0\nlr = 1e-3\nschedule = \"constant\"\ndevice = \"cpu\"\n"
            "checkpoint_every = %d\n[eval]\nenabled = false\n[merge]\nenabled = false\n"
            % (name, root, name, root, root, STEPS, CHECKPOINT_EVERY))


def submit(cluster, root, name):
    path = os.path.join(root, name + ".toml")
    with open(path, "w") as f:
        f.write(spec(root, name))
    # A loaded machine may take a minute to start the scheduler.
    deadline = time.time() + 300
    while time.time() < deadline:
        # One request id for every try: a retry after no answer is the same job.
        code, out = cluster.client("submit", path, "--json", "--request-id", name)
        if code == 0:
            return json.loads(out[out.index("{"):])["job_id"]
        time.sleep(0.3)
    raise RuntimeError("submit failed: " + out)


def job_state(cluster, job):
    code, out = cluster.client("show", str(job), "--json")
    if code != 0:
        return None
    try:
        return json.loads(out[out.index("{"):])
    except ValueError:
        return None


def wait_done(cluster, job):
    deadline = time.time() + JOB_TIMEOUT_S
    while time.time() < deadline:
        j = job_state(cluster, job)
        if j and j.get("state") in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(0.2)
    return None


def read_attempt(d):
    try:
        return int(open(os.path.join(d, "ATTEMPT")).read())
    except (OSError, ValueError):
        return 0


def check_trial(root, name, job, final, reference_adapter, logs):
    problems = []
    if not final or final.get("state") != "succeeded":
        problems.append("job not succeeded: %s" % (final or {}).get("state"))
        return problems
    adapter = os.path.join(root, name, "train/adapter/adapter_model.safetensors")
    if not os.path.exists(adapter) or open(adapter, "rb").read() != reference_adapter:
        problems.append("adapter differs from the uninterrupted run")
    expect, last_attempt = 1, 0
    for line in open(os.path.join(root, name, "train/metrics.jsonl")):
        m = json.loads(line)
        if m.get("step") != expect:
            problems.append("metrics: step %s where %d was expected" % (m.get("step"), expect))
            break
        if m.get("attempt", 0) < last_attempt:
            problems.append("metrics: attempt %s wrote step %d after attempt %d" % (m.get("attempt"), expect,
                                                                                  last_attempt))
            break
        last_attempt = m.get("attempt", 0)
        expect += 1
    if expect != STEPS + 1 and not any(p.startswith("metrics") for p in problems):
        problems.append("metrics: %d steps, not %d" % (expect - 1, STEPS))
    # Concurrent writers: published directories' ATTEMPT files in step order.
    ckdir = os.path.join(root, name, "train/checkpoints")
    names = os.listdir(ckdir) if os.path.isdir(ckdir) else []
    steps = sorted(int(d[5:]) for d in names if d.startswith("step-") and d[5:].isdigit())
    newest = 0
    for step in steps:
        a = read_attempt(os.path.join(ckdir, "step-%d" % step))
        if a < newest:
            problems.append("concurrent writers: step-%d of attempt %d after a checkpoint of attempt %d"
                            % (step, a, newest))
            break
        newest = a
    adapter_attempt = read_attempt(os.path.join(root, name, "train/adapter"))
    if adapter_attempt < newest:
        problems.append("concurrent writers: adapter of attempt %d, a checkpoint of attempt %d"
                        % (adapter_attempt, newest))
    # A worker killed after finishing a stage loses its report: that stage
    # runs again by design. A finished stage of a worker that lived on (it
    # keeps its report across reconnects) must not run again.
    for stage in ("dataset", "train"):
        line = "stage %s of job %d done" % (stage, job)
        total = sum(log.count(line) for log in logs)
        lived = sum(log.split(KILL_MARK)[-1].count(line) for log in logs)
        if total < 1 or lived > 1:
            problems.append("stage %s finished %d times (%d by workers that lived on)" % (stage, total, lived))
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", default="build/cli/lema")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--parallel", type=int, default=1, help="trials run at once")
    ap.add_argument("--keep", action="store_true", help="keep the directories of failed trials")
    a = ap.parse_args()
    lema = os.path.abspath(a.lema)
    base = tempfile.mkdtemp(prefix="lema_chaos_")
    print("chaos: seed %d, %d trials, %d at once, in %s" % (a.seed, a.trials, a.parallel, base), flush=True)
    make_inputs(lema, base)

    # The uninterrupted reference.
    ref_root = os.path.join(base, "ref")
    os.makedirs(ref_root)
    for f in ("model", "tokens.jsonl"):
        os.symlink(os.path.join(base, f), os.path.join(ref_root, f))
    cluster = Cluster(lema, ref_root)
    cluster.start()
    t0 = time.time()
    job = submit(cluster, ref_root, "job")
    final = wait_done(cluster, job)
    cluster.shutdown()
    if not final or final.get("state") != "succeeded":
        print("chaos: the reference run failed: %s" % final)
        return 1
    reference = open(os.path.join(ref_root, "job/train/adapter/adapter_model.safetensors"), "rb").read()
    print("chaos: reference run %.1f s" % (time.time() - t0), flush=True)

    failed = 0
    counts = {"kill": 0, "stop": 0, "lost": 0, "reruns": 0, "concurrent": 0, "identical": 0}
    counts_lock = threading.Lock()

    def one(trial):
        r = run_trial(lema, base, reference, trial, a.seed * 100003 + trial, a.keep)
        with counts_lock:
            for k in ("kill", "stop"):
                counts[k] += r[k]
            counts["lost"] += any(p.startswith("job not succeeded") for p in r["problems"])
            counts["reruns"] += any(" finished " in p for p in r["problems"])
            counts["concurrent"] += any(p.startswith("concurrent writers") for p in r["problems"])
            counts["identical"] += r["identical"]
        return r

    t_all = time.time()
    with ThreadPoolExecutor(max_workers=max(1, a.parallel)) as pool:
        for r in pool.map(one, range(a.trials)):
            failed += 1 if r["problems"] else 0
    print("chaos: %d/%d trials passed (%d kills, %d stops), seed %d, parallel %d, %.0f s"
          % (a.trials - failed, a.trials, counts["kill"], counts["stop"], a.seed, a.parallel, time.time() - t_all))
    print("chaos summary: lost %d, re-runs of finished stages %d, concurrent writers %d, byte-identical %d/%d"
          % (counts["lost"], counts["reruns"], counts["concurrent"], counts["identical"], a.trials), flush=True)
    if failed == 0 or not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


def run_trial(lema, base, reference, trial, seed, keep):
    """One disturbed run in its own directory, with its own ports and RNG."""
    rng = random.Random(seed)
    root = os.path.join(base, "t%03d" % trial)
    os.makedirs(root)
    for f in ("model", "tokens.jsonl"):
        os.symlink(os.path.join(base, f), os.path.join(root, f))
    cluster = Cluster(lema, root)
    cluster.start()
    t0 = time.time()
    result = {"kill": 0, "stop": 0, "problems": [], "identical": False}
    try:
        job = submit(cluster, root, "job")
    except RuntimeError as e:
        cluster.shutdown()
        result["problems"] = ["job not succeeded: " + str(e)]
        print("trial %d: FAIL %s" % (trial, e), flush=True)
        return result
    events = []
    state = {"next": time.time() + rng.uniform(0.2, 2.0), "resume": None}

    def disturb():
        now = time.time()
        if state["resume"] and now >= state["resume"][1]:
            cluster.cont(state["resume"][0])
            events.append("cont %s" % state["resume"][0])
            state["resume"] = None
        if now < state["next"] or state["resume"] or len(events) >= 8:
            return
        victim = rng.choice(["scheduler", "w0", "w1"])
        if rng.random() < 0.5:
            cluster.kill9_and_restart(victim)
            events.append("kill %s" % victim)
            result["kill"] += 1
        else:
            cluster.stop(victim)
            state["resume"] = (victim, now + rng.uniform(0.5, 4.0))
            events.append("stop %s" % victim)
            result["stop"] += 1
        state["next"] = now + rng.uniform(0.5, 3.0)

    # The disturber runs on its own thread: each status poll starts a `lema`
    # client process, which takes seconds on a loaded machine, and the
    # disturbances must not wait for it.
    done = threading.Event()

    def disturber():
        while not done.is_set():
            disturb()
            time.sleep(0.05)

    thread = threading.Thread(target=disturber)
    thread.start()
    final = wait_done(cluster, job)
    done.set()
    thread.join()
    if state["resume"]:
        cluster.cont(state["resume"][0])
    time.sleep(1.0)  # what a woken worker would still write
    cluster.shutdown()
    logs = [open(os.path.join(root, w + ".log"), errors="replace").read() for w in ("w0", "w1")]
    problems = check_trial(root, "job", job, final, reference, logs)
    adapter = os.path.join(root, "job/train/adapter/adapter_model.safetensors")
    result["identical"] = os.path.exists(adapter) and open(adapter, "rb").read() == reference
    result["problems"] = problems
    took = time.time() - t0
    print("trial %d: %s in %.1f s [%s]%s" % (trial, "FAIL" if problems else "ok", took, ", ".join(events),
                                           "".join("\n  - " + p for p in problems)), flush=True)
    if not problems or not keep:
        shutil.rmtree(root, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
