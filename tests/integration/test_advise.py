#!/usr/bin/env python3
"""Sharing-aware placement: `migratectl advise DOMAIN HOST...` asks each
candidate destination how much of the guest's content its host already
holds (a dry run of the hash negotiation) and ranks them.  Hosts are built
with known sharing: B holds the guest's image at 80%, C at 30%, D nothing.
Nothing may move and nothing may be left behind."""

import json
import os

from harness import Cluster, Runner, check

PAGES = 8192


def ranking(c):
    a = c.host("host-a")
    hosts = {n: c.host("host-" + n) for n in "bcd"}
    a.start("a")
    for h in hosts.values():
        h.start("b")
    a.create("app", PAGES, share=0.8, seed=41)
    hosts["b"].create("img-b", PAGES, share=0.8, seed=41)
    hosts["c"].create("img-c", PAGES, share=0.3, seed=41)
    hosts["d"].create("img-d", PAGES, share=0.8, seed=99)
    for h in hosts.values():
        h.scan_wait()
    order = [hosts["d"], hosts["b"], hosts["c"]]
    p = a.ctl("--json", "advise", "app", *[h.addr for h in order])
    check(p.returncode == 0, "advise: %d %s %s" % (p.returncode, p.stdout,
                                                  p.stderr))
    rep = json.loads(p.stdout)
    cands = rep["candidates"]
    got = [x["destination"] for x in cands]
    want = [hosts[n].addr for n in "bcd"]
    check(got == want, "ranking %r, expected %r (%r)" % (got, want, cands))
    share = {x["destination"]: x["sharing"] for x in cands}
    check(abs(share[hosts["b"].addr] - 0.8) <= 0.03, "B: %r" % cands)
    check(abs(share[hosts["c"].addr] - 0.3) <= 0.03, "C: %r" % cands)
    check(share[hosts["d"].addr] <= 0.01, "D: %r" % cands)
    for x in cands:
        check(x["rank"] == got.index(x["destination"]) + 1, "rank %r" % x)
    # A dry run: the guest still runs on A, nothing arrived anywhere.
    check("app" in a.domains() and a.status("app")["running"],
          "guest moved or stopped")
    for h in hosts.values():
        check("app" not in h.domains(), "guest arrived on %s" % h.name)
        check(not [f for f in os.listdir(h.dir) if "incoming" in f],
              "leftover on %s" % h.name)
    # The human table lists the best candidate first.
    p = a.ctl("advise", "app", *[h.addr for h in order])
    lines = p.stdout.strip().splitlines()
    check(p.returncode == 0 and hosts["b"].addr in lines[1],
          "table: %s" % p.stdout)
    # An unreachable candidate is reported, the others still ranked.
    p = a.ctl("--json", "advise", "app", hosts["b"].addr, "127.0.0.1:1")
    rep = json.loads(p.stdout)
    check(rep["candidates"][0]["destination"] == hosts["b"].addr and
          rep["candidates"][1]["status"] == "failed",
          "unreachable candidate: %r" % rep)
    # And the real migration to the best one sends what advise predicted.
    rc, out = a.migrate("app", hosts["b"], "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["pages_ref"] >= 0.75 * PAGES, "migration: %r" % out)


def main():
    r = Runner("integration_advise")
    c = Cluster("advise")
    try:
        r.case("advise ranks destinations by content held", ranking, c)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
