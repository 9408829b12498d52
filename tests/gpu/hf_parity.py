#!/usr/bin/env python3
"""Hugging Face parity of the lema engine (issue 4 acceptance).

Run on the GPU machine, where torch, transformers, peft and safetensors are
installed (nothing is downloaded): builds small random LlamaForCausalLM
models, saves them, converts them with `lema convert`, and compares

  * logits (with a LoRA adapter whose B is non-zero) on the real tokens of a
    right-padded batch: fp32 max abs diff <= 1e-4 (bf16: reported);
  * the loss and every LoRA gradient of one training step against PEFT with
    the same LoRA weights: fp32 <= 1e-4 relative (bf16: reported).

Models: "llama2" (MHA, untied, default RoPE) and "gqa-llama3" (GQA, tied
embeddings, rope_scaling llama3 with positions beyond the original context).
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
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

MODELS = {
    "llama2": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=8,
                   num_key_value_heads=8, vocab_size=1000, rope_theta=10000.0, tie_word_embeddings=False,
                   max_position_embeddings=512, rms_norm_eps=1e-5),
    "gqa-llama3": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=8,
                       num_key_value_heads=2, vocab_size=1000, rope_theta=500000.0, tie_word_embeddings=True,
                       max_position_embeddings=512, rms_norm_eps=1e-5,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
}


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
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device)
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
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    work = args.keep or tempfile.mkdtemp(prefix="lema_parity_")
    os.makedirs(work, exist_ok=True)
    failures = []
    for mname, kwargs in MODELS.items():
        torch.manual_seed(1234)
        cfg = LlamaConfig(initializer_range=0.05, **kwargs)
        model = LlamaForCausalLM(cfg).float().eval()
        model_dir = os.path.join(work, mname)
        model.save_pretrained(model_dir, safe_serialization=True)
        layer_file = os.path.join(work, mname + ".lema.safetensors")
        run([args.lema, "convert", model_dir, "--out", layer_file])

        # PEFT adapter with non-zero B so that every gradient is non-trivial.
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                      target_modules=TARGETS, task_type="CAUSAL_LM"))
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        adapter_dir = os.path.join(work, mname + "-adapter")
        peft_model.save_pretrained(adapter_dir)

        ids, mask, labels = make_batch(cfg.vocab_size, 3)
        batch_path = os.path.join(work, mname + "-batch.json")
        with open(batch_path, "w") as f:
            json.dump({"input_ids": ids.tolist(), "labels": labels.tolist()}, f)

        for dtype_name, dtype, strict in (("float32", torch.float32, True), ("bfloat16", torch.bfloat16, False)):
            if dtype == torch.bfloat16 and args.device == "cpu":
                continue
            ref_logits, ref_loss, ref_grads = peft_reference(model_dir, adapter_dir, ids, mask, labels, dtype, args.device)
            for src_name, src in (("layer-file", layer_file), ("hf-dir", model_dir)):
                out_path = os.path.join(work, f"{mname}-{dtype_name}-{src_name}.safetensors")
                run([args.lema, "debug", "step", "--model", src, "--adapter", adapter_dir, "--batch", batch_path,
                     "--out", out_path, "--dtype", dtype_name, "--device", args.device])
                compare(f"{mname} {dtype_name} {src_name}", load_file(out_path), ref_logits, ref_loss, ref_grads,
                        mask, strict, failures)
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
