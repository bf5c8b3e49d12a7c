#!/usr/bin/env python3
"""migratectl as an operator uses it (issue 6), and the daemons' operator
surface:
  - every error path (usage, unreachable or refusing socket, bad id, bad
    dedup value, unknown command, missing arguments) prints exactly one
    line "migratectl: ..." on stderr and exits with the documented code;
    with --json stdout is one JSON error object carrying exit_code/schema;
  - the --json output of every command has the documented fields and
    "schema": 1 (real daemons, real migration);
  - the progress line, in a pseudo-terminal, against a scripted daemon
    (exact content) and a real one (summary and exit code); none when
    stdout is not a terminal or with --json;
  - outcome exit codes 0/1/3 for completed/failed/ambiguous;
  - --check-config: a bad file gives FILE:LINE, the example config passes;
  - the Prometheus endpoints: HELP/TYPE for every family, histograms
    consistent, counters after a migration;
  - --help lists the same commands as the bash completion.
Nothing here asserts on timing.
"""

import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import urllib.error
import urllib.request

from harness import (Cluster, Runner, check, free_port, run, DESTD,
                     MIGRATECTL, SOURCE, SOURCED)

PAGES = 8192
SCHEMA = 1

# Documented --json fields (docs/CONTROL.md), name -> type.
MIGRATION = {"id": int, "status": str, "domain": str, "destination": str,
             "dedup": str, "pages_total": int, "pages_data": int,
             "pages_ref": int, "pages_zero": int, "pages_need": int,
             "pages_offered": int, "pages_keyed": int, "pages_filtered": int,
             "pages_have": int,
             "pages_unconfirmed": int, "pages_unlooked": int,
             "dirty_pages": int,
             "bytes_wire": int, "bytes_queued": int, "iterations": int,
             "total_ms": (int, float), "downtime_ms": (int, float),
             "cpu_source_s": (int, float), "cpu_dest_s": (int, float),
             "refs_failed_dest": int, "schema": int}
DOMAIN = {"name": str, "domid": int, "pages": int, "vcpus": int,
          "state": str}
INDEX_STATS = {"pages": int, "zero_pages": int, "unique_digests": int,
               "shared_pages": int, "bytes": int,
               "sharing_rate": (int, float)}
SCANNER = {"passes": int, "pages_scanned": int, "pages_hashed": int,
           "cpu_s": (int, float)}
FILTER = {"contents": int, "bytes": int, "probes": int,
          "build_ms": (int, float), "age_ms": (int, float)}
SESSION = {"id": int, "status": str, "peer": str, "domain": str,
           "pages_total": int, "pages_data": int, "pages_ref": int,
           "pages_zero": int, "pages_zero_skipped": int,
           "refs_failed": int, "fills_stale": int,
           "pages_offered": int, "pages_had": int}
ERROR = {"ok": bool, "error": str, "exit_code": int, "schema": int}


def fields(obj, spec, what):
    check(isinstance(obj, dict), "%s: not an object: %r" % (what, obj))
    for k, t in spec.items():
        check(k in obj, "%s lacks %r: %r" % (what, k, obj))
        check(isinstance(obj[k], t) and not (t is int and
                                             isinstance(obj[k], bool)),
              "%s: %r is %r, not %r" % (what, k, obj[k], t))


def one_json(p, what):
    lines = p.stdout.splitlines()
    check(len(lines) == 1, "%s: expected one line of JSON, got %r" %
          (what, p.stdout))
    try:
        return json.loads(lines[0])
    except ValueError:
        raise AssertionError("%s: not JSON: %r" % (what, p.stdout))


def ctl(*args, env=None, timeout=300):
    return run([MIGRATECTL] + list(args), check_rc=False, timeout=timeout,
               env=env)


def one_error(p, code, what, needle=None):
    """Exactly one stderr line "migratectl: ...", the exit code."""
    lines = p.stderr.splitlines()
    check(p.returncode == code, "%s: exit %d, expected %d (%r)" %
          (what, p.returncode, code, p.stderr))
    check(len(lines) == 1, "%s: %d stderr lines: %r" %
          (what, len(lines), p.stderr))
    check(lines[0].startswith("migratectl: ") and len(lines[0]) > 20,
          "%s: unclear line %r" % (what, lines[0]))
    if needle is not None:
        check(needle in lines[0], "%s: %r not in %r" %
              (what, needle, lines[0]))
    return lines[0]


def error_both_ways(args, code, what, needle=None):
    """Plain: one stderr line, nothing on stdout.  --json: the same line
    and one JSON error object on stdout."""
    p = ctl(*args)
    line = one_error(p, code, what, needle)
    check(p.stdout == "", "%s: stdout %r" % (what, p.stdout))
    p = ctl("--json", *args)
    jline = one_error(p, code, what + " --json", needle)
    check(jline == line, "%s: --json changed the message" % what)
    o = one_json(p, what + " --json")
    fields(o, ERROR, what + " --json")
    check(o["ok"] is False and o["exit_code"] == code and
          o["schema"] == SCHEMA and "migratectl: " + o["error"] == line,
          "%s: %r" % (what, o))


# ---- usage errors and unreachable daemons (no daemon needed) ----

def usage_errors(tmp):
    sock = os.path.join(tmp, "nothing.sock")
    cases = [
        ([], "no command"),
        (["frobnicate"], "unknown command"),
        (["migrate"], "migrate: missing"),
        (["migrate", "web1"], "missing HOST:PORT"),
        (["migrate", "web1", "h:1", "extra"], "unexpected argument"),
        (["migrate", "web1", "h:1", "--dedup", "most"], "--dedup"),
        (["migrate", "web1", "h:1", "--dedup"], "--dedup"),
        (["migrate", "web1", "h:1", "--downtime-ms", "soon"],
         "--downtime-ms"),
        (["migrate", "web1", "h:1", "--max-iterations", "0"],
         "--max-iterations"),
        (["migrate", "web1", "h:1", "--bogus"], "unknown option"),
        (["status", "abc"], "not a migration id"),
        (["status", "-1"], "not a migration id"),
        (["status", "1", "2"], "unexpected argument"),
        (["wait"], "missing ID"),
        (["wait", "x1"], "not a migration id"),
        (["cancel"], "missing ID"),
        (["list", "extra"], "unexpected argument"),
        (["index", "extra"], "unexpected argument"),
    ]
    for args, needle in cases:
        error_both_ways(["--control", sock] + args, 2, " ".join(args) or
                        "(nothing)", needle)
    p = ctl("list", "--control")
    one_error(p, 2, "--control without a value", "--control")


def unreachable(tmp):
    missing = os.path.join(tmp, "missing.sock")
    for args in (["list"], ["status"], ["status", "1"], ["wait", "1"],
                 ["cancel", "1"], ["migrate", "d", "h:1"], ["index"],
                 ["index-sync"]):
        error_both_ways(["--control", missing] + args, 4,
                        "unreachable " + args[0], missing)
    # A socket file nobody listens on: connection refused.
    dead = os.path.join(tmp, "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    try:
        error_both_ways(["--control", dead, "list"], 4, "refused",
                        "refused")
    finally:
        s.close()
    # The default socket comes from the environment.
    env = dict(os.environ, SHAREMIG_CONTROL=missing)
    p = ctl("list", env=env)
    one_error(p, 4, "SHAREMIG_CONTROL", missing)


def help_and_completion():
    p = ctl("--help")
    check(p.returncode == 0 and p.stderr == "", "--help: %r" % (p,))
    listed = re.findall(r"^  ([a-z][a-z-]+)", p.stdout, re.M)
    with open(os.path.join(SOURCE, "completions", "migratectl.bash")) as f:
        m = re.search(r'local commands="([^"]*)"', f.read())
    check(m is not None, "no command list in the completion")
    check(sorted(m.group(1).split()) == sorted(listed),
          "completion %r vs --help %r" % (m.group(1).split(), listed))
    p = ctl("--version")
    check(p.returncode == 0 and p.stdout.startswith("migratectl "),
          "--version: %r" % p.stdout)


# ---- a scripted daemon, for the progress line and outcome codes ----

class FakeDaemon:
    """Answers the control protocol on a UNIX socket from a script:
    "status" with id returns the next of `states` (the last repeats),
    "wait" returns the last, "cancel" answers ok.  Records requests."""

    def __init__(self, path, states):
        self.path = path
        self.states = states
        self.i = 0
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stop = False
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def answer(self, req):
        self.requests.append(req.get("cmd"))
        cmd = req.get("cmd")
        if cmd == "status" and "id" in req:
            m = self.states[min(self.i, len(self.states) - 1)]
            self.i += 1
            return {"ok": True, "migration": m}
        if cmd == "wait":
            return {"ok": True, "migration": self.states[-1]}
        if cmd == "cancel":
            return {"ok": True}
        if cmd == "migrate":
            return {"ok": True, "id": self.states[-1]["id"]}
        return {"ok": False, "error": "unknown command '%s'" % cmd}

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                f = c.makefile("rwb")
                for line in f:
                    rep = self.answer(json.loads(line))
                    f.write((json.dumps(rep) + "\n").encode())
                    f.flush()

    def close(self):
        self.stop = True
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def mig(status, **kw):
    m = {"id": 7, "status": status, "domain": "web1",
         "destination": "host2:8002", "dedup": "all", "pages_total": 1000,
         "pages_data": 0, "pages_ref": 0, "pages_zero": 0, "pages_need": 0,
         "pages_offered": 0, "pages_keyed": 0, "pages_filtered": 0,
         "pages_have": 0,
         "pages_unconfirmed": 0, "pages_unlooked": 0,
         "dirty_pages": 0, "bytes_wire": 0, "bytes_queued": 0,
         "iterations": 0, "total_ms": 0.0, "downtime_ms": 0.0,
         "cpu_source_s": 0.0, "cpu_dest_s": 0.0, "refs_failed_dest": 0}
    m.update(kw)
    return m


SCRIPT = [
    mig("connecting"),
    mig("iterating", pages_data=200, pages_ref=50, total_ms=1000.0,
        bytes_queued=1000000),
    mig("iterating", pages_data=400, pages_ref=100, total_ms=2000.0,
        bytes_queued=3000000),
    mig("iterating", pages_data=700, pages_ref=200, pages_zero=100,
        dirty_pages=40, iterations=1, total_ms=3000.0,
        bytes_queued=5000000),
    mig("completed", pages_data=740, pages_ref=200, pages_zero=100,
        dirty_pages=40, iterations=2, total_ms=3500.0, downtime_ms=12.5,
        bytes_queued=5200000, bytes_wire=5300000),
]


def in_pty(cmd, cols=160, timeout=120):
    """Run cmd with stdin/stdout on a pseudo-terminal; stderr apart.
    Returns (exit code, terminal bytes, stderr text)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ,
                struct.pack("HHHH", 40, cols, 0, 0))
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave,
                         stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            d = os.read(master, 65536)
        except OSError:     # EIO: the child closed the terminal
            break
        if not d:
            break
        out += d
    os.close(master)
    err = p.stderr.read().decode()
    p.stderr.close()
    p.wait(timeout=timeout)
    return p.returncode, out, err


def progress_scripted(tmp):
    path = os.path.join(tmp, "fake1.sock")
    fd = FakeDaemon(path, SCRIPT)
    try:
        rc, out, err = in_pty([MIGRATECTL, "--control", path, "wait", "7"])
    finally:
        fd.close()
    text = out.decode(errors="replace").replace("\r\n", "\n")
    check(rc == 0 and err == "", "exit %d, stderr %r" % (rc, err))
    check("wait" not in fd.requests and fd.requests.count("status") == 5,
          "did not poll status: %r" % fd.requests)
    frames = [f for f in text.split("\r") if f]
    lines = [f.split("\x1b[K")[0] for f in frames
             if f.startswith("migration 7 web1:")]
    check(len(lines) == 4, "expected 4 progress lines: %r" % text)
    # Second sample: 250 of 1000 sent, rate from the first sample.
    check(lines[1] == "migration 7 web1: iterating, iter 1, 25.0%, "
          "1.0 MB/s, dirty 0, ETA 0:03", "line %r" % lines[1])
    check(lines[2].startswith("migration 7 web1: iterating, iter 1, "
                              "50.0%, 1.5 MB/s, dirty 0, ETA "),
          "line %r" % lines[2])
    # After iteration 0: sent 1000, 40 dirty to go, iteration 2.
    check(re.match(r"migration 7 web1: iterating, iter 2, 96\.2%, "
                   r"[0-9.]+ MB/s, dirty 40, ETA 0:00$", lines[3]),
          "line %r" % lines[3])
    check(lines[0] == "migration 7 web1: connecting, iter 1, 0.0%, "
          "0.0 MB/s, dirty 0, ETA --:--", "line %r" % lines[0])
    # The line is cleared, then the summary.
    tail = text.split("\r")[-1]
    check(tail.startswith("\x1b[Kmigration 7: web1 all -> host2:8002: "
                          "completed"), "summary %r" % tail)


def progress_not_tty(tmp):
    path = os.path.join(tmp, "fake2.sock")
    fd = FakeDaemon(path, SCRIPT)
    try:
        p = ctl("--control", path, "wait", "7")
        check(p.returncode == 0, "exit %d" % p.returncode)
        check("\r" not in p.stdout and "\x1b" not in p.stdout and
              "completed" in p.stdout, "stdout %r" % p.stdout)
        check(fd.requests == ["wait"], "requests %r" % fd.requests)
        # --json on a terminal: no progress line either, one JSON line.
        fd.requests = []
        rc, out, err = in_pty([MIGRATECTL, "--control", path, "--json",
                               "wait", "7"])
        text = out.decode()
        check(rc == 0 and fd.requests == ["wait"] and "\x1b" not in text,
              "--json on a tty: %r %r" % (fd.requests, text))
        fields(json.loads(text.strip()), MIGRATION, "wait --json")
    finally:
        fd.close()


def outcome_codes(tmp):
    for status, code in (("completed", 0), ("failed", 1),
                         ("cancelled", 1), ("ambiguous", 3)):
        path = os.path.join(tmp, "fake-%s.sock" % status)
        end = mig(status, error="" if code == 0 else "it broke")
        fd = FakeDaemon(path, [end])
        try:
            p = ctl("--control", path, "--json", "migrate", "web1",
                    "host2:8002", "--wait")
            check(p.returncode == code, "%s: exit %d" %
                  (status, p.returncode))
            o = one_json(p, status)
            check(o["status"] == status and o["schema"] == SCHEMA,
                  "%s: %r" % (status, o))
            rc, out, err = in_pty([MIGRATECTL, "--control", path, "wait",
                                   "7"])
            check(rc == code and status in out.decode(),
                  "%s on a tty: %d %r" % (status, rc, out))
            p = ctl("--control", path, "--json", "cancel", "7")
            o = one_json(p, "cancel")
            check(p.returncode == 0 and o == {"ok": True, "id": 7,
                                              "schema": SCHEMA},
                  "cancel --json: %r" % o)
        finally:
            fd.close()


# ---- real daemons ----

def json_schema(c, a, b):
    p = a.ctl("--json", "list")
    o = one_json(p, "list")
    check(p.returncode == 0 and o["ok"] is True and o["schema"] == SCHEMA,
          "list: %r" % o)
    check(any(d["name"] == "cli1" for d in o["domains"]), "list %r" % o)
    for d in o["domains"]:
        fields(d, DOMAIN, "list domain")
    # migrate without --wait, then wait and status.
    p = a.ctl("--json", "migrate", "cli1", b.addr, "--dedup", "all")
    o = one_json(p, "migrate")
    check(p.returncode == 0 and set(o) == {"ok", "id", "schema"} and
          isinstance(o["id"], int), "migrate: %r" % o)
    mid = o["id"]
    p = a.ctl("--json", "wait", str(mid))
    m = one_json(p, "wait")
    check(p.returncode == 0, "wait: exit %d %r" % (p.returncode, m))
    fields(m, MIGRATION, "wait")
    check(m["status"] == "completed" and m["id"] == mid and
          m["schema"] == SCHEMA, "wait: %r" % m)
    p = a.ctl("--json", "status", str(mid))
    fields(one_json(p, "status ID"), MIGRATION, "status ID")
    p = a.ctl("--json", "status")
    arr = one_json(p, "status")
    check(isinstance(arr, list) and arr, "status: %r" % arr)
    for m in arr:
        fields(m, MIGRATION, "status element")
    # Human forms exit 0 and print something.
    for args in (["list"], ["status"], ["status", str(mid)]):
        p = a.ctl(*args)
        check(p.returncode == 0 and p.stdout and p.stderr == "",
              "%s: %r" % (args, p))
    # destd's socket: index, index-sync, status (sessions).
    p = b.ctl("--json", "index", sock=b.destd_sock)
    o = one_json(p, "index")
    check(p.returncode == 0 and o["schema"] == SCHEMA, "index %r" % o)
    fields(o["host"], INDEX_STATS, "index host")
    fields(o["scanner"], SCANNER, "index scanner")
    fields(o["filter"], FILTER, "index filter")
    # Built at the last pass's end: the index may have moved on since.
    check(o["filter"]["contents"] > 0 and
          o["filter"]["bytes"] >= o["filter"]["contents"] and
          o["filter"]["age_ms"] >= 0, "index filter: %r" % o)
    check(o["domains"], "index: no domains: %r" % o)
    for d in o["domains"]:
        fields(d, dict(INDEX_STATS, name=str, domid=int), "index domain")
        check(0 <= d["sharing_rate"] <= 1, "rate %r" % d)
    p = b.ctl("index", sock=b.destd_sock)
    check(p.returncode == 0 and "SHARING" in p.stdout and
          "(host)" in p.stdout and "scanner:" in p.stdout and
          "filter for incoming migrations:" in p.stdout,
          "index table: %r" % p.stdout)
    rows = [ln for ln in p.stdout.splitlines()
            if re.match(r"^\S+\s+\d+\s+\d+\s+\d+\s+\d+\s+[0-9.]+%$", ln)]
    check(len(rows) == len(o["domains"]), "index rows %r" % p.stdout)
    p = b.ctl("--json", "index-sync", sock=b.destd_sock)
    o = one_json(p, "index-sync")
    check(p.returncode == 0 and o["ok"] is True and
          isinstance(o["passes"], int) and o["schema"] == SCHEMA,
          "index-sync: %r" % o)
    p = b.ctl("--json", "status", sock=b.destd_sock)
    o = one_json(p, "destd status")
    check(p.returncode == 0 and o["schema"] == SCHEMA and o["sessions"],
          "destd status: %r" % o)
    for s in o["sessions"]:
        fields(s, SESSION, "session")


def daemon_refusals(c, a, b):
    for args, needle in ((["status", "999999"], "no migration 999999"),
                         (["wait", "999999"], "no migration 999999"),
                         (["cancel", "999999"], "no migration 999999"),
                         (["migrate", "no-such-guest", b.addr], None),
                         (["index"], "unknown command")):
        for js in ([], ["--json"]):
            p = a.ctl(*(js + args), sock=a.sourced_sock)
            one_error(p, 4, " ".join(js + args), needle)
            if js:
                o = one_json(p, " ".join(args))
                check(o["ok"] is False and o["exit_code"] == 4, "%r" % o)
    # A migration that has ended cannot be cancelled.
    p = a.ctl("--json", "status")
    done = [m["id"] for m in json.loads(p.stdout)
            if m["status"] == "completed"]
    check(done, "no completed migration to cancel")
    one_error(a.ctl("cancel", str(done[0])), 4, "cancel ended",
              "already ended")


def progress_real(c, a, b):
    a.create("cli-tty", PAGES, share=0.5, seed=5)
    rc, out, err = in_pty([MIGRATECTL, "--control", a.sourced_sock,
                           "migrate", "cli-tty", b.addr, "--wait"])
    text = out.decode(errors="replace").replace("\r\n", "\n")
    check(rc == 0 and err == "", "exit %d, stderr %r" % (rc, err))
    summary = text.split("\r")[-1]
    check(re.search(r"migration \d+: cli-tty all -> \S+: completed",
                    summary), "summary %r" % text[-500:])
    # Every progress line drawn has the documented parts.
    for f in text.split("\r"):
        if f.startswith("migration ") and "\x1b[K" in f and ", iter " in f:
            check(re.match(r"migration \d+ cli-tty: [a-z-]+, iter \d+, "
                           r"[0-9.]+%, [0-9.]+ MB/s, dirty \d+, ETA "
                           r"(--:--|\d+:\d\d)", f), "progress %r" % f)


def check_config(tmp):
    bad = os.path.join(tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("[host]\nbackend = sim\n\n[migration]\n"
                "downtime_ms = soon\n")
    for exe in (SOURCED, DESTD):
        p = run([exe, "--config", bad, "--check-config"], check_rc=False)
        lines = p.stderr.splitlines()
        check(p.returncode == 1 and len(lines) == 1 and
              (bad + ":5: ") in lines[0] and "downtime_ms" in lines[0],
              "%s: %d %r" % (exe, p.returncode, p.stderr))
    unknown = os.path.join(tmp, "unknown.conf")
    with open(unknown, "w") as f:
        f.write("# comment\n[tls]\ninsecure = yes\n[metrics]\n")
    p = run([DESTD, "--config=" + unknown, "--check-config"],
            check_rc=False)
    check(p.returncode == 1 and (unknown + ":4: ") in p.stderr,
          "unknown section: %r" % p.stderr)
    example = os.path.join(SOURCE, "etc", "sharemig.conf")
    for exe in (SOURCED, DESTD):
        p = run([exe, "--config", example, "--check-config", "--insecure",
                 "--backend", "sim"], check_rc=False)
        check(p.returncode == 0 and "configuration OK" in p.stdout,
              "example config: %r" % (p.stdout + p.stderr))
    p = run([SOURCED, "--config", example, "--check-config", "--backend",
             "sim", "--metrics", "nonsense"], check_rc=False)
    check(p.returncode == 1 and "--metrics" in p.stderr,
          "--metrics check: %r" % p.stderr)


def parse_exposition(text):
    """Check the text format 0.0.4 shape; return {sample: value}."""
    helps, types, samples = {}, {}, {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            name = ln.split()[2]
            check(name not in helps, "HELP twice for %s" % name)
            helps[name] = ln
        elif ln.startswith("# TYPE "):
            _, _, name, t = ln.split()
            check(name in helps and name not in types,
                  "TYPE of %s before HELP or twice" % name)
            check(t in ("counter", "gauge", "histogram"), "type %r" % t)
            types[name] = t
        else:
            m = re.match(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$', ln)
            check(m, "bad sample line %r" % ln)
            name = m.group(1)
            fam = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = fam if fam in types else name
            check(fam in types, "sample %s without TYPE" % name)
            if types[fam] == "counter":
                check(name.endswith("_total"), "counter %s" % name)
            samples[name + (m.group(2) or "")] = float(m.group(3))
    for fam, t in types.items():
        if t != "histogram":
            continue
        buckets = [(k, v) for k, v in samples.items()
                   if k.startswith(fam + "_bucket{")]
        vals = [v for _, v in buckets]
        check(vals == sorted(vals), "%s buckets not cumulative" % fam)
        check(samples[fam + '_bucket{le="+Inf"}'] == samples[fam + "_count"],
              "%s +Inf != count" % fam)
    return samples


def scrape(port):
    r = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                               timeout=30)
    check(r.headers["Content-Type"].startswith(
        "text/plain; version=0.0.4"), "content type %r" %
        r.headers["Content-Type"])
    return parse_exposition(r.read().decode())


def metrics(c, a, b, ports):
    pa, pb = ports
    src = scrape(pa)
    dst = scrape(pb)
    done = src['sharemig_source_migrations_total{outcome="completed"}']
    check(done >= 2, "completed %r" % done)
    check(src["sharemig_source_migration_downtime_seconds_count"] == done,
          "downtime histogram count")
    check(src['sharemig_source_pages_total{kind="data"}'] > 0 and
          src['sharemig_source_memory_bytes_total{kind="data"}'] ==
          4096 * src['sharemig_source_pages_total{kind="data"}'],
          "pages/bytes %r" % src)
    check(src["sharemig_source_wire_bytes_total"] > 0, "wire bytes")
    check(dst['sharemig_dest_sessions_total{outcome="completed"}'] >= done,
          "dest sessions %r" % dst)
    check(dst["sharemig_index_pages"] > 0 and
          0 <= dst["sharemig_index_sharing_ratio"] <= 1, "index %r" % dst)
    check(dst["sharemig_scanner_passes_total"] >= 1, "scanner passes")
    check(dst["sharemig_filter_contents"] > 0 and
          dst["sharemig_filter_bytes"] >= dst["sharemig_filter_contents"]
          and dst["sharemig_filter_age_seconds"] >= 0, "filter %r" % dst)
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % pa, timeout=30)
        raise AssertionError("/other served")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "/other: %d" % e.code)


def main():
    r = Runner("integration_cli")
    tmp = tempfile.mkdtemp(prefix="sharemig-cli-")
    r.case("usage errors: one line, exit 2, --json error object",
           usage_errors, tmp)
    r.case("unreachable daemon: one line, exit 4", unreachable, tmp)
    r.case("--help and the bash completion agree", help_and_completion)
    r.case("progress line in a pty (scripted daemon)", progress_scripted,
           tmp)
    r.case("no progress line off a tty or with --json", progress_not_tty,
           tmp)
    r.case("exit codes by outcome", outcome_codes, tmp)
    r.case("--check-config", check_config, tmp)
    c = Cluster("cli")
    ports = (free_port(), free_port())
    try:
        a = c.host("host-a", sourced_args=["--metrics",
                                           "127.0.0.1:%d" % ports[0]])
        b = c.host("host-b", destd_args=["--metrics",
                                         "127.0.0.1:%d" % ports[1]])
        a.start("a")
        b.start("b")
        a.create("cli1", PAGES, share=0.5, seed=5)
        b.create("stay", PAGES, share=0.5, seed=5)
        a.scan_wait()
        b.scan_wait()
        r.case("--json schema of every command", json_schema, c, a, b)
        r.case("daemon refusals: one line, exit 4", daemon_refusals, c, a, b)
        r.case("progress line in a pty (real migration)", progress_real,
               c, a, b)
        r.case("Prometheus endpoints", metrics, c, a, b, ports)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
        subprocess.run(["rm", "-rf", tmp])
    r.exit()


if __name__ == "__main__":
    main()
