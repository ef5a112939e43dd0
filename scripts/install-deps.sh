#!/bin/sh
# Installs what xfdb needs to build and test on Debian 12 (apt). Uses sudo
# when not root. CUDA is optional: with nvcc on PATH the CUDA backend builds too.
set -e
pkgs="build-essential cmake pkg-config liblua5.4-dev libreadline-dev libcmocka-dev libpcre2-dev libjansson-dev"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
