#!/bin/bash
# XF_TEST_FILTER (tests/testutil.h tu_filter_from_env) runs only the named
# tests of a test file: what scripts/gpu-sanitize.sh relies on to run each
# CUDA test alone under compute-sanitizer. Checked on test_exec_lazy, whose
# cpu group runs everywhere: with the filter one test of it runs, without
# it all of them.
set -euo pipefail
B=${XF_BUILD_DIR:?XF_BUILD_DIR not set}
T=$B/test_exec_lazy
[ -x "$T" ] || { echo "skipped: $T not built"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
all=$("$T" 2>&1 | grep -cE '^\[       OK \]' || true)
one=$(XF_TEST_FILTER=test_read "$T" 2>&1 | grep -E '^\[       OK \]' || true)
[ "$all" -ge 5 ] || fail "test_exec_lazy alone ran $all tests"
[ "$(printf '%s\n' "$one" | grep -c .)" -ge 1 ] || fail "XF_TEST_FILTER=test_read ran nothing"
printf '%s\n' "$one" | grep -qv 'test_read$' && fail "XF_TEST_FILTER=test_read also ran: $(printf '%s\n' "$one" | grep -v 'test_read$' | head -1)"
echo "ok: $all tests unfiltered, only test_read filtered"
