#!/bin/bash
# The device side of scripts/pack-prebuilt.sh: unpacks .prebuilt/bins.tar.xz
# and runs, with no build, the tests in TESTS (each "BINARY" or
# "BINARY:TEST_NAME", XF_TEST_FILTER) and then, for each file in FILES
# (bench_make_qwen2 / bench_make_gpt2 names: q05-q4km q05-f16 q15-q4km
# g124-f16) and P in PREFILL, `bench --prefill P` under each environment
# of VARIANTS ("new" = as it is; otherwise VAR=VALUE[,VAR=VALUE]; NAME+VAR=VALUE:
# NAME's binaries, below, under that environment).
# LLAMA=1 also builds llama.cpp from .bench-kit beside it (carry it too) and,
# once the xfdb figures are in (or at LLAMA_BY seconds, default 560), runs
# llama-bench on the same files: pp PREFILL and tg128, and for q05-q4km
# tg32 at depth 4096 (goal 2), each the median of LLAMA_REPS runs (default
# 3; from its jsonl samples). DECODE=1 adds `bench` decode lines; REPS
# (default 3) is `bench --reps`.
# DEPTH="0 4096" (with q05-q4km in FILES): its decode at each position
# (`bench --prefill 16 --decode 64 --depth D --reps REPS`), the xfdb side of
# llama.cpp's -d 4096 in the same call. An earlier commit's binaries in
# .prebuilt/NAME.tar.xz (pack-prebuilt.sh with OUT_NAME=NAME.tar.xz, e.g.
# old.tar.xz) make the VARIANTS entry NAME: its xfdb, benched beside in the
# same lease (and at each DEPTH). So does a folder v-NAME/ inside
# bins.tar.xz (pack-prebuilt.sh VARIANT=NAME: several commits' binaries in
# one xz stream cost little more than one, under the 64 MiB carry), and a
# TESTS entry "NAME/BINARY[:TEST_NAME]" runs that folder's test binary.
# Folders v-mut-N/ (pack-mutants.sh) are mutants: each one's test runs
# after TESTS and must fail.
#   run:  carry .device-kit .prebuilt;
#         source .device-kit/env.sh && TESTS=... scripts/gpu-prebuilt.sh
set -u
. "$(dirname "$0")/gpu-llama.sh"
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-prebuilt.log") 2>&1
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -n "${LLAMA:-}" ]; then
  llama_start
fi
C=/tmp/prebuilt
rm -rf $C && mkdir -p $C && xz -dc .prebuilt/bins.tar.xz | tar -xf - -C $C || { echo "no .prebuilt/bins.tar.xz"; exit 1; }
echo "binaries of $(cat $C/COMMIT)$([ -s $C/DIRTY ] && echo ' (with uncommitted changes)')"
# each VARIANTS entry NAME (not "new", not VAR=VALUE): .prebuilt/NAME.tar.xz's binaries
rm -rf /tmp/prebuilt-v-*
for v in ${VARIANTS:-}; do
  v=${v%%+*}
  case $v in new | *=*) continue ;; esac
  if [ -d $C/v-$v ]; then # packed into bins.tar.xz (pack-prebuilt.sh VARIANT=NAME)
    ln -s $C/v-$v /tmp/prebuilt-v-$v && echo "$v: binaries of $(cat $C/v-$v/COMMIT)"
    continue
  fi
  [ -f .prebuilt/$v.tar.xz ] || { echo "no .prebuilt/$v.tar.xz or v-$v/ in bins.tar.xz"; continue; }
  mkdir -p /tmp/prebuilt-v-$v && xz -dc .prebuilt/$v.tar.xz | tar -xf - -C /tmp/prebuilt-v-$v &&
    echo "$v: binaries of $(cat /tmp/prebuilt-v-$v/COMMIT)"
done
export XF_SOURCE_DIR=$PWD
mk=()
for f in ${FILES:-}; do
  case $f in
  q05-q4km) $C/bench_make_qwen2 /tmp/$f.gguf 0.5b q4km tests/fixtures/vocab/ggml-vocab-qwen2.gguf >/dev/null & mk+=($!) ;;
  q05-f16) $C/bench_make_qwen2 /tmp/$f.gguf 0.5b f16 tests/fixtures/vocab/ggml-vocab-qwen2.gguf >/dev/null & mk+=($!) ;;
  q15-q4km) $C/bench_make_qwen2 /tmp/$f.gguf 1.5b q4km tests/fixtures/vocab/ggml-vocab-qwen2.gguf >/dev/null & mk+=($!) ;;
  g124-f16) $C/bench_make_gpt2 /tmp/$f.gguf f16 >/dev/null & mk+=($!) ;;
  *) echo "unknown bench file $f" ;;
  esac
done
for t in ${TESTS:-test_kernels_cuda test_kernels_cuda_graph}; do
  bin=${t%%:*}
  name=$([ "$bin" != "$t" ] && echo "${t#*:}")
  log="$OUT/${t//[:\/]/.}.log"
  # NAME/BINARY: variant NAME's binary (v-NAME/ in bins.tar.xz)
  d=$C && case $bin in */*) d=$C/v-${bin%%/*} bin=${bin#*/} ;; esac
  XF_TEST_FILTER=$name timeout ${TLIM:-120} $d/$bin >"$log" 2>&1
  echo "$t: exit $?, $(grep -cE '^\[       OK \]' "$log") ok, $(grep -cE '^\[  FAILED  \]' "$log") failed"
  grep -E "FAILED|fail|worst" "$log" | head -8
  stamp "$t"
done
# the mutants of pack-mutants.sh (folders v-mut-N/): each test must fail
for d in $C/v-mut-*/; do
  [ -f "$d/TEST" ] || continue
  read -r bin name <"$d/TEST"
  m=$(basename "$d")
  XF_TEST_FILTER=$name timeout ${TLIM:-120} "$d/$bin" >"$OUT/$m.log" 2>&1
  rc=$?
  # 77: the test skipped (no device), 124: ran past TLIM; neither judges the mutant
  case $rc in
  0) v="PASSES: the test misses this mutant" ;;
  77) v="skipped (no device?): not judged" ;;
  124) v="ran past ${TLIM:-120} s: not judged" ;;
  *) v="fails, as it must" ;;
  esac
  echo "$m ($(cat "$d/MUTANT")): $bin $name exit $rc: $v"
  grep -E "FAILED|fail|worst" "$OUT/$m.log" | head -2
done
[ -d $C/v-mut-1 ] && stamp mutants
[ ${#mk[@]} -gt 0 ] && wait "${mk[@]}"
for f in ${FILES:-}; do
  for p in ${PREFILL:-512 2048}; do
    for v in ${VARIANTS:-new}; do
      printf '%-9s %-5s %-24s ' "$f" "$p" "$v"
      # NAME, VAR=VALUE[,VAR=VALUE] or NAME+VAR=VALUE[,...]: whose xfdb, under which environment
      n=${v%%+*} e=$([ "$v" != "${v#*+}" ] && echo "${v#*+}")
      case $n in *=*) e=$n n=new ;; esac
      X=$C/xfdb
      [ -x /tmp/prebuilt-v-$n/xfdb ] && X=/tmp/prebuilt-v-$n/xfdb
      env ${e//,/ } timeout 60 $X /tmp/$f.gguf --backend cuda --batch \
        -x "bench --prefill $p --decode 16 --reps ${REPS:-3} --variants opt" 2>&1 | grep -E "^opt +prefill|skipped|rror$([ -n "${DECODE:-}" ] && echo '|^opt +decode')" | head -2
    done
  done
  stamp "$f"
done
for d in ${DEPTH:-}; do
  case " ${FILES:-} " in *" q05-q4km "*) ;; *) echo "DEPTH needs q05-q4km in FILES"; break ;; esac
  for x in $C/xfdb /tmp/prebuilt-v-*/xfdb; do
    [ -x $x ] || continue
    n=$([ $x = $C/xfdb ] && echo new || echo "$x" | sed 's|/tmp/prebuilt-v-||; s|/xfdb||')
    printf 'q05-q4km  depth %-5s %-5s ' "$d" "$n"
    timeout 120 $x /tmp/q05-q4km.gguf --backend cuda --batch \
      -x "bench --prefill 16 --decode 64 --depth $d --reps ${REPS:-3} --variants opt" 2>&1 | grep -E "^opt +decode|rror" | head -1
  done
  stamp "depth $d"
done
[ -z "${LLAMA:-}" ] && exit 0
llama_wait ${LLAMA_BY:-560}
stamp "llama.cpp waited for"
P=${PREFILL:-512 2048}
LR=${LLAMA_REPS:-3}
for f in ${FILES:-}; do
  # GPT-2's context is 1024: pp2048 there ran llama-bench past its 60 s (session 20)
  p=$([ $f = g124-f16 ] && echo 512 || echo ${P// /,})
  [ -x $LB ] && timeout 90 $LB -m /tmp/$f.gguf -ngl 99 -p $p -n 128 -r $LR -o jsonl 2>/dev/null | lb_sum $f
  [ -x $LB ] && [ $f = q05-q4km ] && timeout 90 $LB -m /tmp/$f.gguf -ngl 99 -p 0 -n 32 -d 4096 -r $LR -o jsonl 2>/dev/null | lb_sum $f
done
stamp llama
