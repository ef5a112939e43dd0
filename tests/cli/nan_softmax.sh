#!/bin/bash
# A NaN written into one query row reaches everything after it, as in torch
# (attack 26, F1): kq's row is NaN up to the causal mask, the softmax of that
# row is NaN (it was all 0: the softmax's max skipped NaN and took the row for
# one with nothing to attend to), kqv's row is NaN, and `break blk.*.out if
# nan` stops at the layer (it never fired). With the default kernels (opt: a
# prefill's kqv from the fused attention, kq_soft computed by the ops when it
# is read) and with `kernel all ref`.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
cd "$SRC"
fail() { echo "FAIL: $*" >&2; exit 1; }

# every word of a `print --raw` line is nan
all_nan() { [ -n "$1" ] && ! tr ' ' '\n' <<<"$1" | grep -qv '^-\?nan$'; }

for kernels in "" "kernel all ref"; do
  set --
  [ -n "$kernels" ] && set -- -x "$kernels"
  set -- "$@" -x 'run "ROMEO:\nWhat light"'
  out=$("$X" --backend cpu --batch "$@" -x 'break blk.5.q' -x continue \
    -x 'lua xf.set("blk.5.q", "[3, 0, 0]", 0/0)' -x delete -x 'break blk.5.kqv' -x continue \
    -x 'print blk.5.kq[0, 3] --raw' -x 'print blk.5.kq_soft[0, 3] --raw' -x 'print blk.5.kqv[3, :8] --raw' \
    -x 'print blk.5.kqv[2, :8] --raw' -x delete -x 'break blk.*.out if nan' -x continue 2>&1) ||
    fail "[${kernels:-opt}] xfdb failed: $out"
  kq=$(grep -A1 "^next: blk.5.attn_out" <<<"$out" | sed -n 2p)
  [[ "$kq" =~ ^-?nan\ -?nan\ -?nan\ -?nan\ -inf\ -inf$ ]] || fail "[${kernels:-opt}] kq row: '$kq' in $out"
  soft=$(grep -A2 "^next: blk.5.attn_out" <<<"$out" | sed -n 3p)
  all_nan "$soft" || fail "[${kernels:-opt}] kq_soft row of a NaN query: '$soft', want all nan: $out"
  kqv=$(grep -A3 "^next: blk.5.attn_out" <<<"$out" | sed -n 4p)
  all_nan "$kqv" || fail "[${kernels:-opt}] kqv row of a NaN query: '$kqv', want all nan: $out"
  # the row before it is causal: it never sees query 3's scores
  prev=$(grep -A4 "^next: blk.5.attn_out" <<<"$out" | sed -n 5p)
  grep -q nan <<<"$prev" && fail "[${kernels:-opt}] kqv row 2 has NaN: '$prev'"
  grep -q "hit after blk.5.out" <<<"$out" || fail "[${kernels:-opt}] break blk.*.out if nan did not stop at blk.5.out: $out"
done

# stats counts the NaN of kq_soft (it said `nan 0`)
out=$("$X" --backend cpu --batch -x 'run "ROMEO:\nWhat light"' -x 'break blk.5.q' -x continue \
  -x 'lua xf.set("blk.5.q", "[3, 0, 0]", 0/0)' -x finish -x 'stats blk.5.kq_soft' 2>&1) || fail "stats: $out"
grep -Eq "nan [1-9]" <<<"$out" || fail "stats blk.5.kq_soft counts no NaN: $out"
echo "nan_softmax: ok"
