#!/usr/bin/env python3
"""Several TCP streams for DATA pages (docs/PROTOCOL.md "Several
streams"), between real daemons over real TLS:
  - a running guest that keeps rewriting its pages (so pages go again in
    later iterations, on a stream other than the one that carried the
    older copy, or as ZERO/REF on the main connection) migrates with
    --streams 4 --verify in each dedup mode: completed, both ends' memory
    digests equal, the guest's own self-check passes on the destination,
    "streams": 4 in the source's JSON and the destination's;
  - --streams 1 sends no JOIN: the destination's session says 1 stream;
  - a destd started with --max-streams 2 grants 2 of the 4 asked;
  - a hostile connection that sends JOIN with a token no session has, or
    JOIN before HELLO, gets ERROR and a closed connection, the daemon
    keeps serving (no session of its own is left in status);
  - killing the destd while a migration with 4 streams is running leaves
    the guest running on the source.
"""

import json
import os
import signal
import struct
import time

from harness import Cluster, Runner, check, wait_until
from test_compress import HDR, HELLO, rec
from test_hostile import connect_raw, no_incoming_left, tls_client

PAGES = 8192           # 32 MiB guests


def dest_session(b, domain):
    st = json.loads(b.ctl("status", "--json", sock=b.destd_sock).stdout)
    for s in reversed(st["sessions"]):
        if s["domain"] == domain:
            return s, st["sessions"]
    raise AssertionError("no destination session for %s: %r" % (domain, st))


def migrate_streams(a, b, dedup):
    name = "st-" + dedup
    # writer: rewrites pages all the time (a hot set and a sweep), so
    # pages are resent across iterations; some pages are shared with
    # other guests (REF), some zero.
    a.create(name, PAGES, profile="writer", rate=5000, seed=11)
    time.sleep(0.3)
    rc, out = a.migrate(name, b, "--dedup", dedup, "--streams", "4",
                        "--verify", "--downtime-ms", "5")
    check(rc == 0 and out["status"] == "completed",
          "%s: exit %d: %r" % (dedup, rc, out))
    check(out.get("streams") == 4, "%s: streams %r" % (dedup,
                                                       out.get("streams")))
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "%s: memory differs" % dedup)
    check(out["iterations"] >= 2, "%s: %d iterations: no page went twice" %
          (dedup, out["iterations"]))
    check(out["bytes_wire"] > out["bytes_data"] * 0.9,
          "%s: bytes_wire %d does not count every stream (data %d)" %
          (dedup, out["bytes_wire"], out["bytes_data"]))
    check(sum(i["pages"] for i in out["iteration_stats"]) > PAGES,
          "%s: no page was resent: %r" % (dedup, out["iteration_stats"]))
    check(name in b.domains() and name not in a.domains(),
          "%s: guest not moved" % dedup)
    time.sleep(0.3)
    rc2, msg = b.selfcheck(name)
    check(rc2 == 0, "%s: guest self-check on the destination: %s" %
          (dedup, msg))
    s, _ = dest_session(b, name)
    check(s["streams"] == 4 and s["status"] == "completed",
          "%s: destination session %r" % (dedup, s))
    print("     %s: %d iterations, %d pages sent, wire %d, %.0f ms" %
          (dedup, out["iterations"],
           sum(i["pages"] for i in out["iteration_stats"]),
           out["bytes_wire"], out["total_ms"]), flush=True)


def one_stream(a, b):
    joined = b.log("destd").count("joined")
    a.create("st-one", 2048, profile="writer", seed=3)
    rc, out = a.migrate("st-one", b, "--streams", "1", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["streams"] == 1, "streams %r" % out["streams"])
    s, _ = dest_session(b, "st-one")
    check(s["streams"] == 1, "destination session %r" % s)
    check(b.log("destd").count("joined") == joined, "a stream joined")


def limited(a, c):
    a.create("st-limited", 4096, profile="writer", seed=4)
    rc, out = a.migrate("st-limited", c, "--streams", "4", "--verify",
                        "--dedup", "none")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["streams"] == 2, "granted %r, destd allows 2" %
          out["streams"])
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "memory differs")
    s, _ = dest_session(c, "st-limited")
    check(s["streams"] == 2, "destination session %r" % s)


JOIN = 17


def hostile_join(c, a, b):
    before = len(dest_session_list(b))
    cases = [
        # a token no session has
        HDR + HELLO + rec(JOIN, b"\x5a" * 16 + struct.pack("<II", 1, 0)),
        # JOIN before HELLO
        HDR + rec(JOIN, b"\0" * 16 + struct.pack("<II", 1, 0)),
        # JOIN with stream index 0 (the main connection): malformed
        HDR + HELLO + rec(JOIN, b"\0" * 16 + struct.pack("<II", 0, 0)),
    ]
    for blob in cases:
        raw = connect_raw(b)
        s = tls_client(c, "a").wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(blob)
        s.settimeout(10)
        got = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except OSError:
            pass
        s.close()
        # The answer: header, HELLO (unless refused before), ERROR (2).
        check(struct.pack("<I", 2) in got, "no ERROR record: %r" % got[:80])
    check("JOIN refused" in b.log("destd"), "no refusal in the log")
    time.sleep(0.2)
    no_incoming_left(b)
    check(b.alive("destd"), "destd died")
    a.create("st-after-hostile", 2048, profile="writer", seed=6)
    rc, out = a.migrate("st-after-hostile", b, "--streams", "4",
                        "--verify")
    check(rc == 0 and out["status"] == "completed" and out["streams"] == 4,
          "next migration: %r" % out)
    # Only real sessions are listed: data streams are not sessions.
    check(len(dest_session_list(b)) <= before + len(cases) + 1,
          "sessions %r" % dest_session_list(b))


def dest_session_list(b):
    st = json.loads(b.ctl("status", "--json", sock=b.destd_sock).stdout)
    check(all(s["status"] != "joined" for s in st["sessions"]),
          "a data stream is listed as a session")
    return st["sessions"]


def kill_destd(a, d):
    # A big guest that rewrites pages fast and a tight bandwidth cap
    # keep the migration running long enough to kill the destination.
    a.create("st-killed", 16384, profile="writer", seed=8)
    p = a.ctl("migrate", "st-killed", d.addr, "--json", "--streams", "4",
              "--bandwidth", "8M", "--dedup", "none")
    check(p.returncode == 0, "migrate: %s %s" % (p.stdout, p.stderr))
    mid = str(json.loads(p.stdout)["id"])

    def streaming():
        st = json.loads(a.ctl("status", mid, "--json").stdout)
        return st["status"] == "iterating" and st["streams"] == 4 and \
            st["pages_data"] > 2000
    wait_until(streaming, 30)
    d.procs["destd"].send_signal(signal.SIGKILL)
    d.procs["destd"].wait()

    def ended():
        st = json.loads(a.ctl("status", mid, "--json").stdout)
        return st["status"] not in ("iterating", "stop-and-copy", "final")
    wait_until(ended, 60)
    st = json.loads(a.ctl("status", mid, "--json").stdout)
    check(st["status"] == "failed", "status %r" % st)
    check("st-killed" in a.domains() and a.status("st-killed")["running"],
          "guest not running on the source")
    rc, msg = a.selfcheck("st-killed")
    check(rc == 0, "self-check on the source: %s" % msg)


def main():
    r = Runner("integration_streams")
    c = Cluster("streams")
    try:
        a = c.host("host-a")
        b = c.host("host-b")
        lim = c.host("host-c", destd_args=["--max-streams", "2"])
        d = c.host("host-d")
        a.start("a")
        b.start("b")
        lim.start("b")
        d.start("b")
        for dedup in ("none", "shared", "all"):
            r.case("4 streams, dedup %s, guest rewriting its pages" % dedup,
                   migrate_streams, a, b, dedup)
        r.case("--streams 1: one connection", one_stream, a, b)
        r.case("destd --max-streams 2 grants 2", limited, a, lim)
        r.case("hostile JOIN refused, destd keeps serving", hostile_join,
               c, a, b)
        r.case("destd killed mid-migration: guest stays on the source",
               kill_destd, a, d)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
