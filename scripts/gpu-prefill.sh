#!/bin/bash
# Prefill in one device call: the tiled prefill attention checked before it
# is timed, beside the tree in OLD_SRC (a `git archive` of the main it
# changes, carried) and llama.cpp built in the same lease:
#   - test_kernels_cuda (kq, kqv against the CPU ref; the causal skip),
#     test_kernels_cuda_graph (the fused prefill attention = the three ops
#     bit for bit), test_exec_graph;
#   - `bench --prefill P --decode 16 --reps 3 --variants opt` for P in
#     PREFILL (512 2048) on the bench files (Qwen2.5-0.5B Q4_K_M and F16,
#     1.5B Q4_K_M, GPT-2 124M F16), this tree ("new") and OLD_SRC's;
#   - `profile` of a 2048-token pass of the 0.5B Q4_K_M, both trees;
#   - llama-bench -p PREFILL on the same files (SKIP_LLAMA=1: not built).
# TESTS="..." runs those tests only (default the four above).
#   run:  carry .device-kit .bench-kit (and OLD_SRC);
#         source .device-kit/env.sh && scripts/gpu-prefill.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-prefill.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -z "${SKIP_LLAMA:-}" ]; then
  llama_start
fi
if [ -n "${OLD_SRC:-}" ]; then
  (cmake -S "$OLD_SRC" -B /tmp/old-build -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    nice cmake --build /tmp/old-build -j8 --target xfdb 2>&1 | grep -E " error") >/tmp/old-build.txt 2>&1 &
  old_pid=$!
fi
B=build-gpu
cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build $B -j16 --target xfdb test_kernels_cuda test_kernels_cuda_graph test_exec_graph test_exec_lazy bench_make_qwen2 bench_make_gpt2 2>&1 |
  grep -E " error|warning" | grep -v cmocka.h
[ -x $B/xfdb ] || { echo BUILD FAILED; exit 1; }
stamp built
V=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
mk=()
$B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $V >/dev/null & mk+=($!)
$B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 $V >/dev/null & mk+=($!)
$B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $V >/dev/null & mk+=($!)
$B/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null & mk+=($!)
ok=1
for t in ${TESTS:-test_kernels_cuda test_kernels_cuda_graph test_exec_graph test_exec_lazy}; do
  (cd $B && XF_GRAPH_MODELS= timeout 300 ./$t >"$OUT/$t.log" 2>&1) || ok=0
  echo "$t: $(grep -cE '^\[       OK \]' "$OUT/$t.log") ok, $(grep -cE '^\[  FAILED  \]' "$OUT/$t.log") failed"
  grep -E "FAILED|fail|differs" "$OUT/$t.log" | head -8
  stamp $t
done
[ $ok = 1 ] || echo "A TEST FAILED (timings below are for the record only)"
wait "${mk[@]}" ${old_pid:-} # not llama.cpp's build: it goes on beside the benches
[ -n "${old_pid:-}" ] && cat /tmp/old-build.txt
PREFILL=${PREFILL:-512 2048}
echo "== prefill tokens/s (bench --prefill P --decode 16 --reps 3 --variants opt)"
for f in q05-q4km q05-f16 q15-q4km g124-f16; do
  for p in $PREFILL; do
    for v in new old; do
      x=$B/xfdb
      [ $v = old ] && x=/tmp/old-build/xfdb
      [ -x $x ] || continue
      printf '%-9s %-5s %-4s ' $f $p $v
      timeout 100 $x /tmp/$f.gguf --backend cuda --batch \
        -x "bench --prefill $p --decode 16 --reps 3 --variants opt" 2>&1 | grep -E "^opt +prefill|skipped" | head -1
    done
  done
done
ids=$(seq -s, 100 2147)
for v in new old; do
  x=$B/xfdb
  [ $v = old ] && x=/tmp/old-build/xfdb
  [ -x $x ] && { echo "== profile, 2048 tokens, q05-q4km, $v"; timeout 60 $x /tmp/q05-q4km.gguf --backend cuda --batch --ctx 4096 \
    -x "run --tokens $ids" -x continue -x profile 2>&1 | grep -E "^(kq|softmax|kqv|matmul|total)"; }
done
stamp bench
if [ -n "${FULL:-}" ]; then # FULL=1: every ctest test, and the sanitizers over SAN_ONLY, before llama-bench
  cmake --build $B -j16 2>&1 | grep -E " error"
  (cd $B && timeout 300 ctest -j8 >"$OUT/ctest.log" 2>&1) &
  ct=$!
  [ -n "${SAN_ONLY:-}" ] && SAN_BUILD=$B ONLY="$SAN_ONLY" PER=240 BUDGET=280 JOBS=6 OUT=$OUT bash scripts/gpu-sanitize.sh 2>&1 | tail -20
  wait $ct
  grep -E "tests passed|Failed|\*\*\*|Not Run" "$OUT/ctest.log" | head -20
  stamp "ctest, sanitizers"
fi
[ -n "${SKIP_LLAMA:-}" ] && exit 0
llama_wait ${LLAMA_BY:-480}
stamp "llama.cpp waited for"
for f in q05-q4km q05-f16 q15-q4km g124-f16; do
  [ -x $LB ] && timeout 60 $LB -m /tmp/$f.gguf -ngl 99 -p ${PREFILL// /,} -n 0 -r 3 2>&1 | grep -E "^\| [a-z0-9]" | grep -v "model "
done
stamp llama
