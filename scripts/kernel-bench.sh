#!/usr/bin/env bash
# Builds scripts/kernel_bench.c against Sources/CKernels (the same flags Package.swift gives
# the kernels) and runs it a few times: decode's matrix products alone, as GB/s of weights.
#   scripts/kernel-bench.sh [runs=5] [threads=2] [avx2]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}; THREADS=${2:-2}; MODE=${3:-}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
BLAS_CFLAGS=$(pkg-config --cflags openblas)
BLAS_LIBS=$(pkg-config --libs openblas)
# shellcheck disable=SC2086
cc -O3 -fno-math-errno -std=gnu11 -ISources/CKernels/include -ISources/CKernels $BLAS_CFLAGS \
   scripts/kernel_bench.c Sources/CKernels/*.c -o "$OUT/kernel_bench" $BLAS_LIBS -lpthread -lm
for ((i = 0; i < RUNS; i++)); do "$OUT/kernel_bench" "$THREADS" 300 $MODE; done
