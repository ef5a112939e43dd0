#!/bin/bash
# A FILE argument is a word or a "quoted" name (blanks inside) for every
# command that takes one (repl/args.c args_path): dump, ref load, record,
# load, source, patch ... from. Before, dump/ref load/record created or
# looked for files whose names held the quote marks, while load failed and
# source stripped them; and a recording started mid-session wrote its
# preamble's `ref load` unquoted, so it could not replay.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"
cp "$SRC/models/tiny-shakespeare-gpt2-f16.gguf" "m o.gguf"
printf 'print("sourced " .. (arg[1] or ""))\n' > "s c.lua"
out=$("$X" --backend cpu --batch -x 'load "m o.gguf"' -x 'run "ROMEO:"' -x finish -x 'dump logits "d 1.st"' \
  -x 'ref load "d 1.st"' -x 'record "r 1.xfs"' -x 'patch logits from "d 1.st"' -x 'source "s c.lua" x' \
  -x 'record stop' 2>&1) || fail "commands: $out"
[ -f "d 1.st" ] || fail "dump did not write 'd 1.st': $(ls)"
[ -f "r 1.xfs" ] || fail "record did not write 'r 1.xfs': $(ls)"
ls | grep -q '"' && fail "a file name holds a quote: $(ls)"
grep -q "sourced x" <<<"$out" || fail "source: $out"
grep -q '^> ref load "d 1.st"$' "r 1.xfs" || fail "preamble not quoted: $(cat "r 1.xfs")"
"$X" --replay "r 1.xfs" >rep 2>&1 || fail "replay: $(cat rep)"
echo ok
