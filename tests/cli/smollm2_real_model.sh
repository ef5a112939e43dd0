#!/bin/bash
# The real SmolLM2-135M-Instruct GGUF (llama architecture; Q4_1, Q8_0 and F32
# tensors; smollm pre-tokenizer; ChatML with a default system message)
# against HF transformers float64 run on the same weights dequantized by
# gguf-py (q/k rows un-permuted): every canonical tensor of a chat-prompt
# pass within 1e-4 x max|ref| (compare's tolerance) and the 10 greedy tokens
# identical; the chat format against the model's own jinja template; and
# `chat` giving clean UTF-8 with no token repeated more than 4 times in a row.
# Skipped (77) unless the model is in the cache (scripts/fetch_qwen.sh
# smollm2); the reference beside it is made by
#   XF_MAKE_REF=1 bash tests/cli/smollm2_real_model.sh
# (needs torch, transformers, gguf; ~1 min and 3 GB).
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
cache=${XF_CACHE:-$HOME/.cache/xfdb}
fail() { echo "FAIL: $*" >&2; exit 1; }

file=smollm2-135m-instruct-q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
M=$cache/$file
REF=$cache/${file%.gguf}.ref.safetensors
[ -s "$M" ] || { echo "# $file: not in $cache (scripts/fetch_qwen.sh smollm2)"; exit 77; }
got=$(sha256sum "$M" | cut -d' ' -f1)
[ "$got" = "$sha" ] || fail "$M: sha256 $got, expected $sha"

# the chat prompt as xfdb formats it: the template's default system message
prompt_text=$("$X" "$M" --batch --unsafe-lua -x "lua io.write(xf.chat_format({{role='user', content='Write a haiku about a minute.'}}))")
case $prompt_text in
"<|im_start|>system"$'\n'"You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>"*) ;;
*) fail "chat prompt does not start with the template's default system message: $prompt_text" ;;
esac

if [ ! -s "$REF" ] && [ "${XF_MAKE_REF:-0}" = 1 ]; then
  ids=$("$X" "$M" --batch -x "tokenize --ids \"${prompt_text//$'\n'/\\n}\"")
  python3 "$SRC/scripts/make_llama_fixtures.py" --from-gguf "$M" --tokens "${ids// /,}" --out "$REF" --gen 10
fi
if [ -s "$REF" ]; then
  prompt=$("$X" "$M" --batch -x "ref load $REF" -x 'print prompt.tokens@ref -n 1000 --raw' | tail -1)
  want=$("$X" "$M" --batch -x "ref load $REF" -x 'print gen.tokens@ref -n 100 --raw' | tail -1)
  ng=$(echo "$want" | wc -w)
  n_ops=$((3 + 17 * 30))
  out=$("$X" "$M" --threads 2 --batch -x "run --tokens ${prompt// /,}" -x finish -x "ref load $REF" -x compare \
        -x "generate $ng --ids --ignore-eos")
  grep -q "^$n_ops tensors compared, all within tolerance" <<<"$out" \
    || { echo "$out" | grep -v ' ok$'; fail "$file: compare"; }
  [ "$(echo "$out" | tail -1)" = "$want" ] || fail "$file: greedy '$(echo "$out" | tail -1)', HF '$want'"
  echo "# $file: $n_ops tensors within tolerance, $ng greedy tokens as HF"
else
  echo "# $file: no reference $REF (XF_MAKE_REF=1): compare skipped"
fi

if python3 -c 'import jinja2, gguf' 2>/dev/null; then
  python3 "$SRC/scripts/check_chat_template.py" "$X" "$M" || fail "$file: chat template"
fi

# chat: clean UTF-8, no token repeated more than 4 times in a row (the ids
# of the same greedy generation, from the chat prompt's ids)
text=$("$X" "$M" --threads 2 --batch -x 'chat Write a haiku about a minute')
[ -n "$text" ] || fail "chat printed nothing"
iconv -f UTF-8 -t UTF-8 <<<"$text" >/dev/null || fail "chat output is not UTF-8"
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<<"$text"; then fail "chat output holds control bytes"; fi
pids=$("$X" "$M" --batch -x "tokenize --ids \"${prompt_text//$'\n'/\\n}\"")
ids=$("$X" "$M" --threads 2 --batch -x "run --tokens ${pids// /,}" -x finish -x 'generate 256 --ids' | tail -1)
run=$(tr ' ' '\n' <<<"$ids" | awk 'NF { if ($1 == p) c++; else c = 1; p = $1; if (c > m) m = c } END { print m + 0 }')
[ "$run" -le 4 ] || fail "chat output repeats a token $run times in a row: $text"
echo "# chat: $(wc -w <<<"$ids") tokens, longest run of one token $run"
echo "ok"
