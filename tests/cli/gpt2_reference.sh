#!/bin/bash
# Issue 2/3/4 acceptance through the program as users run it: the default
# model against the HF transformers reference, by ids and by text, greedy
# generation, dump all, and the breakpoint/print/step walk.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
REF=$SRC/tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

prompt=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print prompt.tokens@ref -n 100 --raw' | tail -1)
want_gen=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print gen.tokens@ref -n 100 --raw' | tail -1)
[ "$(echo "$want_gen" | wc -w)" = 30 ] || fail "reference gen.tokens: $want_gen"

# the text prompt tokenizes to the reference ids
ids=$("$X" "$MODEL" --batch -x 'tokenize --ids "ROMEO:\nWhat light through yonder window"')
[ "$ids" = "$prompt" ] || fail "tokenize: got '$ids' want '$prompt'"

for threads in 1 2; do
  for variant in ref opt; do
    out=$("$X" "$MODEL" --threads $threads --batch -x "kernel all $variant" -x "run --tokens ${prompt// /,}" \
          -x continue -x "ref load $REF" -x compare -x "dump all $tmp/acts.safetensors" -x 'generate 30 --ids')
    grep -q "69 tensors compared, all within tolerance" <<<"$out" || { echo "$out"; fail "compare ($variant, $threads threads)"; }
    got=$(echo "$out" | tail -1)
    [ "$got" = "$want_gen" ] || fail "generate ($variant, $threads threads): got '$got' want '$want_gen'"
  done
done

# dump all holds every canonical tensor: compare it, as a reference, with a fresh run
out=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x finish -x "ref load $tmp/acts.safetensors" -x compare)
grep -q "93 tensors compared, all within tolerance" <<<"$out" || { echo "$out"; fail "dump all round trip"; }
# and the dump's prompt.tokens are the prompt
d=$("$X" "$MODEL" --batch -x "ref load $tmp/acts.safetensors" -x 'print prompt.tokens@ref -n 100 --raw' | tail -1)
[ "$d" = "$prompt" ] || fail "dump prompt.tokens: '$d'"

# text in, text out
out=$("$X" "$MODEL" --batch -x 'run "ROMEO:\nWhat light through yonder window"' -x 'generate 30 --ids')
[ "$(echo "$out" | tail -1)" = "$want_gen" ] || fail "run TEXT + generate"

# break / continue / where / print / step / where
out=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x 'break blk.2.ffn_act' -x continue -x where \
      -x 'print blk.2.ffn_act[3,:5] --raw' -x step -x where)
grep -q "at op 44/93 blk.2.ffn_act" <<<"$out" || fail "where after break: $out"
grep -q "at op 45/93 blk.2.ffn_out" <<<"$out" || fail "where after step: $out"
vals=$(grep -m1 -E '^-?[0-9]' <<<"$out" || true)
refv=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print blk.2.ffn_act@ref[3,:5] --raw' | tail -1)
# within 1e-4 of the tensor's max|ref|
absmax=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'stats blk.2.ffn_act@ref' | sed -n 's/.*absmax \([^ ]*\).*/\1/p')
awk -v a="$vals" -v b="$refv" -v m="$absmax" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
  if (n != 5) exit 1; for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-4 * m) exit 1 } }' \
  || fail "print values '$vals' vs reference '$refv' (absmax $absmax)"

# --ctx: a smaller context; generation stops where it is full
out=$("$X" "$MODEL" --ctx 8 --batch -x info -x 'run "ROMEO:"' -x 'generate 10 --ids')
grep -q "KV cache 73.7 KB (f32, 8 positions)" <<<"$out" || fail "--ctx info: $out"
[ "$(tail -2 <<<"$out" | head -1 | wc -w)" = 6 ] || fail "--ctx generate: $out"
grep -q "^\[context full at 8 tokens\]" <<<"$out" || fail "--ctx: no context-full line: $out"

# exit status: bad command -> 1 with one line on stderr; bad usage -> 2
set +e
"$X" "$MODEL" --batch -x 'print no.such.tensor' 2>"$tmp/err" >/dev/null; rc=$?
set -e
[ $rc = 1 ] || fail "bad name exit $rc"
[ "$(wc -l < "$tmp/err")" = 1 ] || fail "bad name stderr: $(cat "$tmp/err")"
set +e
"$X" --no-such-flag >/dev/null 2>&1; rc=$?
set -e
[ $rc = 2 ] || fail "bad usage exit $rc"
echo "ok"
