#!/bin/bash
# Issue 9: hostile files through the program as users run it. For each evil
# GGUF of tests/fixtures/evil (built by tests/test_malformed_hparams.c): `xfdb FILE`
# exits 1 having printed nothing on stdout and exactly one line on stderr,
# "error: FILE: ..." naming the field, with no control byte in it; `load FILE`
# from a session holding the default model fails the same way. Then broken
# safetensors through `ref load` and broken sessions through --replay (exit 2,
# one line). The exact texts are asserted by test_malformed_*.c; this checks
# what reaches the terminal.
set -uo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
EVIL=$SRC/tests/fixtures/evil
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# one error line on stderr, nothing on stdout, the wanted exit status and text
check() { # NAME WANT_RC WANT_PREFIX WANT_SUBSTRING -- command...
  local name=$1 want_rc=$2 prefix=$3 sub=$4
  shift 5
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local nerr
  nerr=$(wc -l <"$tmp/err")
  [ "$rc" = "$want_rc" ] || fail "$name: exit $rc, wanted $want_rc"
  [ -s "$tmp/out" ] && fail "$name: printed on stdout: $(head -c 200 "$tmp/out")"
  [ "$nerr" = 1 ] || fail "$name: $nerr lines on stderr: $(head -c 400 "$tmp/err")"
  local line
  line=$(head -1 "$tmp/err")
  [[ "$line" == "$prefix"* ]] || fail "$name: '$line' does not start with '$prefix'"
  [[ "$line" == *"$sub"* ]] || fail "$name: '$line' lacks '$sub'"
  if LC_ALL=C grep -q "[[:cntrl:]]" <(tr -d '\n' <"$tmp/err"); then
    fail "$name: control bytes on stderr: $(od -c "$tmp/err" | head -3)"
  fi
}

declare -A WANT=(
  [missing_tensor.gguf]="tensor 'blk.0.attn_qkv.weight' is missing (architecture gpt2)"
  [qkv_shape.gguf]="tensor 'blk.0.attn_qkv.weight' at byte "
  [nan_norm.gguf]="tensor 'blk.0.attn_norm.weight' at byte "
  [block_count_string.gguf]="'gpt2.block_count' at byte "
  [block_count_2p31.gguf]="gpt2.block_count at byte "
  [context_zero.gguf]="gpt2.context_length at byte "
  [embedding_2p40.gguf]="'gpt2.embedding_length' at byte "
  [arch_escape.gguf]="general.architecture at byte "
  [vocab_types.gguf]="tokenizer.ggml.token_type at byte "
  [truncated.gguf]=" at byte "
  [data_past_end.gguf]=".offset at byte "
  [n_kv_huge.gguf]="n_kv at byte 16: "
  [gpt2_head_count_kv.gguf]="gpt2.attention.head_count_kv at byte "
  [overlapping_tensors.gguf]="overlaps that of tensor_info["
)
n=0
for f in "$EVIL"/*.gguf; do
  b=$(basename "$f")
  sub=${WANT[$b]:-}
  [ -n "$sub" ] || { fail "$b: no expectation in this script"; continue; }
  check "$b as argument" 1 "error: $f: " "$sub" -- "$X" "$f" --batch -x info
  check "$b by load" 1 "error: $f: " "$sub" -- "$X" --batch -x "load $f"
  n=$((n + 1))
done
[ "$n" -ge 12 ] || fail "only $n evil fixtures found in $EVIL"

# safetensors through `ref load`: truncated header, bad JSON, data past the end
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":' >"$tmp/trunc.safetensors"
printf '\x08\x00\x00\x00\x00\x00\x00\x00{"a":1} ' >"$tmp/json.safetensors"
hdr='{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
printf "$(printf '\\x%02x' ${#hdr})\\x00\\x00\\x00\\x00\\x00\\x00\\x00%s\\x00\\x00" "$hdr" >"$tmp/short.safetensors"
printf '\xff\xff\xff\xff\xff\xff\xff\xff' >"$tmp/huge.safetensors"
for s in trunc json short huge; do
  check "ref load $s" 1 "error: $tmp/$s.safetensors: " " at byte " -- "$X" --batch -x "ref load $tmp/$s.safetensors"
done

# sessions through --replay: a bad file is exit 2 and one line
printf '# xfdb session 2\n> info\n' >"$tmp/version.xfs"
printf '# xfdb session 1\n# model: x.gguf sha256 zz\n> info\n' >"$tmp/sha.xfs"
printf '# xfdb session 1\n> info\n< a\x00b\n# end: 1 commands\n' >"$tmp/nul.xfs"
printf '\xef\xbb\xbf\xff\xfe' >"$tmp/junk.xfs"
for s in version sha nul junk; do
  check "replay $s" 2 "xfdb: replay: $tmp/$s.xfs: line " " at byte " -- "$X" --replay "$tmp/$s.xfs"
done

[ $fails = 0 ] || { echo "$fails failure(s)" >&2; exit 1; }
echo "ok: $n evil models x 2, 4 safetensors, 4 sessions"
