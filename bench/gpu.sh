#!/usr/bin/env bash
# GPU checks and benchmarks for a machine with a real GPU, in two steps:
#
#   bench/gpu.sh package [DIR]   # here, with Rust: builds release binaries into DIR (default
#                                # target/gpu-bundle) with the Vulkan loader and the fixtures next to
#                                # them, and packs DIR.tar.xz (what the device tool carries: ~1/4 the size)
#   bench/gpu.sh run [BUNDLE] [OUT]  # there, no Rust needed: BUNDLE is DIR or DIR.tar.xz. Lists adapters,
#                                # runs the GPU tests, every kiln-bench workload on the hardware adapter
#                                # (plus matmul-4096 and dispatch-chain), the profiler's per-kernel table
#                                # of the training workload (profile.txt), and PyTorch CUDA on the same
#                                # workloads where PyTorch is installed; results go to OUT (default
#                                # BUNDLE/results), one JSON line per workload in bench.jsonl.
#                                # KILN_GPU_BATCHES (default 200) sets the training batches.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-}
DIR=${2:-$ROOT/target/gpu-bundle}
# The GPU tests: every test binary whose tests need no data files beyond the fixtures.
TESTS=(fixtures kernels elementwise autograd gpu_runtime)

package() {
  mkdir -p "$DIR"
  cd "$ROOT"
  cargo build --release --example kiln-bench --example devices
  cp target/release/examples/kiln-bench target/release/examples/devices "$DIR/"
  for test in "${TESTS[@]}"; do
    exe=$(cargo test --release --no-run --message-format=json --test "$test" 2>/dev/null |
      python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
    cp "$exe" "$DIR/test-$test"
  done
  strip "$DIR"/* 2>/dev/null || true
  cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$DIR/" 2>/dev/null ||
    echo "no libvulkan.so.1 here: the GPU machine must have its own Vulkan loader" >&2
  rm -rf "$DIR/fixtures" "$DIR/data" && cp -r tests/fixtures/torch "$DIR/fixtures"
  mkdir -p "$DIR/data" && cp -r data/mnist-sample "$DIR/data/"
  mkdir -p "$DIR/peers" && cp bench/peers/*.py "$DIR/peers/"
  cp "$0" "$DIR/gpu.sh"
  tar -cJf "$DIR.tar.xz" -C "$DIR" .
  du -sh "$DIR" "$DIR.tar.xz"
}

run() {
  if [ -f "$DIR" ]; then
    local packed=$DIR
    DIR=/tmp/kiln-gpu-bundle
    rm -rf "$DIR" && mkdir -p "$DIR" && tar -xJf "$packed" -C "$DIR"
  fi
  local out=${3:-$DIR/results} batches=${KILN_GPU_BATCHES:-200}
  mkdir -p "$out"
  # The NVIDIA driver's Vulkan ICD where the loader does not find it by itself.
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
  export LD_LIBRARY_PATH="$DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export KILN_REQUIRE_GPU=1 KILN_FIXTURES="$DIR/fixtures" KILN_DEVICE=gpu KILN_DATA="$DIR/data" KILN_OFFLINE=1
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  (command -v nvidia-smi >/dev/null && nvidia-smi -L || true) | tee "$out/gpu.txt"
  "$DIR/devices" | tee -a "$out/gpu.txt"
  local status=0
  for test in "${TESTS[@]}"; do
    # Only the `::gpu` half of each device test; every test of gpu_runtime.
    local filter=gpu
    [ "$test" = gpu_runtime ] && filter=
    "$DIR/test-$test" $filter 2>&1 | tee "$out/test-$test.log" | grep -E "^test result|FAILED|panicked|passed" || status=1
  done
  "$DIR/kiln-bench" --device gpu --batches "$batches" | tee "$out/bench.jsonl" || status=1
  "$DIR/kiln-bench" --device gpu matmul-4096 dispatch-chain | tee -a "$out/bench.jsonl" || status=1
  # The profiler's table: one for the first batch (pipelines compile), one for the timed epoch.
  KILN_PROFILE=1 "$DIR/kiln-bench" --device gpu --batches "$batches" train-seed-cnn 2>"$out/profile.txt" |
    tee -a "$out/bench.jsonl" || status=1
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    python3 "$DIR/peers/pytorch_bench.py" --cuda --batches "$batches" | tee -a "$out/bench.jsonl" || status=1
  else
    echo "PyTorch with CUDA is not installed here: no PyTorch figures" | tee -a "$out/gpu.txt"
  fi
  return $status
}

case "$MODE" in
  package) package ;;
  run) run "$@" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
