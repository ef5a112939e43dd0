#!/bin/bash
# compute-sanitizer's memcheck and racecheck over every CUDA test, in one
# device call. A whole test file under racecheck runs past a call's 10
# minutes, so each test runs alone (XF_TEST_FILTER, testutil.h), JOBS at a
# time on the one GPU, each under its own timeout (PER seconds); the run
# stops starting jobs at BUDGET seconds. A line a job:
#   tool file test: exit N, the tool's summary
# exit 124 = ran past PER (not a finding, not a pass). The log of every job
# that is neither clean nor timed out is kept under $OUT/san/.
# ONLY="file:test file:test:fixture ...": those tests alone (each tool);
# a fixture is test_exec_graph's XF_GRAPH_FIXTURE.
#   run:  carry .device-kit; source .device-kit/env.sh && scripts/gpu-sanitize.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
JOBS=${JOBS:-8}
PER=${PER:-300}
BUDGET=${BUDGET:-540}
TOOLS=${TOOLS:-memcheck racecheck}
mkdir -p "$OUT/san"
t0=$(date +%s)
B=${SAN_BUILD:-build-san} # SAN_BUILD: a CUDA build dir already there
FILES="test_kernels_cuda test_kernels_cuda_attn test_kernels_cuda_gemv test_kernels_cuda_graph
  test_kernels_cuda_mxfp4 test_exec_graph test_exec_lazy test_patch_cuda"
# with SAN_BUILD the build is there: no rebuild (a ctest beside this would
# find a binary being linked: "permission denied", session 16)
[ -z "${SAN_BUILD:-}" ] && cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build $B -j16 --target $FILES 2>&1 | grep -E " error"
echo "built in $(($(date +%s) - t0)) s on $(nvidia-smi --query-gpu=name --format=csv,noheader)"
# the tests of a file: its cmocka_unit_test(NAME) entries (test_patch_cuda
# is test_patch.c built for cuda)
names() {
  local src=tests/$1.c
  [ "$1" = test_patch_cuda ] && src=tests/test_patch.c
  grep -oE 'cmocka_unit_test\(test_[a-z0-9_]+\)' "$src" | sed -E 's/.*\((.*)\)/\1/' | sort -u
}
job() { # tool file test [fixture: test_exec_graph's XF_GRAPH_FIXTURE]
  local left=$((BUDGET - ($(date +%s) - t0)))
  if [ $left -lt 30 ]; then
    echo "$1 $2 $3${4:+ fixture $4}: not run (the call's time)"
    return
  fi
  local per=$PER
  [ $per -gt $left ] && per=$left
  local log="$OUT/san/$1.$2.$3${4:+.$4}.log"
  (cd $B && XF_GRAPH_MODELS= XF_GRAPH_FIXTURE=${4:-} XF_TEST_FILTER=$3 timeout $per \
    compute-sanitizer --tool $1 --error-exitcode 9 ./$2 >"$log" 2>&1)
  local rc=$?
  echo "$1 $2 $3${4:+ fixture $4}: exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1) \
$(grep -cE '^\[       OK \]' "$log") ok $(grep -cE '^\[  FAILED  \]' "$log") failed"
  [ $rc = 0 ] && rm -f "$log"
}
export -f job
export B OUT PER BUDGET t0
for tool in $TOOLS; do
  if [ -n "${ONLY:-}" ]; then
    for ft in $ONLY; do echo "$tool ${ft//:/ }"; done
  else
    for f in $FILES; do
      for t in $(names $f); do
        # test_exec_graph's loops over fixtures: a job a fixture (7 and 2 of them)
        case "$f:$t" in
        test_exec_graph:test_same_as_eager) for i in 0 1 2 3 4 5 6; do echo "$tool $f $t $i"; done ;;
        test_exec_graph:test_same_at_depth) for i in 0 1; do echo "$tool $f $t $i"; done ;;
        *) echo "$tool $f $t" ;;
        esac
      done
    done
  fi
done | xargs -P "$JOBS" -L 1 bash -c 'job "$0" "$1" "$2" "${3:-}"' | sort | tee "$OUT/sanitize.txt"
echo "clean: $(grep -c 'exit 0,' "$OUT/sanitize.txt"), timed out: $(grep -c 'exit 124' "$OUT/sanitize.txt"), \
findings or failures: $(grep -vcE 'exit (0|124),|not run' "$OUT/sanitize.txt"), not run: $(grep -c 'not run' "$OUT/sanitize.txt")"
echo "end at $(($(date +%s) - t0)) s"
