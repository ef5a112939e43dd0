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
#   compresses once: four commits' sets fit where two tarballs did not).
set -eu
B=${BUILD:-build-prebuilt}
T=${TARGETS:-xfdb test_kernels_cuda test_kernels_cuda_graph bench_make_qwen2 bench_make_gpt2}
export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B "$B" -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$B" -j"$(nproc)" --target $T
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in $T; do strip -o "$tmp/$t" "$B/$t"; done
git rev-parse HEAD >"$tmp/COMMIT"
git status --short --untracked-files=no >"$tmp/DIRTY"
mkdir -p .prebuilt
if [ -n "${VARIANT:-}" ]; then
  [ -f .prebuilt/bins.tar.xz ] || { echo "VARIANT needs .prebuilt/bins.tar.xz (pack the main set first)"; exit 1; }
  all=$(mktemp -d)
  trap 'rm -rf "$tmp" "$all"' EXIT
  xz -dc .prebuilt/bins.tar.xz | tar -xf - -C "$all"
  rm -rf "$all/v-$VARIANT" && mv "$tmp" "$all/v-$VARIANT"
  tmp=$all
  OUT_NAME=bins.tar.xz
fi
tar -C "$tmp" -cf - . | xz -T1 --lzma2=preset=6,dict=192MiB >".prebuilt/${OUT_NAME:-bins.tar.xz}.part"
mv ".prebuilt/${OUT_NAME:-bins.tar.xz}.part" ".prebuilt/${OUT_NAME:-bins.tar.xz}"
ls -l ".prebuilt/${OUT_NAME:-bins.tar.xz}"
