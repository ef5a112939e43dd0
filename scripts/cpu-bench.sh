#!/bin/bash
# xfdb against llama.cpp on this CPU, in one run, on the same files (issue
# 16): GPT-2 124M F32 and F16 (bench_make_gpt2), the real Qwen2.5-0.5B and
# Qwen2.5-Coder-1.5B Q4_K_M files (scripts/fetch_qwen.sh). For each model,
# ROUNDS rounds, each: xfdb `bench` (prefill 128 and 512, decode 32) with the
# variant sets of VARIANTS, then llama-bench (-t THREADS -p 128,512 -n 32),
# so that both see the same moments of a shared machine; medians over the
# rounds are printed at the end, with the memory floor bench measured.
#   ../shared/bench/build-llama.sh cpu /tmp/llama      (once, ~10 min)
#   scripts/cpu-bench.sh [BUILD_DIR]                   (default build)
# Env: LLAMA (llama-bench path), ROUNDS (3), THREADS (2), MODELS (list of
# files, default the four above), VARIANTS (opt,q8). Raw output: $OUT
# (default /tmp/cpu-bench).
set -u
B=${1:-build}
X=$B/xfdb
LLAMA=${LLAMA:-/tmp/llama/llama.cpp/build/bin/llama-bench}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
VARIANTS=${VARIANTS:-opt,q8}
OUT=${OUT:-/tmp/cpu-bench}
cache=${XF_CACHE:-$HOME/.cache/xfdb}
mkdir -p "$OUT"
[ -x "$X" ] || { echo "cpu-bench: no $X (build first)" >&2; exit 2; }
[ -x "$LLAMA" ] || { echo "cpu-bench: no llama-bench at $LLAMA (../shared/bench/build-llama.sh cpu /tmp/llama)" >&2; exit 2; }
[ -s "$OUT/g124-f32.gguf" ] || "$B/bench_make_gpt2" "$OUT/g124-f32.gguf" f32 >/dev/null
[ -s "$OUT/g124-f16.gguf" ] || "$B/bench_make_gpt2" "$OUT/g124-f16.gguf" f16 >/dev/null
MODELS=${MODELS:-"$OUT/g124-f32.gguf $OUT/g124-f16.gguf $cache/qwen2.5-0.5b-q4.gguf $cache/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"}
lscpu | grep -E "Model name|^CPU\(s\)" | sed 's/  */ /g'
: >"$OUT/raw.txt"
for m in $MODELS; do
  [ -s "$m" ] || { echo "# $m: missing, skipped"; continue; }
  name=$(basename "$m" .gguf)
  for r in $(seq "$ROUNDS"); do
    "$X" "$m" --threads "$THREADS" --batch -x "bench --prefill 128,512 --decode 32 --reps 1 --variants $VARIANTS" 2>&1 |
      awk -v n="$name" '/^memory bandwidth/ {print n, "bw", $3}
                        $2 == "prefill" || $2 == "decode" {print n, $1, $2 $3, $4, $5, $6}' >>"$OUT/raw.txt"
    "$LLAMA" -m "$m" -t "$THREADS" -p 128,512 -n 32 -r 3 2>/dev/null |
      awk -F'|' -v n="$name" '$7 ~ /pp|tg/ {gsub(/ /, "", $7); split($8, v, " "); print n, "llama", $7, v[1]}' >>"$OUT/raw.txt"
  done
done
# medians: xfdb prefill in tokens/s ($5), decode in ms/token ($4); llama t/s
python3 - "$OUT/raw.txt" <<'EOF'
import sys, statistics as st, collections
rows = collections.defaultdict(list); floor = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[1] == "bw": rows[(f[0], "bw")].append(float(f[2])); continue
    if f[1] == "llama":
        t = float(f[3]); key = {"pp128": "prefill128", "pp512": "prefill512", "tg32": "decode32"}[f[2]]
        rows[(f[0], "llama", key)].append(1000.0 / t if key.startswith("decode") else t); continue
    name, var, run, ms, tps, fl = f[0], f[1], f[2], float(f[3]), float(f[4]), f[5]
    rows[(name, var, run)].append(ms if run.startswith("decode") else tps); floor[name] = fl
models = sorted({k[0] for k in rows}, key=lambda s: list(dict.fromkeys(k[0] for k in rows)).index(s))
vars_ = sorted({k[1] for k in rows if len(k) == 3 and k[1] != "llama"})
print("\nmedians of the rounds; decode ms/token, prefill tokens/s; floor: decode ms at bench's bandwidth")
print("| model | floor | bw GB/s | " + " | ".join(f"{v} decode" for v in vars_) + " | llama.cpp decode | " +
      " | ".join(f"{v} pp128 / pp512" for v in vars_) + " | llama.cpp pp128 / pp512 |")
print("|" + "---|" * (4 + 2 * len(vars_) + 1))
def med(k, fmt):
    return fmt % st.median(rows[k]) if rows.get(k) else "-"
for m in models:
    cells = [m, floor.get(m, "-"), med((m, "bw"), "%.1f")]
    cells += [med((m, v, "decode32"), "%.2f") for v in vars_] + [med((m, "llama", "decode32"), "%.2f")]
    cells += [med((m, v, "prefill128"), "%.0f") + " / " + med((m, v, "prefill512"), "%.0f") for v in vars_]
    cells += [med((m, "llama", "prefill128"), "%.0f") + " / " + med((m, "llama", "prefill512"), "%.0f")]
    print("| " + " | ".join(cells) + " |")
EOF
