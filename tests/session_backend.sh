#!/bin/bash
# Replays one recorded session on a backend (ctest: session_NAME_cpu and,
# where CUDA is built, session_NAME_cuda). Usage: session_backend.sh XFDB
# BACKEND FILE.xfs [--tolerance X]. Exit 77 (ctest: skipped) when BACKEND
# is cuda and `xfdb --backend cuda -x info` finds no device; otherwise
# xfdb's own status (DESIGN.md: 0 matched, 1 diverged, 2 malformed). A
# cross-backend replay prints the largest difference that matched.
set -u
X=$1 B=$2 F=$3
shift 3
if [ "$B" = cuda ]; then
  if ! why=$("$X" --backend cuda --batch -x info 2>&1) || grep -q "not available" <<<"$why"; then
    echo "SKIP: no CUDA device: $(grep -m1 -i "error\|not available" <<<"$why")"
    exit 77
  fi
fi
exec "$X" --replay "$F" --backend "$B" --report "$@"
