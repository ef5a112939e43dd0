#!/bin/bash
# The real Qwen2.5 GGUF files (Q4_K_M mixes: Q4_K, Q5_0, Q6_K, Q8_0) against
# HF transformers float64 run on the same weights dequantized by gguf-py:
# every canonical tensor of a chat-prompt pass within tolerance and the
# greedy tokens identical; with matmul q8, the logits within nmse 1e-3
# and the greedy tokens up to the first near tie (below). Skipped (77) unless the models are in the cache
# (scripts/fetch_qwen.sh) with their reference dumps beside them; the dumps
# are made by
#   XF_MAKE_REF=1 bash tests/cli/qwen2_real_model.sh
# (needs torch, transformers, gguf; ~1.5 min and 7 GB for the 0.5B model,
# ~1.5 min and 16 GB for the 1.5B one).
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
cache=${XF_CACHE:-$HOME/.cache/xfdb}
fail() { echo "FAIL: $*" >&2; exit 1; }

# file, sha256 of the joined parts (scripts/fetch_qwen.sh prints it), prompt
models=(
  "qwen2.5-0.5b-q4.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a Python function that returns the square of a number.<|im_end|>\n<|im_start|>assistant\n"
  "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046|<|im_start|>user\nWrite a haiku about debugging.<|im_end|>\n<|im_start|>assistant\n"
)
ran=0
for entry in "${models[@]}"; do
  IFS='|' read -r file sha text <<<"$entry"
  M=$cache/$file
  REF=$cache/${file%.gguf}.ref.safetensors
  [ -s "$M" ] || { echo "# $file: not in $cache (scripts/fetch_qwen.sh)"; continue; }
  got=$(sha256sum "$M" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || fail "$M: sha256 $got, expected $sha"
  if [ ! -s "$REF" ] && [ "${XF_MAKE_REF:-0}" = 1 ]; then
    ids=$("$X" "$M" --batch -x "tokenize --ids \"$text\"")
    python3 "$SRC/scripts/make_qwen2_fixtures.py" --from-gguf "$M" --tokens "${ids// /,}" --out "$REF" --gen 10
  fi
  [ -s "$REF" ] || { echo "# $file: no reference $REF (XF_MAKE_REF=1)"; continue; }

  prompt=$("$X" "$M" --batch -x "ref load $REF" -x 'print prompt.tokens@ref -n 1000 --raw' | tail -1)
  want=$("$X" "$M" --batch -x "ref load $REF" -x 'print gen.tokens@ref -n 100 --raw' | tail -1)
  ng=$(echo "$want" | wc -w)
  nl=$("$X" "$M" --batch -x info | sed -n 's/.*layers \([0-9]*\) .*/\1/p')
  n_ops=$((3 + 17 * nl))
  out=$("$X" "$M" --threads 2 --batch -x "run --tokens ${prompt// /,}" -x finish -x "ref load $REF" -x compare \
        -x "generate $ng --ids --ignore-eos")
  grep -q "^$n_ops tensors compared, all within tolerance" <<<"$out" \
    || { echo "$out" | grep -v ' ok$'; fail "$file: compare"; }
  [ "$(echo "$out" | tail -1)" = "$want" ] || fail "$file: greedy '$(echo "$out" | tail -1)', HF '$want'"
  echo "# $file: $n_ops tensors within tolerance, $ng greedy tokens as HF"
  # matmul q8 (x rounded to int8 blocks, as llama.cpp does): over compare's
  # 1e-4 by design, so held to its own bar: the logits within nmse 1e-3 of
  # HF's (measured 1.6e-4 on the 0.5B model), and the same greedy tokens as
  # HF up to the first step where they differ at a near tie (a difference
  # anywhere else fails). A near tie is a step where the top two
  # logits of the float path (which matched HF above, within 1e-4) are less
  # than GAP apart: there q8's rounding (logits off by ~0.03) may pick the
  # other one, and the tokens after it are another continuation. The 0.5B's
  # 7th token is one: ' that' 21.8275 against ' to' 21.7926.
  GAP=0.2
  steps=()
  for ((s = 0; s < ng; s++)); do steps+=(-x "topk 2" -x "generate 1 --ids --ignore-eos"); done
  gaps=$("$X" "$M" --threads 2 --batch -x "run --tokens ${prompt// /,}" -x finish "${steps[@]}" |
         awk '/ logit / { for (i = 1; i < NF; i++) if ($i == "logit") v = $(i + 1);
                          if ($1 == 1) a = v; else if ($1 == 2) print a - v }')
  [ "$(echo "$gaps" | wc -l)" = "$ng" ] || fail "$file: float path top-2 gaps: got '$gaps'"
  outq=$("$X" "$M" --threads 2 --batch -x 'kernel matmul q8' -x "run --tokens ${prompt// /,}" -x finish \
         -x "ref load $REF" -x compare -x "generate $ng --ids --ignore-eos")
  read -r -a gq <<<"$(echo "$outq" | tail -1)"
  read -r -a gw <<<"$want"
  read -r -a gg <<<"$(echo $gaps)"
  same=0
  for ((s = 0; s < ng; s++)); do
    if [ "${gq[$s]:-}" = "${gw[$s]}" ]; then
      same=$((same + 1))
      continue
    fi
    awk -v g="${gg[$s]}" -v b=$GAP 'BEGIN { exit !(g < b) }' ||
      fail "$file: q8 greedy token $s is ${gq[$s]:-none}, HF ${gw[$s]} (float path top-2 gap ${gg[$s]}, not a near tie)"
    echo "# $file: q8: token $s is ${gq[$s]:-none}, HF ${gw[$s]}: a near tie (float path top-2 gap ${gg[$s]}); not compared after it"
    break
  done
  nmse=$(awk '$1 == "logits" { print $4 }' <<<"$outq")
  awk -v v="$nmse" 'BEGIN { exit !(v != "" && v + 0 < 1e-3) }' || fail "$file: q8 logits nmse '$nmse' (bar 1e-3)"
  echo "# $file: q8: $same greedy tokens as HF (of $ng), logits nmse $nmse"
  # the chat format against the model's own template (rendered by jinja2), where python has it
  if python3 -c 'import jinja2, gguf' 2>/dev/null; then
    python3 "$SRC/scripts/check_chat_template.py" "$X" "$M" || fail "$file: chat template"
  fi
  ran=$((ran + 1))
done
[ $ran -gt 0 ] || exit 77
echo "ok"
