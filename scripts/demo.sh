#!/usr/bin/env bash
# The lema demo on a Debian 12 machine: install + build, make a small base
# model that knows the dataset's content as plain text (`lema model pretrain`:
# its own tokenizer, then full-parameter training; never the reply format),
# run the tiny job (dataset, train, eval, merge, GGUF export: `lema run
# examples/tiny.toml`) through the real scheduler and a local worker, print
# the eval table (base vs tuned), ask the merged model one question, and ask
# llama.cpp itself (node-llama-cpp) the same question of the exported GGUF.
#
# Every step runs a real command and says what it does; the first failure
# stops the demo with a message naming the step. Nothing is faked.
#
#   LEMA_BUILD_DIR        build directory (default: build)
#   LEMA_PRETRAIN_STEPS   pretraining steps (default: 300)
#   LEMA_DEMO_STEPS       LoRA steps (default: the spec's 300)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
build_dir=${LEMA_BUILD_DIR:-build}
lema="$build_dir/cli/lema"
current="start"

step() {
  current="$1"
  shift
  printf '\n== [%s] %s\n' "$current" "$*"
}
die() { printf '\ndemo: FAILED at step "%s": %s\n' "$current" "$1" >&2; exit 1; }
trap 'die "the command above exited with status $?"' ERR

step "build" "install what is missing and build (scripts/setup.sh)"
bash scripts/setup.sh
[[ -x "$lema" ]] || die "$lema was not built"

pipeline_start=$(date +%s)
step "clean" "remove the previous demo's model and run (demo/, runs/tiny/)"
rm -rf demo runs/tiny
mkdir -p demo

step "corpus" "lema dataset build: 5,000 lema-reply examples, the base model's plain-text corpus"
"$lema" dataset build --builder lema-reply --examples 5000 --seed 7 --out demo/corpus

# Size, steps and learning rates measured (docs/DEMO.md): this base stays at
# 0% format adherence and reached 100% after the spec's 300 LoRA steps.
step "base model" "lema model pretrain: tokenizer (2,000 tokens) + small Llama (4 layers, hidden 256, 4.2M parameters), 300 steps on the corpus as plain text into demo/model"
"$lema" model pretrain --preset small --data demo/corpus/train.jsonl --out demo/model \
  --steps "${LEMA_PRETRAIN_STEPS:-300}" --lr 2e-3 --quiet

spec=examples/tiny.toml
if [[ -n "${LEMA_DEMO_STEPS:-}" ]]; then
  # The same job with fewer (or more) LoRA steps: a copy of the spec.
  sed -E "s/^steps = .*/steps = ${LEMA_DEMO_STEPS}/" examples/tiny.toml > demo/tiny.toml
  spec=demo/tiny.toml
fi
"$lema" worker --stages | grep -x eval >/dev/null || die "this lema's worker has no eval stage; rebuild it"

step "pipeline" "lema run $spec: embedded scheduler + one CPU worker; stages $("$lema" worker --stages | paste -sd, -) (eval: loss, perplexity and format adherence on held-out questions, base vs tuned)"
"$lema" run "$spec" || die "lema run failed; see the error above and runs/tiny/logs/"
[[ -f runs/tiny/merged/config.json ]] || die "runs/tiny/merged/config.json was not written"
[[ -f runs/tiny/eval/report.md ]] || die "runs/tiny/eval/report.md was not written"

step "report" "the eval table (runs/tiny/eval/report.md)"
cat runs/tiny/eval/report.md

step "inspect" "lema inspect runs/tiny/merged: the merged Hugging Face directory (full listing: demo/inspect.txt)"
"$lema" inspect runs/tiny/merged > demo/inspect.txt
sed -n 1,3p demo/inspect.txt

question="What is the capital of France?"
system="You are a precise assistant trained using LEMA."  # lema chat's default (common/text/chat_format.h)
step "chat" "lema chat: one answer from the merged model"
"$lema" chat runs/tiny/merged --prompt "$question" --system "$system" --max-new-tokens 128

gguf=runs/tiny/model.q8_0.gguf
step "llama.cpp" "the same question to llama.cpp (node-llama-cpp's prebuilt CPU build) on $gguf, the export stage's file (what Ollama runs: docs/EXPORT.md)"
[[ -f "$gguf" ]] || die "$gguf was not written"
node_modules=${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}/node-llama-cpp/node_modules
if ! command -v node >/dev/null 2>&1; then
  echo "skipped: node is not installed (apt-get install nodejs npm)"
else
  [[ -f "$node_modules/node-llama-cpp/package.json" ]] || bash scripts/fetch_test_assets.sh node-llama-cpp
  if [[ ! -f "$node_modules/node-llama-cpp/package.json" ]]; then
    echo "skipped: node-llama-cpp could not be installed (offline?); run scripts/fetch_test_assets.sh when online"
  else
    # lema's chat template around the question, as lema chat renders it;
    # llama.cpp tokenizes it and decodes greedily up to its end-of-generation token.
    node -e 'const [m, q, s] = process.argv.slice(1);
      console.log(JSON.stringify({model: m, max_tokens: 128,
        prompt_text: `<|system|>\n${s}\n\n<|user|>\n${q}\n\n<|assistant|>\n`}));' \
      "$gguf" "$question" "$system" > demo/llama_cpp_request.json
    LEMA_NODE_MODULES="$node_modules" node tests/tools/llama_cpp_run.mjs demo/llama_cpp_request.json > demo/llama_cpp_reply.json
    node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").pop());
      if (r.error) { console.log("llama.cpp failed: " + r.error); process.exit(1); }
      console.log(r.text);' demo/llama_cpp_reply.json
  fi
fi

trap - ERR
now=$(date +%s)
printf '\ndemo: done in %d s (after the build: %d s)\n' $((now - start)) $((now - pipeline_start))
