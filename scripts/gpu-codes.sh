#!/bin/bash
# Session 27's calls on the GPU machine (one warm lease), built there from
# this tree:
#   PHASE=a: llama.cpp's build started in the background (.bench-kit); this
#     tree built (build-gpu); the CUDA tests (the softmax NaN tests of
#     session 26, never run before; the kept codes'; test_exec_graph under
#     XF_CODES=1 and 0); compute-sanitizer memcheck over the kept codes'
#     test and the NaN tests; the bench files; prefill A/B of the kept codes
#     (XF_CODES=1 against 0, same binary, ROUNDS rounds interleaved); then
#     the wait for llama.cpp (until 580 s into the call).
#   PHASE=b (the same warm machine): llama-bench (pp512, pp2048, tg128,
#     tg32 at depth 4096 on q05-q4km) and xfdb's figures beside it: decode
#     after a 512-token prefill, prefill 512 and 2048, depth 4096.
#   here: scripts/stage-device-kit.sh; cp -r ../shared/bench .bench-kit (both ignored)
#   run: carry .device-kit .bench-kit; source .device-kit/env.sh && PHASE=a bash scripts/gpu-codes.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-codes-${PHASE:-a}.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
B=build-gpu
X=$B/xfdb
V=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
FILES=${FILES:-q05-q4km q15-q4km q05-f16}
if [ "${PHASE:-a}" = a ]; then
  [ -x "$LB" ] || [ "${SKIP_LLAMA:-0}" = 1 ] || llama_start
  # only what the calls run (all ~100 targets take minutes more)
  cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build $B -j14 --target xfdb bench_make_qwen2 test_kernels_cuda test_kernels_cuda_attn \
      test_kernels_cuda_graph test_kernels_cuda_codes test_exec_graph 2>&1 | grep -E "error|warning" | grep -v cmocka.h
  [ -x $X ] || { echo BUILD FAILED; exit 1; }
  stamp built
  export XF_SOURCE_DIR=$PWD
  for t in test_kernels_cuda test_kernels_cuda_attn test_kernels_cuda_graph test_kernels_cuda_codes test_exec_graph \
    XF_CODES=0:test_exec_graph XF_NO_WGMMA=1:test_kernels_cuda_codes; do
    e=$([ "${t#*:}" != "$t" ] && echo "${t%%:*}") bin=${t#*:}
    log="$OUT/${t//[:=\/]/.}.log"
    env $e timeout 240 $B/$bin >"$log" 2>&1
    echo "$t: exit $?, $(grep -cE '^\[       OK \]' "$log") ok, $(grep -cE '^\[  FAILED  \]' "$log") failed"
    grep -E "FAILED|fail|worst|rel err" "$log" | head -6
  done
  stamp tests
  (
    $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $V >/dev/null
    $B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $V >/dev/null
    $B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 $V >/dev/null
  ) &
  mk=$!
  for t in test_kernels_cuda_codes test_kernels_cuda:*nan* test_kernels_cuda_attn:*nan* test_kernels_cuda_graph; do
    bin=${t%%:*} f=$([ "$bin" != "$t" ] && echo "${t#*:}")
    XF_TEST_FILTER=$f timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $B/$bin >/tmp/san.txt 2>&1
    echo "memcheck $t: exit $? $(grep -E 'ERROR SUMMARY' /tmp/san.txt | tail -1)"
  done
  stamp sanitizer
  wait $mk
  for f in q05-q4km q15-q4km; do
    $X /tmp/$f.gguf --backend cuda --batch -x info 2>&1 | grep -E "prefill codes|memory:"
  done
  for r in $(seq ${ROUNDS:-2}); do
    for f in q05-q4km q15-q4km; do
      for p in 512 2048; do
        for c in 1 0; do
          printf 'round %s %-9s %-5s XF_CODES=%s ' $r $f $p $c
          XF_CODES=$c timeout 90 $X /tmp/$f.gguf --backend cuda --batch \
            -x "bench --prefill $p --decode 16 --reps 3 --variants opt" 2>&1 | grep -E "^opt +prefill|rror" | head -1
        done
      done
    done
  done
  stamp "A/B"
  # where a 512-token prefill goes now, op kind by op kind (op by op, CUDA events)
  ids=$(seq -s, 100 611)
  for f in q05-q4km q15-q4km q05-f16; do
    echo "== profile, 512 tokens, $f"
    timeout 60 $X /tmp/$f.gguf --backend cuda --batch -x "run --tokens $ids" -x continue -x profile 2>&1 | tail -16
  done
  stamp profile
  [ "${SKIP_LLAMA:-0}" = 1 ] || llama_wait 580
  stamp "llama.cpp waited for"
  exit 0
fi
if [ "${PHASE:-a}" = c ]; then
  # after the fixes of the first call: the tests again, then the model and
  # session tests on cuda while the call has time
  cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build $B -j16 --target xfdb test_kernels_cuda test_kernels_cuda_codes test_exec_graph \
      test_kernels_cuda_mxfp4 test_qwen2 test_llama test_qwen3 test_patch_cuda test_model 2>&1 | grep -E "error|warning" | grep -v cmocka.h
  stamp built
  export XF_SOURCE_DIR=$PWD
  for t in test_exec_graph:test_codes_beside test_kernels_cuda test_kernels_cuda_codes test_kernels_cuda_mxfp4 test_exec_graph; do
    bin=${t%%:*} f=$([ "$bin" != "$t" ] && echo "${t#*:}")
    log="$OUT/${t//[:=\/]/.}.log"
    XF_TEST_FILTER=$f timeout 200 $B/$bin >"$log" 2>&1
    echo "$t: exit $?, $(grep -cE '^\[       OK \]' "$log") ok, $(grep -cE '^\[  FAILED  \]' "$log") failed"
    grep -E "FAILED|ERROR|worst|codes of" "$log" | head -12
    stamp $t
  done
  (cd $B && timeout ${CT:-150} ctest -j8 -R "session_.*_cuda|test_qwen2|test_llama|test_qwen3|test_patch_cuda|test_model" 2>&1 | grep -E "tests passed|Failed|Passed|\*\*\*" | tail -24)
  stamp end
  exit 0
fi
# PHASE=b
[ -x "$LB" ] || { echo "no llama-bench (the build: $(tail -1 /tmp/llama-build.txt 2>/dev/null))"; }
for f in $FILES; do
  for p in 512 2048; do
    printf 'xfdb %-9s ' $f
    timeout 90 $X /tmp/$f.gguf --backend cuda --batch -x "bench --prefill $p --decode 64 --reps 5 --variants opt" 2>&1 |
      grep -E "^opt +(prefill|decode)|rror|floor" | tr '\n' ' '
    echo
  done
  [ -x $LB ] && timeout 120 $LB -m /tmp/$f.gguf -ngl 99 -p 512,2048 -n 128 -r 5 -o jsonl 2>/dev/null | lb_sum $f
  stamp $f
done
printf 'xfdb q05-q4km depth 4096 '
timeout 120 $X /tmp/q05-q4km.gguf --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth 4096 --reps 5 --variants opt" 2>&1 | grep -E "^opt +decode|rror" | head -1
[ -x $LB ] && timeout 120 $LB -m /tmp/q05-q4km.gguf -ngl 99 -p 0 -n 32 -d 4096 -r 5 -o jsonl 2>/dev/null | lb_sum q05-q4km
stamp end
