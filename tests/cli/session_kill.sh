#!/bin/bash
# Issue 6: killing xfdb (SIGKILL) in the middle of a recording leaves
# FILE.xfs.tmp holding every command so far, and no FILE.xfs; replay of
# either name reports the recording as incomplete and exits 1.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; exec 3>&- 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"
mkfifo in
"$X" "$MODEL" --batch --record k.xfs <in >out.txt 2>&1 &
pid=$!
exec 3>in
printf '%s\n' 'run "ROMEO:"' 'step 2' 'print blk.0.attn_norm[0, :4]' >&3
# wait until the third command is on disk (an entry is written in one
# flush), xfdb now blocked reading the fifo
for i in $(seq 100); do
  grep -q '^> print blk.0.attn_norm' k.xfs.tmp 2>/dev/null && break
  sleep 0.1
done
grep -q '^> print blk.0.attn_norm' k.xfs.tmp || fail "the recording never reached the third command: $(cat out.txt)"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
exec 3>&-
[ ! -e k.xfs ] || fail "k.xfs exists after a kill"
[ "$(grep -c '^> ' k.xfs.tmp)" = 3 ] || fail "k.xfs.tmp: $(cat k.xfs.tmp)"
grep -q '^# end' k.xfs.tmp && fail "k.xfs.tmp has an end line"
set +e
"$X" --replay k.xfs >/dev/null 2>e1.txt; rc1=$?
"$X" --replay k.xfs.tmp >/dev/null 2>e2.txt; rc2=$?
set -e
[ $rc1 = 1 ] || fail "replay k.xfs: exit $rc1"
[ $rc2 = 1 ] || fail "replay k.xfs.tmp: exit $rc2"
grep -qx "xfdb: replay: k.xfs: incomplete: there is no k.xfs, only k.xfs.tmp, a recording that did not end cleanly (xfdb was killed or crashed while recording); record it again" e1.txt \
  || fail "k.xfs message: $(cat e1.txt)"
size=$(stat -c %s k.xfs.tmp)
lines=$(wc -l <k.xfs.tmp)
grep -qx "xfdb: replay: k.xfs.tmp: line $lines at byte $size: incomplete: no '# end: N commands' line after 3 commands: the recording did not end cleanly (xfdb was killed or crashed while recording); record it again" e2.txt \
  || fail "k.xfs.tmp message: $(cat e2.txt)"

# an older complete k.xfs stays as it was; replay says a newer one was cut off
printf '%s\n' 'run "ROMEO:"' | "$X" "$MODEL" --batch --record k.xfs >/dev/null
[ ! -e k.xfs.tmp ] || fail "a clean recording left k.xfs.tmp"
"$X" "$MODEL" --batch --record k.xfs <in >/dev/null 2>&1 &
pid=$!
exec 3>in
printf '%s\n' 'run "ROMEO:"' >&3
for i in $(seq 100); do grep -q '^< pass 1' k.xfs.tmp 2>/dev/null && break; sleep 0.1; done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
exec 3>&-
"$X" --replay k.xfs >/dev/null 2>e3.txt || fail "the older complete k.xfs no longer replays: $(cat e3.txt)"
grep -q "note: k.xfs.tmp is a newer recording that did not end cleanly; replaying k.xfs" e3.txt || fail "no note: $(cat e3.txt)"
echo ok
