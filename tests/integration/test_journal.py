#!/usr/bin/env python3
"""destd's in-flight journal (STATE_DIR/destd-journal, docs/OPERATIONS.md
"After a crash or a restart"), read back by a destd that starts again:
  - "building": the half-built domain was destroyed -> a failed session;
  - "go" with the committed domain here -> an ambiguous session, and the
    record is kept (as "ambiguous") so the next start reports it again;
  - "go" without the domain (destroyed before commit) -> failed;
  - "ambiguous" whose domain the operator removed -> forgotten silently;
  - an unreadable record is left for the operator, the daemon starts.
The fault matrix covers the records a real kill -9 leaves; this test
covers the states a kill cannot be timed to hit (between GO and RUNNING).
"""

import json
import os

from harness import Cluster, Runner, check


def records(h):
    d = os.path.join(h.dir, "destd-journal")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def put(h, domain, state, peer="10.0.0.9:4711 (host-x)"):
    d = os.path.join(h.dir, "destd-journal")
    os.makedirs(d, mode=0o700, exist_ok=True)
    with open(os.path.join(d, domain + ".json"), "w") as f:
        json.dump({"session": 7, "domain": domain, "peer": peer,
                   "state": state}, f)


def sessions(h):
    p = h.ctl("--json", "status", sock=h.destd_sock)
    check(p.returncode == 0, "destd status: %s %s" % (p.stdout, p.stderr))
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {s["domain"]: s for s in out["sessions"]}


def restart_destd(h):
    h.stop()
    if os.path.exists(h.destd_sock):
        os.unlink(h.destd_sock)
    h.start_destd()


def recovery(c):
    b = c.host("host-b")
    b.create("kept", 1024, share=0.5, seed=3)     # a committed domain
    put(b, "kept", "go")
    put(b, "lost", "go")
    put(b, "half", "building")
    with open(os.path.join(b.dir, "destd-journal", "torn.json"), "w") as f:
        f.write('{"domain": "torn", "sta')
    b.start_destd()
    ss = sessions(b)
    check(ss.get("kept", {}).get("status") == "ambiguous" and
          "GO" in ss["kept"].get("error", ""), "kept: %r" % ss.get("kept"))
    check(ss.get("lost", {}).get("status") == "failed" and
          "before the domain was committed" in ss["lost"].get("error", ""),
          "lost: %r" % ss.get("lost"))
    check(ss.get("half", {}).get("status") == "failed" and
          "restarted during the migration" in ss["half"].get("error", ""),
          "half: %r" % ss.get("half"))
    check("torn" not in ss, "torn record made a session: %r" % ss)
    check(records(b) == ["kept.json", "torn.json"],
          "records after the first start: %r" % records(b))
    log = b.log("destd")
    check("torn.json is unreadable" in log, "no log line for torn.json")
    # Ambiguous stays until the copy here is gone.
    restart_destd(b)
    ss = sessions(b)
    check(ss.get("kept", {}).get("status") == "ambiguous",
          "kept after a second start: %r" % ss.get("kept"))
    # The operator settles it: the domain here is destroyed.
    b.simhv("destroy", "kept")
    restart_destd(b)
    ss = sessions(b)
    check("kept" not in ss, "kept reported after it was destroyed: %r" % ss)
    check(records(b) == ["torn.json"], "records: %r" % records(b))


def live_records(c):
    """A completed migration leaves no record on the destination."""
    a = c.host("host-a2")
    b = c.host("host-b2")
    a.start("a")
    b.start("b")
    a.create("mover", 2048, share=0.5, seed=4)
    rc, out = a.migrate("mover", b, "--dedup", "all")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    check(records(b) == [], "records after a completed migration: %r" %
          records(b))


def main():
    r = Runner("journal")
    c = Cluster("journal")
    try:
        r.case("destd settles its journal at start", recovery, c)
        r.case("a completed migration leaves no record", live_records, c)
    finally:
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
