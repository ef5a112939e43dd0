#!/bin/bash
# One call on the GPU machine for issue 13's one-token kernels (gemv.cu,
# attn_decode.cu): build this tree (after) and the checkout it sits in
# (before, BEFORE_DIR, default ..), the kernel tests and compute-sanitizer
# memcheck on them, the graph-vs-eager tests, greedy tokens of the default
# model before and after, bench_gemv_cuda (copy bandwidth, per-type matvec,
# attention), xfdb `bench` on GPT-2 124M F16 and the Qwen2.5-0.5B shapes
# (F16, Q4_K_M-like) before and after, and with LLAMA=1 llama.cpp's
# llama-bench on the same files (its build starts first, in the background).
#   from the device checkout:  cd .gpuwt && source ../.device-kit/env.sh && scripts/gpu-gemv.sh
# Needs a Qwen2 vocabulary GGUF at $VOCAB (default vocab-qwen2.gguf here).
# FULL=0 (a first look): no before build, no sanitizer, after only.
# Results go to $OUT (or /tmp/gpu-out): gpu-gemv.log, bench-gemv.txt.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-gemv.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
here=$(pwd)
BEFORE_DIR=${BEFORE_DIR:-..}
VOCAB=${VOCAB:-$here/vocab-qwen2.gguf}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
if [ "${LLAMA:-0}" = 1 ]; then
  (bash "$BEFORE_DIR/.bench-kit/build-llama.sh" cuda /tmp/llama >/tmp/llama-build.txt 2>&1; echo "rc $?" >>/tmp/llama-build.txt) &
  llama_pid=$!
fi
cfg="-DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo"
FULL=${FULL:-1}
X0=/tmp/b0/xfdb
if [ $FULL = 1 ]; then
  (cmake -S "$BEFORE_DIR" -B /tmp/b0 $cfg >/dev/null && cmake --build /tmp/b0 -j6 --target xfdb >/tmp/b0.log 2>&1) &
  b0=$!
fi
cmake -S . -B build-gpu $cfg >/dev/null && cmake --build build-gpu -j$([ $FULL = 1 ] && echo 10 || echo 16) 2>&1 |
  grep -E "error|warning" | grep -v cmocka.h
[ $FULL = 1 ] && wait $b0
B=build-gpu
X=$B/xfdb
[ -x $X ] && [ -x $B/test_kernels_cuda_gemv ] && { [ $FULL = 0 ] || [ -x $X0 ]; } || { echo BUILD FAILED; tail -20 /tmp/b0.log; exit 1; }
stamp built
# the models, on the CPU while the GPU tests run
(
  $B/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null
  $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km "$VOCAB" >/dev/null
  $B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 "$VOCAB" >/dev/null
) &
mk=$!
echo "== tests"
for t in test_kernels_cuda_gemv test_kernels_cuda_attn test_kernels_cuda; do
  timeout 300 $B/$t >"$OUT/$t.txt" 2>&1
  echo "$t: exit $? $(grep -E 'PASSED|FAILED|cases checked' "$OUT/$t.txt" | tr '\n' ' ')"
  grep -E "^\[  (ERROR|FAILED) \]|error|fail" "$OUT/$t.txt" | head -5
done
XF_GRAPH_MODELS= timeout 300 $B/test_exec_graph >"$OUT/test_exec_graph.txt" 2>&1
echo "test_exec_graph: exit $? $(grep -E 'PASSED|FAILED' "$OUT/test_exec_graph.txt" | tr '\n' ' ')"
stamp tests
echo "== compute-sanitizer memcheck"
for t in $([ $FULL = 1 ] && echo test_kernels_cuda_gemv test_kernels_cuda_attn); do
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $B/$t >"$OUT/san-$t.txt" 2>&1
  echo "memcheck $t: exit $? $(grep -E 'ERROR SUMMARY' "$OUT/san-$t.txt" | tail -1)"
done
stamp sanitizer
echo "== greedy tokens of the default model, before / after"
g() { "$@" --backend cuda --batch -x 'run "ROMEO:"' -x 'generate 20 --ids' 2>&1 | tail -1; }
tb=$([ $FULL = 1 ] && cd "$BEFORE_DIR" && g /tmp/b0/xfdb)
ta=$(g $X)
echo "before: $tb"
echo "after:  $ta"
[ "$tb" = "$ta" ] && echo "greedy tokens: unchanged" || echo "greedy tokens: CHANGED"
stamp greedy
echo "== bench_gemv_cuda"
$B/bench_gemv_cuda ${GEMV_QUICK:-} | tee "$OUT/bench-gemv.txt"
stamp bench_gemv
wait $mk
ls -la /tmp/*.gguf
if [ "${LLAMA:-0}" = 1 ]; then
  stamp "waiting for the llama.cpp build (timings below on an idle CPU)"
  wait $llama_pid
  tail -3 /tmp/llama-build.txt
fi
echo "== xfdb bench --decode 128, before / after"
for m in /tmp/g124-f16.gguf /tmp/q05-q4km.gguf /tmp/q05-f16.gguf; do
  for side in $([ $FULL = 1 ] && echo before) after; do
    x=$X; [ $side = before ] && x=$X0
    echo "-- $side $(basename $m)"
    $x $m --backend cuda --batch -x 'bench --prefill 128 --decode 128 --variants opt' 2>&1 | grep -vE "^\s*$" | head -40
  done
done
stamp xfdb_bench
if [ "${LLAMA:-0}" = 1 ]; then
  echo "== llama.cpp"
  LB=/tmp/llama/llama.cpp/build/bin/llama-bench
  for m in /tmp/g124-f16.gguf /tmp/q05-q4km.gguf /tmp/q05-f16.gguf; do
    $LB -m $m -ngl 99 -p 512 -n 128 -r 3 2>&1 | grep -E "^\|" 
  done
  stamp llama
fi
stamp end
