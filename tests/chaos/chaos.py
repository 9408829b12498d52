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
    the lines never go back (no older attempt wrote after a newer one: no
    two attempts writing at once);
  - no finished stage ran again: each stage's "done" line appears once in
    all the worker logs together.

Not in the default ctest run (tests/CMakeLists.txt runs --trials 3 under
the label "chaos" only when LEMA_CHAOS is set). Usage:
  tests/chaos/chaos.py --lema build/cli/lema --trials 100 [--seed 1] [--keep]
Prints one line per trial and a summary; exit 1 when any trial failed.
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
import time

STEPS = 40
CHECKPOINT_EVERY = 5
HEARTBEAT_MS = 300
JOB_TIMEOUT_S = 600
KILL_MARK = "=== chaos: kill -9 ===\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    deadline = time.time() + 60
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


def wait_done(cluster, job, disturb=None):
    deadline = time.time() + JOB_TIMEOUT_S
    while time.time() < deadline:
        if disturb:
            disturb()
        j = job_state(cluster, job)
        if j and j.get("state") in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(0.2)
    return None


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
    ap.add_argument("--keep", action="store_true", help="keep the directories of failed trials")
    a = ap.parse_args()
    lema = os.path.abspath(a.lema)
    rng = random.Random(a.seed)
    base = tempfile.mkdtemp(prefix="lema_chaos_")
    print("chaos: seed %d, %d trials, in %s" % (a.seed, a.trials, base), flush=True)
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
    summary = {"kill": 0, "stop": 0}
    for trial in range(a.trials):
        root = os.path.join(base, "t%03d" % trial)
        os.makedirs(root)
        for f in ("model", "tokens.jsonl"):
            os.symlink(os.path.join(base, f), os.path.join(root, f))
        cluster = Cluster(lema, root)
        cluster.start()
        t0 = time.time()
        job = submit(cluster, root, "job")
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
                summary["kill"] += 1
            else:
                cluster.stop(victim)
                state["resume"] = (victim, now + rng.uniform(0.5, 4.0))
                events.append("stop %s" % victim)
                summary["stop"] += 1
            state["next"] = now + rng.uniform(0.5, 3.0)

        final = wait_done(cluster, job, disturb)
        if state["resume"]:
            cluster.cont(state["resume"][0])
        time.sleep(1.0)  # what a woken worker would still write
        cluster.shutdown()
        logs = [open(os.path.join(root, w + ".log"), errors="replace").read() for w in ("w0", "w1")]
        problems = check_trial(root, "job", job, final, reference, logs)
        took = time.time() - t0
        print("trial %d: %s in %.1f s [%s]%s" % (trial, "FAIL" if problems else "ok", took, ", ".join(events),
                                               "".join("\n  - " + p for p in problems)), flush=True)
        if problems:
            failed += 1
            if not a.keep:
                shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("chaos: %d/%d trials passed (%d kills, %d stops), seed %d" % (a.trials - failed, a.trials, summary["kill"],
                                                                         summary["stop"], a.seed))
    if failed == 0 or not a.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
