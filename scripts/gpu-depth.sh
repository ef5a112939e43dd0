#!/bin/bash
# Decode at depth in one device call: the chunked softmax of the decode
# fusion (opt_body.h csm_*) checked before it is timed, beside the tree in
# OLD_SRC (a `git archive` of the main it changes, carried) and llama.cpp
# built in the same lease:
#   - test_kernels_cuda_graph (the fusion = the three opt ops, bit for bit,
#     rows of 1 to 9001 keys), test_kernels_cuda (softmax), test_exec_graph
#     (op by op = graphs = megakernel, at 30 tokens and at position 4400);
#   - decode ms/token at position 0 and DEPTH (4096), `graph on` and
#     `graph mega`, this tree and OLD_SRC's, on the Qwen2.5-0.5B Q4_K_M
#     bench file; one token's attention alone (bench_gemv_cuda attn), both
#     trees; llama-bench -d 0,DEPTH on the same file.
# PREFILL="512 2048" times prefill too (both trees; llama-bench -p);
# BESIDE_ENV="NAME=VALUE" times this tree's build again with that environment
# beside ("env"; session 15: XF_NO_FA1=1 on branch wip-fa1).
#   run:  carry .device-kit .bench-kit (and OLD_SRC);
#         source .device-kit/env.sh && scripts/gpu-depth.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-depth.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
llama_start
if [ -n "${OLD_SRC:-}" ]; then
  (cmake -S "$OLD_SRC" -B /tmp/old-build -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    nice cmake --build /tmp/old-build -j8 --target xfdb bench_gemv_cuda 2>&1 | grep -E " error") >/tmp/old-build.txt 2>&1 &
  old_pid=$!
fi
B=build-gpu
cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build $B -j16 --target xfdb test_kernels_cuda_graph test_kernels_cuda test_exec_graph bench_make_qwen2 bench_gemv_cuda 2>&1 |
  grep -E " error|warning" | grep -v cmocka.h
[ -x $B/xfdb ] || { echo BUILD FAILED; exit 1; }
stamp built
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
$B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $VOCAB >/dev/null &
mk=$!
ok=1
for t in test_kernels_cuda_graph test_kernels_cuda test_exec_graph; do
  (cd $B && XF_GRAPH_MODELS= timeout 400 ./$t >"$OUT/$t.log" 2>&1) || ok=0
  echo "$t: $(grep -cE '^\[       OK \]' "$OUT/$t.log") ok, $(grep -cE '^\[  FAILED  \]' "$OUT/$t.log") failed"
  grep -E "FAILED|fail|differs|attn_fused|# .*position" "$OUT/$t.log" | head -8
  stamp $t
done
[ $ok = 1 ] || echo "A TEST FAILED (timings below are for the record only)"
wait $mk
[ -n "${old_pid:-}" ] && { wait $old_pid; cat /tmp/old-build.txt; }
DEPTH=${DEPTH:-4096}
echo "== decode ms/token, Qwen2.5-0.5B shape Q4_K_M (bench --prefill 16 --decode 64 --depth D --reps 3)"
for d in 0 $DEPTH; do
  for g in on mega; do
    for v in new ${BESIDE_ENV:+env} old; do
      x=$B/xfdb
      [ $v = old ] && x=/tmp/old-build/xfdb
      [ -x $x ] || continue
      printf 'depth %-5s %-5s %-4s ' $d $g $v
      env ${BESIDE_ENV:+$([ $v = env ] && echo $BESIDE_ENV)} timeout 120 $x /tmp/q05-q4km.gguf --backend cuda --batch \
        -x "graph $g" -x "bench --prefill 16 --decode 64 --depth $d --reps 3 --variants opt" 2>&1 | grep -E "^opt +decode" | head -1
    done
  done
done
if [ -n "${PREFILL:-}" ]; then
  echo "== prefill tokens/s, Qwen2.5-0.5B shape Q4_K_M (bench --prefill P --decode 16 --reps 3)"
  for p in $PREFILL; do
    for v in new old; do
      x=$B/xfdb
      [ $v = old ] && x=/tmp/old-build/xfdb
      [ -x $x ] || continue
      printf 'prefill %-5s %-4s ' $p $v
      timeout 120 $x /tmp/q05-q4km.gguf --backend cuda --batch -x "bench --prefill $p --decode 16 --reps 3 --variants opt" 2>&1 |
        grep -E "^opt +prefill" | head -1
    done
  done
fi
echo "== one token's attention alone (bench_gemv_cuda attn: 24 layers' caches rotate)"
for v in new ${BESIDE_ENV:+env} old; do
  x=$B/bench_gemv_cuda
  [ $v = old ] && x=/tmp/old-build/bench_gemv_cuda
  [ -x $x ] && { echo "-- $v"; env ${BESIDE_ENV:+$([ $v = env ] && echo $BESIDE_ENV)} timeout 100 $x attn 2>&1 | tail -n +2 | head -30; }
done
stamp bench
llama_wait ${LLAMA_BY:-520}
stamp "llama.cpp built?"
[ -x $LB ] && timeout 60 $LB -m /tmp/q05-q4km.gguf -ngl 99 -p 0 -n 128 -d 0,$DEPTH -r 3 2>&1 | grep -E "^\| [a-z0-9]"
[ -x $LB ] && [ -n "${PREFILL:-}" ] && timeout 90 $LB -m /tmp/q05-q4km.gguf -ngl 99 -p ${PREFILL// /,} -n 0 -r 3 2>&1 | grep -E "^\| [a-z0-9]"
stamp llama
