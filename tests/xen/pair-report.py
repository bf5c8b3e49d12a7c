#!/usr/bin/env python3
"""pair-report.py [--runs "all none xl"] SRC-SERIAL DST-SERIAL OUT-JSON
- checks of `lab.sh pair`.

Reads the two emulated hosts' serial logs (tests/xen/dom0-init, modes
pair-src and pair-dst), prints one PASS/FAIL line per check and a table
of the runs, writes the figures to OUT-JSON, exits 1 if any check
failed.  Every check is on bytes, pages, digests and console lines; the
times are printed, never asserted (the hosts are emulated).

--runs names the runs lab.sh asked for (PAIR_RUNS; default all three).
A check that compares with a run left out is not made, and the report
says so; it is never counted as passed.  Without `none`, the saving is
measured against a full send of mig1's populated pages at 4096 bytes
each, which is less than `--dedup none` ever sends (it adds a record
header per page and the stream's own records), so that check is
stricter than the one against `none`.
"""

import json
import re
import sys

ALL_RUNS = (("mig1", "all"), ("mig2", "none"), ("mig3", "xl"))


def lines(path):
    with open(path, "rb") as f:
        for raw in f:
            yield raw.decode("utf-8", "replace").rstrip("\r\n").strip("\r")


def kv(text):
    return dict(re.findall(r"(\w+)=(\S+)", text))


def main():
    args = sys.argv[1:]
    asked = "all none xl"
    if len(args) >= 2 and args[0] == "--runs":
        asked = args[1]
        args = args[2:]
    if len(args) != 3:
        sys.exit(__doc__)
    src, dst, out = args
    modes = asked.split()
    if not modes or any(m not in ("all", "none", "xl") for m in modes):
        sys.exit("pair-report.py: --runs takes all, none and xl")
    RUNS = tuple(r for r in ALL_RUNS if r[1] in modes)
    mig, js, runs, common = {}, {}, {}, None
    last = None
    retries = []
    for ln in lines(src):
        if ln.startswith("SHAREMIG-PAIR-RETRY:"):
            # A guest died under the emulator; its run was repeated and
            # the later lines of that guest replace these.
            retries.append(ln.split(":", 1)[1].strip())
        elif ln.startswith("SHAREMIG-PAIR-MIGRATE:"):
            f = kv(ln)
            last = f.get("guest")
            mig[last] = f
        elif ln.startswith("SHAREMIG-PAIR-JSON:") and last:
            try:
                js[last] = json.loads(ln.split(":", 1)[1].strip())
            except ValueError:
                js[last] = {}
    notes = []
    for ln in lines(dst):
        if ln.startswith("SHAREMIG-PAIR-RETRY:"):
            # peer1 died on host B during a run (dom0-init pair-dst)
            retries.append(ln.split(":", 1)[1].strip())
        elif ln.startswith("SHAREMIG-PAIR-NOTE:"):
            notes.append(ln.split(":", 1)[1].strip())
        elif ln.startswith("SHAREMIG-PAIR-RUNS:"):
            f = kv(ln)
            runs[f.get("guest")] = ln
        elif ln.startswith("SHAREMIG-XEN-COMMON:"):
            common = kv(ln)

    failed = 0
    for r in retries:
        print("RETRY %s" % r)
    for r in notes:
        print("NOTE %s" % r)

    def check(label, ok, detail=""):
        nonlocal failed
        failed += not ok
        print("%s %s%s" % ("PASS" if ok else "FAIL", label,
                           (": " + detail) if detail else ""))

    for g, mode in RUNS:
        m = mig.get(g, {})
        what = "xl migrate" if mode == "xl" else "sharemig --dedup " + mode
        check("%s (%s): migration finished" % (what, g),
              m.get("rc") == "0" and
              (mode == "xl" or js.get(g, {}).get("status") == "completed"),
              "rc=%s status=%s" % (m.get("rc"),
                                   js.get(g, {}).get("status", "-")))
        if mode != "xl":
            j = js.get(g, {})
            s, d = j.get("memory_sha256_source"), j.get("memory_sha256_dest")
            check("%s (%s): memory_sha256_source == memory_sha256_dest" %
                  (what, g), bool(s) and s == d,
                  "%s / %s over %s pages, pfns left out: %s" % (
                      (s or "-")[:16], (d or "-")[:16],
                      j.get("memory_pages_verified", "-"),
                      " ".join("%#x" % p for p in
                               j.get("memory_pfns_unverified", [])) or
                      "none"))
        check("%s (%s): gone from host A" % (what, g), m.get("gone") == "1")
        check("%s (%s): runs on host B (console advances)" % (what, g),
              " PASS " in runs.get(g, ""), runs.get(g, "no line"))

    link = {g: int(mig.get(g, {}).get("link_bytes", 0)) for g, _ in RUNS}
    not_made = []
    if "all" not in modes:
        not_made.append("every --dedup all check (run all not asked for)")
        return finish(out, failed, not_made, RUNS, mig, js, link, runs,
                      retries, notes, common)
    a, n = js.get("mig1", {}), js.get("mig2", {})
    bw_a, bw_n = a.get("bytes_wire", 0), n.get("bytes_wire", 0)
    check("commonality measured (mig1 vs peer1 on host B)", common is not None)
    # --dedup none sends every populated page in full, zero pages
    # included (src_classify: no ZERO records without dedup), so the
    # commonality that bounds the saving is that of all populated pages
    # (a zero page is "held" by any guest with a zero page).
    pct = float(common["pct"]) if common else 0.0
    pct_nz = float(common["pct_nonzero"]) if common else 0.0
    if "none" in modes:
        check("--dedup all sends fewer bytes than --dedup none",
              0 < bw_a < bw_n, "%d < %d" % (bw_a, bw_n))
        base, what = bw_n, "--dedup none's bytes_wire"
    else:
        # No `none` run: the bytes of a full send of the populated
        # pages, 4096 each (module docstring: stricter than `none`).
        base = 4096 * int(common["populated"]) if common else 0
        what = "%s populated pages x 4096 B (no `none` run)" % (
            common["populated"] if common else "-")
        not_made.append("--dedup all sends fewer bytes than --dedup "
                        "none (run none not asked for)")
    saved = 100.0 * (1 - bw_a / base) if base else 0.0
    check("--dedup all saves >= commonality - 5 points",
          base > 0 and 0 < bw_a and saved >= pct - 5,
          "saved %.1f%% of %s, commonality %.1f%% of pages "
          "(%.1f%% of non-zero pages)" % (saved, what, pct, pct_nz))
    if "xl" in modes:
        check("--dedup all uses fewer link bytes than xl migrate",
              0 < link["mig1"] < link["mig3"],
              "%d < %d" % (link["mig1"], link["mig3"]))
    else:
        not_made.append("--dedup all uses fewer link bytes than xl "
                        "migrate (run xl not asked for)")
    check("--dedup all sent REF pages", a.get("pages_ref", 0) > 0,
          "pages_ref=%s" % a.get("pages_ref"))
    # Host A's destd indexed mig1 before it left (dom0-init pair-src):
    # its pages held once on A go by the scanner's prefix, unhashed, and
    # B's FILTER rules out those whose content B lacks.
    check("--dedup all offered pages by A's index (keyed)",
          a.get("pages_keyed", 0) > 0,
          "pages_keyed=%s" % a.get("pages_keyed"))
    check("--dedup all: B's FILTER ruled out pages B lacks",
          a.get("pages_filtered", 0) > 0,
          "pages_filtered=%s of %s pages" % (a.get("pages_filtered"),
                                             a.get("pages_total")))

    return finish(out, failed, not_made, RUNS, mig, js, link, runs,
                  retries, notes, common)


def finish(out, failed, not_made, RUNS, mig, js, link, runs, retries,
           notes, common):
    for c in not_made:
        print("NOT MADE %s" % c)
    print()
    print("| run | bytes_wire | link bytes (A eth0 tx+rx) | pages data / ref"
          " / zero | total | downtime |")
    print("|---|---|---|---|---|---|")
    for g, mode in RUNS:
        j = js.get(g, {})
        if mode == "xl":
            print("| xl migrate | - | %d | - | %s s | - |" %
                  (link[g], mig.get(g, {}).get("seconds", "?")))
        else:
            print("| sharemig --dedup %s --verify | %s | %d | %s / %s / %s "
                  "| %.1f s | %.0f ms |" %
                  (mode, j.get("bytes_wire"), link[g], j.get("pages_data"),
                   j.get("pages_ref"), j.get("pages_zero"),
                   j.get("total_ms", 0) / 1000.0, j.get("downtime_ms", 0)))
    if common:
        print("\ncommonality mig1 vs peer1: %s of %s populated pages "
              "(%s%%), %s of %d non-zero (%s%%)" %
              (common["matched"], common["populated"], common["pct"],
               common["matched_nonzero"],
               int(common["populated"]) - int(common["zero"]),
               common["pct_nonzero"]))
    with open(out, "w") as f:
        json.dump({"runs_asked": [m for _, m in RUNS], "migrate": mig,
                   "json": js, "runs": runs, "retries": retries,
                   "notes": notes, "common": common,
                   "checks_not_made": not_made}, f, indent=1)
    print("\n%d check(s) failed" % failed if failed else "\nall checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
