#!/bin/bash
# Mutants of the decode fusions, built HERE and packed into
# .prebuilt/bins.tar.xz (folders v-mut-N/: the mutant's test binary, its
# name in MUTANT, its "BINARY TEST_NAME" in TEST), so that one device call
# runs them all with no build: gpu-prebuilt.sh runs each folder's test and
# says whether it failed, as it must (main's own binaries in the same
# tarball, unedited, must pass the same tests: the harness works).
# Each mutant is a one-line sed edit of one file, built in a copy of HEAD's
# tree (git archive) with one build directory. An edit of a header that
# many CUDA files include (opt_body.h, fm_body.h) touches every object but
# the one that instantiates the edited code (OBJ), so that only it is
# rebuilt: the edited lines are in templates only that file instantiates
# (the ROPE form of fa_body: opt.cu; fm_block2: fused_decode.cu).
#   BUILD (default /tmp/b-mut). Pack main's set first (pack-prebuilt.sh).
set -eu
[ -f .prebuilt/bins.tar.xz ] || { echo "needs .prebuilt/bins.tar.xz (pack-prebuilt.sh first)"; exit 1; }
B=${BUILD:-/tmp/b-mut}
S=/tmp/mut-src
export PATH=/usr/local/cuda/bin:$PATH
rm -rf $S && mkdir -p $S && git archive HEAD | tar -xf - -C $S
cmake -S $S -B "$B" -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
n=0
# NAME | FILE (under kernels/cuda) | OBJ (the object rebuilt) | BINARY | TEST | SED
mut() {
  n=$((n + 1))
  local f=$S/kernels/cuda/$2
  cp "$f" "$stage/orig"
  sed -i "$6" "$f"
  if cmp -s "$stage/orig" "$f"; then
    echo "mut-$n $1: the edit matched nothing (not made)"
  else
    find "$B" -name '*.o' ! -name "$3.o" -exec touch {} +
    if cmake --build "$B" -j"$(nproc)" --target "$4" >"$stage/log" 2>&1; then
      mkdir -p "$stage/v-mut-$n"
      strip -o "$stage/v-mut-$n/$4" "$B/$4"
      echo "$1" >"$stage/v-mut-$n/MUTANT"
      echo "$4 $5" >"$stage/v-mut-$n/TEST"
      git rev-parse HEAD >"$stage/v-mut-$n/COMMIT"
      echo "mut-$n $1: built"
    else
      echo "mut-$n $1: build failed"
      grep -E " error" "$stage/log" | head -3
    fi
  fi
  cp "$stage/orig" "$f"
  # the object holds the mutant's code while its source is itself again:
  # removed, so that the next build compiles it (the next mutant's touch
  # would otherwise keep it, and with it this mutant)
  find "$B" -name "$3.o" -delete
}
cmake --build "$B" -j"$(nproc)" --target test_kernels_cuda_graph test_kernels_cuda_gemv >/dev/null
G="test_kernels_cuda_graph test_attn_rope_fused"
V="test_kernels_cuda_gemv test_fused_mixed"
mut "rope-attn: row pos0's v not stored" opt_body.h opt.cu $G \
  's/^                R->vc\[at + d\] = R->v\[(int64_t)g \* hd + d\];$/                (void)at;/'
mut "rope-attn: k_rope written by head 0 alone, not each group's first" opt_body.h opt.cu $G \
  's/if (h % (nh \/ nkv) == 0) {/if (h == 0) {/'
mut "rope-attn: q and k rotated at position pos0 + 1" opt_body.h opt.cu $G \
  's/kc_rope_angle(pos0, t, hd, R->log_base, &rs, &rc);/kc_rope_angle(pos0 + 1, t, hd, R->log_base, \&rs, \&rc);/'
mut "rope-attn: row pos0 stored by block 0, not the block that scores it" opt_body.h opt.cu $G \
  's/bool own = by == (int)((pos0 \/ KQV_CH) % gy);/bool own = by == 0;/'
mut "fm2: each job run by the other type's body" fm_body.h fused_decode.cu $V \
  's/if (jb.wt == WA)/if (jb.wt != WA)/'
mut "fm2: the Q4_K + Q6_K pair has no kernel (two launches)" fused_decode.cu fused_decode.cu $V \
  '/X(XF_TYPE_Q4_K, XF_TYPE_Q6_K)/d'
mut "fm2: a block's job found one too early" fm_body.h fused_decode.cu $V \
  's/while (i + 1 < J.n \&\& b >= J.j\[i + 1\].first)/while (i + 1 < J.n \&\& b > J.j[i + 1].first)/'
# into bins.tar.xz, the folders of an earlier run of this script dropped
DROP='v-mut-*' ADD="$stage" bash "$(dirname "$0")/pack-prebuilt.sh"
