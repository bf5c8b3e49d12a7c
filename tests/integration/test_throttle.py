#!/usr/bin/env python3
"""The bandwidth cap and auto-converge, with real daemons over real TLS.

  - cap: a 64 MiB guest sent in full (--dedup none) at --bandwidth 8M
    takes at least (bytes - burst - one batch) / cap seconds; the JSON
    carries the cap.  Only lower bounds on time: a slow machine cannot
    make them fail.
  - set-bandwidth: lifting the cap of a running migration lets it finish
    long before the old cap would have;
  - auto-converge: a writer guest whose hot set cannot go within the
    downtime target at the cap stops without converging when it is off,
    and converges (smaller final dirty set, within the target) with it;
    the guest then runs unthrottled on the destination;
  - a cancelled migration leaves the guest running unthrottled on the
    source; so does a sourced killed while the guest is throttled, once
    it restarts and reads its journal.
"""

import json
import os
import signal
import time

from harness import Cluster, Runner, check, wait_until

MIB = 1 << 20
PAGES = 16384                  # 64 MiB
BATCH = 256 * 4096 + 4096      # one PAGE_DATA record, header included
RATE = 20000                   # writer guest: page writes per second


def burst(cap):
    """The token bucket's size (include/pace.h)."""
    return max(cap // 50, 64 << 10)


def writes_reach(host, name, n, timeout=10):
    """The guest writes n more pages within timeout (unthrottled it takes
    n / RATE seconds; at the 99% throttle, 100 times as long)."""
    w0 = host.status(name)["writes"]
    return wait_until(lambda: host.status(name)["writes"] - w0 >= n,
                      timeout, 0.05)


def job(host, jid):
    p = host.ctl("status", str(jid), "--json")
    check(p.returncode == 0, "status %d: %s%s" % (jid, p.stdout, p.stderr))
    return json.loads(p.stdout)


def start(host, name, dest, *opts):
    p = host.ctl("migrate", name, dest.addr, "--json", *opts)
    check(p.returncode == 0, "migrate: %s%s" % (p.stdout, p.stderr))
    return json.loads(p.stdout)["id"]


def cap_lower_bound(a, b):
    cap = 8 * MIB
    a.create("capped", PAGES, share=0.5, seed=21)
    rc, out = a.migrate("capped", b, "--dedup", "none", "--bandwidth",
                        "8M", "--verify")
    check(rc == 0 and out["status"] == "completed", "%d %r" % (rc, out))
    check(out["bandwidth"] == cap, "bandwidth %r" % out.get("bandwidth"))
    check(out["auto_converge"] is False and out["throttle_pct"] == 0,
          "auto-converge fields %r" % out)
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "I1: digests differ: %r" % out)
    q = out["bytes_queued"]
    check(q >= PAGES * 4096, "only %d bytes queued" % q)
    secs = out["total_ms"] / 1000.0
    # Every byte was charged to the bucket: at most burst + cap * t +
    # one batch could go in t seconds.
    least = (q - burst(cap) - BATCH) / cap
    check(secs >= least, "%d bytes in %.2f s: faster than the %d B/s cap "
          "allows (%.2f s at least)" % (q, secs, cap, least))
    print("     cap 8 MiB/s: %d bytes in %.2f s (>= %.2f s), %.2f MiB/s"
          % (q, secs, least, q / secs / MIB))


def cap_lifted(a, b):
    a.create("lifted", PAGES, share=0.5, seed=22)
    jid = start(a, "lifted", b, "--dedup", "none", "--bandwidth", "2M")
    # At 2 MiB/s, 64 MiB would take 32 s; lift the cap after a second.
    time.sleep(1)
    check(job(a, jid)["status"] not in ("completed", "failed"),
          "ended under a 2 MiB/s cap within a second")
    p = a.ctl("set-bandwidth", str(jid), "0", "--json")
    check(p.returncode == 0, "set-bandwidth: %s%s" % (p.stdout, p.stderr))
    rep = json.loads(p.stdout)
    check(rep.get("ok") and rep.get("bandwidth") == 0, "reply %r" % rep)
    p = a.ctl("wait", str(jid), "--json")
    out = json.loads(p.stdout)
    check(p.returncode == 0 and out["status"] == "completed", "%r" % out)
    check(out["bandwidth"] == 0, "bandwidth %r" % out["bandwidth"])
    check(out["total_ms"] < 20000, "took %.0f ms: the cap stayed" %
          out["total_ms"])
    # A job that has ended cannot be changed; bad rates are usage errors.
    p = a.ctl("set-bandwidth", str(jid), "1M")
    check(p.returncode == 4 and "already ended" in p.stderr,
          "set-bandwidth after the end: %d %s" % (p.returncode, p.stderr))
    for bad in ("8Mbit", "-1", "1.5M", ""):
        p = a.ctl("set-bandwidth", str(jid), bad)
        check(p.returncode == 2, "RATE %r accepted: %s" % (bad, p.stderr))
    p = a.ctl("migrate", "x", b.addr, "--bandwidth", "fast")
    check(p.returncode == 2 and "not a rate" in p.stderr,
          "--bandwidth fast: %d %s" % (p.returncode, p.stderr))


# The writer's hot set is 10% of its data pages, 1638 here: 400 ms of
# transfer at 16 MiB/s, far above a 100 ms downtime target.
CONVERGE = ["--dedup", "none", "--bandwidth", "16M", "--downtime-ms",
            "100", "--max-iterations", "40"]


def converge(a, b):
    cap = 16 * MIB
    a.create("noac", PAGES, profile="writer", rate=RATE, seed=3)
    a.create("ac", PAGES, profile="writer", rate=RATE, seed=3)
    rc, off = a.migrate("noac", b, *CONVERGE)
    check(rc == 0 and off["status"] == "completed", "%d %r" % (rc, off))
    rc, on = a.migrate("ac", b, "--auto-converge", *CONVERGE)
    check(rc == 0 and on["status"] == "completed", "%d %r" % (rc, on))
    for k in ("bytes_queued", "iterations", "dirty_pages", "downtime_ms",
              "throttle_pct"):
        print("     %-13s off %12s   on %12s" % (k, off[k], on[k]))

    def est_ms(out):
        return out["dirty_pages"] * 4096 * 1000.0 / cap
    check(off["throttle_pct"] == 0 and not off["auto_converge"],
          "throttled without --auto-converge: %r" % off)
    check(est_ms(off) > 100, "converged without auto-converge (%d pages "
          "dirty): the test does not test" % off["dirty_pages"])
    check(on["auto_converge"] is True and on["throttle_pct"] >= 20,
          "auto-converge did not throttle: %r" % on)
    check(est_ms(on) <= 100, "did not converge: %d pages dirty at the "
          "end (%.0f ms at the cap)" % (on["dirty_pages"], est_ms(on)))
    check(on["dirty_pages"] < off["dirty_pages"], "final dirty set not "
          "smaller: %d vs %d" % (on["dirty_pages"], off["dirty_pages"]))
    # The destination's guest is not throttled and writes at full rate.
    st = b.status("ac")
    check(st["throttle_pct"] == 0, "throttled on the destination: %r" % st)
    check(wait_until(lambda: b.status("ac").get("resume_check") == "ok",
                     30, 0.05), "resume self-check: %r" % b.status("ac"))
    check(writes_reach(b, "ac", 3000), "slow on the destination: %r" %
          b.status("ac"))


def throttled_job(a, b, name):
    """A migration that throttles and cannot converge: returns its id
    once the guest is throttled (seen in the domain itself)."""
    # A slow link (1 MiB/s) makes every round last over a second, so the
    # job is still iterating when the caller acts on it: with 4 MiB/s a
    # loaded machine (an ASan build) went from 20% to 99% and the
    # stop-and-copy within the caller's reaction time.
    a.create(name, 2048, profile="writer", rate=RATE, seed=4)
    jid = start(a, name, b, "--auto-converge", "--dedup", "none",
                "--bandwidth", "1M", "--downtime-ms", "1",
                "--max-iterations", "1000")
    check(wait_until(lambda: a.status(name)["throttle_pct"] >= 20, 60,
                     0.02), "never throttled: %r %r" % (a.status(name),
                                                        job(a, jid)))
    check(job(a, jid)["status"] == "iterating", "%r" % job(a, jid))
    return jid


def cancel_unthrottles(a, b):
    jid = throttled_job(a, b, "cancelled")
    p = a.ctl("cancel", str(jid))
    check(p.returncode == 0, "cancel: %s" % p.stderr)
    out = job(a, jid)
    check(out["status"] == "cancelled", "%r" % out)
    check(out["throttle_pct"] >= 20, "throttle_pct %r" % out)
    st = a.status("cancelled")
    check(st["throttle_pct"] == 0 and not st["paused"] and st["running"],
          "after cancel: %r" % st)
    check(writes_reach(a, "cancelled", 3000), "still slow: %r" % st)
    check("cancelled" not in b.domains(), "left on the destination")


def restart_unthrottles(a, b):
    jid = throttled_job(a, b, "orphan")
    journal = os.path.join(a.dir, "sourced-journal", "orphan.json")
    with open(journal) as f:
        j = json.load(f)
    check(j.get("throttled") is True and "throttle_saved" in j,
          "journal lacks the throttle: %r" % j)
    p = a.procs["sourced"]
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(a.status("orphan")["throttle_pct"] >= 20, "not throttled")
    a.start_sourced("a")
    check(wait_until(lambda: a.ctl("status").returncode == 0, 20, 0.05),
          "sourced did not come back")
    st = a.status("orphan")
    check(st["throttle_pct"] == 0 and st["running"] and not st["logdirty"],
          "after restart: %r" % st)
    check("removed the auto-converge throttle" in a.log("sourced"),
          "recovery did not say so")
    check(not os.path.exists(journal), "journal entry left")
    check(writes_reach(a, "orphan", 3000), "still slow: %r" % st)
    del jid


def main():
    r = Runner("integration_throttle")
    c = Cluster("throttle")
    try:
        a = c.host("host-a")
        b = c.host("host-b")
        a.start("a")
        b.start("b")
        r.case("bandwidth cap: time >= bytes / cap", cap_lower_bound, a, b)
        r.case("set-bandwidth lifts the cap of a running job", cap_lifted,
               a, b)
        r.case("auto-converge: converges where plain pre-copy does not",
               converge, a, b)
        r.case("cancel: the source guest runs unthrottled",
               cancel_unthrottles, a, b)
        r.case("sourced killed while throttling: restart unthrottles",
               restart_unthrottles, a, b)
        if r.failed:
            c.dump_logs()
    finally:
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
