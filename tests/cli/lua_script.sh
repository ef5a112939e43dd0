#!/bin/bash
# Lua scripting through the program as users run it (issue 5): --script with
# arguments prints what `print --raw` prints, `lua` and `source` at the
# command line, exit status 1 on a Lua error, the sandbox and --unsafe-lua,
# the time limit, and scripts/compare.lua and scripts/bisect.lua on the
# default model with its reference dump.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
REF=$SRC/tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
MODEL=$SRC/models/tiny-shakespeare-gpt2-f16.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$tmp/vals.lua" <<'EOF'
local prompt, name, n = arg[1], arg[2], tonumber(arg[3])
xf.run(prompt)
xf.finish()
local v = xf.tensor(name):values(n)
local s = {}
for i = 1, #v do s[i] = string.format("%.9g", v[i]) end
print(table.concat(s, " "))
EOF
want=$("$X" "$MODEL" --batch -x 'run "ROMEO:\nWhat light"' -x finish -x 'print blk.1.attn_out -n 8 --raw')
[ "$(echo "$want" | tail -1 | wc -w)" = 8 ] || fail "print --raw: $want"
got=$("$X" "$MODEL" --script "$tmp/vals.lua" $'ROMEO:\nWhat light' blk.1.attn_out 8)
[ "$got" = "$(echo "$want" | tail -1)" ] || fail "--script values: got '$got' want '$(echo "$want" | tail -1)'"

# lua and source from -x; an expression prints its value
out=$("$X" "$MODEL" --batch -x 'run "ROMEO:"' -x 'lua xf.step(2).op' -x "source $tmp/vals.lua hi embd 3" -x 'lua 6 * 7')
grep -qx 'blk.0.attn_norm' <<<"$out" || fail "lua expression: $out"
[ "$(echo "$out" | tail -1)" = 42 ] || fail "lua 6 * 7: $out"
[ "$(echo "$out" | sed -n 3p | wc -w)" = 3 ] || fail "source with arguments: $out"

# a Lua error: exit 1, the message and a traceback on stderr, nothing on stdout
set +e
"$X" "$MODEL" --batch -x 'lua error("boom")' >"$tmp/out" 2>"$tmp/err"; rc=$?
set -e
[ $rc = 1 ] || fail "lua error exit $rc"
grep -q '^error: lua:1: boom$' "$tmp/err" || fail "lua error text: $(cat "$tmp/err")"
grep -q 'stack traceback:' "$tmp/err" || fail "no traceback: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "stdout after an error: $(cat "$tmp/out")"
set +e
"$X" "$MODEL" --script "$tmp/no-such.lua" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc = 1 ] || fail "--script of a missing file: exit $rc"
grep -q 'cannot open' "$tmp/err" || fail "missing script: $(cat "$tmp/err")"

# the sandbox, and --unsafe-lua
echo 'print(io.open("/dev/null"))' > "$tmp/io.lua"
set +e
"$X" "$MODEL" --script "$tmp/io.lua" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc = 1 ] || fail "sandboxed io.open: exit $rc"
grep -q 'io.open is disabled in the sandbox' "$tmp/err" || fail "sandbox message: $(cat "$tmp/err")"
# captured first: grep -q leaving early would break the pipe under pipefail
o=$("$X" "$MODEL" --unsafe-lua --script "$tmp/io.lua") || fail "--unsafe-lua io.open: exit $?"
grep -q '^file (0x' <<<"$o" || fail "--unsafe-lua io.open: $o"

# the time limit stops a runaway loop
start=$(date +%s%N)
set +e
timeout 20 "$X" "$MODEL" --lua-timeout 0.5 --batch -x 'lua while true do end' 2>"$tmp/err"; rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc = 1 ] || fail "time limit: exit $rc"
grep -q 'time limit of 0.5 s exceeded' "$tmp/err" || fail "time limit message: $(cat "$tmp/err")"
[ $ms -lt 5000 ] || fail "time limit took $ms ms"

# Ctrl-C (SIGINT) stops a runaway loop too. Sent once the loop runs (it
# makes a file first: --unsafe-lua for io), not after a fixed delay: on a
# loaded machine 0.5 s could come before xfdb had set its handler, and the
# default action (exit 130) failed the test.
"$X" "$MODEL" --lua-timeout 15 --unsafe-lua --batch \
  -x "lua io.open('$tmp/looping', 'w'):close() while true do end" 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ -e "$tmp/looping" ] && break; sleep 0.05; done
[ -e "$tmp/looping" ] || { kill -9 $pid 2>/dev/null || true; fail "the Lua loop never started: $(cat "$tmp/err")"; }
start=$(date +%s%N)
kill -INT $pid
set +e
wait $pid
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc = 1 ] || fail "SIGINT: exit $rc"
grep -q 'interrupted (Ctrl-C)' "$tmp/err" || fail "SIGINT message: $(cat "$tmp/err")"
[ $ms -lt 5000 ] || fail "SIGINT took $ms ms"

# the scripts users run
out=$("$X" "$MODEL" --script "$SRC/scripts/compare.lua" "$REF")
grep -q '^69 tensors compared, all within tolerance$' <<<"$out" || fail "compare.lua: $out"
grep -q '^blk.3.kq_soft ' <<<"$out" || fail "compare.lua rows: $out"
out=$("$X" "$MODEL" --script "$SRC/scripts/bisect.lua" "$REF")
grep -q 'nothing to bisect' <<<"$out" || fail "bisect.lua: $out"
# a kernel choice that is right stays right: bisect with every kind on ref
out=$("$X" "$MODEL" --batch -x 'kernel all ref' -x "source $SRC/scripts/bisect.lua $REF --logits")
grep -q '(1 tensors compared) with the kernels selected now: nothing to bisect' <<<"$out" || fail "bisect.lua --logits: $out"
echo "ok"
