#!/bin/bash
# One call on the GPU machine that checks the whole CUDA side at once and
# measures it against llama.cpp built in the SAME lease:
#   - every ctest test (session_NAME_cuda, test_qwen3, test_qwen2_mxfp4,
#     test_kernels_cuda_mxfp4, test_patch_cuda ... run here);
#   - every sessions/*.xfs replayed on cuda with --report (worst difference);
#   - a session recorded on cuda, replayed on cpu and cuda;
#   - compute-sanitizer memcheck and racecheck over the CUDA tests;
#   - xfdb `bench` and llama-bench on the same bench files (GPT-2 124M F16
#     and F32, Qwen2.5-0.5B shape Q4_K_M-like, F16 and MXFP4, 1.5B Q4_K_M).
#   here:   scripts/stage-device-kit.sh; cp -r ../shared/bench .bench-kit
#   run:    carry .device-kit .bench-kit;
#           source .device-kit/env.sh && scripts/gpu-session.sh
# ATTN_BENCH=1 adds bench_gemv_cuda's attention part (and OLD_SRC's);
# SKIP_LLAMA=1 leaves llama.cpp out; SKIP_SAN=1 the sanitizers (SAN_TESTS, SAN_TOOLS and
# SAN_FILTER, a cmocka test name for XF_TEST_FILTER, narrow them); SKIP_BENCH=1
# the timings (each file's whole bench output, per-op table too, one after another: $OUT/bench-all.txt);
# BESIDE_ENV="XF_NO_WGMMA=1" benches each file again with that environment, same build;
# PREFILL="512 2048" benches each prefill length (one llama-bench run takes them all); SKIP_TESTS=1 ctest and the sessions; CTEST_REGEX runs only the tests it matches (a short lease).
# Results go to $OUT (or /tmp/gpu-out).
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-session.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
if [ "${SKIP_LLAMA:-0}" != 1 ] && [ -x "$LB" ]; then
  echo "llama.cpp: built earlier in this lease (/tmp/llama)"; SKIP_LLAMA_WAIT=1
elif [ "${SKIP_LLAMA:-0}" != 1 ]; then
  llama_start
  llama_pid=$!
fi
cmake -S . -B build-gpu -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build-gpu -j12 2>&1 | grep -E "error|warning" | grep -v cmocka.h
B=build-gpu
X=$B/xfdb
[ -x $X ] || { echo BUILD FAILED; exit 1; }
# OLD_SRC=DIR (a `git archive` of an earlier commit, carried): built too, and
# benched beside this checkout as "before", in the same lease
if [ -n "${OLD_SRC:-}" ] && [ ! -x /tmp/old-build/xfdb ]; then
  cmake -S "$OLD_SRC" -B /tmp/old-build -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build /tmp/old-build -j12 --target xfdb bench_gemv_cuda 2>&1 | grep -E "error" ; stamp "old build"
fi
stamp built
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
(
  $B/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null
  $B/bench_make_gpt2 /tmp/g124-f32.gguf f32 >/dev/null
  $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $VOCAB >/dev/null
  $B/bench_make_qwen2 /tmp/q05-mxfp4.gguf 0.5b mxfp4 $VOCAB >/dev/null
  $B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 $VOCAB >/dev/null
  $B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $VOCAB >/dev/null
) &
mk=$!
if [ "${SKIP_TESTS:-0}" != 1 ]; then
echo "== ctest"
(cd $B && timeout ${CTEST_TIMEOUT:-420} ctest -j6 -V ${CTEST_REGEX:+-R "$CTEST_REGEX"} >"$OUT/ctest.log" 2>&1)
grep -E "tests passed|Failed|\*\*\*|Not Run|Skipped" "$OUT/ctest.log" | head -40
grep -E "^ *[0-9]+/[0-9]+ Test.*(session_|qwen3|mxfp4|patch|llama)" "$OUT/ctest.log" | sed 's/  */ /g' | head -40
echo "-- what the model tests printed for cuda (worst difference against the float64 reference)"
grep -E "^[0-9]+: # .*cuda" "$OUT/ctest.log" | head -30
stamp ctest
echo "== sessions on cuda (--report: the largest difference that matched)"
for f in sessions/*.xfs; do
  $X --replay "$f" --backend cuda --report 2>&1 | grep -E "replayed|report|diverg|differ" | head -4
done
echo "== a session recorded on cuda, replayed on cpu and cuda"
rm -f /tmp/cuda-rec.xfs
$X --backend cuda --record /tmp/cuda-rec.xfs --batch -x 'break blk.5.attn_out' -x 'run "ROMEO:\nWhat light"' \
  -x 'print blk.5.attn_out[0:2,0:6]' -x 'stats blk.5.kq_soft' -x 'continue' -x 'topk 5' -x 'generate 8' >/dev/null 2>&1
head -3 /tmp/cuda-rec.xfs
for b in cpu cuda; do $X --replay /tmp/cuda-rec.xfs --backend $b --report 2>&1 | tail -2; done
cp /tmp/cuda-rec.xfs "$OUT/" 2>/dev/null
stamp sessions
fi
if [ "${SKIP_SAN:-0}" != 1 ]; then
  echo "== compute-sanitizer"
  for t in ${SAN_TESTS:-test_exec_graph test_kernels_cuda test_kernels_cuda_graph test_kernels_cuda_gemv test_kernels_cuda_attn \
           test_kernels_cuda_mxfp4 test_patch_cuda}; do
    [ -x $B/$t ] || continue
    for tool in ${SAN_TOOLS:-memcheck racecheck}; do
      XF_TEST_FILTER=${SAN_FILTER:-} timeout ${SAN_TIMEOUT:-150} compute-sanitizer --tool $tool --error-exitcode 9 $B/$t >/tmp/san.txt 2>&1
      rc=$?
      echo "$tool $t: exit $rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.txt | tail -1)"
      # the whole log of a failing run only: $OUT brings back 8 files at most
      [ $rc = 0 ] || { echo "== $tool $t"; head -60 /tmp/san.txt; } >>"$OUT/sanitizer-failures.txt"
    done
  done
  stamp sanitizer
fi
wait $mk
if [ "${SKIP_LLAMA:-0}" != 1 ] && [ "${SKIP_LLAMA_WAIT:-0}" != 1 ]; then
  stamp "waiting for the llama.cpp build"
  wait $llama_pid
  tail -2 /tmp/llama-build.txt
  # LLAMA_PACK=1: bring the built llama-bench back (xz, 15 MiB parts) for a later lease's
  # quick checks; figures quoted against llama.cpp still come from a build in their own lease.
  if [ "${LLAMA_PACK:-0}" = 1 ]; then
    (cd /tmp/llama/llama.cpp/build && tar cf - bin | xz -T8 -6 | split -b 15M - "$OUT/llama-bin.txz.")
    ls -la "$OUT"/llama-bin.txz.* | awk '{print $5, $9}'
  fi
fi
if [ "${ATTN_BENCH:-0}" = 1 ]; then
  echo "== attention of one token (bench_gemv_cuda attn)"
  timeout 120 $B/bench_gemv_cuda attn 2>&1 | tail -20
  [ -x /tmp/old-build/bench_gemv_cuda ] && { echo "   before (OLD_SRC):"; timeout 120 /tmp/old-build/bench_gemv_cuda attn 2>&1 | tail -19; }
  stamp attn
fi
[ "${SKIP_BENCH:-0}" = 1 ] && { if [ -n "${DEPTH:-}" ] && [ -f /tmp/q05-q4km.gguf ]; then
  echo "== decode at position $DEPTH and the price of watching, q05-q4km"
  m=/tmp/q05-q4km.gguf
  timeout 120 $X $m --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth $DEPTH --reps 1 --variants opt" 2>&1 | grep -E "^opt +decode"
  [ -x /tmp/old-build/xfdb ] && { echo "   before (OLD_SRC):"; timeout 120 /tmp/old-build/xfdb $m --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth $DEPTH --reps 1 --variants opt" 2>&1 | grep -E "^opt +decode"; }
  [ -x $LB ] && timeout 120 $LB -m $m -ngl 99 -p 0 -n 64 -d $DEPTH -r 2 2>&1 | grep -E "^\| [a-z0-9]" | grep -v "^| model"
  timeout 120 $X $m --backend cuda --batch -x "bench --overhead --decode 128" 2>&1 | grep -E "^decode"
fi
stamp end; exit 0; }
echo "== xfdb bench (opt) and llama-bench on the same files"
for m in ${BENCH_MODELS:-/tmp/g124-f16.gguf /tmp/g124-f32.gguf /tmp/q05-q4km.gguf /tmp/q05-mxfp4.gguf /tmp/q05-f16.gguf /tmp/q15-q4km.gguf}; do
  [ -f $m ] || { echo "missing $m"; continue; }
  echo "-- $(basename $m) $(stat -c %s $m) bytes"
  for p in ${PREFILL:-512}; do
    timeout 90 $X $m --backend cuda --batch -x "bench --prefill $p --decode 128 --variants opt" 2>&1 |
      tee /tmp/bench-one.txt | grep -vE "^\s*$|^ +[a-z_]+ +[0-9]" | head -12
    { echo "== $(basename $m) prefill $p"; cat /tmp/bench-one.txt; } >>"$OUT/bench-all.txt"
    [ -x /tmp/old-build/xfdb ] && { echo "   before (OLD_SRC):"; timeout 90 /tmp/old-build/xfdb $m --backend cuda --batch -x "bench --prefill $p --decode 128 --variants opt" 2>&1 | grep -E "^opt +(decode|prefill)"; }
    [ -n "${BESIDE_ENV:-}" ] && { echo "   with $BESIDE_ENV:"; env $BESIDE_ENV timeout 90 $X $m --backend cuda --batch -x "bench --prefill $p --decode 128 --variants opt" 2>&1 | grep -E "^opt +(decode|prefill)"; }
  done
  pl=${PREFILL:-512}
  [ -x $LB ] && timeout 120 $LB -m $m -ngl 99 -p ${pl// /,} -n 128 -r 3 ${LLAMA_DEPTH:+-d $LLAMA_DEPTH} 2>&1 | grep -E "^\| [a-z0-9]" | grep -v "^| model"
done
if [ -n "${DEPTH:-}" ] && [ -f /tmp/q05-q4km.gguf ]; then
  echo "== decode at position $DEPTH and the price of watching, q05-q4km"
  m=/tmp/q05-q4km.gguf
  timeout 120 $X $m --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth $DEPTH --reps 1 --variants opt" 2>&1 | grep -E "^opt +decode"
  [ -x /tmp/old-build/xfdb ] && { echo "   before (OLD_SRC):"; timeout 120 /tmp/old-build/xfdb $m --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth $DEPTH --reps 1 --variants opt" 2>&1 | grep -E "^opt +decode"; }
  [ -x $LB ] && timeout 120 $LB -m $m -ngl 99 -p 0 -n 64 -d $DEPTH -r 2 2>&1 | grep -E "^\| [a-z0-9]" | grep -v "^| model"
  timeout 120 $X $m --backend cuda --batch -x "bench --overhead --decode 128" 2>&1 | grep -E "^decode"
fi
stamp end
