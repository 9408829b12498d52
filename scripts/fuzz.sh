#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer for N seconds (default 60).
# Usage: scripts/fuzz.sh [seconds]. Needs clang++ with -fsanitize=fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
out=build/fuzz
mkdir -p "$out/corpus"
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I. \
  tests/fuzz/safetensors_fuzz.cpp common/formats/safetensors.cpp common/formats/dtype.cpp common/base/file_util.cpp \
  common/base/status.cpp -o "$out/safetensors_fuzz"
# Seed: a small valid file.
printf '\x4f\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"a":"b"},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}12345678' \
  > "$out/corpus/seed1"
"$out/safetensors_fuzz" -max_total_time="$secs" -max_len=4096 "$out/corpus"
