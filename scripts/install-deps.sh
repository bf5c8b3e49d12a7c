#!/bin/sh
# Install what sharemig needs to build and test, from Debian 12's archive.
# Idempotent: installs only what is missing.  Needs root (or sudo).
set -eu
PKGS="meson ninja-build pkg-config gcc libc6-dev libevent-dev libxxhash-dev
libssl-dev openssl libcmocka-dev libxen-dev libinih-dev libsystemd-dev
libjson-c-dev libzstd-dev liblz4-dev python3 clang llvm iproute2 procps scdoc
man-db systemd qemu-system-x86 busybox-static cpio xz-utils kmod
gnuplot-nox iperf3"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
	    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
