#!/bin/bash
# Every example command of README.md and scripts/README.md runs, as written
# there (issue 15): the lines of code blocks (``` fences or 4-space indents)
# that start with `xfdb`, `./build/xfdb` or `$ xfdb` are extracted from the
# files at test time, so a changed example is tested as it now reads. Each
# must exit 0. Skipped, each with its reason printed, and only by these
# marks in the line:
#   ~/.cache/xfdb       a real model downloaded by scripts/fetch_qwen.sh
#   --backend cuda      a GPU
#   an UPPERCASE word that is a placeholder (REF.safetensors, FILE.lua, CODE, ARGS)
# The interactive tour (lines with an `(xfdb ...)` prompt) is typed by
# tests/test_pty.c. Then: every flag that `help` or `xfdb --help` lists is in
# the README.
set -euo pipefail
X=${XFDB:?XFDB not set}
SRC=${XF_SOURCE_DIR:?}
cd "$SRC"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# the example lines of a markdown file, one a line
examples() {
  awk '
    /^```/ { fence = !fence; next }
    fence || /^    / {
      line = $0
      sub(/^ +/, "", line)
      sub(/^\$ /, "", line)
      if (line ~ /^(\.\/build\/)?xfdb( |$)/) print line
    }' "$1"
}

n_run=0 n_skip=0
for doc in README.md scripts/README.md; do
  while IFS= read -r ex; do
    why=""
    case "$ex" in
      *"~/.cache/xfdb"*) why="needs a real model downloaded by scripts/fetch_qwen.sh" ;;
      *"--backend cuda"*) why="needs a GPU" ;;
    esac
    # a placeholder: an UPPERCASE word (outside quotes) such as REF.safetensors, FILE.lua, ARGS
    if [ -z "$why" ] && sed "s/'[^']*'//g; s/\"[^\"]*\"//g" <<<"$ex" | grep -Eq '(^| )\[?[A-Z]{3,}[A-Z_]*(\.[a-z]+)?\]?( |$)'; then
      why="a synopsis with placeholders"
    fi
    if [ -n "$why" ]; then
      echo "SKIP ($why): $doc: $ex"
      n_skip=$((n_skip + 1))
      continue
    fi
    cmd=${ex#./build/}
    cmd=${cmd#xfdb}
    echo "RUN  $doc: $ex"
    # shellcheck disable=SC2086
    if ! (eval "\"\$X\" --backend cpu $cmd") >"$tmp/out" 2>&1 </dev/null; then
      fail "$doc: the example '$ex' failed: $(tail -5 "$tmp/out")"
    fi
    n_run=$((n_run + 1))
  done < <(examples "$doc")
done
[ "$n_run" -ge 8 ] || fail "only $n_run examples found: the extraction is broken"
echo "$n_run examples ran, $n_skip skipped"

# --- every flag help lists is in the README
flags=$( ("$X" --help; for c in $("$X" --batch -x help | grep -o '^  [a-z]*'); do "$X" --batch -x "help $c"; done) |
  grep -oE '(^|[ [|])--?[a-z][a-z-]*' | sed 's/^[ [|]//' | sort -u)
for f in $flags; do
  [ "$f" = "-h" ] && continue
  grep -qe "$f\b" README.md || fail "help lists $f; the README does not"
done
echo "$(wc -w <<<"$flags") flags of help, all in the README"
echo ok
