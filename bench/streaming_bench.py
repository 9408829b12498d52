#!/usr/bin/env python3
"""Streaming benchmark for the GPU machine (issue 5), one run, ~8 minutes.

  python3 bench/streaming_bench.py --lema build-gpu/cli/lema --out $OUT

1. measures pinned and pageable host->device bandwidth;
2. writes a model of --shape (Llama-2-7B by default, Llama-2-13B, Qwen2.5-7B, Gemma-3-4B; Llama-2-70B only
   quantized, straight from `lema model init --preset llama2-70b --quant Q`, with no PEFT run)
   with random bf16 weights straight with torch + safetensors (no download),
   converts it with `lema convert`;
3. trains a few steps with lema (--vram 4GiB 8x2048, 16GiB, no limit, disk
   mode, 1x512) through `lema bench-step` (prints one JSON line of step
   statistics; "vram4-lorahost" forces the LoRA state into host memory),
   then HF PEFT (bf16, r=16 alpha=32 on all 7 projections, sdpa,
   with and without gradient checkpointing) on the same shapes;
4. prints one table (tokens/s, peak VRAM, host RSS, ratio to PEFT, achieved
   copy rate vs pinned bandwidth) and writes $OUT/streaming_bench.json.
Every configuration runs in try/except; partial results print as they come.
"""
import argparse, gc, json, os, resource, subprocess, sys, time, traceback

T0 = time.time()
def log(msg):
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)

def h2d_bandwidth(torch, gib=1.0):
    n = int(gib * (1 << 30))
    out = {}
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    for name, pin in (("pinned", True), ("pageable", False)):
        host = torch.empty(n, dtype=torch.uint8, pin_memory=pin)
        host.fill_(1)
        dev.copy_(host, non_blocking=pin); torch.cuda.synchronize()
        t = time.time()
        for _ in range(3): dev.copy_(host, non_blocking=pin)
        torch.cuda.synchronize()
        out[name] = 3 * n / (time.time() - t) / 1e9
        del host
    return out

# Shapes of real models (their config.json values), random bf16 weights.
SHAPES = {
    "llama2-7b": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                      intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=10000.0,
                      max_position_embeddings=4096, tie_word_embeddings=False, hidden_act="silu"),
    "llama2-13b": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=5120,
                       intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                       num_key_value_heads=40, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=10000.0,
                       max_position_embeddings=4096, tie_word_embeddings=False, hidden_act="silu"),
    "qwen2.5-7b": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584,
                       intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, rms_norm_eps=1e-6, rope_theta=1000000.0,
                       max_position_embeddings=32768, tie_word_embeddings=False, hidden_act="silu",
                       use_sliding_window=False, sliding_window=131072, max_window_layers=28),
    "gemma3-4b": dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_size=2560,
                      intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=256, vocab_size=262208, rms_norm_eps=1e-6,
                      rope_theta=1000000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=256,
                      sliding_window=1024, sliding_window_pattern=6, max_position_embeddings=131072,
                      rope_scaling={"rope_type": "linear", "factor": 8.0}, tie_word_embeddings=True,
                      hidden_activation="gelu_pytorch_tanh"),
    # Written only as a quantized layer file (`lema model init --preset llama2-70b --quant ...`):
    # 138 GB in bf16 fits neither the GPU machine's disk (64 GB) nor its RAM; no PEFT run.
    "llama2-70b": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=8192,
                       intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                       num_key_value_heads=8, vocab_size=32000, rms_norm_eps=1e-5, rope_theta=10000.0,
                       max_position_embeddings=4096, tie_word_embeddings=False, hidden_act="silu"),
}
QUANT_ONLY = {"llama2-70b"}  # shapes lema's own generator writes straight into a quantized layer file

def model_bytes(shape):
    """bf16 bytes of SHAPES[shape]'s weights (the HF directory; the layer file is as large)."""
    c = SHAPES[shape]
    h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = c.get("head_dim", h // c["num_attention_heads"])
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    layer = h * (2 * q + 2 * kv) + 3 * h * i
    return 2 * (n * layer + v * h * (1 if c["tie_word_embeddings"] else 2))

def check_disk(work, need):
    """Refuse before writing when the work directory's disk cannot hold `need` more bytes (a 13B
    shape needs ~52 GB: HF directory + layer file; the GPU machine has 64 GB)."""
    os.makedirs(work, exist_ok=True)
    free = __import__("shutil").disk_usage(work).free
    if free < need:
        raise RuntimeError(f"{work}: {free / 1e9:.1f} GB free, the model needs {need / 1e9:.1f} GB more "
                           "(HF directory + layer file); use --work on a larger disk")

def write_model(torch, d, shape):
    """A model of SHAPES[shape], bf16, random (std 0.02), HF names, one file per 4 layers."""
    from safetensors.torch import save_file
    os.makedirs(d, exist_ok=True)
    cfg = dict(SHAPES[shape], torch_dtype="bfloat16", initializer_range=0.02)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    h, inter, n, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    family = cfg["model_type"]
    g = torch.Generator(device="cuda").manual_seed(0)
    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device="cuda") * 0.02).to(torch.bfloat16).cpu()
    ones = lambda k: torch.ones(k, dtype=torch.bfloat16)  # noqa: E731
    index, shard = {}, 0
    def flush(tensors):
        nonlocal shard
        name = f"model-{shard:05d}.safetensors"; shard += 1
        save_file(tensors, os.path.join(d, name), metadata={"format": "pt"})
        for k in tensors: index[k] = name
    head = {"model.embed_tokens.weight": rnd(v, h), "model.norm.weight": ones(h)}
    if not cfg["tie_word_embeddings"]: head["lm_head.weight"] = rnd(v, h)
    flush(head)
    for start in range(0, n, 4):
        t = {}
        for i in range(start, min(n, start + 4)):
            p = f"model.layers.{i}."
            t[p + "self_attn.q_proj.weight"] = rnd(q, h)
            t[p + "self_attn.k_proj.weight"] = rnd(kv, h)
            t[p + "self_attn.v_proj.weight"] = rnd(kv, h)
            t[p + "self_attn.o_proj.weight"] = rnd(h, q)
            t[p + "mlp.gate_proj.weight"] = rnd(inter, h)
            t[p + "mlp.up_proj.weight"] = rnd(inter, h)
            t[p + "mlp.down_proj.weight"] = rnd(h, inter)
            t[p + "input_layernorm.weight"] = ones(h)
            t[p + "post_attention_layernorm.weight"] = ones(h)
            if family == "qwen2":
                t[p + "self_attn.q_proj.bias"] = rnd(q)
                t[p + "self_attn.k_proj.bias"] = rnd(kv)
                t[p + "self_attn.v_proj.bias"] = rnd(kv)
            if family == "gemma3_text":
                t[p + "pre_feedforward_layernorm.weight"] = ones(h)
                t[p + "post_feedforward_layernorm.weight"] = ones(h)
                t[p + "self_attn.q_norm.weight"] = ones(hd)
                t[p + "self_attn.k_norm.weight"] = ones(hd)
        flush(t)
        log(f"  wrote layers {start}..{min(n, start + 4) - 1}")
    json.dump({"metadata": {}, "weight_map": index}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    return cfg

def peak_rss_gib():
    """VmHWM: this process's own peak (ru_maxrss carries a parent's across fork + exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

def run_lema(lema, layer_file, name, batch, seq, steps, extra, timeout):
    cmd = [lema, "bench-step", "--model", layer_file, "--batch", str(batch), "--seq-len", str(seq),
           "--steps", str(steps), "--device", "cuda", "--dtype", "bf16", "--json"] + extra
    log(f"lema {name}: {' '.join(cmd)}")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)

def run_peft(torch, model_dir, batch, seq, steps, checkpointing):
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda()
    if checkpointing:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        m.enable_input_require_grads()
    m = get_peft_model(m, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    # from_pretrained returns the model in eval mode, where transformers skips
    # gradient checkpointing and LoRA dropout: train mode, as a trainer runs it.
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, 32000, (batch, seq), device="cuda")
    times = []
    for s in range(steps):
        torch.cuda.synchronize(); t = time.time()
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); times.append(time.time() - t)
    dt = sum(times[1:]) / max(1, len(times) - 1) if len(times) > 1 else times[0]
    r = dict(tokens_per_s=batch * seq / dt, peak_vram_gib=torch.cuda.max_memory_allocated() / 2**30,
             host_rss_gib=peak_rss_gib())
    del m, opt; gc.collect(); torch.cuda.empty_cache()
    return r

def run_peft_isolated(model_dir, batch, seq, steps, checkpointing):
    """One PEFT configuration in its own process: an earlier configuration's
    CUDA cache (or a killed lema child) must not leave it short of memory, and
    its host RSS is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--peft-one", model_dir, str(batch), str(seq),
           str(steps), "1" if checkpointing else "0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])

def main():
    if len(sys.argv) == 7 and sys.argv[1] == "--peft-one":
        import torch
        d, b, s, n, g = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
        print(json.dumps(run_peft(torch, d, b, s, n, g)), flush=True)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", required=True); ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/lema_bench"); ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    ap.add_argument("--shape", default="llama2-7b", choices=sorted(SHAPES), help="the model's shape")
    ap.add_argument("--quant", default="none", choices=["none", "nf4", "nf4-dq", "int8", "fp8"],
                    help="lema's base converted with --quant (PEFT runs bf16 either way)")
    ap.add_argument("--lema-timeout", type=int, default=150, help="seconds for one lema configuration")
    ap.add_argument("--lema-time", type=int, default=290,
                    help="start no lema configuration later than this many seconds after the model is ready")
    ap.add_argument("--prepare-only", action="store_true",
                    help="write and convert the model, then stop (a 13B shape takes most of a 10-minute run)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import torch
    res = {"configs": {}}
    def save():
        json.dump(res, open(os.path.join(a.out, "streaming_bench.json"), "w"), indent=1)
    try:
        res["h2d_gb_s"] = h2d_bandwidth(torch); log(f"H2D GB/s: {res['h2d_gb_s']}")
    except Exception as e:
        log(f"bandwidth failed: {e}")
    hf = os.path.join(a.work, a.shape)
    lf = os.path.join(a.work, a.shape + ("" if a.quant == "none" else "." + a.quant) + ".lema.safetensors")
    res["shape"] = a.shape; res["quant"] = a.quant
    quant_only = a.shape in QUANT_ONLY
    if quant_only and a.quant == "none":
        sys.exit(f"--shape {a.shape} is written only as a quantized layer file: add --quant nf4|nf4-dq|int8|fp8")
    try:
        if quant_only:
            if not os.path.exists(lf):
                check_disk(a.work, int(model_bytes(a.shape) * 0.3))  # NF4: ~0.27 of bf16
                subprocess.run([a.lema, "model", "init", "--preset", a.shape, "--quant", a.quant, "--out", lf],
                               check=True, timeout=570)
            log("model ready")
            have_hf = True
    except Exception as e:
        log(f"model preparation failed: {e}"); traceback.print_exc()
        sys.exit(1)
    try:
        have_hf = quant_only or os.path.exists(os.path.join(hf, "model.safetensors.index.json"))
        if not quant_only:
            need = (0 if have_hf else model_bytes(a.shape)) + (0 if os.path.exists(lf) else model_bytes(a.shape))
            check_disk(a.work, int(need * 1.02))
            if not have_hf:
                write_model(torch, hf, a.shape)
            if not os.path.exists(lf):
                subprocess.run([a.lema, "convert", hf, "--out", lf, "--quant", a.quant], check=True, timeout=570)
            log("model ready")
    except Exception as e:
        log(f"model preparation failed: {e}"); traceback.print_exc()
        if a.prepare_only: sys.exit(1)
    if a.prepare_only:
        return
    lema_cfgs = [("vram4 8x2048", 8, 2048, ["--vram", "4GiB"]), ("vram8 8x2048", 8, 2048, ["--vram", "8GiB"]),
                 ("vram16 8x2048", 8, 2048, ["--vram", "16GiB"]),
                 ("vram4-lorahost 8x2048", 8, 2048, ["--vram", "4GiB", "--lora-host"]),
                 ("nolimit 4x2048", 4, 2048, []), ("disk 1x512", 1, 512, ["--vram", "4GiB", "--ram", "1.5GiB"]),
                 ("vram4 1x512", 1, 512, ["--vram", "4GiB"])]
    peft_cfgs = [("peft-gc 8x2048", 8, 2048, True), ("peft 4x2048", 4, 2048, False), ("peft-gc 1x512", 1, 512, True)]
    if a.only:
        keep = set(a.only.split(","))
        lema_cfgs = [c for c in lema_cfgs if c[0] in keep]
        peft_cfgs = [c for c in peft_cfgs if c[0] in keep]
    if quant_only:
        if peft_cfgs: log(f"no PEFT run: --shape {a.shape} has no bf16 model here")
        peft_cfgs = []
    t_ready = time.time()  # the time limits below count from here: writing a model takes what it takes
    for name, b, s, extra in lema_cfgs:
        if time.time() - t_ready > a.lema_time: log(f"skip {name}: time"); continue
        try:
            res["configs"][name] = run_lema(a.lema, lf, name, b, s, a.steps, extra, timeout=a.lema_timeout)
            log(f"{name}: {res['configs'][name]}")
        except Exception as e:
            res["configs"][name] = {"error": str(e)[-500:]}; log(f"{name} FAILED: {e}")
        save()
    for name, b, s, gc_on in peft_cfgs:
        if time.time() - t_ready > a.lema_time + 120: log(f"skip {name}: time"); continue
        try:
            res["configs"][name] = run_peft_isolated(hf, b, s, a.steps, gc_on); log(f"{name}: {res['configs'][name]}")
        except Exception as e:
            res["configs"][name] = {"error": str(e)[-500:]}; log(f"{name} FAILED: {e}")
        save()
    ref = {"8x2048": res["configs"].get("peft-gc 8x2048", {}).get("tokens_per_s"),
           "4x2048": res["configs"].get("peft 4x2048", {}).get("tokens_per_s"),
           "1x512": res["configs"].get("peft-gc 1x512", {}).get("tokens_per_s")}
    pinned = res.get("h2d_gb_s", {}).get("pinned")
    print("\n| config | tokens/s | peak VRAM GiB | host RSS GiB | x PEFT | H2D GB/s (% pinned) | copy hidden |")
    print("|---|---|---|---|---|---|---|")
    for name, r in res["configs"].items():
        if "error" in r: print(f"| {name} | FAILED: {r['error'][:80]} |"); continue
        shape = name.split()[-1]; tps = r.get("tokens_per_s", 0)
        ratio = f"{tps / ref[shape]:.2f}" if ref.get(shape) else "-"
        h2d = r.get("h2d_gb_s")
        h2d_s = f"{h2d:.1f} ({100 * h2d / pinned:.0f}%)" if h2d and pinned else "-"
        print(f"| {name} | {tps:,.0f} | {r.get('peak_vram_gib', 0):.2f} | {r.get('host_rss_gib', 0):.2f} | {ratio} | {h2d_s} | {r.get('copy_hidden', '-')} |")
    print(f"pinned H2D {pinned} GB/s; total {time.time() - T0:.0f} s")
    save()

if __name__ == "__main__":
    main()
