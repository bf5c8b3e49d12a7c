#!/usr/bin/env python3
"""I6 from the source's side, for FILTER (docs/PROTOCOL.md): a destination
that answers a real sourced over real TLS with a bad Bloom filter ends
only that migration.  Cases:
  - a filter still incomplete when DOMAIN_ACK comes;
  - a chunk that changes nbits, or leaves a gap;
  - a filter larger than PROTO_FILTER_BITS_MAX (the decoder refuses it);
  - a FILTER the source did not ask for (--dedup none);
each fails the migration with an error that names FILTER, leaves the
guest running on the source, and sourced serves the next migration, to a
real destd, which must succeed.
"""

import json
import os
import socket
import ssl
import struct
import threading

from harness import Cluster, Runner, check

PAGES = 2048

MAGIC = 0x47494d4552414853
REC_HELLO, REC_ERROR, REC_DOMAIN_INFO, REC_DOMAIN_ACK = 1, 2, 3, 4
REC_FILTER = 18
CAPS = 0x1 | 0x2 | 0x4 | 0x40      # REF, ZERO, VERIFY, FILTER


def record(rtype, body):
    pad = (-len(body)) % 8
    return struct.pack("<II", rtype, len(body)) + body + b"\0" * pad


def hello():
    body = struct.pack("<IIQ", 1, 1, CAPS) + os.urandom(16)
    return record(REC_HELLO, body + b"fake-destd".ljust(64, b"\0"))


def filt(nbits, k, offset, data):
    return record(REC_FILTER, struct.pack("<QIIQ", nbits, k, 0, offset) +
                  data)


def ack():
    return record(REC_DOMAIN_ACK, struct.pack("<II", 7, 1))


class FakeDest:
    """One TLS connection on a free port: HELLO, wait for the source's
    HELLO and DOMAIN_INFO, send `script`, read until the source closes.
    `got` lists the record types the source sent."""

    def __init__(self, c, script):
        self.script = script
        self.got = []
        self.error = None
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(os.path.join(c.certs, "b.pem"),
                                 os.path.join(c.certs, "b.key"))
        self.ctx.load_verify_locations(os.path.join(c.certs, "ca.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(60)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def read_exact(self, s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def run(self):
        try:
            raw, _ = self.ls.accept()
            s = self.ctx.wrap_socket(raw, server_side=True)
            s.settimeout(30)
            s.sendall(struct.pack("<QIIQ", MAGIC, 1, 0, 0) + hello())
            self.read_exact(s, 24)
            while REC_DOMAIN_INFO not in self.got:
                rtype, length = struct.unpack("<II", self.read_exact(s, 8))
                self.read_exact(s, length + (-length) % 8)
                self.got.append(rtype)
            s.sendall(b"".join(self.script))
            while True:
                rtype, length = struct.unpack("<II", self.read_exact(s, 8))
                self.read_exact(s, length + (-length) % 8)
                self.got.append(rtype)
        except (EOFError, OSError, ssl.SSLError):
            pass
        except Exception as e:          # reported by the case
            self.error = repr(e)
        finally:
            self.ls.close()


def refused(c, a, script, want, dedup="all"):
    fake = FakeDest(c, script)
    a.create("g", PAGES, share=0.5, seed=3, rate=50)
    a.scan_wait()
    p = a.ctl("migrate", "g", fake.addr, "--wait", "--json", "--dedup",
              dedup)
    fake.t.join(30)
    check(fake.error is None, "fake destination: %s" % fake.error)
    check(p.returncode != 0, "migration to a bad FILTER succeeded: %s" %
          p.stdout)
    out = p.stdout + p.stderr
    check(all(w in out for w in want), "want %r in: %s" % (want, out))
    try:
        why = json.loads(p.stdout.strip().splitlines()[-1])["error"]
    except (ValueError, IndexError, KeyError):
        why = out
    print("  refused: %s" % why, flush=True)
    check(REC_ERROR in fake.got, "no ERROR record sent: %r" % fake.got)
    st = a.status("g")
    check(st.get("state") == "running", "guest not running: %r" % st)
    a.simhv("destroy", "g")


def serves(a, b):
    a.create("after", PAGES, share=0.5, seed=3, rate=50)
    b.create("img", PAGES, share=0.5, seed=3, rate=50)
    a.scan_wait()
    b.scan_wait()
    rc, out = a.migrate("after", b, "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(out["pages_filtered"] > 0.9 * PAGES / 2,
          "filtered %d" % out["pages_filtered"])
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "I1: %r" % out)


def main():
    r = Runner("integration_hostile_dest")
    c = Cluster("hostdest")
    try:
        a = c.host("host-a")
        b = c.host("host-b")
        a.start("a")
        b.start("b")
        bits = b"\xff" * 64
        r.case("FILTER incomplete at DOMAIN_ACK", refused, c, a,
               [filt(1024, 6, 0, bits), ack()],
               ["FILTER incomplete", "64 of 128"])
        r.case("FILTER chunk changes nbits", refused, c, a,
               [filt(1024, 6, 0, bits), filt(2048, 6, 64, bits), ack()],
               ["FILTER chunk", "does not continue"])
        r.case("FILTER chunk leaves a gap", refused, c, a,
               [filt(4096, 6, 0, bits), filt(4096, 6, 128, bits), ack()],
               ["FILTER chunk", "does not continue"])
        r.case("FILTER over the size limit", refused, c, a,
               [filt(1 << 28, 6, 0, bits), ack()], ["invalid FILTER record"])
        r.case("FILTER the source did not ask for", refused, c, a,
               [filt(1024, 6, 0, bits + bits), ack()],
               ["unexpected FILTER"], "none")
        r.case("sourced serves the next migration", serves, a, b)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
