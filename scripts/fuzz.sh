#!/bin/bash
# Runs each libFuzzer harness for SECONDS (default 60), one after the other
# (niced: the harnesses are single-threaded and the machine is shared), on
# its seed corpus (tests/fuzz/corpus/HARNESS, read only) plus a work corpus
# that keeps what the fuzzer found interesting between runs. Prints per
# harness the executions, execs/s and libFuzzer's final cov:/ft: line;
# exits 1 when a harness found a crash, a leak or a timeout (the input is
# saved as WORK/artifacts/HARNESS-crash-*; turn it into a test).
#
#   cmake -S . -B build-fuzz -DXF_FUZZ=ON -DXF_CUDA=OFF -DCMAKE_C_COMPILER=clang
#   cmake --build build-fuzz --target fuzz
#   scripts/fuzz.sh [-b BUILD_DIR] [-w WORK_DIR] [-t SECONDS] [HARNESS...]
#
# Extra libFuzzer flags can be passed in FUZZ_FLAGS (e.g. "-jobs=2").
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build-fuzz
SECONDS_EACH=60
WORK=
while getopts "b:w:t:h" o; do
  case $o in
    b) BUILD=$(cd "$OPTARG" && pwd) ;;
    w) WORK=$OPTARG ;;
    t) SECONDS_EACH=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
WORK=${WORK:-$BUILD/fuzz-work}
HARNESSES=("$@")
if [ ${#HARNESSES[@]} -eq 0 ]; then
  for h in fuzz_gguf fuzz_safetensors fuzz_session fuzz_cmdline; do
    [ -x "$BUILD/tests/fuzz/$h" ] && HARNESSES+=("$h")
  done
fi
if [ ${#HARNESSES[@]} -eq 0 ]; then
  echo "fuzz.sh: no harness built in $BUILD/tests/fuzz (build the 'fuzz' target with clang and -DXF_FUZZ=ON)" >&2
  exit 2
fi
mkdir -p "$WORK/artifacts"
status=0
printf '%-18s %12s %9s  %s\n' harness execs "execs/s" "final coverage"
for h in "${HARNESSES[@]}"; do
  bin=$BUILD/tests/fuzz/$h
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is not built" >&2; status=1; continue; }
  mkdir -p "$WORK/$h"
  log=$WORK/$h.log
  # -timeout: one input may take at most 10 s; -rss_limit_mb / -malloc_limit_mb:
  # a hostile file must not make the reader allocate gigabytes
  nice -n 10 "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$h-" ${FUZZ_FLAGS:-} \
    "$WORK/$h" "$SRC/tests/fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/')
  printf '%-18s %12s %9s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}"
  if [ $rc -ne 0 ]; then
    status=1
    echo "  $h FAILED (exit $rc): see $log" >&2
    grep -E '^==[0-9]+==ERROR|runtime error|invariant broken|Test unit written|SUMMARY' "$log" | head -8 | sed 's/^/  /' >&2
  fi
done
exit $status
