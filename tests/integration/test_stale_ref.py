#!/usr/bin/env python3
"""I4: the destination's index is stale by nature.  Pages of a
destination guest are changed behind the index's back (after it was
scanned, before the migration fills from them).  Every such copy must be
rejected by its SHA-256 check and the page obtained from the source
instead; the migrated memory must still equal the source's (I1) and the
guest's self-check must pass.
"""

from harness import Cluster, Runner, check

PAGES = 16384


def stale_fills(c):
    a = c.host("host-a")
    b = c.host("host-b")
    a.start("a")
    b.start("b")
    b.create("img-b", PAGES, share=0.5, seed=21)
    a.create("mig", PAGES, share=0.5, seed=21)
    a.scan_wait()
    b.scan_wait()
    # The scanner will not look again for a minute (harness interval):
    # change 128 pages of img-b now; about half hold image content.
    poked = list(range(0, PAGES, PAGES // 128))
    for pfn in poked:
        b.simhv("poke", "img-b", str(pfn))
    rc, out = a.migrate("mig", b, "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "I1 broken by stale fills: %r" % out)
    check(out["refs_failed_dest"] >= len(poked) // 4,
          "only %d stale copies rejected of ~%d poked image pages" %
          (out["refs_failed_dest"], len(poked) // 2))
    # What was rejected was sent in full instead.
    check(out["pages_have"] <= PAGES // 2 - out["refs_failed_dest"] + 16,
          "stale pages counted as delivered: %r" % out)
    rc, msg = b.selfcheck("mig")
    check(rc == 0, "migrated guest self-check: %s" % msg)


def main():
    r = Runner("integration_stale_ref")
    c = Cluster("stale")
    try:
        r.case("stale index entries are detected and repaired", stale_fills,
               c)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
