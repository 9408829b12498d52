#!/usr/bin/env python3
"""Reference q8_0 / q4_0 block encoders written from the GGML block-format
description (not from ggml's code), in plain Python with float32 rounding
emulated through struct. Prints the expected bytes (hex) of the inputs that
tests/common/formats/gguf_test.cpp checks lema's encoders against.
Usage: python3 tests/tools/gguf_quant_reference.py"""
import math
import struct


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


def f16_bytes(v):
    return struct.pack('<e', v)  # round to nearest even


def q8_0(block):
    amax = max(abs(x) for x in block)
    d = f32(amax / 127.0)
    idv = f32(1.0 / d) if d != 0 else 0.0
    out = bytearray(f16_bytes(d))
    for x in block:
        v = f32(x * idv)
        q = int(math.copysign(math.floor(abs(v) + 0.5), v))  # halves away from zero
        out += struct.pack('<b', q)
    return bytes(out)


def q4_0(block):
    m = 0.0
    for x in block:
        if abs(x) > abs(m):
            m = x
    d = f32(m / -8.0)
    idv = f32(1.0 / d) if d != 0 else 0.0
    out = bytearray(f16_bytes(d))
    q = [min(15, int(f32(f32(x * idv) + 8.5))) for x in block]
    for j in range(16):
        out.append(q[j] | (q[j + 16] << 4))
    return bytes(out)


def test_input():
    # Two blocks: a smooth signed wave with varying amplitude, then a block
    # whose largest magnitude is positive (q4_0's d is then negative).
    xs = [f32(math.sin(k * 0.37) * (1 + k % 7)) for k in range(32)]
    xs += [f32((k - 10) * 0.25) for k in range(32)]
    return xs


if __name__ == '__main__':
    xs = test_input()
    for name, fn in (('q8_0', q8_0), ('q4_0', q4_0)):
        data = b''.join(fn(xs[b * 32:(b + 1) * 32]) for b in range(2))
        print(name, data.hex())
