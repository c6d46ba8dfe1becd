#!/usr/bin/env bash
# Data-parallel scaling on this machine: the reference CNN and a 5.8 M-parameter MLP trained on 1 and
# 2 MPI ranks (examples/scaling.rs), one JSON line per model and rank count, then the all-reduce
# bandwidth. Needs Open MPI and libclang (apt-get install openmpi-bin libopenmpi-dev libclang-dev).
#
#   bench/scaling.sh [--steps 40] [--batch-size 64]     (KILN_DEVICE=gpu for a GPU per rank)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/kiln-xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
cargo build -q --release --features mpi --example scaling
cores=$(nproc)
for ranks in 1 2; do
  # The cores are shared between the ranks: each gets cores / ranks CPU threads.
  threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
  mpirun --oversubscribe -np "$ranks" -x RAYON_NUM_THREADS="$threads" \
    target/release/examples/scaling "$@"
done
