# Sourced by the gpu-*.sh scripts that time llama.cpp in the same call as
# xfdb: its CUDA build from .bench-kit (carried) started in the background,
# and the wait for it. One place for the paths and the wait's conditions.
#   llama_start          the build, in the background ($! is its pid);
#                        its log and a last line "rc N" in /tmp/llama-build.txt
#   llama_wait BY        until llama-bench is there, the build ended, or BY
#                        seconds after $t0 (the caller's start); prints the
#                        build's last line
#   $LB                  llama-bench (absent where the build failed or is late)
#   ... -o jsonl | lb_sum NAME   each test's median line (below)
LB=/tmp/llama/llama.cpp/build/bin/llama-bench
llama_start() {
  (nice bash .bench-kit/build-llama.sh cuda /tmp/llama >/tmp/llama-build.txt 2>&1; echo "rc $?" >>/tmp/llama-build.txt) &
}
llama_wait() {
  while [ ! -x "$LB" ] && ! grep -q "^rc" /tmp/llama-build.txt 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$1" ]; do
    sleep 5
  done
  echo "llama.cpp build: $(tail -1 /tmp/llama-build.txt 2>/dev/null)"
}
# llama-bench's jsonl: each test's median over its repetitions (and the
# mean, min and max), tokens/s, and ms a token for the generation tests
lb_sum() {
  python3 -c '
import json, statistics, sys
for l in sys.stdin:
    l = l.strip()
    if not l.startswith("{"): continue
    r = json.loads(l); ts = r.get("samples_ts") or [0]
    ng, npr = int(r.get("n_gen", 0)), int(r.get("n_prompt", 0))
    t = ("pp%d" % npr) if ng == 0 else ("tg%d" % ng)
    if int(r.get("n_depth", 0)): t += " @ d%d" % int(r["n_depth"])
    med = statistics.median(ts)
    ms = " = %.3f ms/token" % (1000 / med) if ng and med else ""
    print("llama.cpp %-9s %-13s median %10.2f t/s%s (mean %.2f, min %.2f, max %.2f, %d runs)" % (sys.argv[1], t, med, ms, statistics.mean(ts), min(ts), max(ts), len(ts)))
' "$1"
}
