#!/usr/bin/env python3
"""`lema eval` of a Llama-2-7B-shaped base under --vram budgets, on the GPU.

  python3 bench/eval_budget_bench.py --lema build-gpu/cli/lema --out $OUT/evalbench

1. writes the 7B base (random bf16 weights, HF names; streaming_bench.py's
   writer) and converts it with `lema convert`;
2. builds a LEMA_REPLY eval set (`lema dataset build`) and trains a small
   SentencePiece tokenizer on its text (the ids only need to fit the vocab);
3. runs `lema eval` (loss over every eval example, replies to --questions
   prompts) with the whole base resident (the reference), then with
   --vram 4GiB and 8GiB: wall time, peak allocator memory (the figure the
   budget bounds), the plan, and the eval loss against the reference's.
Results: OUT/results.json and a table on stdout.
"""
import argparse, json, os, re, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from streaming_bench import write_model, log  # noqa: E402


def run(cmd, timeout=1200):
    log(" ".join(cmd))
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout)[-1500:]}")
    return p, time.time() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/lema_evalbench")
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--examples", type=int, default=64, help="eval examples for the loss")
    ap.add_argument("--budgets", default="4GiB,8GiB")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    import torch

    hf = os.path.join(a.work, "hf")
    layer_file = os.path.join(a.work, "7b.lema.safetensors")
    if not os.path.exists(layer_file):
        write_model(torch, hf)
        run([a.lema, "convert", hf, "--out", layer_file])
    data = os.path.join(a.work, "data")
    run([a.lema, "dataset", "build", "--builder", "lema-reply", "--out", data, "--examples", "1200", "--seed", "1"])
    rows = [json.loads(l) for l in open(os.path.join(data, "eval.jsonl"))][: a.examples]
    eval_path = os.path.join(a.work, "eval.jsonl")
    with open(eval_path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    corpus = os.path.join(a.work, "corpus.txt")
    with open(corpus, "w") as f:
        for line in open(os.path.join(data, "train.jsonl")):
            for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
                if len(s) > 20:
                    f.write(s.replace("\\n", " ") + "\n")
    tok = os.path.join(a.work, "tok")
    run([a.lema, "tokenizer", "train", "--corpus", corpus, "--vocab", "2000", "--out", tok])

    results = []
    for budget in [""] + [b for b in a.budgets.split(",") if b]:
        name = budget or "resident"
        out = os.path.join(a.work, "report-" + name)
        cmd = [a.lema, "eval", "--model", layer_file, "--tokenizer", tok, "--data", eval_path, "--out", out,
               "--questions", str(a.questions), "--max-new-tokens", str(a.max_new_tokens), "--batch", "8",
               "--device", "cuda", "--dtype", "bf16"] + (["--vram", budget] if budget else [])
        p, seconds = run(cmd)
        err = p.stderr
        peak = re.search(r"peak device memory \(allocator\) ([0-9.]+ \w+)", err)
        plan = re.search(r"memory plan: (.*)", err)
        report = json.load(open(os.path.join(out, "report.json")))
        base = report["models"][0]
        results.append(dict(name=name, seconds=round(seconds, 1), peak=peak.group(1) if peak else "?",
                            plan=plan.group(1) if plan else "resident (no budget)", eval_loss=base["eval_loss"],
                            eval_tokens=base["eval_tokens"], valid=base["valid"], total=base["total"],
                            outputs=[x["output"] for x in base["samples"]]))
        log(json.dumps(results[-1]))
    ref = results[0]
    print(f"\n7B base, bf16, {a.examples} eval examples (loss), {a.questions} replies x {a.max_new_tokens} tokens")
    print(f"{'run':<10} {'time':>8} {'peak (allocator)':>18} {'eval loss':>10} {'vs resident':>12}  plan")
    for r in results:
        d = abs(r["eval_loss"] - ref["eval_loss"]) / max(abs(ref["eval_loss"]), 1e-12)
        print(f"{r['name']:<10} {r['seconds']:>7.1f}s {r['peak']:>18} {r['eval_loss']:>10.4f} {d:>12.2e}  {r['plan']}")
        r["loss_rel_diff_vs_resident"] = d
        r["time_vs_resident"] = r["seconds"] / ref["seconds"]
        r["replies_equal_to_resident"] = sum(x == y for x, y in zip(r["outputs"], ref["outputs"]))
        print(f"{'':<10} replies equal to the resident run's: {r['replies_equal_to_resident']}/{len(ref['outputs'])}")
    json.dump(results, open(os.path.join(a.out, "results.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
