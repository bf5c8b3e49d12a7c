#!/usr/bin/env python3
"""Count meson test results.

  test-summary.py TESTLOG.json LABEL   print "LABEL NAME RESULT" per test
  test-summary.py --total SUMMARY      print the per-test lines, then
                                       "N passed, N failed"; exit 1 if any
                                       failed
Only OK is a pass; FAIL, SKIP, TIMEOUT, ERROR and a missing log count as
failures.

A CI report keeps only the end of what the run printed, where meson's
error logs of a failed test are long gone.  So the per-test mode also
appends the last lines of each failed test's output to SUMMARY.why
(SUMMARY from $SHAREMIG_TEST_SUMMARY), and --total prints them, at most
WHY_LINES in all, just before its own lines.
"""
import json
import os
import sys

WHY_TAIL = 14           # lines kept per failed test
WHY_LINES = 20          # lines --total prints of them
WHY_WIDTH = 200         # characters kept per line


def per_test(log, label):
    try:
        with open(log) as f:
            lines = [json.loads(x) for x in f if x.strip()]
    except OSError:
        print("%s testlog FAIL" % label)
        return
    why = []
    for t in lines:
        print("%s %s %s" % (label, t["name"], t["result"]))
        if t["result"] != "OK":
            why.append("why: %s %s %s after %.0f s, exit %s; its last lines:"
                       % (label, t["name"], t["result"],
                          t.get("duration") or 0, t.get("returncode")))
            out = (t.get("stdout") or "").rstrip("\n").split("\n")
            why += ["  " + x.rstrip("\r")[:WHY_WIDTH]
                    for x in out[-WHY_TAIL:]]
    summary = os.environ.get("SHAREMIG_TEST_SUMMARY")
    if why and summary:
        with open(summary + ".why", "a") as f:
            f.write("\n".join(why) + "\n")


def total(summary):
    passed = failed = 0
    try:
        with open(summary + ".why") as f:
            why = f.read().splitlines()
    except OSError:
        why = []
    for x in why[:WHY_LINES]:
        print(x)
    if len(why) > WHY_LINES:
        print("why: %d more lines in %s.why" % (len(why) - WHY_LINES, summary))
    with open(summary) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[-1] == "OK":
                passed += 1
            else:
                failed += 1
                print("not ok: " + line.strip())
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    if sys.argv[1] == "--total":
        total(sys.argv[2])
    else:
        per_test(sys.argv[1], sys.argv[2])
