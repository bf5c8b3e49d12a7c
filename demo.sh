#!/bin/bash
# The demo: two simulated Xen hosts on this machine, each with its own
# sharemig-sourced and sharemig-destd (mutual TLS 1.3), a few guests booted
# from the same image on both; two running guests migrate from host A to
# host B, one the classic way (--dedup none) and one sharing-aware
# (--dedup all); the savings are printed.  Installs what is missing and
# builds first.  State lives under $SHAREMIG_DEMO_DIR (default: a fresh
# directory in /dev/shm or /tmp), removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
./scripts/build.sh

B=$PWD/build/src
SIMHV=$B/simhv/simhv
PAGES=${PAGES:-32768}		# 128 MiB guests
SHARE=${SHARE:-0.6}
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
D=${SHAREMIG_DEMO_DIR:-$(mktemp -d "$base/sharemig-demo.XXXXXX")}
mkdir -p "$D"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for h in a b; do
		for g in $("$SIMHV" list --state-dir "$D/$h" --json 2>/dev/null |
		    python3 -c 'import json,sys; print(" ".join(d["name"] for d in json.load(sys.stdin)))' 2>/dev/null); do
			"$SIMHV" destroy --state-dir "$D/$h" "$g" >/dev/null 2>&1 || true
		done
	done
	[ "${KEEP:-0}" = 1 ] || rm -rf "$D"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bash tests/gen_certs.sh "$D/certs" >/dev/null
PA=$(port); PB=$(port)
start_host() {	# name port cert
	local h=$1 p=$2 c=$3
	mkdir -p "$D/$h"
	"$B/destd/sharemig-destd" --backend sim --state-dir "$D/$h" \
	    --listen "127.0.0.1:$p" --control "$D/$h/destd.sock" \
	    --tls-cert "$D/certs/$c.pem" --tls-key "$D/certs/$c.key" \
	    --tls-ca "$D/certs/ca.pem" --simhv "$SIMHV" \
	    --host-name "host-$h" >"$D/$h/destd.log" 2>&1 &
	pids+=($!)
	"$B/sourced/sharemig-sourced" --backend sim --state-dir "$D/$h" \
	    --control "$D/$h/sourced.sock" --index "$D/$h/destd.sock" \
	    --tls-cert "$D/certs/$c.pem" --tls-key "$D/certs/$c.key" \
	    --tls-ca "$D/certs/ca.pem" --simhv "$SIMHV" \
	    --host-name "host-$h" >"$D/$h/sourced.log" 2>&1 &
	pids+=($!)
}
start_host a "$PA" a
start_host b "$PB" b
for s in "$D/a/destd.sock" "$D/a/sourced.sock" "$D/b/destd.sock" "$D/b/sourced.sock"; do
	for _ in $(seq 100); do [ -S "$s" ] && break; sleep 0.05; done
done

echo "== two simulated hosts: A ($D/a) and B ($D/b, listening on 127.0.0.1:$PB)"
echo "== booting guests from one image (micro profile, ${SHARE} of each guest's pages from the image, $((PAGES / 256)) MiB each)"
for g in web1 web2 cache1; do
	"$SIMHV" create --state-dir "$D/a" --name "$g" --pages "$PAGES" \
	    --profile micro --share "$SHARE" --seed 42
	"$SIMHV" start --state-dir "$D/a" "$g"
done
for g in web3 web4; do
	"$SIMHV" create --state-dir "$D/b" --name "$g" --pages "$PAGES" \
	    --profile micro --share "$SHARE" --seed 42
	"$SIMHV" start --state-dir "$D/b" "$g"
done
M="$B/migratectl/migratectl"
"$M" --control "$D/a/destd.sock" index-sync >/dev/null
"$M" --control "$D/b/destd.sock" index-sync >/dev/null
echo "== host A:"; "$M" --control "$D/a/sourced.sock" list
echo "== host B index:"
"$M" --control "$D/b/destd.sock" --json index | python3 -c '
import json, sys
h = json.load(sys.stdin)["host"]
print("   %d pages indexed, %d shared (%.0f%%), %.1f bytes per page" % (
    h["pages"], h["shared_pages"], 100.0 * h["shared_pages"] / max(1, h["pages"]),
    h["bytes"] / max(1, h["pages"])))'

echo "== migrating web1 A -> B, classic pre-copy (--dedup none), while it runs"
"$M" --control "$D/a/sourced.sock" migrate web1 "127.0.0.1:$PB" \
    --dedup none --verify --wait --json > "$D/none.json"
echo "== migrating web2 A -> B, sharing-aware (--dedup all), while it runs"
"$M" --control "$D/a/sourced.sock" migrate web2 "127.0.0.1:$PB" \
    --dedup all --verify --wait --json > "$D/all.json"
sleep 0.5
python3 - "$D/none.json" "$D/all.json" <<'PY'
import json, sys
n, a = (json.load(open(p)) for p in sys.argv[1:3])
def row(k, fmt="%d"):
    x, y = n[k], a[k]
    r = ("%.1f%%" % (100.0 * (1 - y / x))) if x else "-"
    print("   %-14s %14s %14s   %s" % (k, fmt % x, fmt % y, r))
print("   %-14s %14s %14s   %s" % ("", "--dedup none", "--dedup all", "saved"))
for k in ("bytes_wire", "pages_data"):
    row(k)
print("   %-14s %14d %14d" % ("pages_ref", n["pages_ref"], a["pages_ref"]))
for k in ("total_ms", "downtime_ms", "cpu_source_s", "cpu_dest_s"):
    row(k, "%.3f" if k.startswith("cpu") else "%.1f")
print("   (loopback: the link is not the bottleneck here, the CPU is, so")
print("   time and CPU barely move; on a 1 Gbit/s link time follows the")
print("   bytes: see bench/run and docs/BENCHMARKS.md)")
for j, name in ((n, "web1"), (a, "web2")):
    ok = j["status"] == "completed" and \
        j["memory_sha256_source"] == j["memory_sha256_dest"]
    print("   %s: %s, memory %s" % (name, j["status"],
          "identical on both ends" if ok else "DIFFERS"))
    if not ok:
        sys.exit(1)
PY
for g in web1 web2; do
	printf "   %s on host B: " "$g"
	"$SIMHV" check --state-dir "$D/b" "$g" | tr '\n' ' '; echo
done
echo "== host B now runs:"; "$M" --control "$D/b/sourced.sock" list
