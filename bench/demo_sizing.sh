#!/usr/bin/env bash
# Sizes the demo (issue 10): for one configuration, makes a base model with
# `lema model pretrain` (plain text, never the reply format), LoRA-trains it on
# the LEMA_REPLY data, evaluates base vs tuned on held-out questions, and
# prints one JSON line: the configuration, seconds per phase, adherence and
# eval loss of both models, and the tuned model's failure reasons.
#
#   bash bench/demo_sizing.sh LEMA WORK_DIR PRESET PT_STEPS PT_LR FT_STEPS FT_LR \
#       [FT_SCHEDULE=constant] [THREADS=2] [MAX_NEW_TOKENS=128] [FT_BATCH=16] [PT_BATCH=16] [QUESTIONS=50]
#
# Several run side by side on a machine with cores to spare (each with its
# own THREADS); the seconds are those of that machine and thread count.
set -euo pipefail
lema=$1 work=$2 preset=$3 pt_steps=$4 pt_lr=$5 ft_steps=$6 ft_lr=$7
schedule=${8:-constant} threads=${9:-2} mnt=${10:-128} ft_batch=${11:-16} pt_batch=${12:-16} questions=${13:-50}
rm -rf "$work"; mkdir -p "$work"
now() { date +%s.%N; }
t0=$(now)
"$lema" dataset build --builder lema-reply --examples 5000 --seed 7 --out "$work/corpus" >"$work/log" 2>&1
"$lema" dataset build --builder lema-reply --examples 2000 --seed 1 --eval-fraction 0.05 --out "$work/data" >>"$work/log" 2>&1
t1=$(now)
"$lema" model pretrain --preset "$preset" --data "$work/corpus/train.jsonl" --out "$work/model" --steps "$pt_steps" \
  --lr "$pt_lr" --batch "$pt_batch" --threads "$threads" --quiet >>"$work/log" 2>&1
t2=$(now)
"$lema" train --model "$work/model" --data "$work/data/train.jsonl" --out "$work/train" --steps "$ft_steps" --lr "$ft_lr" \
  --schedule "$schedule" --warmup 10 --batch "$ft_batch" --seq-len 160 --device cpu --dtype fp32 --lora-r 16 --lora-alpha 32 --lora-dropout 0 \
  --checkpoint-every 1000000 --threads "$threads" --quiet >>"$work/log" 2>&1
t3=$(now)
"$lema" eval --model "$work/model" --adapter "$work/train/adapter" --data "$work/data/eval.jsonl" --out "$work/eval" \
  --questions "$questions" --max-new-tokens "$mnt" --seq-len 160 --device cpu --dtype fp32 --threads "$threads" >>"$work/log" 2>&1
t4=$(now)
python3 - "$work/eval/report.json" "$preset" "$pt_steps" "$pt_lr" "$ft_steps" "$ft_lr" "$schedule" "$threads" "$mnt" \
  "$t0" "$t1" "$t2" "$t3" "$t4" "$ft_batch" "$pt_batch" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
preset, pt, ptlr, ft, ftlr, sched, threads, mnt = sys.argv[2:10]
t = [float(x) for x in sys.argv[10:15]]
ft_batch, pt_batch = int(sys.argv[15]), int(sys.argv[16])
m = {x["name"]: x for x in r["models"]}
base = m.get("base", r["models"][0]); tuned = m.get("tuned", r["models"][-1])
print(json.dumps(dict(preset=preset, pretrain_steps=int(pt), pretrain_lr=float(ptlr), lora_steps=int(ft), lora_lr=float(ftlr),
    lora_batch=ft_batch, pretrain_batch=pt_batch, schedule=sched, threads=int(threads), max_new_tokens=int(mnt),
    data_s=round(t[1] - t[0], 1), pretrain_s=round(t[2] - t[1], 1), lora_s=round(t[3] - t[2], 1), eval_s=round(t[4] - t[3], 1),
    questions=tuned["total"], base_adherence=base["adherence"], tuned_adherence=tuned["adherence"],
    base_loss=base["eval_loss"], tuned_loss=tuned["eval_loss"], tuned_failures=tuned["failures_by_reason"])), flush=True)
PY
