#!/usr/bin/env bash
# Installs what is missing (Debian 12), configures and builds lema.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#   LEMA_BUILD_DIR  build directory (default: build)
#   LEMA_BUILD_TYPE CMake build type (default: Release)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ pkg-config ccache ninja-build git libtorch-dev libopenblas0-pthread
          libzmq3-dev cppzmq-dev libsqlite3-dev libsqlitecpp-dev libmsgpack-cxx-dev
          libgtest-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
          libsentencepiece-dev libpcre2-dev libicu-dev python3-jinja2)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=${LEMA_BUILD_DIR:-build}
generator=()
if [[ ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE="${LEMA_BUILD_TYPE:-Release}" ${LEMA_CMAKE_ARGS:-}
jobs=$(nproc)
# A LibTorch translation unit takes ~1.5 GB to compile: one job per 2 GB available.
mem_gb=$(awk '/MemAvailable/ {print int($2/1024/1024)}' /proc/meminfo)
((mem_gb / 2 < jobs)) && jobs=$((mem_gb / 2 > 0 ? mem_gb / 2 : 1))
cmake --build "$build_dir" -j "$jobs"
echo "setup: built in $build_dir"
