#!/bin/sh
# check-layout: the size rules of DESIGN.md's Layout section, as a test.
# No source file over 1,000 lines and no function over 120 lines, except
# tables and generated data (listed below, with the reason). A function is
# counted from the line that opens its body ("{" at column 0, or a
# signature line ending in "{") to the "}" at column 0 that closes it.
# Usage: scripts/check-layout.sh [ROOT]; exit 1 and a line per offender.
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
max_file=1000
max_fn=120
# tables and generated data: (none today)
exempt=''
status=0
# The sources git knows of, tracked or new (not ignored, so no build
# output); where git is absent, ROOT is no work tree (an unpacked tarball)
# or git lists nothing (ROOT untracked inside another repository), the
# source directories.
files=$(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.cu' 2>/dev/null)
if [ -z "$files" ]; then
  files=$(find base engine kernels repl tests -type f \( -name '*.[ch]' -o -name '*.cu' \) 2>/dev/null | sort)
fi
if [ -z "$files" ]; then
  echo "check-layout: no sources under $(pwd)" >&2
  exit 2
fi
for f in $files; do
  case " $exempt " in *" $f "*) continue ;; esac
  [ -f "$f" ] || continue # tracked but deleted in the work tree
  n=$(wc -l <"$f")
  if [ "$n" -gt $max_file ]; then
    echo "$f: $n lines (at most $max_file)"
    status=1
  fi
  awk -v f="$f" -v max=$max_fn '
    function name_of(s,   m) { if (match(s, /[A-Za-z_][A-Za-z_0-9]*[ \t]*\(/)) { m = substr(s, RSTART, RLENGTH); sub(/[ \t]*\($/, "", m); return m } return "?" }
    start == 0 && ($0 ~ /^\{/ || ($0 ~ /^[A-Za-z_].*\)[ \t]*\{[ \t]*$/ && $0 !~ /^(struct|typedef|enum|union|static const|const)/)) {
        start = NR; nm = ($0 ~ /^\{/) ? name_of(sig) : name_of($0); next }
    start == 0 && /\(/ { sig = $0 }
    start > 0 && /^\}/ { len = NR - start + 1; if (len > max) { printf "%s:%d: %s is %d lines (at most %d)\n", f, start, nm, len, max; bad = 1 } start = 0 }
    END { exit bad }' "$f" || status=1
done
exit $status
