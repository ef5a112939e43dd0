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
cmake -S . -B build-gpu -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null \
  && cmake --build build-gpu -j16 2>&1 | grep -E "error|warning|Built target xfdb" || { echo BUILD FAILED; exit 1; }
echo "== ctest"
(cd build-gpu && ctest -j4 --output-on-failure 2>&1 | tail -25)
X=build-gpu/xfdb
echo "== sanitizer (memcheck, racecheck) on the cuda kernel and model tests"
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 build-gpu/test_kernels_cuda >"$OUT/san-$tool-kernels.txt" 2>&1
  echo "$tool test_kernels_cuda: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san-$tool-kernels.txt" | tail -1)"
  compute-sanitizer --tool $tool --error-exitcode 9 $X --backend cuda --batch -x 'run "ROMEO:\nWhat light"' -x 'generate 4' \
    >"$OUT/san-$tool-xfdb.txt" 2>&1
  echo "$tool xfdb run+generate: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san-$tool-xfdb.txt" | tail -1)"
done
echo "== default model on cuda: bench"
$X --backend cuda --batch -x 'bench --prefill 128 --decode 128'
$X --backend cuda --batch -x 'bench --overhead --decode 128'
$X --backend cpu --threads 16 --batch -x 'bench --prefill 128 --decode 128 --reps 3'
echo "== 124M-shaped"
build-gpu/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null && build-gpu/bench_make_gpt2 /tmp/g124-f32.gguf f32 >/dev/null
for f in f16 f32; do
  echo "-- xfdb $f"
  $X /tmp/g124-$f.gguf --backend cuda --batch -x 'bench --prefill 128,512 --decode 128 --variants opt'
done
$X /tmp/g124-f16.gguf --backend cuda --batch -x 'bench --overhead --decode 128'
$X /tmp/g124-f16.gguf --backend cuda --batch -x 'run "Hello"' -x 'profile'
$X /tmp/g124-f16.gguf --backend cpu --threads 16 --batch -x 'bench --prefill 128 --decode 32 --reps 2 --variants opt'
echo "-- hf transformers"
python3 scripts/bench_hf_gpt2.py 128
