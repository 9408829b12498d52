#!/usr/bin/env bash
# Fuzzes lema's parsers of untrusted input with libFuzzer (clang++ from
# Debian, -fsanitize=fuzzer,address,undefined), each for SECONDS (default 60)
# or RUNS inputs: the safetensors header, the wire protocol decoder, the TOML
# job spec, dataset JSONL lines and tokenizer.json. The targets are
# tests/fuzz/*_fuzz.cpp (not in the CMake build); tests/fuzz/fuzz.mk compiles
# each parser source once with coverage (toml++ header-only, so it is fuzzed
# too) and links the targets from the shared objects.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]; LEMA_FUZZ_RUNS=N runs N
# inputs instead; LEMA_FUZZ_OUT=DIR builds there (default build/fuzz).
# Findings are left as crash-* files in OUT/TARGET/; exit 1 on any.
# docs/FUZZING.md has the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors protocol job_spec jsonl tokenizer_json)
out="${LEMA_FUZZ_OUT:-build/fuzz}"
mkdir -p "$out"
bins=()
for t in "${targets[@]}"; do
  case "$t" in
    safetensors|protocol|job_spec|jsonl|tokenizer_json) bins+=("$out/$t/${t}_fuzz") ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
echo "fuzz: building ${targets[*]}" >&2
make -s -f tests/fuzz/fuzz.mk OUT="$out" -j"${LEMA_FUZZ_JOBS:-1}" "${bins[@]}"
found=0
for t in "${targets[@]}"; do
  mkdir -p "$out/$t/corpus"
  seeds="$out/$t/corpus"
  case "$t" in
    safetensors)
      printf '\x4f\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"a":"b"},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}12345678' \
        > "$seeds/seed1" ;;
    job_spec) cp examples/*.toml "$seeds/" 2>/dev/null || printf '[model]\npath = "/m"\n[train]\nsteps = 5\n' > "$seeds/seed1" ;;
    jsonl) printf '{"question":"q","answer":"a","explanation":"e"}\n{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n' > "$seeds/seed1" ;;
    tokenizer_json) cp ~/.cache/lema-test-assets/*/tokenizer.json "$seeds/" 2>/dev/null || true ;;
    protocol) ;;
  esac
  if [ -n "${LEMA_FUZZ_RUNS:-}" ]; then
    limit=(-runs="$LEMA_FUZZ_RUNS")
  else
    limit=(-max_total_time="$secs" -seed=1)  # the short run (ctest) repeats itself
  fi
  echo "fuzz: running $t (${limit[*]})" >&2
  start=$(date +%s)
  if ! (cd "$out/$t" && "./${t}_fuzz" "${limit[@]}" -max_len=65536 -print_final_stats=1 corpus > run.log 2>&1); then
    found=1
    echo "fuzz: $t FOUND something: $out/$t/run.log" >&2
  fi
  tail -12 "$out/$t/run.log"
  echo "fuzz: $t done in $(( $(date +%s) - start )) s" >&2
done
exit $found
