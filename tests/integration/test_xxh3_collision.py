#!/usr/bin/env python3
"""DESIGN I3: XXH3 is change detection only, never proof that two guests'
pages are equal.  A tenant on the destination crafts two different pages
with the same XXH3-64 (a lane pair in the first stripes of XXH3's first
block whose contributions cancel), lets the host index see the first (the
victim's content) and then swaps in the second.  The scanner, seeing an
unchanged fingerprint, keeps the first page's SHA-256 in the index, so a
migration of a victim holding that content is offered the attacker's
page.  It must be rejected by the fill's SHA-256 check and the victim's
page sent instead: the migrated memory equals the source's (I1)."""

import os
import struct

from harness import Cluster, Runner, check

PAGES = 4096
PFN = 100
# The first 16 bytes of XXH3's default secret (kSecret).
KSECRET = bytes([0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe,
                 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c])


def colliding_pages():
    """Two different 4096-byte pages with equal XXH3-64.  Lane 0 of
    stripes 0 and 1 (offsets 0 and 64, secret words 0 and 1): with the low
    32 bits equal to the secret word's, each lane's multiply term is 0,
    and raising one lane's high half by D while lowering the other's by D
    leaves the lane sums unchanged."""
    k1, k2 = struct.unpack("<QQ", KSECRET)
    base = bytearray(os.urandom(4096))
    lo = 0xffffffff
    x1 = (0x1234567 << 32) | (k1 & lo)
    x2 = (0x7654321 << 32) | (k2 & lo)
    d = 0x5a5a5 << 32
    a, b = bytearray(base), bytearray(base)
    a[0:8] = struct.pack("<Q", x1)
    a[64:72] = struct.pack("<Q", x2)
    b[0:8] = struct.pack("<Q", (x1 + d) & (2**64 - 1))
    b[64:72] = struct.pack("<Q", (x2 - d) & (2**64 - 1))
    return bytes(a), bytes(b)


def hosts_and_pages(c, tag):
    """Two started hosts and the files of two pages with equal XXH3."""
    a = c.host("host-a" + tag)
    b = c.host("host-b" + tag)
    a.start("a")
    b.start("b")
    pa, pb = colliding_pages()
    check(pa != pb, "pages equal")
    fa = os.path.join(c.tmp, "a%s.page" % tag)
    fb = os.path.join(c.tmp, "b%s.page" % tag)
    open(fa, "wb").write(pa)
    open(fb, "wb").write(pb)
    return a, b, fa, fb


def collision(c):
    a, b, fa, fb = hosts_and_pages(c, "")
    # Idle guests: nothing but the planted pages changes.
    b.create("attacker", PAGES, profile="idle", seed=77)
    a.create("victim", PAGES, profile="idle", seed=88)
    b.simhv("poke", "attacker", str(PFN), "--from", fa)
    a.simhv("poke", "victim", str(PFN), "--from", fa)
    b.scan_wait()                  # the index sees the victim's content
    b.simhv("poke", "attacker", str(PFN), "--from", fb)
    b.scan_wait()                  # same XXH3: the scanner keeps SHA-256(a)
    a.scan_wait()
    rc, out = a.migrate("victim", b, "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "I1: the attacker's page got in: %r" % out)
    # The offered content was found in the index (by the fingerprint-
    # stale entry) and the copy rejected by its SHA-256: a fill was
    # tried and refused.  Were the XXH3 values different, the scanner
    # would have re-hashed the page and no fill would have been tried.
    check(out["refs_failed_dest"] >= 1,
          "no fill from the colliding page was tried: %r" % out)


def keyed_collision(c):
    """The source's side: sourced offers a page held once on its host
    with the scanner's digest prefix when the page's XXH3 still equals the
    scanner's fingerprint (keyed, unhashed).  The guest swaps in a page
    with the same XXH3 after the scan: the offer names the old content,
    the destination holds it and fills it, and only the source's SHA-256
    of the page, taken when HAVE comes, can tell.  HAVE's confirm must
    fail, the batch go in full, and the migrated memory be the guest's
    (I1)."""
    a, b, fa, fb = hosts_and_pages(c, "-k")
    b.create("holder", PAGES, profile="idle", seed=71)
    a.create("self", PAGES, profile="idle", seed=72)
    b.simhv("poke", "holder", str(PFN), "--from", fa)
    a.simhv("poke", "self", str(PFN), "--from", fa)
    a.scan_wait()                  # host-a's index: page a, held once
    b.scan_wait()                  # host-b holds page a
    a.simhv("poke", "self", str(PFN), "--from", fb)
    rc, out = a.migrate("self", b, "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "I1: the offered old content was kept: %r" % out)
    check(out["pages_keyed"] >= 1, "nothing keyed: %r" % out)
    check(out["pages_unconfirmed"] >= 1,
          "the fill of the swapped page passed HAVE's check: %r" % out)


def main():
    r = Runner("integration_xxh3_collision")
    c = Cluster("xxh3")
    try:
        r.case("a page with a colliding XXH3 is never used", collision, c)
        r.case("a keyed offer of a swapped page fails HAVE's check",
               keyed_collision, c)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
