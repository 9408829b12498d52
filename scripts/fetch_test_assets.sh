#!/usr/bin/env bash
# Fetches optional assets that some integration tests use, into a cache
# directory shared by worktrees and runs. Idempotent; never fails the caller
# when offline: a test whose asset is missing skips with a message.
#   LEMA_ASSET_CACHE (default ~/.cache/lema-test-assets)
set -uo pipefail
cache=${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}
mkdir -p "$cache"

# --- node-llama-cpp: llama.cpp itself (prebuilt for Linux x64), used by
# tests/integration/gguf_llama_cpp_test.cpp through tests/tools/llama_cpp_run.mjs
# to load lema's GGUF exports. Installed into $cache/node-llama-cpp.
fetch_node_llama_cpp() {
  local version=3.22.1
  local dir="$cache/node-llama-cpp"
  if [ -f "$dir/node_modules/node-llama-cpp/package.json" ] &&
     grep -q "\"version\": \"$version\"" "$dir/node_modules/node-llama-cpp/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_test_assets: npm not found; skipping node-llama-cpp (GGUF tests will skip)" >&2
    return 0
  fi
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name": "lema-test-node-llama-cpp", "private": true}' > "$dir/package.json"
  # --ignore-scripts: the prebuilt binaries come as optional dependencies; the
  # postinstall would only try to download or build llama.cpp from source.
  if ! (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --fetch-retries=1 --fetch-timeout=30000 "node-llama-cpp@$version" >/dev/null 2>&1); then
    echo "fetch_test_assets: could not install node-llama-cpp@$version (offline?); GGUF tests will skip" >&2
  fi
  return 0
}

fetch_node_llama_cpp
exit 0
