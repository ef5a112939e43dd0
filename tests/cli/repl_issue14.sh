#!/bin/bash
# Issue 14, the repl part: (a) --replay --update of a session that loads a
# vocabulary-only GGUF; (b) bench at a one-position context says that
# nothing could be timed; (c) replay refuses commands that write files
# unless --allow-writes, naming the line; (d) exit status 1 when a command
# failed or standard output could not be written; (e) SIGINT while xfdb
# exits. Also: a command line holding a line break is one error, nothing of
# it runs (issue 12).
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
VOCAB=$SRC/tests/fixtures/vocab/ggml-vocab-gpt-2.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"

# (a) the session ends with no stepper (a vocabulary-only file is loaded)
"$X" "$MODEL" --backend cpu --record v.xfs -x 'tokenize hi' -x "load $VOCAB" -x 'tokenize hello' >/dev/null \
  || fail "(a) record"
"$X" --replay v.xfs >out.txt 2>err.txt || fail "(a) replay: $(cat out.txt err.txt)"
"$X" --replay v.xfs --update >out.txt 2>err.txt || fail "(a) replay --update: $(cat out.txt err.txt)"
grep -q 'updated: 3 commands' out.txt || fail "(a) update said: $(cat out.txt)"
grep -qx '# backend: cpu' v.xfs || fail "(a) the backend line was lost: $(head -5 v.xfs)"
"$X" --replay v.xfs >/dev/null 2>&1 || fail "(a) the updated session does not replay"

# (b) one position: the prefill token and no room to decode
for cmd in 'bench' 'bench --decode 1 --prefill 1 --reps 1' 'bench --overhead --decode 2'; do
  "$X" "$MODEL" --backend cpu --ctx 1 -x "$cmd" >out.txt 2>err.txt || fail "(b) $cmd: $(cat out.txt err.txt)"
  grep -q 'nothing could be timed' out.txt || fail "(b) $cmd did not say so: $(cat out.txt)"
done

# (c) an untrusted session must not overwrite files
"$X" "$MODEL" --backend cpu --record w.xfs -x 'run "hi"' -x finish -x "dump logits $tmp/d.safetensors" >/dev/null \
  || fail "(c) record"
rm -f d.safetensors
set +e
"$X" --replay w.xfs >out.txt 2>err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "(c) replay of a session with dump: exit $rc (want 1)"
line=$(grep -n '^> dump' w.xfs | cut -d: -f1)
grep -q "w.xfs:$line: refusing to replay \`dump" err.txt || fail "(c) the refusal does not name line $line: $(cat err.txt)"
[ ! -e d.safetensors ] || fail "(c) the file was written anyway"
"$X" --replay w.xfs --allow-writes >out.txt 2>err.txt || fail "(c) --allow-writes: $(cat out.txt err.txt)"
[ -e d.safetensors ] || fail "(c) --allow-writes did not run dump"

# (d) exit status
set +e
"$X" "$MODEL" -x 'tokenize hi' >/dev/full 2>err.txt
rc=$?
set -e
[ $rc = 1 ] || fail "(d) stdout on /dev/full: exit $rc (want 1)"
grep -q 'writing standard output' err.txt || fail "(d) no message: $(cat err.txt)"
set +e
printf 'tokenize hi\nno-such-command\ntokenize ho\n' | "$X" "$MODEL" --batch >out.txt 2>/dev/null
rc=$?
set -e
[ $rc = 1 ] || fail "(d) --batch with a failing command: exit $rc (want 1)"
# a CRLF line from a file runs; a line break inside a -x line is an error and nothing of it runs
printf 'tokenize --ids hi\r\n' | "$X" "$MODEL" --batch >out.txt || fail "(d) a CRLF line"
grep -qx '5303' out.txt || fail "(d) CRLF output: $(cat out.txt)"
set +e
"$X" "$MODEL" -x $'tokenize --ids hi\ntokenize --ids ho' >out.txt 2>err.txt
rc=$?
set -e
[ $rc = 1 ] && [ ! -s out.txt ] || fail "(d) an embedded line break ran: exit $rc, $(cat out.txt)"
grep -q 'line break' err.txt || fail "(d) no message: $(cat err.txt)"

# (e) Ctrl-C while xfdb exits: never a crash (signals 6, 11 -> 134, 139)
for i in $(seq 1 10); do
  "$X" "$MODEL" -x 'tokenize hi' >/dev/null 2>&1 &
  pid=$!
  while kill -INT $pid 2>/dev/null; do :; done
  set +e
  wait $pid
  rc=$?
  set -e
  [ $rc -lt 128 ] || [ $rc = 130 ] || fail "(e) run $i ended with status $rc"
done
echo ok
