#!/usr/bin/env bash
# Builds lema on a GPU machine against the LibTorch inside the installed
# PyTorch (CUDA), with the other libraries unpacked from Debian .deb files
# (see docs/OPERATIONS.md). Usage: bash scripts/gpu_build.sh [build-dir]
#   LEMA_DEBS: folder of .deb files (default .devdeps), unpacked to /opt/lemadeps
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-gpu}
debs=${LEMA_DEBS:-.devdeps}
if [[ -d "$debs" ]]; then
  # shellcheck disable=SC1090
  source <(bash "$debs/unpack-debs.sh" "$debs" /opt/lemadeps)
fi
arch=${TORCH_CUDA_ARCH_LIST:-9.0}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_CUDA_ARCH_LIST="$arch" \
  -DCMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH:-$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')}"
cmake --build "$build_dir" -j "$(nproc)"
