#!/bin/bash
# Session 28's calls on the GPU machine (one warm lease), built there from
# this tree (written in session 28, which got no machine: never run): the
# wgmma prefill product's 192-row blocks (three consumer warpgroups,
# kern_cuda_wgmma_rows) against the 128-row ones of sessions 12-27, and a
# layer's matmuls of one input in one launch (kern_cuda_matmul_multi), in
# one binary: XF_MW_ROWS=128|192, XF_MM_MULTI=0|1 (both off by default).
#   PHASE=a: llama.cpp's build started in the background (.bench-kit); this
#     tree built (build-gpu); the CUDA tests under the defaults and under
#     XF_MW_ROWS=192 (and XF_MM_MULTI=1), XF_NO_WGMMA=1; memcheck over
#     the new test; `bench_gemv_cuda mm` at 512 and 2048 tokens under both
#     shapes; prefill A/B on the bench files (ROUNDS rounds interleaved);
#     `profile` of a 2048-token prefill; the wait for llama.cpp (until 580 s).
#   PHASE=b (the same warm machine): llama-bench and xfdb's figures beside
#     it (scripts/gpu-codes.sh PHASE=b).
#   PHASE=c: rebuild, every CUDA test and the model and session tests.
#   PHASE=d (session 29): BF16 and F32 weights on the split product
#     (XF_SPLIT_FLOAT) and the K-quants' super-block fold (XF_MW_KFOLD):
#     their tests, the model tests under them, memcheck, `bench_gemv_cuda
#     mm` both ways. PHASE=e: prefill A/B on a BF16 0.5B, GPT-2 F32 and the
#     Q4_K_M files, llama-bench pp beside (where PHASE=a built it here).
#   here: RUNTIME=1 sh scripts/stage-device-kit.sh; cp -r ../shared/bench/. .bench-kit
#   run: carry .device-kit .bench-kit; source .device-kit/env.sh && PHASE=a bash scripts/gpu-rows.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-rows-${PHASE:-a}.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
B=build-gpu
X=$B/xfdb
V=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
runtests() { # NAME[:FILTER] with ENV=VALUE, prefixes
  for t in "$@"; do
    e=$(echo "$t" | grep -oE '^([A-Z_]+=[^:]+:)+' | tr ':' ' ') rest=${t#"$(echo "$t" | grep -oE '^([A-Z_]+=[^:]+:)+')"}
    bin=${rest%%:*} f=$([ "$bin" != "$rest" ] && echo "${rest#*:}")
    log="$OUT/$(echo "$t" | tr ':=/*' '....').log"
    env $e XF_TEST_FILTER=$f timeout ${TLIM:-240} $B/$bin >"$log" 2>&1
    echo "$t: exit $?, $(grep -cE '^\[       OK \]' "$log") ok, $(grep -cE '^\[  FAILED  \]' "$log") failed"
    grep -E "FAILED|ERROR|worst|rel err|wgmma rows" "$log" | head -8
  done
}
if [ "${PHASE:-a}" = a ]; then
  [ -x "$LB" ] || [ "${SKIP_LLAMA:-0}" = 1 ] || llama_start
  cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build $B -j14 --target xfdb bench_make_qwen2 bench_gemv_cuda test_kernels_cuda test_kernels_cuda_codes \
      test_exec_graph test_exec_fuse 2>&1 | grep -E "error|warning" | grep -v cmocka.h
  [ -x $X ] || { echo BUILD FAILED; exit 1; }
  stamp built
  export XF_SOURCE_DIR=$PWD
  (
    $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $V >/dev/null
    $B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $V >/dev/null
    $B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 $V >/dev/null
  ) &
  mk=$!
  runtests test_kernels_cuda_codes test_exec_fuse XF_MW_ROWS=192:test_exec_fuse test_kernels_cuda \
    XF_MW_ROWS=192:test_kernels_cuda:test_matmul_split XF_NO_WGMMA=1:test_kernels_cuda_codes test_exec_graph
  stamp tests
  XF_TEST_FILTER=test_wgmma_rows timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 \
    $B/test_kernels_cuda_codes >/tmp/san.txt 2>&1
  echo "memcheck test_wgmma_rows: exit $? $(grep -E 'ERROR SUMMARY' /tmp/san.txt | tail -1)"
  stamp sanitizer
  for n in 512 2048; do
    for r in 128 192; do
      echo "== bench_gemv_cuda mm $n, XF_MW_ROWS=$r"
      XF_MW_ROWS=$r timeout 120 $B/bench_gemv_cuda mm $n 2>&1 | grep -vE "^card|^$" | grep -E "F16|Q4_K|Q6_K|Q8_0|type"
    done
  done
  stamp mm
  wait $mk
  # XF_MW_ROWS:XF_MM_MULTI; round 2 only the old (128, one launch a
  # matmul) against the new (192, gate/up and q/k/v launched together)
  for r in 1 2; do
    for f in q05-q4km q15-q4km q05-f16; do
      for p in 512 2048; do
        for c in $([ $r = 1 ] && echo 128:0 192:0 128:1 192:1 || echo 128:0 192:1); do
          printf 'round %s %-9s %-5s rows %s multi %s ' $r $f $p ${c%:*} ${c#*:}
          XF_MW_ROWS=${c%:*} XF_MM_MULTI=${c#*:} timeout 90 $X /tmp/$f.gguf --backend cuda --batch \
            -x "bench --prefill $p --decode 16 --reps 3 --variants opt" 2>&1 | grep -E "^opt +prefill|rror" | head -1
        done
      done
    done
  done
  stamp "A/B"
  ids=$(seq -s, 100 2147)
  for f in q15-q4km q05-f16; do
    echo "== profile, 2048 tokens, $f"
    timeout 60 $X /tmp/$f.gguf --backend cuda --batch -x "run --tokens $ids" -x continue -x profile 2>&1 | tail -18
  done
  stamp profile
  [ "${SKIP_LLAMA:-0}" = 1 ] || llama_wait 580
  stamp "llama.cpp waited for"
  exit 0
fi
if [ "${PHASE:-a}" = c ]; then
  cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build $B -j16 --target xfdb test_kernels_cuda test_kernels_cuda_codes test_exec_graph test_exec_fuse test_kernels_cuda_graph \
      test_kernels_cuda_attn test_kernels_cuda_mxfp4 test_qwen2 test_llama test_qwen3 test_patch_cuda test_model \
      test_llama_shape test_qwen2_mxfp4 2>&1 | grep -E "error|warning" | grep -v cmocka.h
  stamp built
  export XF_SOURCE_DIR=$PWD
  runtests test_kernels_cuda_codes test_kernels_cuda test_kernels_cuda_mxfp4 test_kernels_cuda_graph test_kernels_cuda_attn \
    test_exec_graph test_exec_fuse XF_MW_ROWS=192:test_kernels_cuda XF_MW_ROWS=192:XF_MM_MULTI=1:test_exec_graph
  stamp tests
  (cd $B && timeout ${CT:-200} ctest -j8 -R "session_.*_cuda|test_qwen2|test_llama|test_qwen3|test_patch_cuda|test_model" 2>&1 | grep -E "tests passed|Failed|Passed|\*\*\*|Not Run" | tail -24)
  stamp end
  exit 0
fi
if [ "${PHASE:-a}" = d ] || [ "${PHASE:-a}" = e ]; then
  # session 29 (written without a GPU, off by default): d = tests, memcheck
  # and the product alone both ways; e = prefill A/B with llama.cpp beside
  cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build $B -j16 --target xfdb bench_make_qwen2 bench_make_gpt2 bench_gemv_cuda test_split_codes \
      test_kernels_cuda_codes test_exec_graph test_exec_fuse test_qwen2 test_llama test_model 2>&1 |
    grep -E "error|warning" | grep -v cmocka.h
  stamp built
  export XF_SOURCE_DIR=$PWD
  (
    [ -s /tmp/q05-bf16.gguf ] || $B/bench_make_qwen2 /tmp/q05-bf16.gguf 0.5b bf16 $V >/dev/null
    [ -s /tmp/gpt2-f32.gguf ] || $B/bench_make_gpt2 /tmp/gpt2-f32.gguf f32 >/dev/null
    [ -s /tmp/q05-q4km.gguf ] || $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $V >/dev/null
    [ -s /tmp/q15-q4km.gguf ] || $B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $V >/dev/null
  ) &
  mk=$!
  if [ "$PHASE" = d ]; then
    runtests test_split_codes test_kernels_cuda_codes:test_split_float \
      XF_NO_WGMMA=1:test_kernels_cuda_codes:test_split_float XF_SPLIT_FLOAT=all:test_exec_graph \
      XF_SPLIT_FLOAT=all:XF_MW_ROWS=192:test_kernels_cuda_codes:test_split_float \
      test_kernels_cuda_codes:test_kfold XF_NO_WGMMA=1:test_kernels_cuda_codes:test_kfold \
      XF_MW_KFOLD=1:test_exec_graph XF_MW_KFOLD=1:XF_MM_MULTI=1:test_exec_fuse
    (cd $B && XF_SPLIT_FLOAT=all XF_MW_KFOLD=1 timeout ${CT:-200} ctest -j8 -R "test_qwen2|test_llama|test_model" 2>&1 |
      grep -E "tests passed|Failed|\*\*\*|Not Run" | tail -12)
    for t in test_split_float test_kfold; do
      XF_TEST_FILTER=$t timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
        $B/test_kernels_cuda_codes >/tmp/san.txt 2>&1
      echo "memcheck $t: exit $? $(grep -E 'ERROR SUMMARY' /tmp/san.txt | tail -1)"
    done
    stamp tests
    for ty in BF16 F32; do
      timeout 120 $B/bench_gemv_cuda mm 512 $ty 2>&1 | grep -vE "^card|^$" | grep -E "$ty|type"
    done
    for kf in 0 1; do
      echo "== bench_gemv_cuda mm 512 Q4_K, XF_MW_KFOLD=$kf"
      XF_MW_KFOLD=$kf timeout 120 $B/bench_gemv_cuda mm 512 Q4_K 2>&1 | grep -vE "^card|^$" | grep -E "Q4_K|type"
    done
    stamp mm
    # what the fold changes inside the 1.5B gate's product: tensor pipe, issue, stalls
    for kf in 0 1; do
      f="$OUT/ncu-q4k-gate-kfold$kf.txt"
      XF_MW_KFOLD=$kf timeout 150 ncu --kernel-name regex:'mw_gemm' --launch-count 1 --section SpeedOfLight \
        --section WarpStateStats --section SchedulerStats \
        --metrics 'regex:sm__pipe_tensor.*cycles_active.avg.pct_of_peak_sustained_active' \
        $B/bench_gemv_cuda mm 512 Q4_K "1.5B gate" >"$f" 2>&1
      echo "ncu kfold $kf: exit $?"
      grep -E "Duration|pipe_tensor|Issue Slots Busy|Stall Long|Stall Barrier|Stall Wait|No Eligible" "$f" | head -12
    done
    stamp ncu
    wait $mk
    exit 0
  fi
  wait $mk
  stamp models
  # ab ROUND VAR "VALUES" FILES...: bench's prefill line for each file, length and value
  ab() {
    r=$1 var=$2 vals=$3
    shift 3
    for f in "$@"; do
      for p in 512 2048; do
        for v in $vals; do
          printf 'round %s %-9s %-5s %s=%-3s ' $r $f $p $var $v
          env $var=$v timeout 90 $X /tmp/$f.gguf --backend cuda --batch \
            -x "bench --prefill $p --decode 16 --reps 3 --variants opt" 2>&1 | grep -E "^opt +prefill|rror" | head -1
        done
      done
    done
  }
  for r in 1 2; do
    ab $r XF_SPLIT_FLOAT "0 all" q05-bf16 gpt2-f32
    ab $r XF_MW_KFOLD "0 1" q05-q4km q15-q4km
  done
  stamp "A/B"
  for f in q05-bf16 gpt2-f32; do
    [ -x $LB ] && timeout 120 $LB -m /tmp/$f.gguf -ngl 99 -p 512,2048 -n 0 -r 5 -o jsonl 2>/dev/null | lb_sum $f
  done
  stamp end
  exit 0
fi
exec bash "$(dirname "$0")/gpu-codes.sh"
