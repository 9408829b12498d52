#!/usr/bin/env python3
"""Reference quantizers for lema's quantized base, written from the published
specs, in plain Python (no numpy, no torch), for tests/engine/dequant_test.cpp.

NF4 (QLoRA, Dettmers et al. 2023, appendix E; the bitsandbytes layout): the
tensor flattened, blocks of 64; absmax = max |x| per block (fp32); each x is
multiplied by the fp32 reciprocal of its block's absmax and replaced by the
index of the nearest NF4 code value, where the decision points are the
midpoints of neighbouring codes as fp32 and a value on a midpoint takes the
lower code; two indices per byte, the first element in the high nibble.
An all-zero block stores absmax 0 and index 7 (the code 0.0).
Dequantized: fp32(code[index] * absmax), then rounded once to bf16.

Double quantization (lema's nf4-dq, after QLoRA section 3): offset = fp32 of
the mean of all absmax (summed in double, first to last); blocks of 256
absmax values; scale = fp32(max |fp32(a - offset)| / 127); q =
round-half-even(fp32(fp32(a - offset) / scale)) clamped to [-127, 127];
restored absmax = fp32(fp32(q * scale) + offset).

int8 per output row: scale = fp32(max |row| / 127); q = round-half-even(
fp32(x / scale)) clamped to [-127, 127]; dequantized fp32(q * scale).

fp8 per output row (OCP 8-bit Floating Point Specification, E4M3: sign,
4 exponent bits with bias 7, 3 mantissa bits; exponent 0 subnormal
(m/8 * 2^-6); no infinities; S.1111.111 is NaN, so the largest value is
1.75 * 2^8 = 448): scale = fp32(max |row| / 448); q = the E4M3 byte of
fp32(x / scale) rounded to nearest with ties to even (by the spacing of its
binade), saturated to +-448; dequantized fp32(value(q) * scale).

Usage: nf4_reference.py nf4|nf4-dq|int8|fp8 IN.f32 OUT.json [ROWS COLS]
IN.f32 holds little-endian fp32 values; OUT.json gets the stored bytes and
the dequantized values as integers (fp32 and bf16 bit patterns).
"""
import bisect
import json
import math
import struct
import sys

# The NF4 data type as published (QLoRA appendix E; bitsandbytes'
# get_4bit_type("nf4")).
NF4_CODE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]
BLOCK = 64
DQ_BLOCK = 256


def f32(x):
    """Rounds a Python float (double) to the nearest fp32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_bits(x):
    """fp32 -> bf16, round to nearest, ties to even."""
    b = f32_bits(x)
    if math.isnan(x):
        return 0x7FC0
    b += 0x7FFF + ((b >> 16) & 1)
    return (b >> 16) & 0xFFFF


CODE32 = [f32(c) for c in NF4_CODE]
MIDPOINTS = [f32((NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0) for i in range(15)]


def nf4_index(x):
    # Midpoints strictly below x: a value on a midpoint takes the lower code.
    return bisect.bisect_left(MIDPOINTS, x)


def round_half_even_clamped(v):
    return max(-127, min(127, int(round(v))))


def nf4_quantize(xs):
    n = len(xs)
    absmax, idx = [], []
    for b in range(0, n, BLOCK):
        block = xs[b:b + BLOCK]
        m = max(abs(v) for v in block)
        absmax.append(m)
        if m == 0.0:
            idx.extend([7] * len(block))
            continue
        inv = f32(1.0 / m)
        idx.extend(nf4_index(f32(v * inv)) for v in block)
    if len(idx) % 2:
        idx.append(0)
    packed = [(idx[i] << 4) | idx[i + 1] for i in range(0, len(idx), 2)]
    return packed, absmax, idx


def double_quantize(absmax):
    total = 0.0
    for a in absmax:
        total += a
    offset = f32(total / len(absmax))
    q, scales = [], []
    for b in range(0, len(absmax), DQ_BLOCK):
        centered = [f32(a - offset) for a in absmax[b:b + DQ_BLOCK]]
        s = f32(max(abs(c) for c in centered) / 127.0)
        scales.append(s)
        q.extend(round_half_even_clamped(f32(c / s)) if s > 0 else 0 for c in centered)
    restored = [f32(f32(v * scales[i // DQ_BLOCK]) + offset) for i, v in enumerate(q)]
    return q, scales, offset, restored


def per_row_quantize(xs, rows, cols, qmax, encode, value):
    """Per output row: scale = fp32(max |row| / qmax); q = encode(fp32(x / scale))
    (0 for a zero row); dequantized fp32(value(q) * scale)."""
    q, scales, deq = [], [], []
    for r in range(rows):
        row = xs[r * cols:(r + 1) * cols]
        s = f32(max(abs(v) for v in row) / qmax)
        scales.append(s)
        qs = [encode(f32(v / s)) if s > 0 else 0 for v in row]
        q.extend(qs)
        deq.extend(f32(value(c) * s) for c in qs)
    return q, scales, deq


def e4m3_value(code):
    e, m = (code >> 3) & 15, code & 7
    if e == 15 and m == 7:
        return math.nan
    v = m / 8.0 * 2.0 ** -6 if e == 0 else (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return -v if code & 0x80 else v


E4M3_CODE_OF = {e4m3_value(c): c for c in range(0x7F)}  # non-negative finite values -> byte


def e4m3_encode(v):
    sign = 0x80 if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if a >= 448.0:
        return sign | 0x7E
    if a < 2.0 ** -6:
        spacing = 2.0 ** -9  # subnormals: eight steps below the smallest normal
    else:
        exponent = math.frexp(a)[1] - 1  # a = 1.f * 2^exponent, exactly
        spacing = 2.0 ** (exponent - 3)
    steps = round(a / spacing)  # Python's round: ties to even; a / spacing is exact
    return sign | E4M3_CODE_OF[steps * spacing]



def main():
    mode, in_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(in_path, "rb") as f:
        raw = f.read()
    xs = list(struct.unpack("<%df" % (len(raw) // 4), raw))
    out = {}
    if mode in ("nf4", "nf4-dq"):
        packed, absmax, idx = nf4_quantize(xs)
        out["packed"] = packed
        out["absmax_bits"] = [f32_bits(a) for a in absmax]
        scale_of_block = absmax
        if mode == "nf4-dq":
            q, scales, offset, restored = double_quantize(absmax)
            out["absmax_q"] = q
            out["absmax_scale_bits"] = [f32_bits(s) for s in scales]
            out["absmax_offset_bits"] = f32_bits(offset)
            out["absmax_restored_bits"] = [f32_bits(a) for a in restored]
            scale_of_block = restored
        deq = [f32(CODE32[i] * scale_of_block[k // BLOCK]) for k, i in enumerate(idx[:len(xs)])]
    elif mode in ("int8", "fp8"):
        rows, cols = int(sys.argv[4]), int(sys.argv[5])
        if mode == "int8":
            q, scales, deq = per_row_quantize(xs, rows, cols, 127.0, round_half_even_clamped, float)
        else:
            q, scales, deq = per_row_quantize(xs, rows, cols, 448.0, e4m3_encode, e4m3_value)
        out["q"] = q
        out["scale_bits"] = [f32_bits(s) for s in scales]
    else:
        raise SystemExit("unknown mode " + mode)
    out["deq_f32_bits"] = [f32_bits(v) for v in deq]
    out["deq_bf16_bits"] = [bf16_bits(v) for v in deq]
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
