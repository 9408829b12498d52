#!/usr/bin/env bash
# CPU training-step throughput of two lema builds, measured in the same run:
# the reference (an older commit's binary) and the candidate, alternated
# round by round so that machine noise falls on both. Prints each round's
# tokens/s and the candidate/reference ratio of the medians.
#
#   bash bench/cpu_step_compare.sh REF_LEMA NEW_LEMA [PRESET] [ROUNDS]
#
# Each binary makes and converts its own random model of PRESET (default
# compact; the layer file format may differ between the two builds), then
# times `lema bench-step --device cpu` (fp32, batch 4 x 256, 4 steps of which
# the first is not timed).
set -euo pipefail
ref=$1
new=$2
preset=${3:-compact}
rounds=${4:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for side in ref new; do
  bin=${!side}
  "$bin" model init --preset "$preset" --out "$work/$side-hf" --seed 1 >/dev/null
  "$bin" convert "$work/$side-hf" --out "$work/$side.lema.safetensors" >/dev/null
done

step() {  # binary model -> tokens/s
  "$1" bench-step --model "$2" --device cpu --dtype fp32 --batch 4 --seq-len 256 --steps 4 --json 2>/dev/null |
    tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])'
}

ref_rates=()
new_rates=()
for ((i = 1; i <= rounds; i++)); do
  r=$(step "$ref" "$work/ref.lema.safetensors")
  n=$(step "$new" "$work/new.lema.safetensors")
  ref_rates+=("$r")
  new_rates+=("$n")
  printf 'round %d: reference %.1f tokens/s, candidate %.1f tokens/s\n' "$i" "$r" "$n"
done
python3 - "${ref_rates[*]}" "${new_rates[*]}" <<'EOF'
import statistics, sys
ref = [float(x) for x in sys.argv[1].split()]
new = [float(x) for x in sys.argv[2].split()]
mr, mn = statistics.median(ref), statistics.median(new)
spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs)
print(f"median: reference {mr:.1f} tokens/s, candidate {mn:.1f} tokens/s, ratio {mn / mr:.3f} "
      f"(round-to-round spread: reference {spread(ref):.1%}, candidate {spread(new):.1%})")
EOF
