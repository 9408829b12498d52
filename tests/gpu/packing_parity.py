#!/usr/bin/env python3
"""Packed training (`lema train --packing`) against transformers + PEFT unpacked.

Run on the GPU machine, where torch, transformers, peft and safetensors are
installed (nothing is downloaded). For small random models of each family
(features on: GQA, llama3 RoPE scaling, sliding windows shorter than an
example, q/k/v bias, q/k norms, Gemma's soft-capping and local RoPE base,
Phi-3's fused projections and LongRoPE), eight examples of 9..60 tokens:

  * reference: PEFT over the examples unpacked, one per row, right-padded,
    attn_implementation="eager": logits, loss (the mean over label tokens)
    and every LoRA gradient;
  * lema: `lema debug step` over the same examples packed into rows of 128
    (the rule of common/data/training_example.h pack_examples: in order,
    into the current row when they fit; segment_ids 1, 2, ... per example,
    position_ids from 0 in each; the first label of each example -100),
    which runs the training step's forward with the block-diagonal mask and
    the per-token RoPE positions (engine/llama_model.h micro_batch_context).

Each example's logits in its packed row are compared with its unpacked
row's, and the loss and gradients with PEFT's: fp32 <= 1e-4 (relative for
loss and gradients), bf16 reported. The Phi-3 model has
original_max_position_embeddings 64: every example is shorter, the packed
rows are longer, so the short factors must be picked by the longest
example (as transformers picks them for the unpacked batch), not by the
row. Exit status 0 only when every fp32 check passes. Usage:

  python3 tests/gpu/packing_parity.py --lema build/cli/lema [--device cuda] [--keep DIR] [--models a,b]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FUSED_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]  # Phi-3's fused layer, PEFT's names

SEQ_LEN = 128
LENGTHS = [37, 21, 50, 12, 44, 30, 9, 60]  # rows of 128: [37 21 50 12] [44 30 9] [60]

BASE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
            num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512, rms_norm_eps=1e-6)
SLIDING3 = ["sliding_attention", "full_attention", "sliding_attention"]


def phi3_kwargs():
    """Phi3Config with longrope (distinct lists, original length 64) and a window of 20."""
    head_dim = BASE["hidden_size"] // BASE["num_attention_heads"]
    n = head_dim // 2
    rope = {"rope_type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(n)],
            "long_factor": [1.5 + 0.9 * i for i in range(n)]}
    kw = dict(BASE, sliding_window=20, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              original_max_position_embeddings=64)
    import inspect
    from transformers import Phi3Config
    if "rope_parameters" in inspect.signature(Phi3Config.__init__).parameters:  # transformers 5
        kw["rope_parameters"] = dict(rope, rope_theta=10000.0, original_max_position_embeddings=64)
    else:
        kw["rope_scaling"] = dict(rope, type="longrope")
        kw["rope_theta"] = 10000.0
    return kw


# name -> (model_type, config kwargs)
MODELS = {
    "llama3": ("llama", dict(BASE, rope_theta=500000.0, tie_word_embeddings=True,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    "mistral": ("mistral", dict(BASE, rope_theta=1e6, sliding_window=20, tie_word_embeddings=False)),
    "qwen2": ("qwen2", dict(BASE, rope_theta=1e6, use_sliding_window=True, sliding_window=20, max_window_layers=1,
                            tie_word_embeddings=False)),
    "qwen3": ("qwen3", dict(BASE, head_dim=48, rope_theta=1e6, tie_word_embeddings=True)),
    "gemma2": ("gemma2", dict(BASE, head_dim=32, query_pre_attn_scalar=24, sliding_window=20,
                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0, layer_types=SLIDING3)),
    "gemma3": ("gemma3_text", dict(BASE, head_dim=32, query_pre_attn_scalar=24, sliding_window=20, rope_theta=1e6,
                                   rope_local_base_freq=10000.0, layer_types=SLIDING3,
                                   rope_scaling={"rope_type": "linear", "factor": 8.0})),
    "phi3": ("phi3", phi3_kwargs()),
}


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def make_examples(vocab, seed):
    """(ids, labels) per example: a prompt of i % 3 tokens without loss, one more -100 inside."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(LENGTHS):
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        labels = list(ids)
        for k in range(i % 3):
            labels[k] = -100
        labels[n // 2] = -100
        out.append((ids, labels))
    return out


def unpacked(examples):
    """One example per row, right-padded with 0: ids, attention mask, labels."""
    width = max(len(ids) for ids, _ in examples)
    b = len(examples)
    ids = torch.zeros(b, width, dtype=torch.long)
    mask = torch.zeros(b, width, dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return ids, mask, labels


def packed(examples):
    """The packer's rule; returns the batch and where each example landed (row, start)."""
    rows, where = [], []
    for x, y in examples:
        if not rows or len(rows[-1]["input_ids"]) + len(x) > SEQ_LEN:
            rows.append({"input_ids": [], "labels": [], "segment_ids": [], "position_ids": []})
        row = rows[-1]
        where.append((len(rows) - 1, len(row["input_ids"])))
        segment = (row["segment_ids"][-1] if row["segment_ids"] else 0) + 1
        row["input_ids"] += x
        row["labels"] += [-100] + y[1:]  # nothing predicts across a boundary
        row["segment_ids"] += [segment] * len(x)
        row["position_ids"] += list(range(len(x)))
    width = max(len(r["input_ids"]) for r in rows)
    batch = {}
    for key, pad in (("input_ids", 0), ("labels", -100), ("segment_ids", 0), ("position_ids", 0)):
        batch[key] = [r[key] + [pad] * (width - len(r[key])) for r in rows]
    return batch, where


def peft_reference(model_dir, adapter_dir, ids, mask, labels, dtype, device):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, attn_implementation="eager").to(device)
    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True).to(device)
    out = peft_model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    out.loss.backward()
    grads = {}
    for name, p in peft_model.named_parameters():
        if "lora_" in name and p.grad is not None:
            grads[name.replace(".default", "")] = p.grad.detach().float().cpu()
    return out.logits.detach().float().cpu(), out.loss.item(), grads


def compare(name, lema_out, where, ref_logits, ref_loss, ref_grads, strict, failures):
    logit_diff = 0.0
    for i, (row, start) in enumerate(where):
        n = LENGTHS[i]
        d = (lema_out["logits"][row, start:start + n] - ref_logits[i, :n]).abs().max().item()
        logit_diff = max(logit_diff, d)
    loss = lema_out["loss"].item()
    loss_rel = abs(loss - ref_loss) / abs(ref_loss)
    worst_grad, worst_key = 0.0, ""
    for key, g in ref_grads.items():
        lg = lema_out.get("grad." + key)
        if lg is None:
            failures.append(f"{name}: lema has no gradient for {key}")
            continue
        rel = (lg - g).abs().max().item() / max(g.abs().max().item(), 1e-30)
        if rel > worst_grad:
            worst_grad, worst_key = rel, key
    print(f"{name}: logits max abs diff {logit_diff:.3e}; loss lema packed {loss:.6f} peft unpacked {ref_loss:.6f} "
          f"(rel {loss_rel:.2e}); LoRA grads max rel diff {worst_grad:.3e} ({worst_key}); {len(ref_grads)} tensors")
    if strict:
        if not logit_diff <= 1e-4:
            failures.append(f"{name}: logits diff {logit_diff:.3e} > 1e-4")
        if not loss_rel <= 1e-4:
            failures.append(f"{name}: loss rel diff {loss_rel:.3e} > 1e-4")
        if not worst_grad <= 1e-4:
            failures.append(f"{name}: grad rel diff {worst_grad:.3e} > 1e-4 ({worst_key})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", default="build/cli/lema")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep", help="keep the work files in this directory")
    ap.add_argument("--models", help="comma-separated subset of " + ",".join(MODELS))
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    work = args.keep or tempfile.mkdtemp(prefix="lema_packing_")
    os.makedirs(work, exist_ok=True)
    failures = []
    only = set(args.models.split(",")) if args.models else None
    for mname, (model_type, kwargs) in MODELS.items():
        if only and mname not in only:
            continue
        torch.manual_seed(1234)
        cfg = AutoConfig.for_model(model_type, initializer_range=0.05, **kwargs)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
        with torch.no_grad():  # random norms and biases (transformers initialises them to 1 / 0)
            g0 = torch.Generator().manual_seed(11)
            for n, p in model.named_parameters():
                if p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=g0) * 0.3 + (0.0 if n.endswith("bias") else 1.0))
        model_dir = os.path.join(work, mname)
        model.save_pretrained(model_dir, safe_serialization=True)

        fused = model_type == "phi3"
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                      target_modules=FUSED_TARGETS if fused else TARGETS,
                                                      task_type="CAUSAL_LM"))
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():  # B non-zero: every gradient is non-trivial
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        adapter_dir = os.path.join(work, mname + "-adapter")
        peft_model.save_pretrained(adapter_dir)

        examples = make_examples(cfg.vocab_size, 3)
        ids, mask, labels = unpacked(examples)
        batch, where = packed(examples)
        batch_path = os.path.join(work, mname + "-packed.json")
        with open(batch_path, "w") as f:
            json.dump(batch, f)

        for dtype_name, dtype, strict in (("float32", torch.float32, True), ("bfloat16", torch.bfloat16, False)):
            if dtype == torch.bfloat16 and args.device == "cpu":
                continue
            ref_logits, ref_loss, ref_grads = peft_reference(model_dir, adapter_dir, ids, mask, labels, dtype,
                                                             args.device)
            out_path = os.path.join(work, f"{mname}-{dtype_name}.safetensors")
            run([args.lema, "debug", "step", "--model", model_dir, "--adapter", adapter_dir, "--batch", batch_path,
                 "--out", out_path, "--dtype", dtype_name, "--device", args.device])
            compare(f"{mname} {dtype_name}", load_file(out_path), where, ref_logits, ref_loss, ref_grads, strict,
                    failures)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED:")
        for f in failures:
            print("  " + f)
        return 1
    print("packing_parity: all fp32 checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
