#!/bin/bash
# Issue 14: (a) a replay that diverges on a session whose command and
# expected output hold ESC (written \x1b in the file, raw bytes once read)
# reports it escaped: no raw ESC reaches the terminal. (b) Recording errors
# are one error line and exit 1: --record onto a directory, into a missing
# directory, a full disk (RLIMIT_FSIZE: EFBIG, with SIGXFSZ ignored, as
# tests/test_files_xfile.c does) mid-recording, at the end line, and at
# `record stop`; the message says what is left (no FILE.tmp, FILE as it
# was). A --replay of a missing file is one line and exit 2, as a malformed
# one is (tests/cli/malformed_files.sh). Nothing here writes to /dev.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"
ESC=$(printf '\033')

# --- (a) the divergence report escapes what the file holds
"$X" "$MODEL" --backend cpu --batch --record s.xfs -x 'tokenize hello' >/dev/null 2>&1 || fail "(a) record"
grep -qx "< 1 tokens" s.xfs || fail "(a) the recording: $(cat s.xfs)"
# the expected line, then the command: ESC sequences, escaped in the file
sed -e 's/^< 1 tokens$/< \\x1b[2J\\x1b]0;owned\\x07 tokens/' s.xfs >e.xfs
sed -e 's/^> tokenize hello$/> tokenize hel\\x1b[31mlo/' s.xfs >c.xfs
cmp -s e.xfs s.xfs && fail "(a) the expected line was not edited"
cmp -s c.xfs s.xfs && fail "(a) the command was not edited"
for f in e c; do
  set +e
  "$X" --replay $f.xfs >$f.out 2>$f.err
  rc=$?
  set -e
  [ $rc = 1 ] || fail "(a) $f.xfs: exit $rc (a divergence: want 1): $(cat $f.err)"
  grep -q "replay diverged at command 1 of 1" $f.err || fail "(a) $f.xfs: no divergence report: $(cat -v $f.err)"
  if grep -q "$ESC" $f.err $f.out; then fail "(a) $f.xfs: a raw ESC on the terminal: $(cat -v $f.err)"; fi
  if grep -q "$(printf '\007')" $f.err $f.out; then fail "(a) $f.xfs: a raw BEL on the terminal"; fi
done
grep -qF 'expected: \x1b[2J\x1b]0;owned\x07 tokens' e.err || fail "(a) expected line: $(cat -v e.err)"
grep -qF "text differs at column 1: expected '\\x1b['" e.err || fail "(a) token: $(cat -v e.err)"
grep -qF ': tokenize hel\x1b[31mlo' c.err || fail "(a) the command: $(cat -v c.err)"

# one error line on stderr, exit $2; $1 names the case, the rest is the command
one_error() {
  local what=$1 want=$2
  shift 2
  set +e
  "$@" >out.txt 2>err.txt
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "$what: exit $rc, want $want: $(cat err.txt)"
  [ "$(wc -l <err.txt)" = 1 ] || fail "$what: want one error line: $(cat err.txt)"
}

# --- (b) --record where no file can be
mkdir d
one_error "--record DIR" 1 "$X" "$MODEL" --backend cpu --batch --record d -x 'tokenize hi'
grep -q 'record: d: not a regular file' err.txt || fail "--record DIR: $(cat err.txt)"
[ -z "$(ls -A d)" ] && [ ! -e d.tmp ] && [ ! -e d.lock ] || fail "--record DIR left files: $(ls -A . d)"
one_error "--record in a missing directory" 1 "$X" "$MODEL" --backend cpu --batch --record "$tmp/no/such/x.xfs" \
  -x 'tokenize hi'
grep -q "record: $tmp/no/such/x.xfs: .*No such file or directory" err.txt || fail "missing dir: $(cat err.txt)"
[ ! -e "$tmp/no" ] || fail "missing dir: created"
one_error "--replay of a missing file" 2 "$X" --replay nope.xfs
grep -q 'replay: nope.xfs: cannot open: No such file or directory' err.txt || fail "--replay missing: $(cat err.txt)"

# --- (b) a full disk: xfdb under a 1 KiB file size limit, SIGXFSZ ignored
# (inherited across exec), so that a write past it fails with EFBIG. Its
# standard output goes through a pipe to cat, outside the limit.
limited() {
  local what=$1 want=$2
  shift 2
  set +e
  (trap '' XFSZ; ulimit -f 1; exec "$X" "$MODEL" --backend cpu --batch "$@") 2>err.txt | cat >out.txt
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" = "$want" ] || fail "$what: exit $rc, want $want: $(cat err.txt)"
  [ "$(wc -l <err.txt)" = 1 ] || fail "$what: want one error line: $(cat err.txt)"
  grep -q 'File too large' err.txt || fail "$what: $(cat err.txt)"
}
nothing_left() { # $1: the recording, $2: what it held before ("" none)
  [ ! -e "$1.tmp" ] && [ ! -e "$1.lock" ] || fail "$1: left $(ls "$1".*)"
  if [ -n "$2" ]; then [ "$(cat "$1")" = "$2" ] || fail "$1 changed: $(head -3 "$1")"; else [ ! -e "$1" ] || fail "$1 written"; fi
}
pad="# $(printf 'x%.0s' $(seq 1000))" # a comment reaches the file with the next command or the end line
# a command's output over the limit: the recording stops, the next commands do not run
limited "full disk mid-recording" 1 --record m.xfs -x 'tokenize hi' -x "tokenize $(seq 200 | tr '\n' ' ')" \
  -x 'tokenize hello'
grep -qF 'error: record: m.xfs: write failed: File too large; recording stopped and discarded (m.xfs.tmp removed, m.xfs as it was)' \
  err.txt || fail "mid-recording message: $(cat err.txt)"
grep -q "'hello'" out.txt && fail "mid-recording: the commands after the failure ran"
nothing_left m.xfs ""
# the end line (with the comment before it) over the limit; an older m.xfs stays as it was
echo old >m.xfs
limited "full disk at the end" 1 --record m.xfs -x 'tokenize hello' -x "$pad"
grep -qF 'error: record: m.xfs: write failed: File too large; the recording is discarded (m.xfs.tmp removed, m.xfs as it was)' \
  err.txt || fail "end message: $(cat err.txt)"
grep -q "'hello'" out.txt || fail "end: the command did not run: $(cat out.txt)"
nothing_left m.xfs old
# `record stop` inside the session: the command fails, and says so once
limited "full disk at record stop" 1 -x 'record r.xfs' -x 'tokenize hello' -x "$pad" -x 'record stop' \
  -x 'tokenize bye'
grep -q 'recorded' out.txt && fail "record stop: said recorded: $(cat out.txt)"
grep -q "'bye'" out.txt && fail "record stop: the command after the failure ran"
nothing_left r.xfs ""

echo ok
