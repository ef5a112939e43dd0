# Sourced by the gpu-*.sh scripts that time llama.cpp in the same call as
# xfdb: its CUDA build from .bench-kit (carried) started in the background,
# and the wait for it. One place for the paths and the wait's conditions.
#   llama_start          the build, in the background ($! is its pid);
#                        its log and a last line "rc N" in /tmp/llama-build.txt
#   llama_wait BY        until llama-bench is there, the build ended, or BY
#                        seconds after $t0 (the caller's start); prints the
#                        build's last line
#   $LB                  llama-bench (absent where the build failed or is late)
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
