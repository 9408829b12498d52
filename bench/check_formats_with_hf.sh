#!/usr/bin/env bash
# Independent check of lema's files with safetensors/torch/transformers (on a
# machine with them, e.g. the GPU machine): model init, convert keep/bf16/fp16,
# then bench/check_formats_with_hf.py. Usage: bench/check_formats_with_hf.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
work="$(mktemp -d /tmp/lema_fmtcheck_XXXXXX)"
trap 'rm -rf "$work"' EXIT
"$build/cli/lema" model init --preset tiny --out "$work/hf" --seed 11
"$build/cli/lema" convert "$work/hf" -o "$work/keep.lema.safetensors" 2>/dev/null
"$build/cli/lema" convert "$work/hf" -o "$work/bf16.lema.safetensors" --dtype bf16 2>/dev/null
"$build/cli/lema" convert "$work/hf" -o "$work/fp16.lema.safetensors" --dtype fp16 2>/dev/null
python3 bench/check_formats_with_hf.py "$work"
