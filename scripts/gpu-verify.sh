#!/bin/bash
# One short call on the GPU machine after a change that touches the CUDA path
# without aiming at speed: build, every ctest test (the CUDA ones run there),
# compute-sanitizer memcheck over the CUDA tests, greedy tokens on cuda (graphs
# on, off, unfused) against the cpu backend, and decode timings of the
# default model and the 124M shape (to see that nothing got slower).
#   scripts/stage-device-kit.sh   (once, here)
#   run: carry .device-kit; source .device-kit/env.sh && scripts/gpu-verify.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-verify.log") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
cmake -S . -B build-gpu -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build-gpu -j16 2>&1 | grep -E "error|warning" ; [ -x build-gpu/xfdb ] || { echo BUILD FAILED; exit 1; }
echo "== ctest"
(cd build-gpu && ctest -j8 --output-on-failure >"$OUT/ctest.log" 2>&1; grep -E "tests passed|Failed|\*\*\*|Not Run" "$OUT/ctest.log" | head -30)
echo "== compute-sanitizer"
for t in test_exec_graph test_kernels_cuda test_kernels_cuda_graph test_kernels_cuda_gemv test_kernels_cuda_attn; do
  [ -x build-gpu/$t ] || continue
  compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/$t >"$OUT/san-$t.txt" 2>&1
  echo "memcheck $t: exit $? $(grep -E 'ERROR SUMMARY' "$OUT/san-$t.txt" | tail -1)"
done
X=build-gpu/xfdb
echo "== greedy tokens: cpu, then cuda with graphs on / unfused / off"
P='run "ROMEO:\nWhat light through yonder window"'
cpu=$($X --backend cpu --batch -x "$P" -x 'generate 30 --ids --ignore-eos' 2>&1 | tail -1)
echo "cpu      $cpu"
for g in on unfused off; do
  t=$($X --backend cuda --batch -x "graph $g" -x "$P" -x 'generate 30 --ids --ignore-eos' 2>&1 | tail -1)
  [ "$t" = "$cpu" ] && echo "cuda $g: identical" || echo "cuda $g: DIFFERENT: $t"
done
echo "== decode timings"
$X --backend cuda --batch -x 'bench --prefill 128 --decode 128 --variants opt' 2>&1 | grep -vE "^ +[a-z]+ +[0-9]"
build-gpu/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null &&
  $X /tmp/g124-f16.gguf --backend cuda --batch -x 'bench --prefill 128,512 --decode 128 --variants opt' 2>&1 | grep -vE "^ +[a-z]+ +[0-9]"
$X --backend cuda --batch -x 'bench --overhead --decode 128' 2>&1 | tail -6
