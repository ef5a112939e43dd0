#!/bin/bash
# Ctrl-C during `generate` (and `continue`) stops at the next op boundary and
# returns to the command loop; it never kills the process.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# ref kernels make 200 tokens take many seconds: time enough to interrupt
"$X" "$MODEL" --backend cpu --batch -x 'kernel all ref' -x 'run "ROMEO:"' -x 'generate 200 --ids --ignore-eos' \
  -x where -x step -x 'print embd[-1, :2] --raw' >"$tmp/out" 2>"$tmp/err" &
pid=$!
sleep 1.5
kill -INT $pid
rc=0
wait $pid || rc=$?
[ $rc = 0 ] || fail "exit $rc after Ctrl-C: $(cat "$tmp/err")"
# issue 15: it says how far the generation got, never "interrupted after nothing"
grep -Eq "^stopped at token [0-9]+ of 200 \(Ctrl-C\)" "$tmp/out" || fail "no 'stopped at token' line: $(cat "$tmp/out")"
grep -q "after nothing" "$tmp/out" && fail "'interrupted after nothing': $(cat "$tmp/out")"
# the commands after the interrupted one still ran
grep -q "^pass .*(decode" "$tmp/out" || fail "where did not run: $(cat "$tmp/out")"
[ "$(tail -1 "$tmp/out" | wc -w)" = 2 ] || fail "print after the interrupt: $(tail -1 "$tmp/out")"
echo ok
