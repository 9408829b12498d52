#!/usr/bin/env bash
# Fuzzes lema's parsers of untrusted input with libFuzzer (clang++ from
# Debian, -fsanitize=fuzzer,address,undefined), each for SECONDS (default 60)
# or RUNS inputs: the safetensors header, the wire protocol decoder, the TOML
# job spec, dataset JSONL lines and tokenizer.json. The targets are
# tests/fuzz/*_fuzz.cpp (not in the CMake build); the parsers' sources are
# compiled into them with coverage (toml++ header-only, so it is fuzzed too).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]; LEMA_FUZZ_RUNS=N runs N
# inputs instead. Findings are left as crash-* files in build/fuzz/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors protocol job_spec jsonl tokenizer_json)
out=build/fuzz
mkdir -p "$out"
cxx=(clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I. -DMSGPACK_NO_BOOST -DTOML_HEADER_ONLY=1)
base=(common/base/status.cpp common/base/log.cpp common/base/file_util.cpp common/base/bounds.cpp
      common/base/sha256.cpp)
for t in "${targets[@]}"; do
  case "$t" in
    safetensors) srcs=(common/formats/safetensors.cpp common/formats/dtype.cpp); libs=() ;;
    protocol) srcs=(common/protocol/protocol.cpp); libs=() ;;
    job_spec) srcs=(common/protocol/job_spec.cpp); libs=() ;;
    jsonl) srcs=(common/data/dataset.cpp common/text/*.cpp); libs=(-lpcre2-8) ;;
    tokenizer_json) srcs=(common/text/*.cpp); libs=(-lpcre2-8) ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  mkdir -p "$out/$t/corpus"
  echo "fuzz: building $t" >&2
  "${cxx[@]}" "tests/fuzz/${t}_fuzz.cpp" "${srcs[@]}" "${base[@]}" "${libs[@]}" -o "$out/$t/${t}_fuzz"
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
    limit=(-max_total_time="$secs")
  fi
  (cd "$out/$t" && "./${t}_fuzz" "${limit[@]}" -max_len=65536 -print_final_stats=1 corpus 2>&1 | tail -15)
done
