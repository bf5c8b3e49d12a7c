#!/usr/bin/env python3
"""A later record wins over an OFFER's fills (docs/PROTOCOL.md, hash
negotiation), although the destination fills on a worker thread.

A hand-written source (TLS, real destd) offers 4032 pages whose content
the destination's host holds in a donor guest, and sends PAGE_DATA with
other content for the last 96 of them right behind the OFFER, without
waiting for HAVE.  sharemig's own source never does that (it waits for
HAVE), so this is the destination's guard (mig_dst.c dst_fill_wait) at
work: the destination's whole-memory digest in READY must be that of the
PAGE_DATA content for those pfns and of the donor's for the others, and
HAVE must say that every entry was filled.
"""

import hashlib
import os
import struct

from harness import Cluster, Runner, check
from test_hostile import connect_raw, tls_client

PAGES = 4096
SKIP = 64		# not offered: the guest's header and page tables
LATE = 96		# pfns PAGES-LATE.. get PAGE_DATA after the OFFER
MAGIC = 0x47494d4552414853


def rec(rtype, body):
    pad = (-len(body)) % 8
    return struct.pack("<II", rtype, len(body)) + body + b"\0" * pad


class Peer:
    def __init__(self, s):
        self.s = s
        self.buf = b""

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            check(chunk, "destd closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def record(self):
        """The next record that is not a KEEPALIVE: (type, body)."""
        while True:
            rtype, length = struct.unpack("<II", self.need(8))
            body = self.need(length + (-length) % 8)[:length]
            if rtype != 0x80000001:
                return rtype, body


def dom_pages(host, name, pages):
    """A sim domain's memory, read from its file (include/simdom.h)."""
    words = (pages + 63) // 64
    moff = 4096 + (words * 8 + 4095) // 4096 * 4096
    with open(os.path.join(host.dir, name + ".dom"), "rb") as f:
        f.seek(moff)
        mem = f.read(pages * 4096)
    check(len(mem) == pages * 4096, "short domain file")
    return [mem[i * 4096:(i + 1) * 4096] for i in range(pages)]


def late_data(c, b):
    b.create("donor", PAGES, share=0.0, seed=21, rate=0, start=False)
    b.scan_wait()
    donor = dom_pages(b, "donor", PAGES)
    late = [hashlib.sha256(b"late %d" % i).digest() * 128
            for i in range(LATE)]

    raw = connect_raw(b)
    s = tls_client(c, "a").wrap_socket(raw, server_hostname="127.0.0.1")
    s.settimeout(60)
    p = Peer(s)
    s.sendall(struct.pack("<QIIQ", MAGIC, 1, 0, 0) +
              rec(1, struct.pack("<IIQ16s64s", 1, 1, 0x7, b"\x42" * 16,
                                 b"fake-source")))
    check(struct.unpack("<Q", p.need(24)[:8])[0] == MAGIC, "stream header")
    rtype, _ = p.record()
    check(rtype == 1, "expected HELLO, got %d" % rtype)
    name, config = b"victim", b"profile=idle uid=4242"
    s.sendall(rec(3, struct.pack("<QIIIIII16s", PAGES, 1, 0x1 | 0x2, 2,
                                 len(name), len(config), 0, b"\x07" * 16) +
                  name + config))
    rtype, body = p.record()
    check(rtype == 4, "expected DOMAIN_ACK, got %d %r" % (rtype, body))

    n = PAGES - SKIP
    offer = struct.pack("<IIQII", 0, n, 0, PAGES, 0)
    offer += b"\0" * (SKIP // 8) + b"\xff" * (n // 8)
    offer += b"".join(hashlib.sha256(pg).digest()[:8]
                      for pg in donor[SKIP:])
    data = struct.pack("<II", LATE, 0)
    data += b"".join(struct.pack("<Q", PAGES - LATE + i)
                     for i in range(LATE))
    data += b"".join(late)
    # One write: the PAGE_DATA is read while the worker still fills.
    s.sendall(rec(5, offer) + rec(7, data))
    rtype, body = p.record()
    check(rtype == 6, "expected HAVE, got %d" % rtype)
    batch, count = struct.unpack("<II", body[:8])
    bits = body[40:]
    check(batch == 0 and count == n, "HAVE %d/%d" % (batch, count))
    check(bits == b"\xff" * (n // 8),
          "not every offered page was filled: %d of %d" %
          (sum(bin(x).count("1") for x in bits), n))

    # The digest covers the pfns the stream carried: SKIP.. (PROTOCOL.md).
    want = hashlib.sha256(b"".join(donor[SKIP:PAGES - LATE] +
                                   late)).digest()
    s.sendall(rec(13, struct.pack("<II32s", 0x1, 0, want)))
    rtype, body = p.record()
    check(rtype == 14, "expected READY, got %d %r" % (rtype, body[:80]))
    got = body[8:40]
    stale = hashlib.sha256(b"".join(donor[SKIP:])).digest()
    check(got != stale, "an OFFER fill landed after the PAGE_DATA that "
          "supersedes it")
    check(got == want, "destination digest %s, want %s" % (got.hex(),
                                                          want.hex()))
    s.close()


def main():
    r = Runner("integration_fill_order")
    c = Cluster("fill_order")
    try:
        b = c.host("host-b")
        b.start("b")
        r.case("PAGE_DATA right behind an OFFER wins over its fills",
               late_data, c, b)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
