#!/usr/bin/env bash
# Compile-checks the CUDA kernels: a real FORCE_CUDA=1 build of detzoo._C (what a user with a GPU
# runs), written to a throwaway folder. Nothing CUDA can run on this machine; this proves it builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
site=$(python -c 'import site; print(site.getsitepackages()[0])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export FORCE_CUDA=1 CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export CPATH="$site/nvidia/cu13/include${CPATH:+:$CPATH}" MAX_JOBS="${MAX_JOBS:-2}"
start=$(date +%s)
python setup.py -q build_ext --build-temp "$tmp/temp" --build-lib "$tmp/lib" > "$tmp/build.log" 2>&1 || {
  tail -n 60 "$tmp/build.log"; echo "CUDA build check FAILED"; exit 1; }
ls "$tmp"/temp/ops/cuda/*.o | sed 's|.*/|compiled: ops/cuda/|'
echo "CUDA build check passed in $(( $(date +%s) - start ))s"
