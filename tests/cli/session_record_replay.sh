#!/bin/bash
# Issue 6: a recording replays; a number moved by more than the tolerance
# fails with a precise message, by less passes; a changed word fails;
# --tolerance and --update; profile timings are recorded as `~` lines and
# not compared; `record FILE` / `record stop` inside a session; a recorded
# error replays.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"

# --- record: the last command fails, so xfdb exits 1 but the file is complete
set +e
"$X" "$MODEL" --backend cpu --batch --record s.xfs -x 'run "ROMEO:"' -x 'step 2' -x 'print blk.0.attn_norm -n 4' \
  -x 'stats blk.0.attn_norm' -x finish -x 'topk 3' -x profile -x 'generate 4 --ids' -x 'print no.such.tensor' \
  >out.txt 2>err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "record: exit $rc (the last command fails: want 1)"
[ -f s.xfs ] && [ ! -e s.xfs.tmp ] || fail "record: s.xfs missing or s.xfs.tmp left behind"
head -1 s.xfs | grep -qx '# xfdb session 1' || fail "header: $(head -1 s.xfs)"
sha=$(sha256sum "$MODEL" | cut -d' ' -f1)
grep -qx "# model: tiny-shakespeare-gpt2-f16.gguf sha256 $sha" s.xfs || fail "model line: $(grep '^# model:' s.xfs)"
grep -qx '# backend: cpu' s.xfs || fail "backend line"
grep -q '^# kernels: .*matmul=opt' s.xfs || fail "kernels line"
grep -qx '# tolerance: rel 1e-05 abs 1e-07' s.xfs || fail "tolerance line"
tail -1 s.xfs | grep -qx '# end: 9 commands' || fail "end line: $(tail -1 s.xfs)"
grep -q '^< error: ' s.xfs || fail "the failing command's error is not recorded"
# the terminal got the same output the file holds
grep -q 'pass 1: 3 tokens at position 0' out.txt || fail "record printed nothing: $(cat out.txt)"
# one token is "1 token", not "1 tokens"
"$X" "$MODEL" --backend cpu --batch -x 'run --tokens 5' >one.txt 2>&1 || fail "run of one token: $(cat one.txt)"
grep -q '^pass 1: 1 token at position 0, ' one.txt || fail "run of one token said: $(cat one.txt)"
# profile: every line `~`, none `<`
awk '/^> profile$/ {p=1; next} /^[>#]/ {p=0} p && /^</ {exit 1} p && /^~/ {n++} END {exit n ? 0 : 1}' s.xfs \
  || fail "profile output is not recorded as ~ lines"

"$X" --replay s.xfs >rep.txt 2>rep.err || fail "replay of a fresh recording: $(cat rep.txt rep.err)"
grep -q 's.xfs: 9 commands replayed, output matches' rep.txt || fail "replay message: $(cat rep.txt)"

# --- one number: the min of `print`, relative change 1e-3 (> 1e-5) and 2e-6 (< 1e-5)
line=$(grep -n '^<   min ' s.xfs | head -1 | cut -d: -f1)
orig=$(sed -n "${line}p" s.xfs | awk '{print $3}')
bump() { awk -v x="$orig" -v f="$1" 'BEGIN { printf "%.9g", x * (1 + f) }'; }
big=$(bump 1e-3)
small=$(bump 2e-6)
sed "${line}s/min $orig /min $big /" s.xfs >big.xfs
sed "${line}s/min $orig /min $small /" s.xfs >small.xfs
cmp -s big.xfs s.xfs && fail "edit did not apply"
set +e
"$X" --replay big.xfs >big.out 2>big.err; rc=$?
set -e
[ $rc = 1 ] || fail "a number off by 1e-3 relative: exit $rc: $(cat big.err)"
grep -q "^big.xfs:$line: replay diverged at command 3 of 9 (line $((line - 2))): print blk.0.attn_norm -n 4\$" big.err \
  || fail "divergence header: $(cat big.err)"
grep -q "expected:   min $big " big.err || fail "expected line: $(cat big.err)"
grep -q "got:        min $orig " big.err || fail "got line: $(cat big.err)"
grep -q "number 1 (column 7): expected $big, got $orig: differs by .* (abs), 0.000999 (rel); tolerance rel 1e-05 abs 1e-07" \
  big.err || fail "number report: $(cat big.err)"
"$X" --replay small.xfs >/dev/null 2>small.err || fail "a number off by 2e-6 relative fails: $(cat small.err)"
# --tolerance loosens the relative bound
"$X" --replay big.xfs --tolerance 1e-2 >/dev/null 2>&1 || fail "--tolerance 1e-2 does not accept 1e-3"
# ... and is a finite number >= 0, as the header's and record's: an empty word (an unset
# shell variable) is not 0, and inf would let every number match
for t in "" inf 1e999 -1 nan; do
  set +e
  "$X" --replay big.xfs --tolerance "$t" >/dev/null 2>tol.err; rc=$?
  set -e
  [ $rc = 2 ] && grep -q "^xfdb: --tolerance: '$t' is not a number >= 0" tol.err || fail "--tolerance '$t': exit $rc, $(cat tol.err)"
done

# --- a word
sed 's/stopped before embd/stopped after embd/' s.xfs >word.xfs
set +e
"$X" --replay word.xfs >/dev/null 2>word.err; rc=$?
set -e
[ $rc = 1 ] || fail "changed word: exit $rc"
grep -q "text differs at column 49: expected 'after', got 'before'" word.err || fail "word report: $(cat word.err)"

# --- an integer (a token id) is compared exactly, even under a loose tolerance
id=$(awk '/^> generate 4 --ids/ {getline; print $4; exit}' s.xfs)
sed "/^> generate 4 --ids/{n;s/^< \([0-9]*\) \([0-9]*\) $id/< \1 \2 $((id + 1))/}" s.xfs >id.xfs
cmp -s id.xfs s.xfs && fail "id edit did not apply"
set +e
"$X" --replay id.xfs --tolerance 0.5 >/dev/null 2>id.err; rc=$?
set -e
[ $rc = 1 ] || fail "changed token id under tolerance 0.5: exit $rc"
grep -q "number 3 (column .*): expected $((id + 1)), got $id: integers must be equal" id.err || fail "id report: $(cat id.err)"

# --- --update rewrites the expectations, keeping comments
sed -i 's/^> step 2$/# stepping into layer 0\n&/' word.xfs
"$X" --replay word.xfs --update >upd.out 2>&1 || fail "--update: $(cat upd.out)"
grep -q 'word.xfs: updated: 9 commands, 1 with new output' upd.out || fail "update message: $(cat upd.out)"
grep -qx '# stepping into layer 0' word.xfs || fail "--update lost a comment"
"$X" --replay word.xfs >/dev/null 2>&1 || fail "replay after --update"
[ ! -e word.xfs.tmp ] || fail "--update left word.xfs.tmp"

# --- a recording made with the record command inside a session
printf '%s\n' 'run "ROMEO:"' 'record r.xfs' 'step' 'record' 'print embd[0, :3] --raw' 'record stop' 'step' \
  | "$X" "$MODEL" --batch >rec.out 2>&1 || fail "record command: $(cat rec.out)"
grep -q 'recording to r.xfs' rec.out || fail "record message: $(cat rec.out)"
# it started mid-pass: the recording first rebuilds that pass (issue 15: `run --tokens`)
grep -q 'recording to r.xfs (2 commands so far)' rec.out || fail "record status: $(cat rec.out)"
grep -q 'recorded 3 commands to r.xfs' rec.out || fail "record stop message: $(cat rec.out)"
[ "$(grep -c '^> ' r.xfs)" = 3 ] || fail "r.xfs commands: $(grep '^> ' r.xfs)"
grep -qx '> run --tokens 33676,4720,25' r.xfs || fail "no preamble: $(cat r.xfs)"
grep -q 'rebuild the state' rec.out || fail "no word about the preamble: $(cat rec.out)"
# and so it replays
"$X" --replay r.xfs >r.out 2>&1 || fail "r.xfs started mid-pass does not replay: $(cat r.out)"

# --- a report tells the byte ESC from the text "\x1b": it writes lines as the file does
# (the file holds the printed text "\x1b" as \\x1b; made ESC by hand, the replay differs)
"$X" "$MODEL" --backend cpu --batch --record esc.xfs -x 'lua print("\\x1b")' >/dev/null 2>&1 ||
  fail "record esc.xfs"
grep -qxF '< \\x1b' esc.xfs || fail "esc.xfs stores: $(grep '^<' esc.xfs)"
sed 's/^< \\\\x1b$/< \\x1b/' esc.xfs >esc2.xfs
grep -qxF '< \x1b' esc2.xfs || fail "esc2.xfs: $(grep '^<' esc2.xfs)"
set +e
"$X" --replay esc2.xfs >/dev/null 2>esc.err; rc=$?
set -e
[ $rc = 1 ] || fail "esc2.xfs: exit $rc, $(cat esc.err)"
grep -qxF '    expected: \x1b' esc.err && grep -qxF '    got:      \\x1b' esc.err ||
  fail "the report does not tell ESC from a backslash: $(cat esc.err)"

# --- files that are not sessions: exit 2 with the place named
printf '> run hi\n' >bad.xfs
set +e
"$X" --replay bad.xfs >/dev/null 2>bad.err; rc=$?
set -e
[ $rc = 2 ] || fail "malformed session: exit $rc"
grep -qx "xfdb: replay: bad.xfs: line 1 at byte 0: not an xfdb session (the first line must be '# xfdb session 1')" \
  bad.err || fail "malformed message: $(cat bad.err)"
echo ok
