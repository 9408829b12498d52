#!/usr/bin/env python3
"""Parity of lema's merge and PEFT adapter I/O with transformers + PEFT.

Run on the GPU machine (transformers, peft, safetensors installed; nothing is
downloaded: the base model is a small random Llama made here):

    python3 tests/gpu/peft_merge_parity.py --lema build-gpu/cli/lema

Checks (fp32 max |logit diff| <= 1e-4; bf16 only reported):
  1. an adapter made by PEFT is imported by lema (`lema adapter import`) and
     lema's logits with it equal PEFT's;
  2. lema's exported adapter loads with PeftModel.from_pretrained and gives
     PEFT's logits;
  3. `lema merge --dtype fp32` output loads with from_pretrained and gives
     the base+adapter logits; lema reads it back with the same logits;
  4. `lema merge --dtype bf16`, sharded: loads with from_pretrained (bf16),
     difference to the fp32 reference reported next to PEFT's own bf16
     merge_and_unload.
Prints every figure; exits non-zero when a check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM

TOL_FP32 = 1e-4
failures = []


BASE = dict(hidden_size=128, intermediate_size=344, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=256, rms_norm_eps=1e-5,
            initializer_range=0.05, bos_token_id=1, eos_token_id=2)
SLIDING3 = ["sliding_attention", "full_attention", "sliding_attention"]
# name -> (model_type, config kwargs): one small random model per family,
# sliding windows (12) shorter than the 40-token inputs.
FAMILIES = {
    "llama": ("llama", dict(BASE, rope_theta=10000.0, tie_word_embeddings=False)),
    "mistral": ("mistral", dict(BASE, sliding_window=12, tie_word_embeddings=False)),
    "qwen2": ("qwen2", dict(BASE, use_sliding_window=True, sliding_window=12, max_window_layers=1,
                            tie_word_embeddings=False)),
    "qwen3": ("qwen3", dict(BASE, head_dim=48, use_sliding_window=True, sliding_window=12, max_window_layers=1,
                            tie_word_embeddings=True)),
    "gemma2": ("gemma2", dict(BASE, head_dim=32, query_pre_attn_scalar=24, sliding_window=12,
                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0, layer_types=SLIDING3)),
    "gemma3": ("gemma3_text", dict(BASE, head_dim=32, query_pre_attn_scalar=24, sliding_window=12,
                                   rope_local_base_freq=10000.0, layer_types=SLIDING3,
                                   rope_scaling={"rope_type": "linear", "factor": 8.0})),
}


def phi3_kwargs():
    """Phi-3: fused qkv_proj / gate_up_proj, longrope with original_max 32 (the
    40-token inputs take the long factors), Phi-4-mini's partial rotary 0.75."""
    import inspect
    from transformers import Phi3Config
    n = int(BASE["hidden_size"] // BASE["num_attention_heads"] * 0.75) // 2
    rope = {"rope_type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(n)],
            "long_factor": [1.5 + 0.9 * i for i in range(n)]}
    kw = dict(BASE, sliding_window=12, tie_word_embeddings=False, pad_token_id=0,
              original_max_position_embeddings=32, partial_rotary_factor=0.75)
    if "rope_parameters" in inspect.signature(Phi3Config.__init__).parameters:  # transformers 5
        kw["rope_parameters"] = dict(rope, rope_theta=10000.0, original_max_position_embeddings=32,
                                     partial_rotary_factor=0.75)
    else:
        kw["rope_scaling"] = dict(rope, type="longrope")
    return kw


FAMILIES["phi3"] = ("phi3", phi3_kwargs())
# PEFT's module names where the family fuses projections.
TARGETS = {"phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
        sys.exit(f"FAILED: {' '.join(cmd[:3])} exited with {r.returncode}")
    return r.stdout


def check(name, diff, tol=TOL_FP32):
    ok = diff <= tol
    print(f"{'PASS' if ok else 'FAIL'}  {name}: max |logit diff| = {diff:.3g} (tol {tol:g})", flush=True)
    if not ok:
        failures.append(name)


def lema_logits(lema, model, adapter, ids, out, device):
    batch_path = out + ".batch.json"
    with open(batch_path, "w") as f:
        json.dump({"input_ids": ids.tolist(), "labels": ids.tolist()}, f)
    cmd = [lema, "debug", "step", "--model", model, "--batch", batch_path, "--out", out,
           "--dtype", "float32", "--device", device]
    if adapter:
        cmd += ["--adapter", adapter]
    run(cmd)
    return load_file(out)["logits"].float()


@torch.no_grad()
def hf_logits(model, ids):
    return model(ids.to(model.device)).logits.float().cpu()


def check_family(name, model_type, kwargs, lema, device, work, failures):
    """Adapter import/export and merge for one family; appends to failures."""
    dev = torch.device(device)
    p = lambda f: os.path.join(work, name + "-" + f)  # noqa: E731
    load = lambda path, torch_dtype: AutoModelForCausalLM.from_pretrained(  # noqa: E731
        path, torch_dtype=torch_dtype, attn_implementation="eager")
    print(f"== {name} ({model_type})")
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, **kwargs)
    base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float()
    with torch.no_grad():  # non-trivial norms and biases
        g0 = torch.Generator().manual_seed(3)
        for n, t in base.named_parameters():
            if t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=g0) * 0.3 + (0.0 if n.endswith("bias") else 1.0))
    base.save_pretrained(p("base"), safe_serialization=True)

    # An adapter made by PEFT with non-zero B (init_lora_weights=False).
    lcfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=TARGETS.get(model_type, LLAMA_TARGETS),
                      init_lora_weights=False)
    torch.manual_seed(1)
    peft_model = get_peft_model(load(p("base"), torch_dtype=torch.float32), lcfg)
    peft_model.save_pretrained(p("peft_adapter"), safe_serialization=True)
    peft_model = peft_model.to(dev).eval()

    ids = torch.randint(0, cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(2))
    ref = hf_logits(peft_model, ids)
    base_only = hf_logits(load(p("base"), torch_dtype=torch.float32).to(dev).eval(), ids)
    print(f"adapter effect: max |base+adapter - base| = {(ref - base_only).abs().max().item():.3g}")

    # 1. PEFT adapter -> lema.
    run([lema, "adapter", "import", p("peft_adapter"), "--base", p("base"), "--out", p("lema_adapter")])
    got = lema_logits(lema, p("base"), p("lema_adapter"), ids, p("lema_logits.safetensors"), device)
    check(f"{name}: PEFT adapter imported by lema, lema logits vs PEFT", (got - ref).abs().max().item())

    # 2. lema's adapter -> PEFT.
    peft_again = PeftModel.from_pretrained(load(p("base"), torch_dtype=torch.float32),
                                           p("lema_adapter")).to(dev).eval()
    check(f"{name}: lema adapter loaded by PeftModel.from_pretrained vs PEFT", (hf_logits(peft_again, ids) - ref).abs().max().item())

    # 3. fp32 merge -> transformers and back into lema.
    run([lema, "merge", "--base", p("base"), "--adapter", p("lema_adapter"), "--out", p("merged32"), "--dtype", "fp32"])
    merged = load(p("merged32"), torch_dtype=torch.float32).to(dev).eval()
    # The merged model keeps the family: its class, and for Phi-3 the longrope lists.
    if merged.config.model_type != cfg.model_type or type(merged).__name__ != type(base).__name__:
        failures.append(f"{name}: merged model is {merged.config.model_type} / {type(merged).__name__}")
    if model_type == "phi3":
        with open(os.path.join(p("merged32"), "config.json")) as f:
            mc = json.load(f)
        rs = mc.get("rope_scaling") or mc.get("rope_parameters") or {}
        if rs.get("long_factor") is None or mc.get("partial_rotary_factor", rs.get("partial_rotary_factor")) != 0.75:
            failures.append(f"{name}: merged config.json lost the longrope lists or partial_rotary_factor")
    check(f"{name}: lema merge fp32 loaded by from_pretrained vs PEFT", (hf_logits(merged, ids) - ref).abs().max().item())
    back = lema_logits(lema, p("merged32"), None, ids, p("merged_logits.safetensors"), device)
    check(f"{name}: lema merge fp32 read by lema vs PEFT", (back - ref).abs().max().item())

    # 4. bf16 merge, sharded (figures only).
    run([lema, "merge", "--base", p("base"), "--adapter", p("lema_adapter"), "--out", p("merged16"),
         "--dtype", "bf16", "--shard-size", "400KB"])
    n_shards = len([f for f in os.listdir(p("merged16")) if f.endswith(".safetensors")])
    m16 = load(p("merged16"), torch_dtype=torch.bfloat16).to(dev).eval()
    d_lema = (hf_logits(m16, ids) - ref).abs().max().item()
    peft16 = PeftModel.from_pretrained(load(p("base"), torch_dtype=torch.float32),
                                       p("peft_adapter")).merge_and_unload().to(torch.bfloat16).to(dev).eval()
    d_peft = (hf_logits(peft16, ids) - ref).abs().max().item()
    print(f"INFO  bf16 merge ({n_shards} shards): lema max |diff| vs fp32 reference = {d_lema:.3g}; "
          f"PEFT merge_and_unload bf16 = {d_peft:.3g}")
    if n_shards < 2:
        failures.append(f"{name}: bf16 merge with --shard-size 400KB wrote one shard")



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", required=True, help="path to the lema binary")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep", help="work directory to keep (default: a temp dir)")
    ap.add_argument("--models", help="comma-separated subset of " + ",".join(FAMILIES))
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    work = args.keep or tempfile.mkdtemp(prefix="lema_peft_parity_")
    os.makedirs(work, exist_ok=True)
    p = lambda name: os.path.join(work, name)  # noqa: E731
    print(f"work dir {work}, device {dev}, torch {torch.__version__}")

    for name, (model_type, kwargs) in FAMILIES.items():
        if args.models and name not in args.models.split(","):
            continue
        check_family(name, model_type, kwargs, args.lema, args.device, work, failures)
    print("RESULT: " + ("all fp32 checks passed" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
