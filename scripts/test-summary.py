#!/usr/bin/env python3
"""Count meson test results.

  test-summary.py TESTLOG.json LABEL   print "LABEL NAME RESULT" per test
  test-summary.py --total SUMMARY      print the per-test lines, then
                                       "N passed, N failed"; exit 1 if any
                                       failed
Only OK is a pass; FAIL, SKIP, TIMEOUT, ERROR and a missing log count as
failures.
"""
import json
import sys


def per_test(log, label):
    try:
        with open(log) as f:
            lines = [json.loads(x) for x in f if x.strip()]
    except OSError:
        print("%s testlog FAIL" % label)
        return
    for t in lines:
        print("%s %s %s" % (label, t["name"], t["result"]))


def total(summary):
    passed = failed = 0
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
