#!/bin/sh
# Configure (once) and build into ./build.
set -eu
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
