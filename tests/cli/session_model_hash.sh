#!/bin/bash
# Issue 6: a session recorded against one model is refused, before any
# command runs, when the model found has another sha256 (one byte of a
# tensor changed); the message names both hashes. The model is found next
# to the session file, then under models/, then at the recorded path.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
[ -r "$MODEL" ] || { echo "no model at $MODEL"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$tmp"
mkdir -p a b
cp "$MODEL" a/model.gguf
chmod u+w a/model.gguf
good=$(sha256sum a/model.gguf | cut -d' ' -f1)
"$X" a/model.gguf --batch --record a/s.xfs -x 'run "ROMEO:"' -x finish -x 'topk 2' >/dev/null
grep -qx "# model: model.gguf sha256 $good" a/s.xfs || fail "model line: $(grep '^# model' a/s.xfs)"
"$X" --replay a/s.xfs >/dev/null || fail "replay against the same model"

# found next to the session even when the recorded path is gone
mv a/s.xfs b/s.xfs
cp a/model.gguf b/model.gguf
rm a/model.gguf
"$X" --replay b/s.xfs >/dev/null || fail "model next to the session file"

# one byte of the last tensor's data changed (the file ends with tensor data)
python3 - b/model.gguf <<'PY' 2>/dev/null || printf '\x55' | dd of=b/model.gguf bs=1 seek=$(( $(stat -c %s b/model.gguf) - 4096 )) conv=notrunc status=none
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(-4096, 2)
    b = f.read(1)
    f.seek(-4096, 2)
    f.write(bytes([b[0] ^ 0x55]))
PY
bad=$(sha256sum b/model.gguf | cut -d' ' -f1)
[ "$bad" != "$good" ] || fail "the model copy was not changed"
set +e
"$X" --replay b/s.xfs >out.txt 2>err.txt; rc=$?
set -e
[ $rc = 1 ] || fail "replay against a changed model: exit $rc"
grep -qx "xfdb: replay: b/s.xfs: refusing to replay against a different model: the session was recorded with model.gguf sha256 $good, but b/model.gguf has sha256 $bad" err.txt \
  || fail "message: $(cat err.txt)"
# refused before anything ran: one line, nothing on stdout
[ "$(wc -l <err.txt)" = 1 ] || fail "more than the refusal: $(cat err.txt)"
[ ! -s out.txt ] || fail "stdout: $(cat out.txt)"

# no model at all
rm b/model.gguf
set +e
"$X" --replay b/s.xfs 2>err.txt >/dev/null; rc=$?
set -e
[ $rc = 1 ] || fail "no model: exit $rc"
grep -q "b/s.xfs: model model.gguf not found (looked for b/model.gguf, models/model.gguf, b/../models/model.gguf, a/model.gguf)" err.txt \
  || fail "not-found message: $(cat err.txt)"
echo ok
