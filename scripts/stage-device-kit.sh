#!/bin/sh
# Stages .device-kit for the GPU machine: the shared kit (Lua, Readline,
# cmocka) plus PCRE2 (the tokenizer) and jansson (safetensors headers),
# which the shared kit lacks.
# RUNTIME=1 also stages .device-kit/rt: env.sh and the runtime packages
# alone (0.6 MB, not 2.1): enough for binaries built here
# (pack-prebuilt.sh), and what fits the 64 MiB carry beside the tree,
# .bench-kit and .prebuilt (session 24: the whole kit went over).
# Carry .device-kit/rt and source .device-kit/rt/env.sh.
set -e
cd "$(dirname "$0")/.."
../shared/device/stage.sh
cd .device-kit
for p in libpcre2-dev libpcre2-8-0 libjansson-dev libjansson4; do
  ls ${p}_*.deb >/dev/null 2>&1 || apt-get download "$p"
done
if [ -n "${RUNTIME:-}" ]; then
  rm -rf rt && mkdir rt
  cp env.sh rt/
  for p in libcmocka0 libjansson4 liblua5.4-0 libpcre2-8-0 libreadline8; do
    cp ${p}_*.deb rt/
  done
fi
