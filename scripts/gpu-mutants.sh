#!/bin/bash
# Mutants of the prefill product, each a one-line sed edit of one file: in a
# copy of this tree (one build directory, rebuilt after each edit), each
# must make test_kernels_cuda's test_matmul_split fail; the copy unedited
# must pass it (the harness itself works). One device call, ~2 minutes.
#   run:  carry .device-kit; source .device-kit/env.sh && scripts/gpu-mutants.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-mutants.log") 2>&1
M=/tmp/mut
rm -rf $M && mkdir -p $M
tar --exclude=./build-gpu --exclude=./build --exclude=./.bench-kit --exclude=./.device-kit --exclude=./.old-src \
  -cf - . | tar -xf - -C $M
cmake -S $M -B $M/b -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
F=kernels/cuda/matmul_wgmma.cu
cp $M/$F /tmp/mut-orig.cu
one() { # NAME SED-EXPRESSION (on $F; empty: unedited)
  cp /tmp/mut-orig.cu $M/$F
  if [ -n "$2" ]; then
    sed -i "$2" $M/$F
    cmp -s /tmp/mut-orig.cu $M/$F && { echo "$1: the edit matched nothing (mutant not made)"; return; }
  fi
  cmake --build $M/b -j16 --target test_kernels_cuda 2>&1 | grep -E " error" && { echo "$1: build failed"; return; }
  XF_TEST_FILTER=test_matmul_split timeout ${TLIM:-120} $M/b/test_kernels_cuda >/tmp/mut-run.txt 2>&1
  rc=$?
  echo "$1: exit $rc $(grep -E 'PASSED|FAILED|rel err [0-9.e-]+;' /tmp/mut-run.txt | head -2 | tr '\n' ' ' | cut -c1-200)"
}
one "unedited (must pass)" ""
one "lo plane dropped (must fail)" 's/^        mw_mma<false>(c, mw_desc(a + off), mw_desc(bl + off));$//'
one "every group scaled by the tile's first (must fail)" \
  's/float2 ab0 = sm.ab\[s\]\[rl + gid\]\[slot\], ab1 = sm.ab\[s\]\[rl + gid + 8\]\[slot\];/float2 ab0 = sm.ab[s][rl + gid][0], ab1 = sm.ab[s][rl + gid + 8][0];/'
one "x sums of the wrong group (must fail)" 's/sm.sx\[s\]\[slot\]\[j \* 8 + tig \* 2\]/sm.sx[s][0][j * 8 + tig * 2]/'
