#!/bin/bash
# Builds the CUDA binaries HERE (nvcc 13 for sm_90a, as the device machine
# would) and packs them, stripped and xz-compressed (~4 MB for the four
# below, 53 MB unpacked), into .prebuilt/bins.tar.xz, so that a device call
# spends no minutes compiling: carry .prebuilt and run
# scripts/gpu-prebuilt.sh there. Why: session 18's device time went to
# failed starts until ~270 s were left, too little for a CUDA build (~3
# minutes) plus tests, enough for the tests alone; the whole tree plus
# what is carried must stay under 64 MiB, so the binaries travel packed.
#   TARGETS="..." (default: xfdb test_kernels_cuda test_kernels_cuda_graph
#   bench_make_qwen2 bench_make_gpt2); BUILD (default build-prebuilt);
#   OUT_NAME (default bins.tar.xz; NAME.tar.xz: gpu-prebuilt.sh's VARIANTS entry NAME);
#   VARIANT=NAME: these binaries go into folder v-NAME/ of the existing
#   .prebuilt/bins.tar.xz (repacked), gpu-prebuilt.sh's VARIANTS entry NAME
#   and its TESTS entries "NAME/BINARY" (the common code of two commits
#   compresses once: four commits' sets fit where two tarballs did not);
#   ADD=DIR (no build): DIR's folders go into bins.tar.xz in place of any
#   of the same name, after the folders matching DROP (a glob) are removed
#   (pack-mutants.sh's v-mut-N/).
set -eu
mkdir -p .prebuilt
# DIR into .prebuilt/NAME, xz with a 192 MiB window (it is what finds a
# set's code again in the next: preset 9e took minutes on two cores)
pack() {
  tar -C "$1" -cf - . | xz -T1 --lzma2=preset=6,dict=192MiB >".prebuilt/$2.part"
  mv ".prebuilt/$2.part" ".prebuilt/$2"
  ls -l ".prebuilt/$2"
}
# DIR's folders into bins.tar.xz, replacing those of the same name and
# those matching the glob DROP
add_folders() {
  [ -f .prebuilt/bins.tar.xz ] || { echo "needs .prebuilt/bins.tar.xz (pack the main set first)"; exit 1; }
  local all d
  all=$(mktemp -d)
  xz -dc .prebuilt/bins.tar.xz | tar -xf - -C "$all"
  [ -n "${DROP:-}" ] && (cd "$all" && rm -rf -- $DROP)
  for d in "$1"/*/; do
    [ -d "$d" ] || continue
    rm -rf "${all:?}/$(basename "$d")" && cp -r "$d" "$all/"
  done
  pack "$all" bins.tar.xz
  rm -rf "$all"
}
if [ -n "${ADD:-}" ]; then
  add_folders "$ADD"
  exit 0
fi
B=${BUILD:-build-prebuilt}
T=${TARGETS:-xfdb test_kernels_cuda test_kernels_cuda_graph bench_make_qwen2 bench_make_gpt2}
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B "$B" -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$B" -j"$(nproc)" --target $T
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
set=$tmp
[ -n "${VARIANT:-}" ] && set=$tmp/v-$VARIANT && mkdir -p "$set"
for t in $T; do strip -o "$set/$t" "$B/$t"; done
git rev-parse HEAD >"$set/COMMIT"
git status --short --untracked-files=no >"$set/DIRTY"
if [ -n "${VARIANT:-}" ]; then
  add_folders "$tmp"
else
  pack "$tmp" "${OUT_NAME:-bins.tar.xz}"
fi
