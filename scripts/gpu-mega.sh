#!/bin/bash
# The decode megakernel (`graph mega`) in one call on the GPU machine, in
# order of what matters when the lease is short:
#   - test_exec_graph (every tensor of 30 greedy tokens bit-identical between
#     op by op, graphs, unfused graphs and the megakernel);
#   - SAN=1: compute-sanitizer memcheck over `graph mega` on three fixtures;
#   - decode ms/token, `graph on` and `graph mega`, on the bench files
#     (MODELS, default q05-q4km), and KNOBS (environments, commas between
#     variables) on the first;
#   - TRACE=1: per-phase times of the megakernel from measurement builds
#     (scripts/mega_trace.py patches a copy of the tree; the product never has it): this tree,
#     and RING_SRC=DIR (files copied over kernels/cuda first: another version
#     of the megakernel) too; each run once per TRACE_ENV environment;
#     XF_MEGA_FLAGS bit 64 in the trace build skips the matrix products;
#   - LLAMA=1: llama.cpp built in this lease (in the background from the
#     start), then decode at position DEPTH (4096) and at 0, xfdb against
#     llama-bench -d on the first bench file, if the build ends by LLAMA_BY
#     seconds (500) into the call.
#   run:  carry .device-kit (.bench-kit for LLAMA; RING_SRC if set);
#         source .device-kit/env.sh && scripts/gpu-mega.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-mega.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "${LLAMA:-0}" = 1 ]; then
  llama_start
fi
B=build-gpu
cmake -S . -B $B -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build $B -j16 --target xfdb test_exec_graph bench_make_qwen2 bench_make_gpt2 2>&1 |
  grep -E " error|warning" | grep -v cmocka.h
[ -x $B/xfdb ] || { echo BUILD FAILED; exit 1; }
stamp built
if [ "${TRACE:-0}" = 1 ] && [ -f scripts/mega_trace.py ]; then
  (
    for v in main ${RING_SRC:+ring}; do
      rm -rf /tmp/tr-$v && mkdir /tmp/tr-$v &&
        for f in *; do case "$f" in build*) ;; *) cp -r "$f" /tmp/tr-$v/ ;; esac; done &&
        { [ $v = main ] || cp "$RING_SRC"/* /tmp/tr-$v/kernels/cuda/; } &&
        python3 scripts/mega_trace.py /tmp/tr-$v &&
        cmake -S /tmp/tr-$v -B /tmp/trb-$v -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
        nice cmake --build /tmp/trb-$v -j8 --target xfdb 2>&1 | grep -E " error"
    done
  ) >/tmp/trace-build.txt 2>&1 &
  trace_pid=$!
fi
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
MODELS=${MODELS:-q05-q4km}
(
  for m in $MODELS; do
    case $m in
    q05-q4km) $B/bench_make_qwen2 /tmp/q05-q4km.gguf 0.5b q4km $VOCAB ;;
    q05-f16) $B/bench_make_qwen2 /tmp/q05-f16.gguf 0.5b f16 $VOCAB ;;
    q15-q4km) $B/bench_make_qwen2 /tmp/q15-q4km.gguf 1.5b q4km $VOCAB ;;
    g124-f16) $B/bench_make_gpt2 /tmp/g124-f16.gguf f16 ;;
    esac >/dev/null
  done
) &
mk=$!
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== test_exec_graph"
  (cd $B && timeout 300 ctest -R '^test_exec_graph$' -V >"$OUT/test_exec_graph.log" 2>&1)
  grep -E "^[0-9]+: (\[ *(OK|FAILED|PASSED|ERROR) *\]|# .*identical)|tests passed|Failed" "$OUT/test_exec_graph.log" | head -20
  stamp test
fi
if [ "${SAN:-0}" = 1 ]; then
  echo "== compute-sanitizer memcheck, graph mega"
  for f in tests/fixtures/qwen2/qwen2-gqa-f32.gguf tests/fixtures/qwen2/qwen2-mqa-q8_0.gguf models/tiny-shakespeare-gpt2-f16.gguf; do
    timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $B/xfdb $f --backend cuda --batch -x 'graph mega' \
      -x 'bench --prefill 8 --decode 8 --reps 1 --variants opt' -x graph >"$OUT/san-$(basename $f).txt" 2>&1
    echo "$f memcheck exit $?: $(grep -E 'ERROR SUMMARY|megakernel' "$OUT/san-$(basename $f).txt" | tr '\n' ' ')"
  done
  stamp san
fi
wait $mk
m1=$(echo $MODELS | cut -d' ' -f1)
echo "== decode ms/token (bench --decode 128 --variants opt)"
for m in $MODELS; do
  for g in on mega; do
    printf '%-9s %-5s ' $m $g
    timeout 120 $B/xfdb /tmp/$m.gguf --backend cuda --batch -x "graph $g" -x 'bench --decode 128 --variants opt' 2>&1 |
      grep -E "^opt +decode" | head -1
  done
done
for kn in ${KNOBS:-}; do
  printf '%-9s mega %-36s ' $m1 $kn
  env ${kn//,/ } timeout 120 $B/xfdb /tmp/$m1.gguf --backend cuda --batch -x "graph mega" -x 'bench --decode 128 --variants opt' 2>&1 |
    grep -E "^opt +decode" | head -1
done
DEPTH=${DEPTH:-4096}
if [ "${LLAMA:-0}" = 1 ]; then
  echo "== $m1 decode at position $DEPTH (graph on)"
  timeout 120 $B/xfdb /tmp/$m1.gguf --backend cuda --batch -x "bench --prefill 16 --decode 64 --depth $DEPTH --reps 1 --variants opt" 2>&1 | grep -E "^opt +decode"
fi
stamp bench
if [ -n "${trace_pid:-}" ]; then
  wait $trace_pid
  cat /tmp/trace-build.txt
  for v in main ${RING_SRC:+ring}; do
    [ -x /tmp/trb-$v/xfdb ] || { echo "no trace build $v"; continue; }
    for te in ${TRACE_ENV:-XF_MEGA_FLAGS=0}; do
      echo "-- trace $v $m1 $te"
      env ${te//,/ } timeout 60 /tmp/trb-$v/xfdb /tmp/$m1.gguf --backend cuda --batch -x "graph mega" -x 'bench --decode 128 --reps 3 --variants opt' 2>&1 |
        grep -E "TRACE|^opt +decode" | head -40
    done
  done
  stamp trace
fi
if [ "${LLAMA:-0}" = 1 ]; then
  llama_wait ${LLAMA_BY:-500}
  stamp "llama.cpp built?"
  [ -x $LB ] && timeout 90 $LB -m /tmp/$m1.gguf -ngl 99 -p 0 -n 128 -d 0,$DEPTH -r 3 2>&1 | grep -E "^\| [a-z0-9]"
  stamp llama
fi
