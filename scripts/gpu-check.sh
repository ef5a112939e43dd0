#!/bin/bash
# One call on the GPU machine: build with CUDA, run every test, the GPT-2
# reference end to end on cuda, compute-sanitizer, and the 124M-shaped speed
# figures beside HF transformers. Results go to $OUT (or /tmp/gpu-out).
# Stage first, here: scripts/stage-device-kit.sh; then run with
#   carry .device-kit:  source .device-kit/env.sh && scripts/gpu-check.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
log=$OUT/gpu-check.log
exec > >(tee "$log") 2>&1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
cmake -S . -B build-gpu -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null \
  && cmake --build build-gpu -j16 2>&1 | grep -E "error|warning|Built target xfdb" || { echo BUILD FAILED; exit 1; }
echo "== ctest"
(cd build-gpu && ctest -j6 --output-on-failure 2>&1 | tail -15)
X=build-gpu/xfdb
echo "== compute-sanitizer"
for t in "memcheck build-gpu/test_kernels_cuda" "racecheck build-gpu/test_kernels_cuda" "memcheck build-gpu/test_model" \
         "memcheck build-gpu/test_exec_graph" "memcheck build-gpu/test_kernels_cuda_graph"; do
  set -- $t
  compute-sanitizer --tool $1 --error-exitcode 9 $2 >"$OUT/san-$1-$(basename $2).txt" 2>&1
  echo "$1 $(basename $2): exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san-$1-$(basename $2).txt" | tail -1)"
done
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 $X --backend cuda --batch -x 'run "ROMEO:\nWhat light"' \
    -x 'break blk.3.out if nan' -x 'generate 8' >"$OUT/san-$tool-xfdb.txt" 2>&1
  echo "$tool xfdb run+generate (graphs + a breakpoint): exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san-$tool-xfdb.txt" | tail -1)"
done
echo "== default model"
$X --backend cuda --batch -x 'bench --prefill 128 --decode 128'
$X --backend cuda --batch -x 'bench --overhead --decode 128'
$X --backend cuda --batch -x 'graph off' -x 'bench --prefill 10 --decode 128 --variants opt'
echo "== 124M-shaped"
build-gpu/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null && build-gpu/bench_make_gpt2 /tmp/g124-f32.gguf f32 >/dev/null
for f in f16 f32; do
  echo "-- xfdb $f (graphs on)"
  $X /tmp/g124-$f.gguf --backend cuda --batch -x 'bench --prefill 128,512 --decode 128 --variants opt'
  echo "-- xfdb $f (graphs off)"
  $X /tmp/g124-$f.gguf --backend cuda --batch -x 'graph off' -x 'bench --prefill 128 --decode 128 --variants opt'
done
$X /tmp/g124-f16.gguf --backend cuda --batch -x 'bench --overhead --decode 128'
echo "-- hf transformers"
python3 scripts/bench_hf_gpt2.py 128
