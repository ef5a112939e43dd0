#!/bin/bash
# Issue 15, the keys-and-messages half, as a user meets it from the shell
# (the keys themselves are tests/test_pty.c): generate paused by a
# breakpoint and resumed by continue; a recording started mid-session
# replays; messages that name the fault; help at 80 columns; bench leaves
# the session as it was; threads and context in `info`; options of
# --replay without --replay.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
cd "$SRC"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
xb() { "$X" --backend cpu --batch "$@"; }

# --- generate stops at a breakpoint, and continue finishes it (stopping at later hits)
out=$(xb -x 'run "ROMEO:"' -x 'break blk.2.ffn_act' -x continue -x 'generate 4 --ids' -x continue -x delete \
  -x continue -x where 2>&1)
grep -q "generation paused at token 1 of 4" <<<"$out" || fail "generate did not pause: $out"
grep -q "generation paused at token 2 of 4" <<<"$out" || fail "continue did not resume to the next hit: $out"
# after delete, continue decodes the rest: 4 ids on the screen in all, and the last pass is the 4th token's
[ "$(echo "$out" | grep -Eo '^ ?[0-9]+( [0-9]+)*$' | tr ' ' '\n' | grep -c .)" = 4 ] || fail "not 4 ids: $out"
grep -q "^pass 5 (decode" <<<"$out" || fail "the generation did not finish: $out"
# a stop in the last token's pass: every token is out, continue only finishes that pass
out=$(xb -x 'run "ROMEO:"' -x 'break blk.2.ffn_act' -x continue -x 'generate 2 --ids' -x continue -x continue \
  -x where 2>&1)
grep -q "generation paused at token 1 of 2: \`continue\` resumes it" <<<"$out" || fail "token 1 of 2: $out"
# where says so too (only finish did)
out2=$(xb -x 'run "ROMEO:"' -x 'break blk.2.ffn_act' -x continue -x 'generate 2 --ids' -x where 2>&1)
grep -q "^(a generation is paused here: \`continue\` resumes it)" <<<"$out2" || fail "where in a paused generation: $out2"
grep -q "generation paused at token 2 of 2: \`continue\` finishes the last token's pass" <<<"$out" ||
  fail "the last token's pass: $out"

# --- a recording started mid-session replays (it records the state it starts from)
xb -x 'run "ROMEO:"' -x continue -x 'generate 3' -x token -x 'step 2' -x 'break blk.1.*_act' \
  -x "record $tmp/mid.xfs" -x continue -x where -x 'print blk.1.ffn_act[0, :3]' -x 'generate 2 --ids' \
  -x 'record stop' >"$tmp/rec.out" 2>&1 || fail "recording: $(cat "$tmp/rec.out")"
grep -q "^> run --tokens " "$tmp/mid.xfs" || fail "no preamble: $(cat "$tmp/mid.xfs")"
"$X" --replay "$tmp/mid.xfs" >"$tmp/rep.out" 2>&1 || fail "mid-session recording does not replay: $(cat "$tmp/rep.out")"

# --- messages that name the fault
out=$(xb -x 'run "ROMEO:"' -x 'generate 5 --temp hot' 2>&1 || true)
grep -q "'hot' is not a temperature" <<<"$out" || fail "--temp hot: $out"
out=$(xb -x 'run "ROMEO:"' -x 'generate 3 --topk 4' 2>&1 || true)
grep -q "no option '--topk'" <<<"$out" || fail "--topk: $out"
# a word after a command that takes none is an error, not ignored; step's bound is said
out=$(xb -x 'run "ROMEO:"' -x 'profile extra' 2>&1 || true)
grep -q "error: profile takes no arguments (usage: profile)" <<<"$out" || fail "profile extra: $out"
out=$(xb -x 'run "ROMEO:"' -x 'step 99999999999' 2>&1 || true)
grep -q "step: '99999999999' is not a count in 1..1000000" <<<"$out" || fail "step huge: $out"
out=$(xb -x 'run "ROMEO:"' -x 'generate 0' 2>&1)
grep -q "nothing to generate" <<<"$out" || fail "generate 0 printed: $out"

# --- options of --replay without --replay: an error, exit 2
for o in "--tolerance 1e-3" "--update" "--allow-writes"; do
  rc=0
  # shellcheck disable=SC2086
  "$X" --batch $o -x 'info' >/dev/null 2>"$tmp/err" || rc=$?
  [ $rc = 2 ] || fail "$o without --replay: exit $rc"
  grep -q -- "applies to --replay" "$tmp/err" || fail "$o: $(cat "$tmp/err")"
done

# --- help fits 80 columns piped, and every summary is one line there
xb -x help >"$tmp/help"
awk 'length($0) > 80 { print; bad = 1 } END { exit bad }' "$tmp/help" || fail "help lines over 80 columns"
n_cmd=$(grep -c '^  [a-z]' "$tmp/help")
n_all=$(sed -n '2,/^[A-Z]/p' "$tmp/help" | grep -c '^  ')
[ "$n_cmd" = "$n_all" ] || fail "a summary wraps: $(cat "$tmp/help")"
for c in $(grep -o '^  [a-z]*' "$tmp/help"); do
  xb -x "help $c" | awk -v c="$c" 'length($0) > 80 { print c ": " $0; bad = 1 } END { exit bad }' ||
    fail "help $c over 80 columns"
done

# --- bench: a user breakpoint does not break --overhead; bench step leaves the pass where it was
out=$(xb -x 'run "ROMEO:"' -x 'break blk.1.*' -x 'step 5' -x 'bench --overhead --decode 4' -x 'bench step' \
  -x where -x 'info breaks' 2>&1) || fail "bench with a breakpoint: $out"
grep -q "decode, nothing watched" <<<"$out" || fail "no overhead line: $out"
grep -q "^at op 5/93 blk.0.kq_soft\|^at op 5/93" <<<"$out" || fail "bench moved the pass: $out"
echo "$out" | grep -Eq "^1 +blk.1.\* +- +0$" || fail "the breakpoint changed: $out"

# --- threads default to the cores this process may use; info says threads and context
cores=$(nproc)
out=$(xb -x info)
grep -q "$cores CPU thread" <<<"$out" || fail "info threads (nproc $cores): $out"
grep -q "context 256 positions (the model.s)" <<<"$out" || fail "info context: $out"
out=$(xb --ctx 64 -x info)
grep -q "context 64 positions (--ctx 64; the model.s: 256)" <<<"$out" || fail "info --ctx: $out"
echo ok
