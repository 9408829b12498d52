"""Checks lema's files with the reference Python stack (safetensors, torch,
transformers) on a machine that has it (the GPU machine). Not a test: run by
hand through bench/check_formats_with_hf.sh. Usage: python3 bench/check_formats_with_hf.py DIR
DIR holds hf/ (lema model init), keep/bf16/fp16 .lema.safetensors (lema convert).
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file

d = sys.argv[1]
hf = load_file(os.path.join(d, "hf", "model.safetensors"))
for name, dtype in [("keep", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
    path = os.path.join(d, f"{name}.lema.safetensors")
    lf = load_file(path)  # the reference reader validates the file
    assert set(lf) == set(hf), (name, set(hf) ^ set(lf))
    for k, v in hf.items():
        ref = v.to(dtype)
        assert lf[k].dtype == dtype and torch.equal(lf[k].view(torch.int16 if dtype != torch.float32 else torch.int32),
                                                    ref.view(torch.int16 if dtype != torch.float32 else torch.int32)), (name, k)
    with safe_open(path, "pt") as f:
        md = f.metadata()
    assert md["lema.format"] == "layer-file" and md["format"] == "pt"
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    start = 8 + n
    ranges = json.loads(md["lema.layer_ranges"])
    cfg = json.loads(md["lema.config"])
    for i, (off, nb) in enumerate(ranges):
        names = [k for k in header if k.startswith(f"model.layers.{i}.")]
        lo = min(header[k]["data_offsets"][0] for k in names) + start
        hi = max(header[k]["data_offsets"][1] for k in names) + start
        assert (lo, hi - lo) == (off, nb), (name, i, lo, hi, off, nb)
    print(f"{name}: {len(lf)} tensors equal to torch's .to({dtype}); {len(ranges)} layer ranges match; "
          f"data start {start} (mod 64 = {start % 64})")

from transformers import LlamaForCausalLM
m = LlamaForCausalLM.from_pretrained(os.path.join(d, "hf"))
ids = torch.tensor([[1, 5, 9, 200]])
out = m(ids).logits
print("transformers loads hf/:", type(m).__name__, tuple(out.shape), "params", sum(p.numel() for p in m.parameters()))
# The layer file is a loadable checkpoint too.
tmp = tempfile.mkdtemp()
shutil.copy(os.path.join(d, "hf", "config.json"), tmp)
shutil.copy(os.path.join(d, "keep.lema.safetensors"), os.path.join(tmp, "model.safetensors"))
m2 = LlamaForCausalLM.from_pretrained(tmp)
out2 = m2(ids).logits
print("transformers loads the layer file; logits equal:", torch.equal(out, out2))
assert torch.equal(out, out2)
print("ALL OK")
