#!/bin/bash
# Mutants of the prefill attention (kernels/cuda/attn_prefill.cu: the
# tiled KQ and KQV and their fused form), each a one-line sed edit: in a
# copy of this tree (one build
# directory, rebuilt after each edit) each must make a test fail; the copy
# unedited must pass them (the harness itself works). Stops starting
# mutants at LIMIT seconds. One device call, ~3-4 minutes.
#   run:  carry .device-kit; source .device-kit/env.sh && scripts/gpu-mutants-attn.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
LIMIT=${LIMIT:-230}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-mutants-attn.log") 2>&1
t0=$(date +%s)
M=/tmp/mut
rm -rf $M && mkdir -p $M
tar --exclude=./build-gpu --exclude=./build --exclude=./.bench-kit --exclude=./.device-kit --exclude=./.old-src \
  -cf - . | tar -xf - -C $M
cmake -S $M -B $M/b -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
D=kernels/cuda
for f in attn_prefill.cu; do cp $M/$D/$f /tmp/mut-orig-$f; done
KT="test_kq test_kqv test_kq_inf test_kqv_causal_zeros"
one() { # NAME FILE SED-EXPRESSION (on kernels/cuda/FILE; empty: unedited)
  if [ $(($(date +%s) - t0)) -gt $LIMIT ]; then
    echo "$1: not run (time)"
    return
  fi
  for f in attn_prefill.cu; do cp /tmp/mut-orig-$f $M/$D/$f; done
  if [ -n "$3" ]; then
    sed -i "$3" $M/$D/$2
    cmp -s /tmp/mut-orig-$2 $M/$D/$2 && { echo "$1: the edit matched nothing (mutant not made)"; return; }
  fi
  cmake --build $M/b -j16 --target test_kernels_cuda test_kernels_cuda_graph 2>&1 | grep -E " error" &&
    { echo "$1: build failed"; return; }
  local r=""
  for t in $KT; do
    (cd $M/b && XF_TEST_FILTER=$t timeout 60 ./test_kernels_cuda >/tmp/mut-run.txt 2>&1)
    r="$r $t:$?"
  done
  (cd $M/b && XF_TEST_FILTER=test_attn_prefill_fused timeout 120 ./test_kernels_cuda_graph >/tmp/mut-run.txt 2>&1)
  r="$r test_attn_prefill_fused:$?"
  echo "$1 [$(($(date +%s) - t0)) s]:$r"
}
one "unedited (all 0)" attn_prefill.cu ""
one "kq: an Inf's score not computed again (test_kq_inf fails)" attn_prefill.cu 's/a = ap_kq_exact(/a += 0.0f * ap_kq_exact(/'
one "small.big dropped (test_kq, test_kqv fail)" attn_prefill.cu 's/^                ap_mma(c\[mt\]\[nt\], as\[mt\], bb);$//'
one "the default fusion writes kq's -inf (test_attn_prefill_fused fails)" attn_prefill.cu 's/if (ap_kq_launch(st, kq, 0) != 0)/if (ap_kq_launch(st, kq, 1) != 0)/'
one "kqv: a non-finite output not computed again (test_kqv_causal_zeros fails)" attn_prefill.cu 's/a = ap_kqv_exact<CAUSAL>(/a += 0.0f * ap_kqv_exact<CAUSAL>(/'
echo "end at $(($(date +%s) - t0)) s"
