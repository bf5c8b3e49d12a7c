#!/bin/sh
# Configure (once) and build into ./build.
set -eu
cd "$(dirname "$0")/.."
# build/ may exist without a configuration (a cache put there first,
# an interrupted setup): configure whenever build.ninja is missing.
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
