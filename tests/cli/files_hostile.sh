#!/bin/bash
# Issue 14 (files): hostile paths through the program as users run it.
# A FIFO as the model, to `load`, to --replay (item 15: each blocked
# forever); --record to a device (item 9: /dev/full became a regular file);
# two recordings of one file at once (item 11); a model truncated on disk
# between two commands (item 3: SIGBUS through the map); sessions over a
# vocabulary-only file (item 5).
set -uo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; exec 3>&- 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
cd "$tmp"

# --- item 15: FIFOs (a timeout turns a hang into a failure) ---
mkfifo fifo
timeout 20 "$X" fifo --batch -x info >out 2>err; rc=$?
[ $rc = 1 ] || fail "model FIFO: exit $rc (124: it blocked): $(cat err)"
grep -qx "error: fifo: not a regular file" err || fail "model FIFO: $(cat err)"
timeout 20 "$X" "$MODEL" --batch -x "load fifo" >out 2>err; rc=$?
[ $rc = 1 ] || fail "load FIFO: exit $rc (124: it blocked): $(cat err)"
grep -q "fifo: not a regular file" err || fail "load FIFO: $(cat err)"
timeout 20 "$X" --replay fifo >out 2>err; rc=$?
[ $rc = 2 ] || fail "replay FIFO: exit $rc (124: it blocked): $(cat err)"
grep -q "fifo: not a regular file" err || fail "replay FIFO: $(cat err)"

# --- item 9: a device as the recording. Our own node (a copy of /dev/full,
# where mknod is allowed), so that a regression replaces it, not the system's;
# a FIFO is the other non-regular target ---
if mknod full c 1 7 2>/dev/null; then
  printf '%s\n' 'tokenize hi' | timeout 60 "$X" "$MODEL" --batch --record full >out 2>err; rc=$?
  [ -c full ] || fail "record to a device replaced the device node"
  grep -q "full: not a regular file: refusing to replace it" err || fail "record to a device: rc $rc: $(cat err)"
fi
printf '%s\n' 'tokenize hi' | timeout 60 "$X" "$MODEL" --batch --record fifo >out 2>err; rc=$?
[ -p fifo ] || fail "record to a FIFO replaced it"
grep -q "fifo: not a regular file: refusing to replace it" err || fail "record to a FIFO: rc $rc: $(cat err)"

# --- item 11: two recordings of one file ---
mkfifo in
"$X" "$MODEL" --batch --record same.xfs <in >out1 2>err1 &
pid=$!
exec 3>in
printf '%s\n' 'tokenize hi' >&3
for i in $(seq 100); do [ -e same.xfs.lock ] && grep -q '^> tokenize' same.xfs.tmp 2>/dev/null && break; sleep 0.1; done
printf '%s\n' 'tokenize there' | timeout 60 "$X" "$MODEL" --batch --record same.xfs >out2 2>err2
grep -q "same.xfs: another xfdb is recording to this file" err2 || fail "second recorder: $(cat err2)"
exec 3>&-
wait "$pid"; rc=$?
pid=
[ $rc = 0 ] || fail "first recorder: exit $rc: $(cat err1)"
timeout 120 "$X" --replay same.xfs >out 2>err || fail "same.xfs does not replay: $(cat err)"
[ "$(grep -c '^> ' same.xfs)" = 1 ] || fail "same.xfs: $(cat same.xfs)"

# --- item 3: the model truncated on disk between two commands ---
cp "$MODEL" m.gguf
mkfifo in2
"$X" m.gguf --batch <in2 >out3 2>err3 &
pid=$!
exec 3>in2
printf '%s\n' 'run "ROMEO:"' 'step 3' >&3
for i in $(seq 100); do grep -q 'stopped' out3 2>/dev/null && break; sleep 0.1; done
: > m.gguf
printf '%s\n' 'continue' 'topk 1' 'run "ROMEO:"' >&3
exec 3>&-
wait "$pid"; rc=$?
pid=
[ $rc -lt 128 ] || fail "truncated model: killed by signal $((rc - 128)): $(tail -3 err3)"
grep -q "BUS\|SEGV\|Sanitizer" err3 && fail "truncated model: $(head -3 err3)"
# the pass in flight finishes on the weights read at load; the next pass says why it cannot start
grep -q "m.gguf: the file changed on disk since it was loaded (its size changed); load it again" err3 ||
  fail "truncated model: no 'changed on disk' at the next pass: $(cat err3)"

# --- item 5: sessions without weights (a vocabulary-only GGUF) record and replay ---
V=$SRC/tests/fixtures/vocab/ggml-vocab-gpt-2.gguf
printf '%s\n' 'tokenize hello world' 'info' 'run "hi"' | timeout 60 "$X" "$V" --batch --record v.xfs >/dev/null 2>&1
timeout 60 "$X" --replay v.xfs >out 2>err || fail "vocab-only session: $(cat err)"
printf '%s\n' "load $V" 'tokenize hi' | timeout 60 "$X" "$MODEL" --batch --record v2.xfs >/dev/null 2>&1
timeout 60 "$X" --replay v2.xfs >out 2>err || fail "session loading a vocab-only file: $(cat err)"

[ $fails = 0 ] || exit 1
echo ok
