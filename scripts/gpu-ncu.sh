#!/bin/bash
# What one decode token is made of on the GPU (issue 13: "what bounds it,
# measured"): Nsight Compute over a short generate, every graph node
# profiled on its own (--graph-profiling node), clocks left alone; the
# kernels of the LAST decode pass (after the last embedding kernel) summed
# per kernel name: launches, time, DRAM bytes and the bandwidth they
# achieved. Their total beside the bench's ms/token is what launch gaps
# and dependencies add; the warp instructions each kernel issued and how
# busy the issue slots were.
#   on the GPU machine, after building build-gpu:
#   scripts/gpu-ncu.sh MODEL.gguf [BUILD_DIR]
set -u
m=$1
B=${2:-build-gpu}
out=${OUT:-/tmp}/ncu-$(basename "$m" .gguf).csv
ncu --clock-control none --graph-profiling node --csv \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
  "$B/xfdb" "$m" --backend cuda --batch -x 'run "The"' -x 'generate 3' >"$out" 2>/dev/null
python3 - "$out" <<'EOF'
import csv, sys, collections
rows = []
with open(sys.argv[1]) as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    try:
        rows.append((int(r["ID"]), r["Kernel Name"], r["Metric Name"], float(r["Metric Value"].replace(",", ""))))
    except (KeyError, ValueError):
        pass
k = collections.defaultdict(dict)
for i, name, metric, v in rows:
    k[i]["name"] = name
    k[i][metric] = v
ids = sorted(k)
emb = [i for i in ids if "embd" in k[i]["name"]]
if not emb:
    print("no embedding kernel found:", len(ids), "kernels"); sys.exit(0)
last = [i for i in ids if i > emb[-1]] + [emb[-1]]
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0])
for i in last:
    d = k[i]
    n = d["name"].split("(")[0].split("<")[0]
    a = agg[n]
    a[0] += 1
    a[1] += d.get("gpu__time_duration.sum", 0) / 1e3  # ns -> us
    a[2] += d.get("dram__bytes_read.sum", 0) + d.get("dram__bytes_write.sum", 0)
    a[3] += d.get("sm__inst_executed.sum", 0)
    a[4] += d.get("smsp__issue_active.avg.pct_of_peak_sustained_active", 0) * d.get("gpu__time_duration.sum", 0) / 1e3
tot_us = sum(a[1] for a in agg.values()); tot_b = sum(a[2] for a in agg.values())
print(f"one decode pass: {len(last)} kernels, {tot_us:.1f} us of kernel time (each node alone), "
      f"{tot_b/1e6:.1f} MB DRAM, {tot_b/tot_us/1e3:.0f} GB/s over the kernel time")
# Minst: warp instructions issued; issue%: the SM sub-partitions' issue slots
# busy while active (time-weighted), i.e. how close a kernel is to being
# bound by instruction issue rather than by memory
print(f"{'kernel':32s} {'launches':>8s} {'us':>9s} {'us each':>8s} {'MB':>8s} {'GB/s':>7s} {'Minst':>7s} {'issue%':>6s}")
for n, a in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"{n[:32]:32s} {a[0]:8d} {a[1]:9.1f} {a[1]/a[0]:8.2f} {a[2]/1e6:8.2f} {a[2]/max(a[1],1e-9)/1e3:7.0f} {a[3]/1e6:7.2f} {a[4]/max(a[1],1e-9):6.1f}")
EOF
