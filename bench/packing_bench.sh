#!/usr/bin/env bash
# Packing on the demo corpus (lema-reply examples, the demo's small model
# and tokenizer): `lema train` with and without --packing, the same LoRA
# setup, and for each: rows per epoch, padding fraction, examples/s.
#
#   bash bench/packing_bench.sh [WORK_DIR]
#
#   LEMA_BUILD_DIR     build directory (default: build)
#   LEMA_DEMO_MODEL    a demo model directory (scripts/demo.sh's demo/model);
#                      default: one made here (`lema model pretrain --preset
#                      small`, 1 step: the demo's tokenizer and shape; the
#                      weights do not change the time of a step)
#   SEQ_LEN (512), BATCH (8), STEPS (10), THREADS (2), EXAMPLES (1000)
#
# Time of a step: each mode runs STEPS and 2 steps, and the difference of
# their wall times over STEPS - 2 steps leaves setup (tokenization, model
# load) out. Examples per step: BATCH unpacked; BATCH x examples per row
# packed. Padding: the input tokens of the steps (metrics.jsonl `tokens`,
# padding included) against the real tokens they hold (mean example
# length x examples); packed also over the whole epoch (the train log).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${LEMA_BUILD_DIR:-build}
lema="$build_dir/cli/lema"
work=${1:-$(mktemp -d /tmp/lema_packing_bench_XXXXXX)}
seq_len=${SEQ_LEN:-512}
batch=${BATCH:-8}
steps=${STEPS:-10}
threads=${THREADS:-2}
examples=${EXAMPLES:-1000}
mkdir -p "$work"
[[ -x "$lema" ]] || { echo "packing_bench: $lema is not built" >&2; exit 1; }

"$lema" dataset build --builder lema-reply --examples "$examples" --seed 1 --out "$work/corpus" >/dev/null
model=${LEMA_DEMO_MODEL:-}
if [[ -z "$model" ]]; then
  model="$work/model"
  [[ -f "$model/config.json" ]] ||
    "$lema" model pretrain --preset small --data "$work/corpus/train.jsonl" --out "$model" --steps 1 --quiet >/dev/null
fi

# train MODE STEPS: one run; prints its wall seconds; its log is $work/MODE-STEPS.log.
train() {
  local mode=$1 n=$2 flag=""
  [[ $mode == packed ]] && flag="--packing"
  rm -rf "$work/run-$mode-$n"
  local t0 t1
  t0=$(date +%s.%N)
  "$lema" train --model "$model" --data "$work/corpus/train.jsonl" --out "$work/run-$mode-$n" --steps "$n" \
    --batch "$batch" --micro-batch "$batch" --seq-len "$seq_len" --lora-r 16 --lora-alpha 32 --lora-dropout 0 \
    --targets all --lr 1e-3 --checkpoint-every 0 --threads "$threads" --quiet $flag >"$work/$mode-$n.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}

printf '%-9s %6s %8s %9s %14s %18s %11s %10s\n' mode rows ex/row s/step examples/s padding\(steps\) padding\(epoch\) loss@last
for mode in unpacked packed; do
  t_long=$(train "$mode" "$steps")
  t_short=$(train "$mode" 2)
  log="$work/$mode-$steps.log"
  # "N examples (...), X tokens (...)" and, packed, "packed into R rows of T (P% padding)".
  n_ex=$(grep -oE 'data [^:]+: [0-9]+ examples' "$log" | grep -oE '[0-9]+ examples' | grep -oE '[0-9]+')
  n_tok=$(grep -oE '[0-9]+ tokens \(' "$log" | head -1 | grep -oE '[0-9]+')
  if [[ $mode == packed ]]; then
    rows=$(grep -oE 'packed into [0-9]+ rows' "$log" | grep -oE '[0-9]+')
    pad_epoch=$(grep -oE 'rows of [0-9]+ \([0-9.]+% padding' "$log" | grep -oE '[0-9.]+%')
  else
    rows=$n_ex
    pad_epoch="-"
  fi
  python3 - "$work/run-$mode-$steps/metrics.jsonl" "$mode" "$rows" "$n_ex" "$n_tok" "$batch" "$steps" "$t_long" \
    "$t_short" "$pad_epoch" <<'EOF'
import json, sys
path, mode, rows, n_ex, n_tok, batch, steps, t_long, t_short, pad_epoch = sys.argv[1:]
rows, n_ex, n_tok, batch, steps = int(rows), int(n_ex), int(n_tok), int(batch), int(steps)
lines = [json.loads(l) for l in open(path)]
ex_per_row = n_ex / rows
s_per_step = (float(t_long) - float(t_short)) / (steps - 2)
ex_per_step = batch * ex_per_row
real_per_step = ex_per_step * n_tok / n_ex
input_per_step = sum(l["tokens"] for l in lines) / len(lines)
print(f"{mode:<9} {rows:6d} {ex_per_row:8.2f} {s_per_step:9.3f} {ex_per_step / s_per_step:14.1f} "
      f"{100 * (1 - real_per_step / input_per_step):17.1f}% {pad_epoch:>11} {lines[-1]['loss']:10.4f}")
EOF
done
echo "(work files: $work)"
