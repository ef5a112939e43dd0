#!/bin/bash
# Issue 14, round three: the classes of round two, cases that were not listed.
#  - terminal: a replay's report (divergence, model not found) quoted the
#    session's command, expected output and model name raw: ESC, BEL and C1
#    bytes of an untrusted .xfs reached the terminal
#  - signals: `xfdb --record F ... | head -1` died of SIGPIPE and left
#    F.tmp and F.lock (F lost); now the closed pipe ends the session cleanly,
#    the recording is kept, the exit status is 1
#  - numbers: --lua-timeout 9223372036 overflowed the watchdog's nanoseconds
#    (UBSan: signed integer overflow); `generate --temp 1e308` became inf as a
#    float and was reported as "out of memory"; chat's options took
#    `--temp inf`, `--seed -1` and `-n 5abc` (unchecked strtof/strtoull/strtol)
set -uo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
cd "$tmp"
cp "$MODEL" m.gguf
# raw control bytes in a file: ESC, BEL, CSI (C1, 0x9b as a lone byte and as U+009B)
has_raw_controls() { LC_ALL=C grep -q $'[\x1b\x07\x9b]' "$1"; }

# --- terminal: the replay report escapes what it quotes from the session ---
"$X" m.gguf --batch --record s.xfs -x 'tokenize hi' >out 2>err || fail "record: $(cat err)"
head -6 s.xfs >e.xfs
printf '%s\n' '> tokenize \x1b]0;pwn\x07\xc2\x9b' '< WRONG \x1b[2J' '# end: 1 commands' >>e.xfs
timeout 60 "$X" --replay e.xfs >out 2>err; rc=$?
[ $rc = 1 ] || fail "divergent replay: exit $rc: $(cat err)"
grep -q 'replay diverged' err || fail "divergent replay: no report: $(cat err)"
has_raw_controls err && fail "replay report holds raw control bytes: $(cat -v err)"
grep -qF 'tokenize \x1b]0;pwn\x07\x9b' err || fail "replay report: the command not escaped: $(cat -v err)"
grep -qF 'expected: WRONG \x1b[2J' err || fail "replay report: the expected line not escaped: $(cat -v err)"

sed -e 's|^# model: [^ ]* |# model: \\x1b]0;pwn\\x07.gguf |' -e 's|^# model-path: .*|# model-path: \\x1b[31m.gguf|' \
  s.xfs >n.xfs
timeout 60 "$X" --replay n.xfs >out 2>err; rc=$?
[ $rc = 1 ] || fail "replay, model not found: exit $rc: $(cat err)"
grep -q 'not found' err || fail "replay, model not found: $(cat err)"
has_raw_controls err && fail "model-not-found report holds raw control bytes: $(cat -v err)"

# --- signals: a closed pipe ends the session, the recording is kept ---
timeout 120 "$X" m.gguf --batch --record p.xfs -x 'run hi' -x 'generate 200 --ignore-eos' -x 'tokenize a' \
  2>err | head -1 >head.out; rc=${PIPESTATUS[0]}
{ [ $rc != 0 ] && [ $rc != 141 ] && [ $rc != 124 ]; } || fail "SIGPIPE in generate: exit $rc (141: killed)"
[ -f p.xfs ] || fail "SIGPIPE in generate: the recording was lost"
[ -e p.xfs.tmp ] && fail "SIGPIPE in generate: p.xfs.tmp left"
[ -e p.xfs.lock ] && fail "SIGPIPE in generate: p.xfs.lock left"
grep -q '^# end: ' p.xfs 2>/dev/null || fail "SIGPIPE in generate: no end line"
grep -q 'Broken pipe' err || fail "SIGPIPE in generate: the write error not said: $(cat err)"

timeout 120 "$X" m.gguf --batch --record q.xfs -x 'lua for i = 1, 1e6 do print(i) end' 2>err | head -1 >head.out
rc=${PIPESTATUS[0]}
{ [ $rc != 0 ] && [ $rc != 141 ] && [ $rc != 124 ]; } || fail "SIGPIPE in Lua: exit $rc"
[ -f q.xfs ] && [ ! -e q.xfs.tmp ] && [ ! -e q.xfs.lock ] || fail "SIGPIPE in Lua: $(ls q.xfs*)"

seq 1 3000 | sed 's/^/tokenize a/' | timeout 120 "$X" m.gguf --batch --record r.xfs 2>err | head -1 >head.out
rc=${PIPESTATUS[2]}
{ [ $rc != 0 ] && [ $rc != 141 ] && [ $rc != 124 ]; } || fail "SIGPIPE in --batch: exit $rc"
[ -f r.xfs ] && [ ! -e r.xfs.tmp ] && [ ! -e r.xfs.lock ] || fail "SIGPIPE in --batch: $(ls r.xfs*)"
timeout 120 "$X" --replay r.xfs >out 2>err || fail "SIGPIPE in --batch: the recording does not replay: $(cat err)"

# --- numbers ---
timeout 60 "$X" m.gguf --batch --lua-timeout 9223372036 -x 'lua for i = 1, 3e7 do end print("done")' >out 2>err
rc=$?
[ $rc = 0 ] && grep -qx done out || fail "--lua-timeout 9223372036: exit $rc: $(cat err)"
grep -q 'runtime error' err && fail "--lua-timeout 9223372036: $(cat err)"
timeout 60 "$X" m.gguf --batch --lua-timeout inf -x 'lua print(1)' >out 2>err || fail "--lua-timeout inf: $(cat err)"

timeout 60 "$X" m.gguf --batch -x 'run hi' -x 'generate 3 --temp 1e308 --seed 1' >out 2>err; rc=$?
[ $rc = 1 ] || fail "generate --temp 1e308: exit $rc"
grep -q -- "--temp: '1e308' is not a temperature" err || fail "generate --temp 1e308: $(cat err)"
grep -q 'out of memory' err && fail "generate --temp 1e308 said: $(cat err)"

for opts in '--temp inf' '--temp 1e308' '--seed -1' '--seed 99999999999999999999' '-n 5abc' '--temp 0.5x'; do
  timeout 60 "$X" m.gguf --batch -x "chat $opts hello" >out 2>err; rc=$?
  [ $rc = 1 ] || fail "chat $opts: exit $rc"
  grep -q 'chat format' err && fail "chat $opts: the option was taken: $(cat err)"
  grep -q 'out of memory' err && fail "chat $opts: $(cat err)"
done

# --- bench lists: an empty entry or a fifth one is an error, never dropped silently
for opts in "--prefill 1,,2" "--prefill ," "--prefill 1,2,3,4,5" "--variants ,,," "--variants opt,,ref"; do
  rc=0
  "$X" --backend cpu --batch -x "bench $opts" >out 2>err || rc=$?
  [ $rc = 1 ] || fail "bench $opts: exit $rc: $(cat out err)"
  grep -q "takes 1 to 4" err || fail "bench $opts: $(cat err)"
done

[ $fails = 0 ] || { echo "$fails failures" >&2; exit 1; }
echo "ok"
