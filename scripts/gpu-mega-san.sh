#!/bin/bash
# compute-sanitizer memcheck over `graph mega` (the decode megakernel) on three
# fixtures: xfdb with `graph mega` and a short bench, one report each in $OUT.
#   run:  carry .device-kit; source .device-kit/env.sh && scripts/gpu-mega-san.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
B=build-gpu
t0=$(date +%s); stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build $B -j16 --target xfdb 2>&1 | grep -E " error"
stamp built
for f in tests/fixtures/qwen2/qwen2-gqa-f32.gguf tests/fixtures/qwen2/qwen2-mqa-q8_0.gguf models/tiny-shakespeare-gpt2-f16.gguf; do
  timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 $B/xfdb $f --backend cuda --batch -x 'graph mega' -x 'bench --prefill 8 --decode 8 --reps 1 --variants opt' -x graph > $OUT/san-$(basename $f).txt 2>&1
  echo "$f memcheck exit $?: $(grep -E 'ERROR SUMMARY|megakernel' $OUT/san-$(basename $f).txt | tr '\n' ' ')"
  stamp
done
