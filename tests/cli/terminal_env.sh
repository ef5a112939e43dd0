#!/bin/bash
# Colors and pictures by the terminal's environment, on a real terminal
# (script(1) gives xfdb a pty): TERM=dumb colors nothing (it showed error:
# in red escapes, session 26); a locale that is not UTF-8 gets ASCII bars
# and sparklines even on a color terminal (it got UTF-8 blocks); a color
# UTF-8 terminal still gets both.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
command -v script >/dev/null || { echo "no script(1): skipped"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# on a pty: stdout and stderr are the terminal
onpty() { script -qec "$1" /dev/null 2>&1; }
cmd="\"$X\" \"$MODEL\" --backend cpu --threads 1 -x 'run \"ROMEO:\"' -x finish -x 'stats blk.3.out --hist' -x 'print nosuch'"
unset NO_COLOR
esc=$'\033'
out=$(TERM=xterm LC_ALL=C.UTF-8 onpty "$cmd" || true)
grep -q "${esc}\[1;31merror:" <<<"$out" || fail "no red error on a color terminal: $(cat -v <<<"$out")"
grep -q "spark |.*▁" <<<"$out" || fail "no Unicode sparkline in a UTF-8 locale: $(cat -v <<<"$out")"
out=$(TERM=dumb LC_ALL=C.UTF-8 onpty "$cmd" || true)
! grep -q "$esc" <<<"$out" || fail "escape bytes under TERM=dumb: $(cat -v <<<"$out")"
grep -q "^error: no tensor named 'nosuch'" <<<"$out" || fail "TERM=dumb error line: $(cat -v <<<"$out")"
out=$(TERM=xterm LANG=C LC_ALL=C onpty "$cmd" || true)
! LC_ALL=C grep -q $'\xe2' <<<"$out" || fail "UTF-8 bytes in a C locale: $(cat -v <<<"$out")"
grep -q "spark |[ -~]*|" <<<"$out" || fail "no ASCII sparkline in a C locale: $(cat -v <<<"$out")"
grep -q "${esc}\[1;31merror:" <<<"$out" || fail "a C locale on a color terminal still colors errors: $(cat -v <<<"$out")"
# an error on a terminal wraps between words at its width (a terminal cut it mid-word),
# the lines after the first indented; in a pipe it stays one line
long="\"$X\" \"$MODEL\" --backend cpu --threads 1 -x 'run \"ROMEO:\"' -x 'step 48' -x 'set blk.2.out = 1'"
out=$(TERM=xterm NO_COLOR=1 COLUMNS=60 onpty "$long" | tr -d '\r' || true)
grep -q "^error: set: blk.2.out was already read by blk.3.attn_norm:" <<<"$out" || fail "wrapped error: $out"
grep -q "^  " <<<"$out" || fail "no continuation line: $out"
[ "$(awk '{ if (length($0) > 60) n++ } END { print n + 0 }' <<<"$out")" = 0 ] || fail "a line past 60 columns: $out"
pipe=$(eval "$long" 2>&1 >/dev/null || true)
[ "$(grep -c . <<<"$pipe")" = 1 ] || fail "a piped error is not one line: $pipe"
echo ok
