#!/usr/bin/env bash
# Peak RSS of `lema convert` on a synthetic model with large layers (default:
# 8 layers of ~206 MB in fp32, ~1.6 GB in all). Prints the figure lema reports.
# Usage: bench/convert_rss.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
build="${1:-build}"
work="${2:-$(mktemp -d /tmp/lema_convert_rss_XXXXXX)}"
trap 'rm -rf "$work"' EXIT
# hidden 2048, intermediate 5632: 4*(4*2048^2 + 3*2048*5632 + 2*2048) B = 205.5 MB per layer.
"$build/bench/bench_make_synthetic_model" "$work/hf" 2048 5632 8 4096
du -sh "$work/hf"
/usr/bin/time -v "$build/cli/lema" convert "$work/hf" -o "$work/model.lema.safetensors" 2> "$work/time.txt" \
  | tee "$work/convert.txt"
grep -E "Maximum resident set size|Elapsed" "$work/time.txt"
"$build/cli/lema" inspect "$work/model.lema.safetensors" | sed -n '1,14p'
