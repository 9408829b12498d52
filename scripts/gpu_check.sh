#!/usr/bin/env bash
# On the GPU machine: builds lema with CUDA, runs every unit test through
# ctest, then the reference checks against the Python libraries installed
# there (Hugging Face tokenizers/sentencepiece, transformers, PEFT).
# Each step's log goes to LOG_DIR/<step>.log; the script goes on after a
# failed step and exits non-zero if any step failed.
# Usage: bash scripts/gpu_check.sh [LOG_DIR] [step...]
#   steps: build ctest tokenizer hf merge bench (default: all but bench;
#   bench is bench/streaming_bench.py, ~9 minutes, results in LOG_DIR/bench/)
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=${1:-gpu-logs}; shift || true
steps=("$@"); [[ ${#steps[@]} -eq 0 ]] && steps=(build ctest tokenizer hf merge)
mkdir -p "$log_dir"
# The built binaries need the unpacked libraries at run time too.
if [[ -d ${LEMA_DEBS:-.devdeps} ]]; then
  # shellcheck disable=SC1090
  source <(bash "${LEMA_DEBS:-.devdeps}/unpack-debs.sh" "${LEMA_DEBS:-.devdeps}" /opt/lemadeps)
fi
lema=build-gpu/cli/lema
failed=0
run_step() {
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$log_dir/$name.log" 2>&1; then echo "ok    $name ($((SECONDS - t0)) s)"
  else echo "FAIL  $name ($((SECONDS - t0)) s): see $log_dir/$name.log"; tail -n 30 "$log_dir/$name.log"; failed=1; fi
}
for s in "${steps[@]}"; do
  case $s in
    build) run_step build bash scripts/gpu_build.sh build-gpu ;;
    ctest) run_step ctest ctest --test-dir build-gpu --output-on-failure -j 8 --timeout 300 ;;
    tokenizer) run_step tokenizer python3 tests/gpu/tokenizer_parity.py --lema "$lema" ;;
    hf) run_step hf python3 tests/gpu/hf_parity.py --lema "$lema" ;;
    merge) run_step merge python3 tests/gpu/peft_merge_parity.py --lema "$lema" ;;
    bench) run_step bench python3 bench/streaming_bench.py --lema "$lema" --out "$log_dir/bench" ;;
    *) echo "unknown step: $s" >&2; exit 2 ;;
  esac
done
exit $failed
