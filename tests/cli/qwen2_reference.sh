#!/bin/bash
# Qwen2 through the program as users run it: the tiny random Qwen2 fixtures
# (GQA + tied output, MQA + output.weight) against their HF transformers
# float64 references (scripts/make_qwen2_fixtures.py): compare, greedy
# generation, dump all round trip, breakpoints and aliases on Qwen2 names,
# and the Q8_0 copies.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
FX=$SRC/tests/fixtures/qwen2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for m in qwen2-gqa qwen2-mqa; do
  MODEL=$FX/$m-f32.gguf
  REF=$FX/$m.ref.safetensors
  prompt=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print prompt.tokens@ref -n 100 --raw' | tail -1)
  want_gen=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print gen.tokens@ref -n 100 --raw' | tail -1)
  [ "$(echo "$prompt" | wc -w)" = 7 ] || fail "$m: reference prompt.tokens: $prompt"
  [ "$(echo "$want_gen" | wc -w)" = 10 ] || fail "$m: reference gen.tokens: $want_gen"

  out=$("$X" "$MODEL" --batch -x info)
  grep -q "architecture: qwen2" <<<"$out" || fail "$m info: $out"
  if [ $m = qwen2-gqa ]; then
    grep -q "heads 6  kv heads 2  head dim 16" <<<"$out" || fail "$m info heads: $out"
    grep -q "output tied to token_embd" <<<"$out" || fail "$m info tied: $out"
  else
    grep -q "heads 4  kv heads 1  head dim 16" <<<"$out" || fail "$m info heads: $out"
    grep -q "output output.weight" <<<"$out" || fail "$m info output: $out"
  fi

  # 3 + 17 x 2 layers = 37 canonical tensors, every one in the dump
  for threads in 1 2; do
    for variant in ref opt; do
      out=$("$X" "$MODEL" --threads $threads --batch -x "kernel all $variant" -x "run --tokens ${prompt// /,}" \
            -x continue -x "ref load $REF" -x compare -x "dump all $tmp/$m.safetensors" -x 'generate 10 --ids')
      grep -q "37 tensors compared, all within tolerance" <<<"$out" \
        || { echo "$out"; fail "$m compare ($variant, $threads threads)"; }
      got=$(echo "$out" | tail -1)
      [ "$got" = "$want_gen" ] || fail "$m generate ($variant, $threads threads): got '$got' want '$want_gen'"
    done
  done

  # dump all holds every canonical tensor of the last pass (here a decode
  # pass of one token): a fresh prompt pass against the prompt-pass dump
  out=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x finish -x "dump all $tmp/p.safetensors" \
        -x "run --tokens ${prompt// /,}" -x finish -x "ref load $tmp/p.safetensors" -x compare)
  grep -q "37 tensors compared, all within tolerance" <<<"$out" || { echo "$out"; fail "$m dump round trip"; }

  # llama.cpp and HF names of Qwen2 tensors resolve to the canonical ones
  a=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x finish -x 'print blk.1.k_rope[2] --raw' | tail -1)
  for alias in 'model.layers.1.self_attn.k_proj' 'Kcur-1' 'k1'; do
    b=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x finish -x "print $alias[2] --raw" | tail -1)
    c=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x finish -x "print blk.1.k[2] --raw" | tail -1)
    [ "$b" = "$c" ] || fail "$m alias $alias: '$b' vs blk.1.k '$c'"
  done
  [ "$a" != "$c" ] || fail "$m: k_rope equals k at position 2: RoPE did nothing"

  # a breakpoint on a Qwen2-only op, and the values it shows against HF
  out=$("$X" "$MODEL" --batch -x "run --tokens ${prompt// /,}" -x 'break blk.1.q_rope' -x continue -x where \
        -x 'print blk.1.q_rope[6,0] --raw' -x step -x where)
  grep -q "blk.1.q_rope" <<<"$out" || fail "$m where after break: $out"
  grep -q "blk.1.k_rope" <<<"$out" || fail "$m where after step: $out"
  vals=$(grep -m1 -E '^-?[0-9]' <<<"$out" || true)
  refv=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'print blk.1.q_rope@ref[6,0] -n 16 --raw' | tail -1)
  absmax=$("$X" "$MODEL" --batch -x "ref load $REF" -x 'stats blk.1.q_rope@ref' | sed -n 's/.*absmax \([^ ]*\).*/\1/p')
  awk -v a="$vals" -v b="$refv" -v m="$absmax" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
    if (n != 8) exit 1; for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-4 * m) exit 1 } }' \
    || fail "$m print q_rope '$vals' vs reference '$refv' (absmax $absmax)"

  # Q8_0: every matrix quantized; its prediction after the prompt is HF's
  Q=$FX/$m-q8_0.gguf
  out=$("$X" "$Q" --batch -x info)
  grep -q "Q8_0 x" <<<"$out" || fail "$m q8_0 info: $out"
  first=$("$X" "$Q" --threads 2 --batch -x "run --tokens ${prompt// /,}" -x 'generate 1 --ids' | tail -1)
  [ "$first" = "${want_gen%% *}" ] || fail "$m q8_0 first token '$first', HF '${want_gen%% *}'"
done
echo "ok"
