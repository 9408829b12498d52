#!/usr/bin/env python3
"""The quantized base on the GPU (issue 20): lema's on-device dequantization
against a reference, and NF4 codes against bitsandbytes where it is installed.

Run on the GPU machine (torch, transformers, safetensors; bitsandbytes
optional, reported when missing; nothing is downloaded):

  python3 tests/gpu/nf4_parity.py --lema build-gpu/cli/lema [--device cuda] [--keep DIR]

For nf4, nf4-dq, int8 and fp8: a small random LlamaForCausalLM (fp32) is saved,
converted with `lema convert --quant Q`, and

  * the reference model: the same HF model whose seven projection weights
    are replaced by the file's codes dequantized here with torch from the
    spec (docs/FORMATS.md: fp32 code x fp32 scale);
  * lema's logits (`lema debug step --model Q.lema.safetensors --device
    cuda --dtype float32`, the LoRA B zero: the base alone) against the
    reference's, on the real tokens: fp32 max abs diff <= 1e-4;
  * nf4 only, with bitsandbytes: quantize_4bit(W, blocksize=64,
    quant_type="nf4", compress_statistics=False) on the GPU: packed bytes and
    absmax equal to the file's (mismatches counted; exit 1 when any);
  * fp8: the file's E4M3 bytes equal torch's own conversion
    ((W / scale).to(torch.float8_e4m3fn), scale = absmax / 448 per row).

Exit status 0 only when every check passes.
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

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit(f"command failed ({r.returncode})")
    return r.stdout


def dequantize(t, name, quant, shape):
    """The spec's dequantization in torch (fp32, CPU)."""
    n = shape[0] * shape[1]
    if quant == "int8":
        return t[name].float() * t[name + ".scale"].float()[:, None]
    if quant == "fp8":  # torch's own E4M3 type reads the bytes
        return t[name].view(torch.float8_e4m3fn).float() * t[name + ".scale"].float()[:, None]
    if quant == "nf4":
        absmax = t[name + ".absmax"].float()
    else:
        q, scale, offset = t[name + ".absmax"].float(), t[name + ".absmax_scale"], t[name + ".absmax_offset"]
        groups = scale.numel()
        q = torch.nn.functional.pad(q, (0, groups * 256 - q.numel()))
        absmax = ((q.view(groups, 256) * scale[:, None]).view(-1)[:t[name + ".absmax"].numel()]) + offset
    packed = t[name]
    idx = torch.stack([packed >> 4, packed & 15], 1).view(-1)[:n].long()
    code = torch.tensor(NF4, dtype=torch.float32)
    return (code[idx].view(-1, 64) * absmax[:, None]).view(-1)[:n].view(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lema", default="build/cli/lema")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    work = args.keep or tempfile.mkdtemp(prefix="lema_nf4_")
    os.makedirs(work, exist_ok=True)
    failures = []
    torch.manual_seed(1234)
    cfg = AutoConfig.for_model("llama", hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                               max_position_embeddings=256, initializer_range=0.05, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
    hf = os.path.join(work, "hf")
    model.save_pretrained(hf, safe_serialization=True)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, cfg.vocab_size, (2, 64), generator=g)
    batch = os.path.join(work, "batch.json")
    with open(batch, "w") as f:
        json.dump({"input_ids": ids.tolist(), "labels": ids.tolist()}, f)
    try:
        import bitsandbytes as bnb  # noqa: F401
        have_bnb = True
    except Exception as e:  # not installed on every GPU machine
        have_bnb = False
        print(f"bitsandbytes not available ({e}): the bitsandbytes byte comparison is skipped")
    for quant in ("nf4", "nf4-dq", "int8", "fp8"):
        lf = os.path.join(work, f"m.{quant}.lema.safetensors")
        run([args.lema, "convert", hf, "--out", lf, "--quant", quant])
        stored = load_file(lf)
        ref = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32, attn_implementation="eager").eval()
        sd = ref.state_dict()
        mismatch_bytes = mismatch_absmax = 0
        with torch.no_grad():
            for i in range(cfg.num_hidden_layers):
                for p in PROJ:
                    name = f"model.layers.{i}.{p}.weight"
                    w = sd[name]
                    sd[name].copy_(dequantize(stored, name, quant, list(w.shape)))
                    if quant == "fp8":
                        orig = load_file(os.path.join(hf, "model.safetensors"))[name].float()
                        scale = orig.abs().amax(1) / 448.0
                        want = (orig / scale[:, None]).to(torch.float8_e4m3fn).view(torch.uint8)
                        mismatch_bytes += int((want != stored[name]).sum())
                        mismatch_absmax += int((scale != stored[name + ".scale"]).sum())
                    if quant == "nf4" and have_bnb:
                        import bitsandbytes.functional as F
                        orig = load_file(os.path.join(hf, "model.safetensors"))[name].to("cuda")
                        packed, state = F.quantize_4bit(orig, blocksize=64, quant_type="nf4", compress_statistics=False)
                        mismatch_bytes += int((packed.view(-1).cpu() != stored[name]).sum())
                        mismatch_absmax += int((state.absmax.float().cpu() != stored[name + ".absmax"]).sum())
        if quant == "fp8":
            print(f"fp8 vs torch.float8_e4m3fn: {mismatch_bytes} bytes and {mismatch_absmax} scales differ")
            if mismatch_bytes or mismatch_absmax:
                failures.append("fp8 bytes differ from torch's E4M3 conversion")
        if quant == "nf4" and have_bnb:
            print(f"nf4 vs bitsandbytes: {mismatch_bytes} packed bytes and {mismatch_absmax} absmax values differ")
            if mismatch_bytes or mismatch_absmax:
                failures.append("nf4 codes differ from bitsandbytes'")
        ref.load_state_dict(sd)
        with torch.no_grad():
            ref_logits = ref.to(args.device)(input_ids=ids.to(args.device)).logits.float().cpu()
        out = os.path.join(work, f"{quant}.out.safetensors")
        run([args.lema, "debug", "step", "--model", lf, "--batch", batch, "--out", out, "--dtype", "float32",
             "--device", args.device])
        diff = (load_file(out)["logits"] - ref_logits).abs().max().item()
        print(f"{quant}: lema logits vs the dequantized reference: max abs diff {diff:.3e}")
        if not diff <= 1e-4:
            failures.append(f"{quant}: logits diff {diff:.3e} > 1e-4")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("nf4_parity: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
