#!/bin/sh
# Stages .device-kit for the GPU machine: the shared kit (Lua, Readline,
# cmocka) plus PCRE2 (the tokenizer) and jansson (safetensors headers),
# which the shared kit lacks.
set -e
cd "$(dirname "$0")/.."
../shared/device/stage.sh
cd .device-kit
for p in libpcre2-dev libpcre2-8-0 libjansson-dev libjansson4; do
  ls ${p}_*.deb >/dev/null 2>&1 || apt-get download "$p"
done
