#!/usr/bin/env python3
"""Hugging Face parity of the lema engine (issue 4 acceptance).

Run on the GPU machine, where torch, transformers, peft and safetensors are
installed (nothing is downloaded): builds small random LlamaForCausalLM
models, saves them, converts them with `lema convert`, and compares

  * logits (with a LoRA adapter whose B is non-zero) on the real tokens of a
    right-padded batch: fp32 max abs diff <= 1e-4 (bf16: reported);
  * the loss and every LoRA gradient of one training step against PEFT with
    the same LoRA weights: fp32 <= 1e-4 relative (bf16: reported).

  * greedy generation of 48 tokens by lema's KV-cache generator (prompts
    batched, left-padded, longer than the sliding window) against
    transformers' generate with the same adapter, per prompt (fp32).

Models: "llama2" (MHA, untied, default RoPE), "gqa-llama3" (GQA, tied
embeddings, rope_scaling llama3 with positions beyond the original context),
and one small random model per family with its features on and a sliding
window (20) shorter than the sequence (80): mistral, qwen2 (q/k/v bias,
sliding from layer 1), qwen3 (q/k norms, head_dim apart), gemma2 (soft-capping,
four norms), gemma3 (q/k norms, local RoPE base, linear scaling), and two
Phi-3 models (fused qkv_proj / gate_up_proj with PEFT's fused LoRA targets,
longrope): "phi3-long" with original_max_position_embeddings 64 (the 80-token
forward takes the long factors; generation crosses 64 and transformers drops
and recomputes its cache there) and partial_rotary_factor 0.75 as Phi-4-mini,
"phi3-short" with 96 (the short factors throughout). LongRoPE picks its list
by the batch's padded length, so Phi-3's generation is compared on the same
left-padded batch. Its reference is transformers' own forward without a
cache, run again over the whole sequence for every token (greedy): at the
LongRoPE switch, transformers' generate (5.x) departs from that forward
(measured: phi3-long, token 35 of 48, both prompts; its cache reset there
drops the cache while generate feeds only the newest token), so generate is
reported beside it, not required. The reference runs
with attn_implementation="eager".
Exit status 0 only when every fp32 check passes. Usage:

  python3 tests/gpu/hf_parity.py --lema build/cli/lema [--device cuda] [--keep DIR]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The families whose layer fuses projections: PEFT's names for them.
FUSED_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]

COMMON = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
              num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512, rms_norm_eps=1e-6)
SLIDING3 = ["sliding_attention", "full_attention", "sliding_attention"]

# name -> (model_type, config kwargs)
MODELS = {
    "llama2": ("llama", dict(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=8,
                   num_key_value_heads=8, vocab_size=1000, rope_theta=10000.0, tie_word_embeddings=False,
                   max_position_embeddings=512, rms_norm_eps=1e-5)),
    "gqa-llama3": ("llama", dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
                       num_key_value_heads=2, vocab_size=1000, rope_theta=500000.0, tie_word_embeddings=True,
                       max_position_embeddings=512, rms_norm_eps=1e-5,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 32})),
    "mistral-window": ("mistral", dict(COMMON, rope_theta=1e6, sliding_window=20, tie_word_embeddings=False)),
    "qwen2": ("qwen2", dict(COMMON, rope_theta=1e6, use_sliding_window=True, sliding_window=20, max_window_layers=1,
                            tie_word_embeddings=False)),
    "qwen3": ("qwen3", dict(COMMON, head_dim=48, rope_theta=1e6, use_sliding_window=True, sliding_window=20,
                            max_window_layers=1, tie_word_embeddings=True)),
    "gemma2": ("gemma2", dict(COMMON, head_dim=32, query_pre_attn_scalar=24, sliding_window=20,
                              attn_logit_softcapping=50.0, final_logit_softcapping=30.0, layer_types=SLIDING3)),
    "gemma3": ("gemma3_text", dict(COMMON, head_dim=32, query_pre_attn_scalar=24, sliding_window=20,
                                   rope_theta=1e6, rope_local_base_freq=10000.0, layer_types=SLIDING3,
                                   rope_scaling={"rope_type": "linear", "factor": 8.0})),
}


def phi3_kwargs(original_max, partial):
    """A small Phi3Config with longrope (distinct short and long lists) and a window of 20."""
    head_dim = COMMON["hidden_size"] // COMMON["num_attention_heads"]
    n = int(head_dim * partial) // 2
    rope = {"rope_type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(n)],
            "long_factor": [1.5 + 0.9 * i for i in range(n)]}
    kw = dict(COMMON, sliding_window=20, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              original_max_position_embeddings=original_max, partial_rotary_factor=partial)
    import inspect
    from transformers import Phi3Config
    if "rope_parameters" in inspect.signature(Phi3Config.__init__).parameters:  # transformers 5
        kw["rope_parameters"] = dict(rope, rope_theta=10000.0, original_max_position_embeddings=original_max,
                                     partial_rotary_factor=partial)
    else:
        kw["rope_scaling"] = dict(rope, type="longrope")
        kw["rope_theta"] = 10000.0
    return kw


MODELS["phi3-long"] = ("phi3", phi3_kwargs(64, 0.75))
MODELS["phi3-short"] = ("phi3", phi3_kwargs(96, 1.0))


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def make_batch(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 3, 80  # 80 > original_max_position_embeddings: all llama3 bands are used
    ids = torch.randint(3, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    lengths = [t, t - 17, t - 40]
    for i, n in enumerate(lengths):
        ids[i, n:] = 0
        mask[i, n:] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, :5] = -100  # a "prompt" without loss
    return ids, mask, labels


def peft_reference(model_dir, adapter_dir, ids, mask, labels, dtype, device):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, attn_implementation="eager").to(device)
    from peft import PeftModel
    peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True).to(device)
    # LoRA weights in fp32 masters as lema keeps them; compute in the model dtype.
    out = peft_model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    out.loss.backward()
    grads = {}
    for name, p in peft_model.named_parameters():
        if "lora_" in name and p.grad is not None:
            key = name.replace(".default", "")
            grads[key] = p.grad.detach().float().cpu()
    return out.logits.detach().float().cpu(), out.loss.item(), grads


GEN_TOKENS = 48


def left_pad(prompts):
    """The prompts left-padded with 0 as lema pads them: ids, mask, width."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask, width


def hf_generate(model, prompts, device, batched):
    """transformers' greedy tokens: each prompt alone, or the batch left-padded as lema pads it."""
    kw = dict(max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS, do_sample=False, pad_token_id=0)
    if not batched:
        refs = []
        for p in prompts:
            ids = torch.tensor([p], device=device)
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
            refs.append(out[0, len(p):].tolist())
        return refs
    ids, mask, width = left_pad(prompts)
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
    return [out[i, width:].tolist() for i in range(len(prompts))]


def hf_greedy_uncached(model, prompts, device):
    """Greedy tokens from transformers' forward over the whole left-padded
    sequence at every step (no cache): the model's definition, token by token."""
    ids, mask, width = left_pad(prompts)
    ids, mask = ids.to(device), mask.to(device)
    out = []
    with torch.no_grad():
        for _ in range(GEN_TOKENS):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            ids = torch.cat([ids, nxt], 1)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    tokens = torch.cat(out, 1)
    return [tokens[i].tolist() for i in range(len(prompts))]


def first_difference(a, b):
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)


def compare_generation(name, model_dir, adapter_dir, prompts, lema_out, device, failures, batched=False,
                       uncached_reference=False):
    """lema's batched KV-cache greedy tokens against transformers' generate, or
    (uncached_reference) against transformers' uncached forward, with generate
    reported beside it."""
    from peft import PeftModel
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                 attn_implementation="eager").to(device)
    model = PeftModel.from_pretrained(model, adapter_dir).to(device).eval()
    generated = hf_generate(model, prompts, device, batched)
    refs = hf_greedy_uncached(model, prompts, device) if uncached_reference else generated
    what = "transformers' uncached forward" if uncached_reference else "transformers' generate"
    for i, p in enumerate(prompts):
        ref = refs[i]
        got = [int(x) for x in lema_out["generated.%d" % i].tolist()]
        same = sum(1 for a, b in zip(ref, got) if a == b)
        first = first_difference(ref, got)
        print(f"{name} generate prompt {i} ({len(p)} tokens): {same}/{GEN_TOKENS} tokens equal to {what}"
              + ("" if first is None else f", first difference at {first}"))
        if uncached_reference:
            g = first_difference(generated[i], got)
            gg = first_difference(generated[i], ref)
            print(f"{name} generate prompt {i}: lema vs transformers' generate: "
                  + ("equal" if g is None else f"first difference at {g}")
                  + "; generate vs its own uncached forward: "
                  + ("equal" if gg is None else f"first difference at {gg}") + " (reported, not required)")
        if ref != got:
            failures.append(f"{name}: greedy generation of prompt {i} differs from {what} at token {first}")


def compare(name, lema_out, ref_logits, ref_loss, ref_grads, mask, strict, failures):
    real = mask.bool()
    logit_diff = (lema_out["logits"][real] - ref_logits[real]).abs().max().item()
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
    print(f"{name}: logits max abs diff {logit_diff:.3e}; loss lema {loss:.6f} peft {ref_loss:.6f} "
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
    work = args.keep or tempfile.mkdtemp(prefix="lema_parity_")
    os.makedirs(work, exist_ok=True)
    failures = []
    only = set(args.models.split(",")) if args.models else None
    for mname, (model_type, kwargs) in MODELS.items():
        if only and mname not in only:
            continue
        torch.manual_seed(1234)
        cfg = AutoConfig.for_model(model_type, initializer_range=0.05, **kwargs)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
        # Random norms and biases (transformers initialises them to 1 / 0).
        with torch.no_grad():
            g0 = torch.Generator().manual_seed(11)
            for n, p in model.named_parameters():
                if p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=g0) * 0.3 + (0.0 if n.endswith("bias") else 1.0))
        model_dir = os.path.join(work, mname)
        model.save_pretrained(model_dir, safe_serialization=True)
        layer_file = os.path.join(work, mname + ".lema.safetensors")
        run([args.lema, "convert", model_dir, "--out", layer_file])

        # PEFT adapter with non-zero B so that every gradient is non-trivial.
        fused = model_type == "phi3"
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                      target_modules=FUSED_TARGETS if fused else TARGETS,
                                                      task_type="CAUSAL_LM"))
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        adapter_dir = os.path.join(work, mname + "-adapter")
        peft_model.save_pretrained(adapter_dir)

        ids, mask, labels = make_batch(cfg.vocab_size, 3)
        gp = torch.Generator().manual_seed(5)
        prompts = [torch.randint(3, cfg.vocab_size, (n,), generator=gp).tolist() for n in (30, 23)]
        batch_path = os.path.join(work, mname + "-batch.json")
        with open(batch_path, "w") as f:
            json.dump({"input_ids": ids.tolist(), "labels": labels.tolist(), "prompt_ids": prompts}, f)

        for dtype_name, dtype, strict in (("float32", torch.float32, True), ("bfloat16", torch.bfloat16, False)):
            if dtype == torch.bfloat16 and args.device == "cpu":
                continue
            ref_logits, ref_loss, ref_grads = peft_reference(model_dir, adapter_dir, ids, mask, labels, dtype, args.device)
            for src_name, src in (("layer-file", layer_file), ("hf-dir", model_dir)):
                out_path = os.path.join(work, f"{mname}-{dtype_name}-{src_name}.safetensors")
                gen = ["--generate", str(GEN_TOKENS)] if strict and src_name == "layer-file" else []
                run([args.lema, "debug", "step", "--model", src, "--adapter", adapter_dir, "--batch", batch_path,
                     "--out", out_path, "--dtype", dtype_name, "--device", args.device] + gen)
                lema_out = load_file(out_path)
                compare(f"{mname} {dtype_name} {src_name}", lema_out, ref_logits, ref_loss, ref_grads,
                        mask, strict, failures)
                if gen:
                    compare_generation(mname, model_dir, adapter_dir, prompts, lema_out, args.device, failures,
                                       batched=fused, uncached_reference=fused)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED:")
        for f in failures:
            print("  " + f)
        return 1
    print("hf_parity: all fp32 checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
