#!/usr/bin/env bash
# The lema demo on a fresh Debian 12 machine: install + build, make a small
# model and its tokenizer, run the tiny job (dataset, train, eval, merge),
# print the eval table and one chat answer from the merged model.
#
# Every step runs a real command. A step whose command has not landed in
# this build stops the demo with a message naming it: nothing is faked.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
build_dir=${LEMA_BUILD_DIR:-build}
lema="$build_dir/cli/lema"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: FAILED at step "%s": %s\n' "$1" "$2" >&2; exit 1; }
# need "model pretrain": the subcommand must exist in this build.
need() {
  # shellcheck disable=SC2086
  "$lema" $1 --help >/dev/null 2>&1 || die "$1" "\`lema $1\` does not exist in this build yet"
}

step "install and build (scripts/setup.sh)"
bash scripts/setup.sh

step "data and tokenizer: lema dataset build, lema tokenizer train"
need "dataset build"
need "tokenizer train"
mkdir -p demo/model
"$lema" dataset build --examples 5000 --seed 7 --out demo/corpus || die "dataset build" "see the error above"
# The tokenizer's corpus: the examples' text, one example a line.
sed -E 's/"(question|answer|explanation|confidence|category)"://g; s/[{}"]//g; s/,/ /g' \
  demo/corpus/train.jsonl > demo/corpus/text.txt
"$lema" tokenizer train --corpus demo/corpus/text.txt --vocab 2000 --pad --out demo/model \
  || die "tokenizer train" "see the error above"

step "small model: lema model init"
need "model init"
"$lema" model init --preset small --out demo/model --force || die "model init" "see the error above"

step "teach it the content as plain text: lema model pretrain"
need "model pretrain"
"$lema" model pretrain --model demo/model --data demo/corpus/train.jsonl --steps 800 \
  || die "model pretrain" "see the error above"

step "the pipeline: lema run examples/tiny.toml"
"$lema" run examples/tiny.toml || die "lema run" "see the error above and runs/tiny/logs/"

step "eval table (base vs tuned)"
[[ -f runs/tiny/eval/report.md ]] || die "eval" "runs/tiny/eval/report.md was not written"
cat runs/tiny/eval/report.md

step "one chat answer from the merged model"
need "chat"
"$lema" chat --model runs/tiny/merged --prompt "What is the capital of France?" --max-new-tokens 64 \
  || die "chat" "see the error above"

printf '\ndemo: done in %d s\n' $(( $(date +%s) - start ))
