#!/usr/bin/env python3
"""Fault-injection matrix: fault x phase, each cell checked against I5.

Two simulated hosts (tests/integration/harness.py: real daemons, real
TLS), A migrates a running self-checking guest to B through a
FaultProxy (faultproxy.py).  Both daemons run with --timeout 5.

Faults (rows):     cut    both sides reset (SO_LINGER 0 -> RST)
                   stall  nothing forwarded either way, closes swallowed
                   kill-src / kill-dst   kill -9 of sourced / destd (then
                          restarted with the same arguments)
                   cancel     `migratectl cancel` (then the link flows
                          again): "cancelled" with the guest on A before
                          GO; refused (exit 4) and completed after GO
Phases (columns), from what can be observed outside TLS:
  handshake  the proxy freezes the link on the first D->S bytes (the
             server's first TLS flight is held: both sides mid-handshake)
  iter0      sourced "status" iterating, iterations == 0, >= 8 MiB
             forwarded S->D
  iterN      sourced "status" iterating, iterations >= 1
  stopcopy   sourced "status" stop-and-copy
  ready      READY sent, GO not yet: D->S is held from stop-and-copy on,
             the fault comes when destd's session says "ready"
  handover   GO sent, RUNNING not yet: as "ready", then exactly the held
             D->S bytes (up to READY) are released and D->S is held again;
             sourced says "handover"; destd says "completed" (its RUNNING
             is held in the proxy); then the fault
The proxy also throttles S->D so that each phase lasts long enough.

Every cell asserts, once the job has ended (sourced restarted if killed):
  1. the guest runs on exactly one host; only in the handover column may
     sourced say "ambiguous", and then the source copy must exist, be
     paused, and at most one copy runs (I5);
  2. the memory self-check passes (simhv check) where it runs (and on a
     kept paused source copy);
  3. no half-built domain (a file with "incoming" in its name) is left on
     the destination within 5 s (after destd's restart, if killed);
  4. a stall is detected: sourced ends the job within 3 x --timeout, and
     destd ends its session within 3 x --timeout;
  5. the daemons accept and complete the next migration (A -> B,
     --verify, direct, self-check on B);
  6. a killed sourced, restarted, reports the job from its journal (the
     status the checks above use; "unknown" when it died before the
     journal's first record, at the handshake); a killed destd, restarted,
     reports the session it lost from its
     journal: "failed" with "restarted" in the error for iter0..ready;
     in the handover column, if it reports one, "ambiguous" exactly
     when the domain is on B.

Usage: matrix.py [--cells fault:phase,...] [--faults a,b] [--phases x,y]
       [--keep-going] [--table FILE]
Exit status 0 when every selected cell passed.
"""

import argparse
import json
import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from harness import Cluster, Failure, check, wait_until  # noqa: E402
from faultproxy import FaultProxy, S2D, D2S  # noqa: E402

TIMEOUT = 5                 # --timeout of both daemons, seconds
PAGES = 32768               # 128 MiB guest
RATE = 10000               # guest writes/s: stop-and-copy stays long
THROTTLE = 40 << 20         # proxy S->D bytes/s
FAULTS = ["cut", "stall", "kill-src", "kill-dst", "cancel"]
PHASES = ["handshake", "iter0", "iterN", "stopcopy", "ready", "handover"]
TERMINAL = ("completed", "failed", "cancelled", "ambiguous")


def ctl_call(sock, req, timeout=10):
    """One request on a control socket; the reply dict (or raises)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf)


def src_job_of(host, domain):
    """The newest job of sourced's status for domain (after a restart:
    the one settled from its journal), or None."""
    try:
        rep = ctl_call(host.sourced_sock, {"cmd": "status"})
    except (OSError, ValueError):
        return None
    js = [j for j in rep.get("migrations", []) if j.get("domain") == domain]
    return js[-1] if js else None


def src_job(host, jid):
    try:
        rep = ctl_call(host.sourced_sock, {"cmd": "status", "id": jid})
    except (OSError, ValueError):
        return None
    return rep.get("migration") if rep.get("ok") else None


def dst_sessions(host):
    try:
        rep = ctl_call(host.destd_sock, {"cmd": "status"})
    except (OSError, ValueError):
        return []
    return rep.get("sessions", [])


def dst_session(host, domain):
    ss = [s for s in dst_sessions(host) if s.get("domain") == domain]
    return ss[-1] if ss else None


def dst_new_session(host, before):
    """The newest destd session whose id is not in before (during the
    TLS handshake a session has no domain yet)."""
    ss = [s for s in dst_sessions(host) if s.get("id") not in before]
    return ss[-1] if ss else None


def guest_state(host, name):
    """None (absent) or the simhv list entry."""
    out = json.loads(host.simhv("list", "--json").stdout)
    if isinstance(out, dict):
        out = out.get("domains", [])
    for d in out:
        if d["name"] == name:
            return d
    return None


def runs(st):
    return st is not None and st["running"] and not st["paused"]


def incoming_left(host, name=None):
    """Half-built domains on host (of guest name only, if given)."""
    return [f for f in os.listdir(host.dir) if "incoming" in f and
            (name is None or f.startswith(name + "."))]


def restart(host, what):
    """Start a killed daemon again and wait until it answers."""
    if what == "sourced":
        host.start_sourced("a" if host.name.endswith("a") else "b")
        sock = host.sourced_sock
        req = {"cmd": "status"}
    else:
        host.start_destd("a" if host.name.endswith("a") else "b")
        sock = host.destd_sock
        req = {"cmd": "list"}

    def answers():
        try:
            return ctl_call(sock, req, timeout=2).get("ok")
        except (OSError, ValueError):
            return False
    check(wait_until(answers, 20, 0.05), "%s did not come back" % what)


def kill9(host, what):
    p = host.procs[what]
    p.send_signal(signal.SIGKILL)
    p.wait()


class Cell:
    def __init__(self, fault, phase):
        self.fault = fault
        self.phase = phase
        self.name = "%s:%s" % (fault, phase)
        self.outcome = ""
        self.notes = []
        self.ok = False


def start_job(a, name, dest_addr):
    rep = ctl_call(a.sourced_sock, {
        "cmd": "migrate", "domain": name, "destination": dest_addr,
        "dedup": "all", "verify": True, "downtime_ms": 1,
        "max_iterations": 3})
    check(rep.get("ok"), "migrate refused: %r" % rep)
    return rep["id"]


def reach_phase(cell, a, b, proxy, jid, name, before):
    """Drive the job to the cell's phase and freeze the link there.
    Returns the sourced status seen at the fault point."""
    ph = cell.phase
    st = lambda: src_job(a, jid) or {}          # noqa: E731
    if ph == "handshake":
        ok = proxy.triggered.wait(30)
        check(ok, "handshake trigger never fired")
        return st().get("status", "?")
    if ph == "iter0":
        def at():
            j = st()
            return j.get("status") in ("negotiating", "iterating") and \
                j.get("iterations") == 0 and \
                proxy.forwarded()[S2D] >= 8 << 20 and j
        j = wait_until(at, 60)
        check(j, "iteration 0 not seen (last %r)" % st().get("status"))
        proxy.freeze()
        return "iterating/0"
    if ph == "iterN":
        j = wait_until(lambda: st().get("status") == "iterating" and
                       st().get("iterations", 0) >= 1, 90)
        check(j, "no iteration >= 1 seen (last %r)" % st().get("status"))
        proxy.freeze()
        return "iterating/%d" % st().get("iterations", -1)
    # stopcopy, ready, handover: hold D->S from stop-and-copy on
    j = wait_until(lambda: st().get("status") in
                   ("stop-and-copy", "final", "handover") or
                   st().get("status") in TERMINAL, 120, 0.001)
    if ph != "stopcopy":
        # READY must not get through: hold D->S now, then make sure it
        # had not already passed (sourced would be in handover)
        proxy.stall(s2d=False, d2s=True)
    s = st().get("status")
    if ph != "stopcopy":
        check(s in ("stop-and-copy", "final"), "READY passed before the "
              "hold (saw %r)" % s)
    else:
        check(s == "stop-and-copy", "stop-and-copy missed (saw %r)" % s)
    if ph == "stopcopy":
        # The source may still push what the socket buffers take after
        # the freeze (and say "final"); the destination has not seen END.
        proxy.freeze()
        ds = (dst_new_session(b, before) or {}).get("status")
        check(ds == "receiving", "destd already past receiving (%r)" % ds)
        return "stop-and-copy, destd receiving"
    ok = wait_until(lambda: (dst_session(b, name) or {}).get("status") ==
                    "ready", 30, 0.01)
    check(ok, "destd never said ready (%r)" % dst_session(b, name))
    check(st().get("status") == "final", "sourced not in final: %r" %
          st().get("status"))
    if ph == "ready":
        proxy.freeze()
        return "final (READY held)"
    # handover: let exactly the held bytes (up to READY) through
    held = proxy.held(D2S)
    proxy.release(D2S, held)
    ok = wait_until(lambda: st().get("status") == "handover", 10, 0.002)
    check(ok, "sourced never said handover (%r)" % st().get("status"))
    ok = wait_until(lambda: (dst_session(b, name) or {}).get("status") in
                    ("completed", "failed"), 60, 0.01)
    check(ok, "destd never finished the handover")
    proxy.freeze()
    return "handover (RUNNING held)"


def apply_fault(cell, a, b, proxy, jid):
    f = cell.fault
    if f == "cancel":
        # The operator cancels; held bytes then flow again.  Before GO the
        # job must end "cancelled" with the guest running on A; once GO is
        # out, cancel is refused (exit 4) and the handover completes.
        p = a.ctl("cancel", str(jid))
        cell.notes.append("cancel exit %d" % p.returncode)
        cell.cancel_rc = p.returncode
        proxy.unstall(drop=False)
    elif f == "cut":
        proxy.cut(rst=True)
    elif f == "stall":
        proxy.freeze()        # already frozen: nothing moves any more
    elif f == "kill-src":
        kill9(a, "sourced")
        proxy.unstall(drop=True)
    elif f == "kill-dst":
        kill9(b, "destd")
        proxy.unstall(drop=True)


def run_cell(cell, c, a, b, proxy, idx):
    name = "g%02d-%s-%s" % (idx, cell.fault, cell.phase)
    cell.notes = []
    a.create(name, PAGES, profile="micro", share=0.3, rate=RATE,
             seed=idx + 7)
    proxy.reset(rate=THROTTLE)
    if cell.phase == "handshake":
        proxy.trigger_bytes(lambda d, s2d, d2s: d == D2S)
    t0 = time.time()
    before = set(x.get("id") for x in dst_sessions(b))
    jid = start_job(a, name, proxy.addr)
    seen = reach_phase(cell, a, b, proxy, jid, name, before)
    t_fault = time.time()
    apply_fault(cell, a, b, proxy, jid)
    cell.notes.append("fault at %s" % seen)

    # the job's end (sourced restarted if killed)
    limit = 3 * TIMEOUT + 5
    job = None
    if cell.fault == "kill-src":
        restart(a, "sourced")
        # What the restarted sourced settled from its journal (nothing
        # when it died before turning log-dirty on).
        job = src_job_of(a, name)
    else:
        job = wait_until(lambda: (src_job(a, jid) or {}).get("status") in
                         TERMINAL and src_job(a, jid), limit, 0.05)
        if job is None:
            cell.notes.append("sourced did NOT end the job within %ds "
                              "(3 x timeout + 5)" % limit)
            job = wait_until(lambda: (src_job(a, jid) or {}).get(
                "status") in TERMINAL and src_job(a, jid), 60, 0.2)
        else:
            cell.notes.append("sourced ended it after %.1fs" %
                              (time.time() - t_fault))
    if cell.fault == "kill-dst":
        restart(b, "destd")
    status = job["status"] if job else ("unknown" if cell.fault ==
                                        "kill-src" else "hung")
    cell.outcome = status
    if cell.fault == "stall":
        # destd must end its session too (within 3 x timeout)
        sess = wait_until(lambda: (dst_new_session(b, before) or {}).get(
            "status") in ("completed", "failed"), limit, 0.1)
        if not sess:
            last = dst_new_session(b, before)
            cell.notes.append("destd did NOT end its session within %ds "
                              "(status %r)" % (limit, last and
                                               last.get("status")))
        else:
            cell.notes.append("destd ended its session after %.1fs" %
                              (time.time() - t_fault))
    proxy.cut(rst=True)          # release the black hole, if any
    time.sleep(0.3)

    # checks
    errors = []
    if job is None and cell.fault != "kill-src":
        errors.append("job never ended")
    if cell.fault == "stall" and any("NOT end" in n for n in cell.notes):
        errors.append("stall not detected within 3 x timeout")
    left = wait_until(lambda: not incoming_left(b, name), 5, 0.1)
    if left is None:
        errors.append("half-built domain left on B: %r" %
                      incoming_left(b, name))
        # hygiene for the next cells (the finding is recorded)
        for f in incoming_left(b, name):
            os.unlink(os.path.join(b.dir, f))
    ga, gb = guest_state(a, name), guest_state(b, name)
    if cell.fault == "kill-dst":
        # The restarted destd reports what its journal says it left.
        rec = dst_session(b, name)
        if cell.phase in ("iter0", "iterN", "stopcopy", "ready"):
            if rec is None or rec.get("status") != "failed" or \
                    "restarted" not in rec.get("error", ""):
                errors.append("restarted destd does not report the "
                              "session it lost: %r" % rec)
        elif cell.phase == "handover" and rec is not None:
            want = "ambiguous" if gb is not None else "failed"
            if rec.get("status") != want:
                errors.append("restarted destd reports %r with the "
                              "domain %s on B" % (rec, "present" if gb
                                                  else "absent"))
        if rec is not None:
            cell.notes.append("destd after restart: %s" %
                              rec.get("status"))
    desc = "A:%s B:%s" % (
        "-" if ga is None else ("running" if runs(ga) else "paused"
                                if ga["paused"] else "stopped"),
        "-" if gb is None else ("running" if runs(gb) else "paused"
                                if gb["paused"] else "stopped"))
    cell.outcome = "%s, %s" % (status, desc)
    nrun = runs(ga) + runs(gb)
    if status == "ambiguous":
        if cell.phase != "handover":
            errors.append("ambiguous outside GO->RUNNING")
        if ga is None:
            errors.append("ambiguous but the source copy is gone")
        elif not ga["paused"] or runs(ga):
            errors.append("ambiguous but the source copy is not paused")
        if nrun > 1:
            errors.append("two running copies")
    elif nrun != 1:
        errors.append("%d running copies (%s)" % (nrun, desc))
    if cell.fault == "cancel":
        want = "completed" if cell.phase == "handover" else "cancelled"
        if status != want:
            errors.append("cancel at %s: %s, expected %s" % (
                cell.phase, status, want))
        if (cell.cancel_rc == 0) != (want == "cancelled"):
            errors.append("migratectl cancel exit %d" % cell.cancel_rc)
    if status == "completed" and ga is not None:
        errors.append("completed but the source copy still exists")
    if status in ("failed", "cancelled") and not runs(ga):
        errors.append("failed but the guest does not run on the source")
    for h, g in ((a, ga), (b, gb)):
        if g is not None and (runs(g) or status == "ambiguous"):
            rc, out = h.selfcheck(name)
            if rc != 0:
                errors.append("self-check on %s: %s" % (h.name, out.strip()))

    # put things right for the next cell (an operator's decision for an
    # ambiguous outcome: keep the copy that runs)
    if ga is not None and gb is not None:
        if runs(gb):
            a.simhv("destroy", name, check_rc=False)
        else:
            b.simhv("destroy", name, check_rc=False)
    elif ga is not None and not runs(ga):
        a.simhv("start", name, check_rc=False)

    # the daemons serve the next migration
    nxt = "n%02d" % idx
    try:
        a.create(nxt, 4096, share=0.5, seed=3)
        rc, out = a.migrate(nxt, b, "--dedup", "all", "--verify")
        if rc != 0 or out.get("status") != "completed":
            errors.append("next migration: %s" % out.get("error", out))
        else:
            rc, outc = b.selfcheck(nxt)
            if rc != 0:
                errors.append("next migration: self-check: %s" % outc)
    except Failure as e:
        errors.append("next migration: %s" % e)
    for h in (a, b):
        for g in (name, nxt):
            h.simhv("destroy", g, check_rc=False)
    cell.notes.append("%.1fs" % (time.time() - t0))
    cell.ok = not errors
    if errors:
        cell.outcome += " -- " + "; ".join(errors)
    return cell.ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="")
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--table", default="")
    ap.add_argument("--retries", type=int, default=2,
                    help="retries of a cell whose phase was missed")
    args = ap.parse_args()
    if args.cells:
        cells = [Cell(*x.split(":")) for x in args.cells.split(",")]
    else:
        cells = [Cell(f, p) for f in args.faults.split(",")
                 for p in args.phases.split(",")]
    c = Cluster("faults")
    a = c.host("host-a", sourced_args=["--timeout", str(TIMEOUT)],
               destd_args=["--timeout", str(TIMEOUT)])
    b = c.host("host-b", sourced_args=["--timeout", str(TIMEOUT)],
               destd_args=["--timeout", str(TIMEOUT)])
    failed = 0
    try:
        a.start("a")
        b.start("b")
        proxy = FaultProxy(b.port)
        for i, cell in enumerate(cells):
            for attempt in range(args.retries + 1):
                try:
                    run_cell(cell, c, a, b, proxy, i * 10 + attempt)
                    break
                except Failure as e:
                    # the phase was missed: clean up and try again
                    cell.outcome = "phase not reached: %s" % e
                    cell.ok = False
                    proxy.cut(rst=True)
                    for h in (a, b):
                        if not h.alive("sourced"):
                            restart(h, "sourced")
                        if not h.alive("destd"):
                            restart(h, "destd")
                    time.sleep(TIMEOUT)
                    for h in (a, b):
                        h.destroy_all()
            failed += not cell.ok
            print("%s %-22s %s  [%s]" % ("ok  " if cell.ok else "FAIL",
                                         cell.name, cell.outcome,
                                         "; ".join(cell.notes)), flush=True)
    finally:
        if failed and os.environ.get("SHAREMIG_FAULTS_LOGS"):
            c.dump_logs()
        try:
            proxy.close()
        except Exception:
            pass
        c.close()
    lines = ["| cell | result | outcome | notes |", "|---|---|---|---|"]
    for cell in cells:
        lines.append("| %s | %s | %s | %s |" % (
            cell.name, "pass" if cell.ok else "FAIL", cell.outcome,
            "; ".join(cell.notes)))
    table = "\n".join(lines)
    print("\nfault matrix (timeout %ds):\n%s" % (TIMEOUT, table))
    if args.table:
        with open(args.table, "w") as f:
            f.write(table + "\n")
    print("fault matrix: %d passed, %d failed" % (len(cells) - failed,
                                                  failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
