#!/bin/bash
# One short device call for the prefill matmul (matmul_split.cu): builds
# bench_gemv_cuda and the CUDA kernel tests only, runs those tests (every MATMUL
# variant against ref, test_matmul_split's cases), then `bench_gemv_cuda mm
# N` for each N in MM_N (default 512), and OLD_SRC's bench beside it when
# OLD_SRC names a carried `git archive` of an earlier commit (same lease,
# same card). NCU="TYPE:MATRIX;..." profiles ms_gemm on those shapes
# (Nsight Compute: speed of light, warp states, memory and compute
# workloads, occupancy, stall reasons) into $OUT/ncu-*.txt; SAN=1 runs
# test_kernels_cuda under compute-sanitizer memcheck; RACE=1 runs racecheck
# over test_matmul_split alone (XF_TEST_FILTER), wgmma and mma.sync.
#   run:  carry .device-kit (and .old-src);
#         source .device-kit/env.sh && MM_N="512 2048" scripts/gpu-mm.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-mm.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
B=build-gpu
cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build $B -j16 --target bench_gemv_cuda test_kernels_cuda test_kernels_cuda_mxfp4 2>&1 | grep -E "error|warning" | grep -v cmocka.h
[ -x $B/bench_gemv_cuda ] || { echo BUILD FAILED; exit 1; }
if [ -n "${OLD_SRC:-}" ]; then
  cmake -S "$OLD_SRC" -B /tmp/old-build -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build /tmp/old-build -j16 --target bench_gemv_cuda 2>&1 | grep -E "error"
fi
stamp built
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  for t in test_kernels_cuda test_kernels_cuda_mxfp4; do
    timeout ${TLIM:-300} $B/$t >"$OUT/$t.txt" 2>&1
    echo "$t: exit $?"; grep -E "FAILED|PASSED|error|split|\[  ERROR" "$OUT/$t.txt" | head -30
  done
  XF_NO_WGMMA=1 timeout ${TLIM:-300} $B/test_kernels_cuda >"$OUT/test_kernels_cuda_mma.txt" 2>&1
  echo "test_kernels_cuda with XF_NO_WGMMA=1: exit $?"; grep -E "FAILED|PASSED|split" "$OUT/test_kernels_cuda_mma.txt" | head
  stamp test
fi
if [ "${SAN:-0}" = 1 ]; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_kernels_cuda >/tmp/san.txt 2>&1
  echo "memcheck test_kernels_cuda: exit $? $(grep -E 'ERROR SUMMARY' /tmp/san.txt | tail -1)"
  stamp memcheck
fi
if [ "${RACE:-0}" = 1 ]; then # racecheck of the prefill product's test alone, both products
  for nw in 0 1; do
    env $([ $nw = 1 ] && echo XF_NO_WGMMA=1) XF_TEST_FILTER=test_matmul_split timeout 300 compute-sanitizer --tool racecheck --error-exitcode 9 \
      $B/test_kernels_cuda >/tmp/race.txt 2>&1
    echo "racecheck test_matmul_split XF_NO_WGMMA=$nw: exit $? $(grep -E 'RACECHECK SUMMARY|PASSED|FAILED' /tmp/race.txt | tr '\n' ' ')"
  done
  stamp racecheck
fi
for n in ${MM_N:-512}; do
  [ "$n" = none ] && continue
  echo "== this tree, N = $n"; timeout ${TLIM:-200} $B/bench_gemv_cuda mm $n | tail -n +2
  echo "== this tree with XF_NO_WGMMA=1 (mma.sync), N = $n"; XF_NO_WGMMA=1 timeout ${TLIM:-200} $B/bench_gemv_cuda mm $n | tail -n +4
  if [ -x /tmp/old-build/bench_gemv_cuda ]; then
    echo "== before (OLD_SRC), N = $n"; timeout 200 /tmp/old-build/bench_gemv_cuda mm $n | tail -n +4
  fi
done
stamp bench
IFS=';' read -ra specs <<<"${NCU:-}"
for sp in "${specs[@]}"; do
  ty=${sp%%:*}; mx=${sp#*:}
  f="$OUT/ncu-${ty}-${mx// /_}.txt"
  timeout 200 ncu --kernel-name regex:'m[sw]_gemm'  --launch-count 1 --section SpeedOfLight --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section Occupancy --section LaunchStats \
    --section SchedulerStats --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__pipe_tensor.*cycles_active.avg.pct_of_peak_sustained_active' \
    $B/bench_gemv_cuda mm 512 "$ty" "$mx" >"$f" 2>&1
  echo "ncu $ty $mx: exit $? ($(wc -l <"$f") lines)"
  if [ "${NCU_SRC:-0}" = 1 ]; then # per-instruction stall samples (SASS), for the first spec's kernel
    timeout 200 ncu --kernel-name regex:'m[sw]_gemm' --launch-count 1 --section SourceCounters --section WarpStateStats \
      -o /tmp/src-rep -f $B/bench_gemv_cuda mm 512 "$ty" "$mx" >/dev/null 2>&1
    ncu -i /tmp/src-rep.ncu-rep --page source --csv --print-source sass >"${f%.txt}-sass.csv" 2>&1
    echo "ncu source $ty $mx: exit $? ($(wc -l <"${f%.txt}-sass.csv") lines)"
    NCU_SRC=0
  fi
done
stamp end
