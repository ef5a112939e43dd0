#!/bin/bash
# One call on the GPU machine for the CUDA-graph fast path (issue 7): build,
# the kernel tests and the graph-vs-op-by-op tests (bit-identical tensors,
# default model, Qwen2 fixtures and the 124M-shaped F16/F32 models), the
# timings (eager vs graphs), generate on cuda against the HF reference, the
# rest of ctest and compute-sanitizer on a graphed generate.
# GRAPH_OVERHEAD_124M=1 adds `bench --overhead` on the 124M model (check on
# costs about 30 s there).
#   carry .device-kit:  source .device-kit/env.sh && scripts/gpu-graph.sh
# Results go to $OUT (or /tmp/gpu-out)/gpu-graph.log.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-graph.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
cmake -S . -B build-gpu -DXF_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build-gpu -j16 2>&1 | grep -E "error|warning" | grep -v cmocka.h
[ -x build-gpu/xfdb ] && [ -x build-gpu/test_exec_graph ] || { echo BUILD FAILED; exit 1; }
B=build-gpu
X=$B/xfdb
stamp built
$B/bench_make_gpt2 /tmp/g124-f16.gguf f16 >/dev/null && $B/bench_make_gpt2 /tmp/g124-f32.gguf f32 >/dev/null
stamp "models made"
echo "== test_kernels_cuda"
$B/test_kernels_cuda 2>&1 | grep -vE "^\[ +(RUN|OK) +\]" | tail -30
stamp done
echo "== test_exec_graph (+124M F16/F32, timings over 128 tokens)"
XF_GRAPH_MODELS=/tmp/g124-f16.gguf:/tmp/g124-f32.gguf XF_GRAPH_BENCH=128 $B/test_exec_graph 2>&1 | tail -40
stamp done
echo "== bench (bench runs exec_run FINISH: decode graphed)"
for f in f16 f32; do $X /tmp/g124-$f.gguf --backend cuda --batch -x 'bench --prefill 128,512 --decode 128 --variants opt'; done
[ "${GRAPH_OVERHEAD_124M:-0}" = 1 ] && $X /tmp/g124-f16.gguf --backend cuda --batch -x 'bench --overhead --decode 128'
$X --backend cuda --batch -x 'bench --prefill 128 --decode 128 --variants opt'
$X --backend cuda --batch -x 'bench --overhead --decode 128'
stamp done
echo "== generate 30 on cuda (graphs) vs the HF reference and the cpu"
REF=tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors
want=$($X --batch -x "ref load $REF" -x 'print gen.tokens@ref -n 100 --raw' | tail -1)
p=$($X --batch -x "ref load $REF" -x 'print prompt.tokens@ref -n 100 --raw' | tail -1)
gen() { $X "$@" | tail -1; }
g1=$(gen --backend cuda --batch -x "run --tokens ${p// /,}" -x continue -x 'generate 30 --ids')
g2=$(gen --backend cuda --batch -x "run --tokens ${p// /,}" -x 'break blk.*.out if nan' -x continue -x 'generate 30 --ids')
g3=$(gen --backend cpu --batch -x "run --tokens ${p// /,}" -x continue -x 'generate 30 --ids')
for g in "cuda:$g1" "cuda+break:$g2" "cpu:$g3"; do
  [ "${g#*:}" = "$want" ] && echo "ok ${g%%:*}" || echo "FAIL ${g%%:*}: got '${g#*:}' want '$want'"
done
stamp done
echo "== ctest"
(cd $B && ctest -j8 -E "test_oom|test_kernels_cuda|test_exec_graph" 2>&1 | tail -12)
stamp done
echo "== sanitizer on a graphed generate"
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 9 $X --backend cuda --batch -x 'run "ROMEO:\nWhat light"' \
    -x 'generate 6' >"$OUT/san-$tool-graph.txt" 2>&1
  echo "$tool xfdb run+generate: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/san-$tool-graph.txt" | tail -1)"
done
stamp end
