#!/usr/bin/env python3
"""PAGE_DATA compression and the zero-page lever, between real daemons
over real TLS:
  - a running guest whose private pages are text-like (simhv create
    --compressible) migrates with --compress none, zstd and lz4 and
    --verify: both ends' memory digests are equal, the guest's own
    self-check passes on the destination, and with zstd/lz4 the page
    bytes and the wire bytes are clearly below the raw page bytes and
    below what the uncompressed migration put on the wire;
  - iteration_stats has one entry per iteration, iteration 0 sending
    every page;
  - --zero-pages elide/send: all-zero pages go as PAGE_ZERO or in full,
    whatever the dedup mode;
  - a destination that does not accept a method (--compress-accept) is
    refused by the source with a clear error, the guest keeps running;
  - a hostile source (raw TLS client) that asks for a method the
    destination refuses gets an ERROR; one that sends a corrupt frame,
    a frame that decompresses to more than its pages (a bomb), a frame
    with trailing bytes, or a method it did not negotiate ends only its
    own session: no half-built domain, the daemon serves the next
    migration.
"""

import os
import socket
import ssl
import struct
import subprocess
import time

from harness import Cluster, Runner, check
from test_hostile import tls_client

PAGES = 8192           # 32 MiB guests
COMPRESSIBLE = 0.75    # of each private page: text-like


def migrate_method(a, b, name, method, results):
    a.create(name, PAGES, share=0.0, seed=21, compressible=COMPRESSIBLE)
    rc, out = a.migrate(name, b, "--dedup", "none", "--compress", method,
                        "--verify")
    check(rc == 0 and out["status"] == "completed",
          "%s: exit %d: %r" % (method, rc, out))
    check(out.get("compress") == method, "compress field: %r" % out)
    check(out["memory_sha256_source"] == out["memory_sha256_dest"],
          "%s: memory differs" % method)
    check(name in b.domains() and name not in a.domains(),
          "%s: guest not moved" % method)
    time.sleep(0.3)
    rc2, msg = b.selfcheck(name)
    check(rc2 == 0, "%s: guest self-check on the destination: %s" %
          (method, msg))
    raw = out["bytes_data_raw"]
    check(raw >= PAGES * 4096, "%s: bytes_data_raw %d < memory" %
          (method, raw))
    its = out["iteration_stats"]
    # Iteration 0 sends every page but those dirtied again before it
    # reached them (they go in the next one).
    check(len(its) == out["iterations"] and its[0]["iteration"] == 0 and
          its[0]["pages"] >= PAGES * 0.8 and
          sum(i["pages"] for i in its) >= PAGES and its[0]["bytes"] > 0 and
          its[0]["ms"] > 0, "%s: iteration_stats %r" % (method, its))
    if method == "none":
        check(out["bytes_data"] == raw, "none: bytes_data %d != raw %d" %
              (out["bytes_data"], raw))
    else:
        check(out["bytes_data"] < raw * 0.7,
              "%s: page bytes %d not below 70%% of raw %d" %
              (method, out["bytes_data"], raw))
        check(out["bytes_wire"] < raw, "%s: wire %d not below raw %d" %
              (method, out["bytes_wire"], raw))
    results[method] = out
    print("     %s: wire %d, data %d of raw %d, %d iterations, %.0f ms" %
          (method, out["bytes_wire"], out["bytes_data"], raw,
           out["iterations"], out["total_ms"]), flush=True)


def compressed_beats_raw(results):
    none = results["none"]["bytes_wire"]
    for m in ("zstd", "lz4"):
        check(results[m]["bytes_wire"] < none * 0.8,
              "%s wire %d not clearly below none's %d" %
              (m, results[m]["bytes_wire"], none))


def zero_pages(a, b):
    # writer: 45% of the data pages are zero.
    for i, (dedup, mode, want) in enumerate((
            ("none", None, "send"), ("none", "elide", "elide"),
            ("all", "send", "send"))):
        name = "zero-%d" % i
        a.create(name, 4096, profile="writer", seed=5)
        opts = ["--dedup", dedup, "--verify"]
        if mode:
            opts += ["--zero-pages", mode]
        rc, out = a.migrate(name, b, *opts)
        check(rc == 0 and out["status"] == "completed", "%r" % out)
        check(out["zero_pages"] == want, "zero_pages %r, want %s" %
              (out["zero_pages"], want))
        check(out["memory_sha256_source"] == out["memory_sha256_dest"],
              "memory differs")
        if want == "elide":
            check(out["pages_zero"] > 1000, "elide: pages_zero %d" %
                  out["pages_zero"])
        else:
            check(out["pages_zero"] == 0, "send: pages_zero %d" %
                  out["pages_zero"])
            check(out["pages_data"] > 4096 * 0.7, "send: pages_data %d" %
                  out["pages_data"])


def refused_by_caps(a, c):
    a.create("lz4-refused", 1024, share=0.0, seed=3,
             compressible=COMPRESSIBLE)
    rc, out = a.migrate("lz4-refused", c, "--compress", "lz4")
    check(rc != 0 and out["status"] == "failed", "not refused: %r" % out)
    check("lz4" in out.get("error", "") and "accept" in out["error"],
          "unclear error: %r" % out.get("error"))
    check("lz4-refused" in a.domains() and
          a.status("lz4-refused")["running"], "guest not running on source")
    check(not any("incoming" in f for f in os.listdir(c.dir)),
          "half-built domain on the destination")
    # The method it does accept works.
    rc, out = a.migrate("lz4-refused", c, "--compress", "zstd", "--verify")
    check(rc == 0 and out["status"] == "completed", "zstd to c: %r" % out)


# ---- a hostile source speaking raw records ----

def rec(t, body):
    pad = (8 - len(body) % 8) % 8
    return struct.pack("<II", t, len(body)) + body + b"\0" * pad


HDR = struct.pack("<QIIQ", 0x47494d4552414853, 1, 0, 0)
HELLO = rec(1, struct.pack("<IIQ16s64s", 1, 1, 7, b"\0" * 16, b"evil"))
RAW_PAGES = 64


def domain_info(name, compress):
    cfg = b"profile=idle share=0.5 rate=1000 seed=1 uid=0x1234"
    return rec(3, struct.pack("<QIIIIII16s", RAW_PAGES, 1, 0, 0, len(name),
                              len(cfg), compress, b"\0" * 16) + name + cfg)


def page_data_z(method, count, frame, clen=None):
    body = struct.pack("<II", count, method)
    body += b"".join(struct.pack("<Q", i) for i in range(count))
    body += struct.pack("<II", len(frame) if clen is None else clen, 0)
    return rec(7, body + frame)


def zstd_frame(data):
    return subprocess.run(["zstd", "-q", "-c", "-1"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout


def records(buf):
    """(type, body) of each whole record after the stream header."""
    out, i = [], 24
    while i + 8 <= len(buf):
        t, n = struct.unpack_from("<II", buf, i)
        if i + 8 + n > len(buf):
            break
        out.append((t, buf[i + 8:i + 8 + n]))
        i += 8 + n + (8 - n % 8) % 8
    return out


def raw_session(cl, dst, blobs):
    """Send the blobs, read until the peer closes; the records got."""
    raw = socket.create_connection(("127.0.0.1", dst.port), timeout=10)
    s = tls_client(cl, "a").wrap_socket(raw, server_hostname="127.0.0.1")
    buf = b""
    try:
        for b in blobs:
            s.sendall(b)
            time.sleep(0.1)
        s.settimeout(10)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError, OSError):
        pass
    finally:
        s.close()
    return records(buf)


def errors_of(recs):
    return [b[8:8 + struct.unpack_from("<I", b, 4)[0]].decode()
            for t, b in recs if t == 2]


def hostile(cl, a, c):
    page = (b"hello world " * 400)[:4096]
    good = zstd_frame(page)
    bomb = zstd_frame(page * 2)           # 2 pages' worth for 1 page
    start = [HDR, HELLO]
    cases = [
        ("method refused", [domain_info(b"evil-lz4", 2)], "lz4"),
        ("unknown method", [domain_info(b"evil-unk", 7)], "unknown"),
        ("corrupt frame", [domain_info(b"evil-bad", 1),
                           page_data_z(1, 1, good[:8] + b"\xff" * 40 +
                                       good[48:])], "decompress"),
        ("bomb", [domain_info(b"evil-bomb", 1), page_data_z(1, 1, bomb)],
         "decompress"),
        ("trailing bytes", [domain_info(b"evil-trail", 1),
                            page_data_z(1, 1, good + b"\0\0\0\0")],
         "decompress"),
        ("not negotiated", [domain_info(b"evil-nn", 1),
                            page_data_z(2, 1, b"\x10" * 64)],
         "PAGE_DATA"),
        ("no compression asked", [domain_info(b"evil-none", 0),
                                  page_data_z(1, 1, good)], "PAGE_DATA"),
        ("clen disagrees", [domain_info(b"evil-clen", 1),
                            page_data_z(1, 1, good, len(good) + 8)],
         "PAGE_DATA"),
    ]
    for label, blobs, want in cases:
        recs = raw_session(cl, c, start + blobs)
        errs = errors_of(recs)
        check(errs and want in errs[-1],
              "%s: no ERROR naming %r: %r" % (label, want, errs))
        log = c.log("destd")
        check(want in log, "%s: no log line with %r" % (label, want))
    time.sleep(0.3)
    check(not any("incoming" in f or f.startswith("evil")
                  for f in os.listdir(c.dir)),
          "half-built domains left: %r" % os.listdir(c.dir))
    check(c.alive("destd"), "destd died")
    a.create("after-hostile", 1024, share=0.0, seed=4,
             compressible=COMPRESSIBLE)
    rc, out = a.migrate("after-hostile", c, "--compress", "zstd",
                        "--verify")
    check(rc == 0 and out["status"] == "completed",
          "next migration failed: %r" % out)


def main():
    r = Runner("integration_compress")
    cl = Cluster("compress")
    try:
        a = cl.host("host-a")
        b = cl.host("host-b")
        c = cl.host("host-c", destd_args=["--compress-accept", "zstd"])
        a.start("a")
        b.start("b")
        c.start("b")
        results = {}
        for m in ("none", "zstd", "lz4"):
            r.case("migrate a running guest with --compress %s" % m,
                   migrate_method, a, b, "guest-" + m, m, results)
        if len(results) == 3:
            r.case("zstd and lz4 put clearly fewer bytes on the wire",
                   compressed_beats_raw, results)
        r.case("--zero-pages elide|send", zero_pages, a, b)
        r.case("a destination that does not accept lz4",
               refused_by_caps, a, c)
        r.case("hostile compressed records end only their session",
               hostile, cl, a, c)
    finally:
        if r.failed:
            cl.dump_logs()
        cl.close()
    r.exit()


if __name__ == "__main__":
    main()
