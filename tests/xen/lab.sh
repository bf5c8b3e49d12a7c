#!/bin/sh
# lab.sh - the emulated Xen lab: one Xen 4.17 host under QEMU TCG with a
# PVH domU, and sharemig's Xen backend exercised inside its dom0.
#
#   tests/xen/lab.sh smoke     list/open/map/log-dirty/pause/context/config
#   tests/xen/lab.sh copy      smoke, then create/fill/context_set/commit of
#                              a copy of the guest on the same host
#   tests/xen/lab.sh xlpair    two emulated hosts joined by -netdev socket:
#                              stock `xl migrate` of the guest from one to
#                              the other, bytes on the link recorded
#   tests/xen/lab.sh pair      two emulated hosts: sharemig-sourced on A,
#                              sharemig-destd on B (TLS) with a same-image
#                              guest running on B; migrates a fresh guest
#                              with --dedup all --verify, another with
#                              --dedup none --verify, a third with stock
#                              `xl migrate`; PASS/FAIL per check, a table
#                              of bytes, pages and times.  PAIR_RUNS picks
#                              the runs: "all none xl" (the default, the
#                              whole evaluation) or "all" (the meson
#                              suite's xen_lab_pair, run by CI)
#   tests/xen/lab.sh shell     boot to a dom0 shell on the terminal
#
# Exit status 0 when the serial log has the PASS line(s).  Needs root only
# for apt-get (lab-image.sh installs the host tools when missing).
# Environment: SHAREMIG_XEN_CACHE (image cache, default build/xen-lab),
# SHAREMIG_BUILD (a meson build dir whose binaries are copied into dom0,
# default build-xen; optional; required for pair), LAB_TIMEOUT (seconds;
# default 600, 1200 for xlpair, 3600 for pair),
# SHAREMIG_XEN_DEBUG=1 (libxc/libxl messages from the backend),
# PAIR_MIGRATE_ARGS (pair only: extra `migratectl migrate` options for
# both sharemig runs, e.g. "--max-iterations 1"; default none),
# PAIR_RUNS (pair only: which of all, none, xl to run, in that order;
# default "all none xl"),
# PAIR_STALL, PAIR_GRACE, PAIR_RETRY_MIN (xlpair and pair: see
# watch_pair; 240, 420 and 900 s).
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$SRC/tests/xen
CACHE=${SHAREMIG_XEN_CACHE:-$SRC/build/xen-lab}
BUILD=${SHAREMIG_BUILD:-$SRC/build-xen}
MODE=${1:-smoke}
case "$MODE" in
xlpair)	TIMEOUT=${LAB_TIMEOUT:-1200} ;;
pair)	TIMEOUT=${LAB_TIMEOUT:-3600} ;;
*)	TIMEOUT=${LAB_TIMEOUT:-600} ;;
esac
export SHAREMIG_XEN_CACHE=$CACHE

log() { echo "lab: $*" >&2; }

"$HERE/lab-image.sh"
R=$CACHE/root
W=$CACHE/work-$MODE
rm -rf "$W"
mkdir -p "$W/dom0" "$W/domu"

# ---- programs ----
XENPC="xencontrol xenforeignmemory xenstore xenlight xentoollog"
if ! pkg-config --exists $XENPC; then
	log "installing libxen-dev"
	DEBIAN_FRONTEND=noninteractive apt-get install -y \
	    --no-install-recommends libxen-dev gcc libc6-dev pkg-config \
	    >/dev/null
fi
# shellcheck disable=SC2046
cc -O2 -g -Wall -DHAVE_XEN=1 -D_GNU_SOURCE -I"$SRC/include" \
    -o "$W/smoke" "$HERE/smoke.c" "$SRC/src/common/hv_xen.c" \
    $(pkg-config --cflags --libs $XENPC)
cc -O2 -static -o "$W/guest-dirty" "$HERE/guest-dirty.c"

# ---- domU initramfs: busybox + /dirty ----
D=$W/domu
mkdir -p "$D/bin" "$D/proc" "$D/dev"
cp "$R/bin/busybox" "$D/bin/busybox"
cp "$HERE/domu-init" "$D/init"
cp "$W/guest-dirty" "$D/dirty"
(cd "$D" && find . | cpio -o -H newc --quiet | gzip -1) > "$W/domu.cpio.gz"

# ---- dom0 initramfs ----
Z=$W/dom0
LIBPATH=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu
mkdir -p "$Z/bin" "$Z/lab" "$Z/lib/lab-modules" "$Z/etc" \
    "$Z/usr/lib/xen-4.17/bin" "$Z/usr/bin" "$Z/lib64"
cp "$R/bin/busybox" "$Z/bin/busybox"
cp "$HERE/dom0-init" "$Z/init"
cp "$CACHE"/modules/* "$Z/lib/lab-modules/"
cp -a "$R/etc/xen" "$Z/etc/xen"
XENBINS="xl xenstored xenconsoled xen-init-dom0 libxl-save-helper xenconsole"
for b in $XENBINS; do
	cp "$R/usr/lib/xen-4.17/bin/$b" "$Z/usr/lib/xen-4.17/bin/"
done
cp "$R"/usr/bin/xenstore* "$Z/usr/bin/"
cp "$W/smoke" "$CACHE/vmlinuz" "$W/domu.cpio.gz" "$HERE/domu.cfg.in" \
    "$Z/lab/"
# The project's own binaries, when a build tree has them.
for b in src/sourced/sharemig-sourced src/destd/sharemig-destd \
    src/migratectl/migratectl src/simhv/simhv; do
	[ -x "$BUILD/$b" ] && cp "$BUILD/$b" "$Z/usr/bin/"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$Z/etc/passwd"

# TLS for the pair mode: tests/gen_certs.sh's CA, and two host
# certificates it signs for the lab's addresses (its own host
# certificates name 127.0.0.1 and localhost only, and the source checks
# the destination's IP against the certificate).
if [ "$MODE" = pair ]; then
	for b in src/sourced/sharemig-sourced src/destd/sharemig-destd \
	    src/migratectl/migratectl; do
		[ -x "$BUILD/$b" ] || { log "pair needs $BUILD/$b" \
		    "(SHAREMIG_BUILD: a meson build dir with -Dxen)"; exit 1; }
	done
	CERTS=$CACHE/certs
	sh "$SRC/tests/gen_certs.sh" "$CERTS"
	for h in a:10.0.0.1 b:10.0.0.2; do
		n=host-${h%%:*}
		[ -s "$CERTS/$n.pem" ] && continue
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		    -nodes -keyout "$CERTS/$n.key" -out "$CERTS/$n.csr" \
		    -subj "/CN=lab-$n" 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:FALSE" \
		    "keyUsage=critical,digitalSignature" \
		    "extendedKeyUsage=serverAuth,clientAuth" \
		    "subjectAltName=IP:${h#*:}" > "$CERTS/$n.ext"
		openssl x509 -req -in "$CERTS/$n.csr" -CA "$CERTS/ca.pem" \
		    -CAkey "$CERTS/ca.key" -CAcreateserial \
		    -CAserial "$CERTS/lab.srl" -days 3650 \
		    -extfile "$CERTS/$n.ext" -out "$CERTS/$n.pem" 2>/dev/null
	done
	mkdir -p "$Z/lab/certs"
	cp "$CERTS/ca.pem" "$CERTS"/host-?.pem "$CERTS"/host-?.key \
	    "$Z/lab/certs/"
fi

# Shared libraries: the ldd closure of every dynamic binary, resolved
# against the unpacked packages first, then the build host (same Debian).
copy_lib() {
	src=$1
	dst=$Z$src
	[ -e "$dst" ] && return 0
	mkdir -p "$(dirname "$dst")"
	cp -L "$src" "$dst"
}
for f in "$Z"/usr/lib/xen-4.17/bin/* "$Z"/usr/bin/* "$Z/lab/smoke"; do
	LD_LIBRARY_PATH=$LIBPATH ldd "$f" 2>/dev/null | awk '/=> \// { print $3 }
	    /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
		case "$lib" in
		"$R"/*)	rel=${lib#"$R"}
			mkdir -p "$(dirname "$Z$rel")"
			cp -L "$lib" "$Z$rel" ;;
		*)	copy_lib "$lib" ;;
		esac
	done
done
# xl aborts on pthread_cancel without libgcc_s (dlopen'd, so no ldd line).
copy_lib /lib/x86_64-linux-gnu/libgcc_s.so.1
(cd "$Z" && find . | cpio -o -H newc --quiet | gzip -1) > "$W/dom0.cpio.gz"
log "dom0 initramfs $(du -h "$W/dom0.cpio.gz" | cut -f1)"

# ---- boot ----
SERIAL=$W/serial.log
case "$MODE" in
shell)
	exec qemu-system-x86_64 -accel tcg,thread=multi \
	    -cpu qemu64,+svm,+npt -m 2048 -smp 2 -nographic -no-reboot \
	    -kernel "$CACHE/xen.elf" \
	    -append "console=com1 dom0_mem=512M,max:512M" \
	    -initrd "$CACHE/vmlinuz console=hvc0 sharemig.mode=shell,$W/dom0.cpio.gz"
	;;
esac
boot() {	# boot SERIAL CMDLINE-EXTRA QEMU-ARGS...
	serial=$1 extra=$2
	shift 2
	timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi \
	    -cpu qemu64,+svm,+npt -m 2048 -smp 2 -display none -no-reboot \
	    -serial "file:$serial" -monitor none \
	    -kernel "$CACHE/xen.elf" \
	    -append "console=com1 dom0_mem=512M,max:512M" \
	    -initrd "$CACHE/vmlinuz console=hvc0 $extra ${SHAREMIG_XEN_DEBUG:+SHAREMIG_XEN_DEBUG=1},$W/dom0.cpio.gz" \
	    "$@" </dev/null
}
show() {
	grep -a -E '^(smoke|copy|lab-dom0|SHAREMIG|sourced|destd)' "$1" |
	    tr -d '\r' >&2 ||
	    true
}
# Silence watch for the two-host modes: each dom0 prints a heartbeat
# every 20 s (dom0-init), so a serial log that stops growing for
# PAIR_STALL s (default 240) is an emulator that stopped running (seen
# once in the smoke: dom0 silent for 9 minutes, no kernel message).
# Once the source host is done, the destination gets PAIR_GRACE s
# (default 420) to finish, so that a destination left waiting for a run
# the source never started cannot hold the lab to its timeout.  Sets
# stopped (empty, or why the hosts were stopped), stalled (1 when that
# was silence: worth a second boot), qsrc and qdst (exit statuses).
kill_pair() {
	pkill -f -- "serial file:$W/serial-" 2>/dev/null || true
	sleep 10
	pkill -KILL -f -- "serial file:$W/serial-" 2>/dev/null || true
}
watch_pair() {	# watch_pair SRC-PID DST-PID
	wsrc=$1 wdst=$2
	now=$(date +%s)
	ssz=-1 dsz=-1 sat=$now dat=$now srcend=
	while kill -0 "$wdst" 2>/dev/null || kill -0 "$wsrc" 2>/dev/null; do
		sleep 5
		now=$(date +%s)
		sz=$(stat -c %s "$W/serial-src.log" 2>/dev/null || echo 0)
		[ "$sz" = "$ssz" ] || { ssz=$sz; sat=$now; }
		sz=$(stat -c %s "$W/serial-dst.log" 2>/dev/null || echo 0)
		[ "$sz" = "$dsz" ] || { dsz=$sz; dat=$now; }
		if kill -0 "$wsrc" 2>/dev/null; then
			if [ $((now - sat)) -ge "${PAIR_STALL:-240}" ]; then
				stopped="source host silent for $((now - sat)) s"
				stalled=1
			fi
		else
			[ -n "$srcend" ] || srcend=$now
			if [ $((now - srcend)) -ge "${PAIR_GRACE:-420}" ]; then
				stopped="destination still running $((now - srcend)) s after the source host ended"
			fi
		fi
		if kill -0 "$wdst" 2>/dev/null &&
		    [ $((now - dat)) -ge "${PAIR_STALL:-240}" ]; then
			stopped="destination host silent for $((now - dat)) s"
			stalled=1
		fi
		if [ -n "$stopped" ]; then
			log "stopping both hosts: $stopped"
			kill_pair
			break
		fi
	done
}
run_pair() {	# run_pair SECONDS
	TIMEOUT=$1
	stopped= stalled=
	PORT=$((${LAB_PORT:-$((20000 + $$ % 20000))} + attempt - 1))
	log "booting two emulated hosts joined on 127.0.0.1:$PORT" \
	    "(at most $TIMEOUT s)"
	rm -f "$W/serial-src.log" "$W/serial-dst.log"
	boot "$W/serial-dst.log" \
	    "sharemig.mode=$m-dst sharemig.ip=10.0.0.2 $pruns" \
	    -netdev "socket,id=n0,listen=127.0.0.1:$PORT" \
	    -device e1000,netdev=n0,mac=52:54:00:00:00:02 &
	dst=$!
	sleep 3
	boot "$W/serial-src.log" \
	    "sharemig.mode=$m-src sharemig.ip=10.0.0.1 $pruns $margs" \
	    -netdev "socket,id=n0,connect=127.0.0.1:$PORT" \
	    -device e1000,netdev=n0,mac=52:54:00:00:00:01 &
	src=$!
	watch_pair $src $dst
	qsrc=0; wait $src || qsrc=$?
	qdst=0; wait $dst || qdst=$?
}
start=$(date +%s)
rc=0
case "$MODE" in
xlpair|pair)
	[ "$MODE" = pair ] && m=pair || m=xl
	# Extra migratectl options reach dom0 on its command line, '+'
	# for spaces (a comma would split QEMU's -initrd module list).
	margs=$(printf '%s' "${PAIR_MIGRATE_ARGS:-}" | tr ' ' +)
	[ -n "$margs" ] && margs="sharemig.migargs=$margs"
	# The pair's runs, in the order all, none, xl (dom0-init and
	# pair-report.py map them to the guests mig1, mig2, mig3).
	runs=
	for r in all none xl; do
		case " ${PAIR_RUNS:-all none xl} " in
		*" $r "*) runs="$runs $r" ;;
		esac
	done
	for r in ${PAIR_RUNS:-}; do
		case "$r" in
		all|none|xl) ;;
		*) log "PAIR_RUNS: unknown run '$r' (all, none, xl)"; exit 2 ;;
		esac
	done
	runs=${runs# }
	[ -n "$runs" ] || { log "PAIR_RUNS names no run"; exit 2; }
	pruns="sharemig.runs=$(printf '%s' "$runs" | tr ' ' +)"
	[ "$MODE" = pair ] && log "pair runs: $runs"
	# LAB_TIMEOUT bounds the whole mode, retry included.  An emulator
	# that stalls (no dom0 heartbeat for PAIR_STALL s) gets both hosts
	# booted once more when PAIR_RETRY_MIN s are left.
	deadline=$((start + TIMEOUT))
	for attempt in 1 2; do
		run_pair $((deadline - $(date +%s)))
		log "emulated hosts ran $(( $(date +%s) - start )) s" \
		    "(source qemu $qsrc, destination qemu $qdst)"
		left=$((deadline - $(date +%s)))
		[ -n "$stalled" ] && [ $attempt = 1 ] &&
		    [ $left -ge "${PAIR_RETRY_MIN:-900}" ] || break
		log "source:"; show "$W/serial-src.log"
		log "destination:"; show "$W/serial-dst.log"
		mv "$W/serial-src.log" "$W/serial-src-stalled.log"
		mv "$W/serial-dst.log" "$W/serial-dst-stalled.log"
		log "RETRY: $stopped (logs: $W/serial-*-stalled.log);" \
		    "booting both hosts again with $left s left"
	done
	log "source:"; show "$W/serial-src.log"
	log "destination:"; show "$W/serial-dst.log"
	if [ "$MODE" = pair ]; then
		python3 "$HERE/pair-report.py" --runs "$runs" \
		    "$W/serial-src.log" "$W/serial-dst.log" "$W/report.json" \
		    >"$W/report.txt" ||
		    rc=1
		cat "$W/report.txt"
	else
		grep -a -q 'SHAREMIG-XL-MIGRATE: PASS' "$W/serial-src.log" ||
		    rc=1
		grep -a -q 'SHAREMIG-XL-RECEIVE: PASS' "$W/serial-dst.log" ||
		    rc=1
	fi
	;;
*)
	# An emulator that stalls (TCG; once seen in CI: dom0 silent for
	# 9 minutes in the middle of a pfn-space scan, no kernel message)
	# gives no verdict before the timeout; then boot once more, and
	# say so.  A verdict, PASS or FAIL, is final.
	for attempt in 1 2; do
		log "booting the emulated host (mode $MODE), serial log $SERIAL"
		qrc=0
		boot "$SERIAL" "sharemig.mode=$MODE" || qrc=$?
		[ $qrc = 0 ] || log "qemu exited with $qrc"
		log "emulated host ran $(( $(date +%s) - start )) s"
		grep -a -q -E 'SHAREMIG-XEN-SMOKE: (PASS|FAIL)' "$SERIAL" &&
		    break
		[ $qrc = 124 ] && [ $attempt = 1 ] || break
		show "$SERIAL"
		mv "$SERIAL" "$W/serial-stalled.log"
		log "RETRY: no verdict within $TIMEOUT s (emulator stalled;" \
		    "its log: $W/serial-stalled.log); booting again"
		start=$(date +%s)
	done
	show "$SERIAL"
	grep -a -q 'SHAREMIG-XEN-SMOKE: PASS' "$SERIAL" || rc=1
	if [ "$MODE" = copy ]; then
		grep -a -q 'SHAREMIG-XEN-COPY: PASS' "$SERIAL" || rc=1
	fi
	;;
esac
if [ $rc != 0 ] && [ -s "$W/serial-src.log" ]; then
	# The lines a CI log's tail keeps: the checks that failed, and
	# where each host got to.
	grep -E '^FAIL' "$W/report.txt" 2>/dev/null | head -n 3 | cut -c1-200 >&2
	for h in src dst; do
		log "last lines of $h:"
		grep -a -E '^(lab-dom0|SHAREMIG)' "$W/serial-$h.log" |
		    tail -n 5 | tr -d '\r' | cut -c1-240 >&2
	done
	[ -z "${stopped:-}" ] || log "hosts stopped: $stopped"
fi
[ $rc -eq 0 ] && log "PASS ($MODE)" || log "FAIL ($MODE): see $W"
exit $rc
