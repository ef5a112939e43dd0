#!/bin/bash
# Issue 15: the pictures as a user sees them on standard output (not
# captured): a kq_soft heatmap with token pieces on the axes, the logit lens
# table, stats --hist, and compare's error bars. Plain ASCII with NO_COLOR
# or TERM=dumb (no escape sequence, no byte above 0x7f but in token pieces),
# Unicode shades in a UTF-8 locale; every line within COLUMNS=80.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
REF=$SRC/tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
RUN='run --tokens 33676,4720,25,198,2061,1657,832,331,8623,4324'
draw() { "$X" "$MODEL" --backend cpu -x "$RUN" -x finish -x "ref load $REF" -x 'print blk.2.kq_soft --heat' \
  -x 'print blk.2.kq_soft[3] --heat' -x lens -x 'stats blk.3.out --hist' -x compare; }

# ASCII: NO_COLOR, and TERM=dumb on its own
COLUMNS=80 NO_COLOR=1 LANG=C.UTF-8 draw >"$tmp/a.txt" 2>"$tmp/err.txt" || fail "NO_COLOR: $(cat "$tmp/err.txt")"
env -u NO_COLOR COLUMNS=80 TERM=dumb LANG=C.UTF-8 bash -c "$(declare -f draw); X='$X' MODEL='$MODEL' RUN='$RUN' REF='$REF' draw" \
  >"$tmp/d.txt" || fail "TERM=dumb"
cmp -s "$tmp/a.txt" "$tmp/d.txt" || fail "TERM=dumb differs from NO_COLOR: $(diff "$tmp/a.txt" "$tmp/d.txt" | head)"
! grep -q $'\033' "$tmp/a.txt" || fail "an escape sequence with NO_COLOR"
# the shades are ASCII; only the quoted pieces may hold other bytes (these do not)
! LC_ALL=C grep -q '[^ -~]' "$tmp/a.txt" || fail "non-ASCII bytes: $(LC_ALL=C grep -n '[^ -~]' "$tmp/a.txt" | head -3)"
grep -q '^ *head 0 *head 1$' "$tmp/a.txt" || fail "no grid of heads: $(head -20 "$tmp/a.txt")"
grep -q "^  0 'ROM'      |@@                  | |@@" "$tmp/a.txt" || fail "no row for 'ROM' with its shade"
grep -q "^  9 ' window'  |" "$tmp/a.txt" || fail "no row for ' window'"
grep -q "^  keys: 0 'ROM' 1 'EO' 2 ':' 3 '\\\\n' 4 'What'" "$tmp/a.txt" || fail "no key legend with escaped pieces"
grep -q "^  shade: ' ' 0  . : - = + \* # % @ 1 " "$tmp/a.txt" || fail "no ASCII shade legend"
grep -q '^logit lens at row 9 (position 9, token '"' window'"'): top 5 of each residual$' "$tmp/a.txt" \
  || fail "no lens header"
[ "$(grep -c '^  blk\.[0-5]\.out  ' "$tmp/a.txt")" = 6 ] || fail "lens: not one row a layer"
grep -q "^  logits     ' of'   0.70 ','     0.13" "$tmp/a.txt" || fail "lens: no logits row"
grep -q '^  spark |[ _.:=+*#-]*|$' "$tmp/a.txt" || fail "no ASCII sparkline"
grep -q '^  histogram of 1920 finite values, 16 bins:$' "$tmp/a.txt" || fail "no histogram"
grep -q '^blk.3.out        [0-9.e-]* .*#*\.*|\. ok$' "$tmp/a.txt" || fail "no compare bar: $(grep blk.3.out "$tmp/a.txt")"
awk 'length($0) > 80 { print FILENAME ":" NR ": " length($0) " columns: " $0; bad = 1 } END { exit bad }' \
  <(grep -v '^  min \|^reference ' "$tmp/a.txt") || fail "a line over 80 columns"

# Unicode shades in a UTF-8 locale (piped: no colors)
env -u NO_COLOR COLUMNS=80 TERM=xterm LANG=C.UTF-8 bash -c "$(declare -f draw); X='$X' MODEL='$MODEL' RUN='$RUN' REF='$REF' draw" \
  >"$tmp/u.txt" || fail "UTF-8 run"
grep -q '█' "$tmp/u.txt" || fail "no Unicode shades in a UTF-8 locale"
! grep -q $'\033' "$tmp/u.txt" || fail "colors on a pipe"
# ... and ASCII in a locale that is not UTF-8
env -u NO_COLOR COLUMNS=80 TERM=xterm LC_ALL=C bash -c "$(declare -f draw); X='$X' MODEL='$MODEL' RUN='$RUN' REF='$REF' draw" \
  >"$tmp/c.txt" || fail "C locale run"
cmp -s "$tmp/a.txt" "$tmp/c.txt" || fail "the C locale is not ASCII"
echo ok
