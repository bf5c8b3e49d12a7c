#!/usr/bin/env python3
"""bench_smoke - the evaluation's command in miniature, for CI.

Runs bench/run (issue 4's benchmark) the way an operator does, on a
small scale: two sim hosts in network namespaces joined by a veth pair
shaped to 1 Gbit/s, each with sourced and destd over TLS and a
same-image guest, then the micro benchmark at share 0.5 with --quick
guests (16,384 pages), one run per mode.  The full evaluation is
`sudo bench/run` (docs/BENCHMARKS.md); this keeps its code path from
rotting between full runs.

Checks what any run must show, not the targets (those are measured by
the full run, on idle cores): every migration completed and its resumed
guest's self-check of its memory passed; --dedup all filled about half
the pages from the destination's copy (REF) and sent less than 0.6 of
none's wire bytes.  Needs root (ip netns, tc), gnuplot-nox and iperf3
(scripts/install-deps.sh); fails, never skips, without them.
Environment: SHAREMIG_BUILD, the meson build dir whose binaries run.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARE = 0.5


def main():
    build = os.environ.get("SHAREMIG_BUILD", os.path.join(ROOT, "build"))
    failed = []

    def check(ok, what):
        print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            failed.append(what)

    with tempfile.TemporaryDirectory(prefix="sharemig-bench-smoke-") as d:
        cmd = [os.path.join(ROOT, "bench", "run"), "--quick", "--no-build",
               "--build", build, "--only", "micro", "--shares", str(SHARE),
               "--runs", "1", "--results-dir", d]
        print("$ " + " ".join(cmd), flush=True)
        p = subprocess.run(cmd, timeout=540)
        check(p.returncode == 0, "bench/run exit status %d" % p.returncode)
        path = os.path.join(d, "quick-exp.json")
        if not os.path.exists(path):
            check(False, "no results file %s" % path)
            return 1
        with open(path) as f:
            res = json.load(f)
        pages = res["settings"]["pages"]
        cells = res.get("micro", {}).get(str(SHARE), {})
        runs = {}
        for mode in ("none", "shared", "all"):
            rows = cells.get(mode, [])
            good = [r for r in rows if r.get("rc") == 0 and
                    r.get("status") == "completed"]
            check(len(good) == 1, "%s: completed (%r)" % (
                mode, [r.get("error") for r in rows]))
            for r in good:
                check(r.get("resume_check") == "ok",
                      "%s: the resumed guest's self-check: %r" %
                      (mode, r.get("resume_check")))
                runs[mode] = r
        if "all" in runs and "none" in runs:
            al, no = runs["all"], runs["none"]
            frac = al["pages_ref"] / pages
            check(abs(frac - SHARE) <= 0.03,
                  "all: REF %d of %d pages (%.3f, share %.2f)" %
                  (al["pages_ref"], pages, frac, SHARE))
            ratio = al["bytes_wire"] / no["bytes_wire"]
            check(ratio < 0.6, "all/none wire bytes %.3f < 0.6" % ratio)
            print("all: %.2f s, %.1f MB; none: %.2f s, %.1f MB" % (
                al["total_ms"] / 1000, al["bytes_wire"] / 1e6,
                no["total_ms"] / 1000, no["bytes_wire"] / 1e6))
    print("%d check(s) failed" % len(failed) if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
