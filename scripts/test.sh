#!/usr/bin/env bash
# Installs, builds, and runs every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_test_assets.sh || true  # real chat templates, llama.cpp for the GGUF tests; offline: those tests skip
build_dir=${LEMA_BUILD_DIR:-build}
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
