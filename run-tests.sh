#!/bin/sh
# The whole test suite: install what is missing, build, run every test
# (unit tests of each module, integration tests with real daemons over
# real TLS, the fuzz corpus replay), then the same suite again built with
# AddressSanitizer + UndefinedBehaviorSanitizer, then a short libFuzzer
# run of every fuzz target (clang).  Ends with one line
# "N passed, N failed".  Skipped tests count as failed.
set -u
cd "$(dirname "$0")"
./scripts/install-deps.sh || exit 1
./scripts/build.sh || { echo "0 passed, 1 failed"; exit 1; }

export SHAREMIG_TEST_SUMMARY="$PWD/build/test-summary.txt"
: > "$SHAREMIG_TEST_SUMMARY"
: > "$SHAREMIG_TEST_SUMMARY.why"
meson test -C build --print-errorlogs --num-processes 2 --no-rebuild
python3 scripts/test-summary.py build/meson-logs/testlog.json normal \
    >> "$SHAREMIG_TEST_SUMMARY"

if [ "${SHAREMIG_SKIP_ASAN:-0}" != 1 ]; then
	[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
	    -Db_lundef=false >/dev/null
	ninja -C build-asan >/dev/null || { echo "asan build failed"; \
	    echo "asan-build FAIL" >> "$SHAREMIG_TEST_SUMMARY"; }
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    meson test -C build-asan --print-errorlogs --num-processes 2 \
	    --no-rebuild --suite unit --suite fuzz --suite integration
	python3 scripts/test-summary.py build-asan/meson-logs/testlog.json asan \
	    >> "$SHAREMIG_TEST_SUMMARY"
fi

# libFuzzer smoke: every fuzz target built with clang runs for a bounded
# time on a copy of its seed corpus (fuzz/smoke.py; about 1.5 minutes).
# No clang is a failure, never a skip.
FUZZ_BUILD=${SHAREMIG_FUZZ_BUILD:-build-fuzz}
if ! command -v clang >/dev/null; then
	echo "clang not found: the fuzz smoke needs it (scripts/install-deps.sh)"
	echo "fuzz-smoke clang-missing FAIL" >> "$SHAREMIG_TEST_SUMMARY"
elif { [ -f "$FUZZ_BUILD/build.ninja" ] || CC=clang meson setup "$FUZZ_BUILD" \
    -Dfuzz=true -Dtests=false -Dman=disabled >/dev/null; } &&
    ninja -C "$FUZZ_BUILD" fuzz/fuzz_proto fuzz/fuzz_ctl fuzz/fuzz_ctl_sock \
    fuzz/fuzz_cfg >/dev/null; then
	meson test -C "$FUZZ_BUILD" --print-errorlogs --num-processes 2 \
	    --no-rebuild --suite fuzz-smoke
	python3 scripts/test-summary.py "$FUZZ_BUILD/meson-logs/testlog.json" \
	    fuzz >> "$SHAREMIG_TEST_SUMMARY"
else
	echo "fuzz build failed"
	echo "fuzz-build FAIL" >> "$SHAREMIG_TEST_SUMMARY"
fi

python3 scripts/test-summary.py --total "$SHAREMIG_TEST_SUMMARY"
