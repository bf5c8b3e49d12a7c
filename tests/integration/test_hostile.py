#!/usr/bin/env python3
"""I6 and the TLS contract: hostile input ends only its own session.
  - a source with a certificate from another CA is refused;
  - a client without a certificate is refused;
  - a destination whose certificate does not name the address is refused
    by the source;
  - garbage bytes, plaintext sharemig, and (after a good TLS handshake)
    malformed records each end their session;
  - pinned mode (--tls-pin, no common CA): the pinned peers migrate, a
    peer with another certificate is refused by either side;
each with a clear log line, the guest still running on the source, no
half-built domain left on the destination, and the daemons serving the
next migration, which must succeed.
"""

import hashlib
import os
import socket
import ssl
import struct
import subprocess
import time

from harness import Cluster, Runner, check

PAGES = 4096


def connect_raw(host):
    s = socket.create_connection(("127.0.0.1", host.port), timeout=10)
    return s


def tls_client(c, cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(c.certs, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(c.certs, cert + ".pem"),
                            os.path.join(c.certs, cert + ".key"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def drained(s):
    """Read until the peer closes; True if it closed within 10 s."""
    s.settimeout(10)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    except socket.timeout:
        return False


def no_incoming_left(b):
    left = [f for f in os.listdir(b.dir) if "incoming" in f]
    check(not left, "half-built domains left: %r" % left)


def still_serves(a, b, name):
    a.create(name, PAGES, share=0.5, seed=3)
    rc, out = a.migrate(name, b, "--dedup", "all", "--verify")
    check(rc == 0 and out["status"] == "completed",
          "next migration failed: %r" % out)
    check(b.alive("destd") and a.alive("sourced"), "a daemon died")


def wrong_ca(c, a, b, evil):
    evil.create("victim", PAGES, share=0.5, seed=3)
    rc, out = evil.migrate("victim", b, "--dedup", "all")
    check(rc == 1 and out["status"] == "failed", "not refused: %r" % out)
    check("victim" in evil.domains(), "guest gone from the source")
    check(evil.status("victim")["running"], "source guest not running")
    time.sleep(0.3)
    check("refused" in b.log("destd") or "certificate" in b.log("destd"),
          "no clear log line on destd: %s" % b.log("destd")[-2000:])
    no_incoming_left(b)
    still_serves(a, b, "after-wrong-ca")


def no_client_cert(c, a, b):
    raw = connect_raw(b)
    try:
        s = tls_client(c, None).wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"x" * 100)
        check(drained(s), "destd kept a certificate-less client")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass   # refused during the handshake: what we want
    still_serves(a, b, "after-no-cert")


def wrong_server_name(c, a, b, wrongname):
    """The source checks the destination's certificate names the address."""
    # host 'wrongname' serves with a certificate for example.invalid.
    a.create("wn-src", PAGES, share=0.5, seed=3)
    rc, out = a.migrate("wn-src", wrongname, "--dedup", "all")
    check(rc == 1 and out["status"] == "failed", "accepted: %r" % out)
    check("wn-src" not in wrongname.domains(), "guest arrived")
    check("wn-src" in a.domains() and a.status("wn-src")["running"],
          "guest not running on the source")
    check("certificate" in out.get("error", "") or
          "TLS" in out.get("error", ""), "unclear error: %r" % out)
    check(not any("incoming" in f for f in os.listdir(wrongname.dir)),
          "half-built domain on wrongname host")


def garbage(c, a, b):
    for blob in (os.urandom(4096), b"\x00" * 64, b"GET / HTTP/1.0\r\n\r\n"):
        s = connect_raw(b)
        try:
            s.sendall(blob)
        except OSError:
            pass
        check(drained(s), "destd kept a garbage connection")
        s.close()
    still_serves(a, b, "after-garbage")


def preauth_cap(c, a, b):
    """At most 4 unauthenticated connections per address: the 5th and
    later are closed at once; the first 4 wait for their handshake."""
    socks = [connect_raw(b) for _ in range(6)]
    time.sleep(0.5)
    closed = []
    for s in socks:
        s.settimeout(0.3)
        try:
            closed.append(s.recv(1) == b"")
        except socket.timeout:
            closed.append(False)
        except OSError:
            closed.append(True)
    for s in socks:
        s.close()
    check(closed == [False] * 4 + [True] * 2,
          "open/closed pattern %r" % closed)
    check("still unauthenticated" in b.log("destd"), "no log line")
    time.sleep(0.3)
    still_serves(a, b, "after-preauth")


def hostile_records(c, a, b):
    """Authenticated peer, bad records: its session ends, nothing else."""
    hdr = struct.pack("<QIIQ", 0x47494d4552414853, 1, 0, 0)
    hello = struct.pack("<IIQ16s64s", 1, 1, 7, b"\0" * 16, b"evil")
    cases = [
        # oversized record before HELLO
        hdr + struct.pack("<II", 1, 1 << 20),
        # HELLO with version_min > version_max
        hdr + struct.pack("<II", 1, 96) + struct.pack("<IIQ16s64s", 5, 1, 0,
                                                     b"\0" * 16, b"x"),
        # GO before anything
        hdr + struct.pack("<II", 1, 96) + hello + struct.pack("<IIQ", 15, 8,
                                                             0),
        # DOMAIN_INFO claiming 2^40 pages
        hdr + struct.pack("<II", 1, 96) + hello + struct.pack(
            "<II", 3, 48 + 8) + struct.pack("<QIIIIII16s", 1 << 40, 1, 0, 2,
                                             4, 0, 0, b"\0" * 16) +
        b"evil" + b"\0" * 4,
        # truncated stream header then close
        hdr[:10],
    ]
    for blob in cases:
        raw = connect_raw(b)
        s = tls_client(c, "a").wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(blob)
        if blob is cases[-1]:
            s.close()
            continue
        check(drained(s), "destd kept a hostile session: %r" % blob[:40])
        s.close()
    time.sleep(0.2)
    no_incoming_left(b)
    still_serves(a, b, "after-hostile")


def pin_of(c, cert, form):
    """The --tls-pin of a test certificate, the way an operator gets it
    with openssl: "spki" (its public key) or "cert" (the whole DER)."""
    pem = os.path.join(c.certs, cert + ".pem")
    if form == "spki":
        der = subprocess.run(
            "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin "
            "-outform der" % pem, shell=True, check=True,
            stdout=subprocess.PIPE).stdout
    else:
        der = subprocess.run(["openssl", "x509", "-in", pem, "-outform",
                              "der"], check=True,
                             stdout=subprocess.PIPE).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def pinned(c):
    """Pinned mode between hosts with no common CA: host-pa ("evil" CA)
    and host-pb (the good CA) pin each other and migrate; a source whose
    certificate is not pb's pin is refused by pb's destd, and a source
    pinned to another key refuses pb; both with a clear log line."""
    pa = c.host("host-pa", pin=pin_of(c, "b", "spki"))
    pb = c.host("host-pb", pin=pin_of(c, "evil", "cert"))
    pa.start("evil")
    pb.start("b")
    check(pin_of(c, "b", "spki") in pb.log("destd"),
          "destd does not log its own pin: %s" % pb.log("destd")[-2000:])
    check("pinned peer" in pb.log("destd"), "no pinned mode on the ready "
          "line: %s" % pb.log("destd")[-2000:])
    still_serves(pa, pb, "pinned-ok")

    # A source with a CA-signed certificate pb did not pin: refused by pb.
    pc = c.host("host-pc", pin=pin_of(c, "b", "spki"))
    pc.start("a")
    pc.create("pin-victim", PAGES, share=0.5, seed=3)
    rc, out = pc.migrate("pin-victim", pb, "--dedup", "all")
    check(rc == 1 and out["status"] == "failed", "not refused: %r" % out)
    check(pc.status("pin-victim")["running"], "source guest not running")
    time.sleep(0.3)
    check("peer certificate is not the pinned one" in pb.log("destd"),
          "no clear log line on destd: %s" % pb.log("destd")[-2000:])
    no_incoming_left(pb)

    # A source pinned to another key: it refuses pb itself.
    pd = c.host("host-pd", pin=pin_of(c, "a", "spki"))
    pd.start("evil")
    pd.create("pin-other", PAGES, share=0.5, seed=3)
    rc, out = pd.migrate("pin-other", pb, "--dedup", "all")
    check(rc == 1 and out["status"] == "failed", "accepted: %r" % out)
    check("pinned" in out.get("error", "") or
          "pinned" in pd.log("sourced"), "unclear error: %r %s" % (
              out, pd.log("sourced")[-2000:]))
    check(pd.status("pin-other")["running"], "source guest not running")
    no_incoming_left(pb)
    still_serves(pa, pb, "pinned-after-refusals")


def main():
    r = Runner("integration_hostile")
    c = Cluster("hostile")
    try:
        a = c.host("host-a")
        b = c.host("host-b")
        evil = c.host("host-evil")
        wn = c.host("host-wrongname")
        a.start("a")
        b.start("b")
        evil.start("evil")
        wn.start("wrongname")
        r.case("source with a certificate from another CA",
               wrong_ca, c, a, b, evil)
        r.case("client without a certificate", no_client_cert, c, a, b)
        r.case("destination certificate names another host",
               wrong_server_name, c, a, b, wn)
        r.case("garbage on the listen port", garbage, c, a, b)
        r.case("malformed records after a good handshake",
               hostile_records, c, a, b)
        r.case("unauthenticated connections per address are capped",
               preauth_cap, c, a, b)
        r.case("pinned certificates without a common CA", pinned, c)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
