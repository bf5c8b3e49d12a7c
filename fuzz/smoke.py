#!/usr/bin/env python3
"""One bounded libFuzzer run of a fuzz target, as a test (CI smoke).

  smoke.py TARGET CORPUS SECONDS

Copies the seed corpus CORPUS into a temporary directory (libFuzzer adds
to the corpus it is given; the repository's stays untouched), runs
TARGET on it for SECONDS with a 2 GiB RSS limit, and passes only if
libFuzzer finished on its own ("Done N runs") with exit status 0 after
loading every seed and executing more inputs than the corpus held.  On a
finding the crashing input is copied next to this test's log
(meson's build dir, fuzz-smoke-artifacts/TARGET/) and its path printed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: smoke.py TARGET CORPUS SECONDS")
    target, corpus, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seeds = [f for f in os.listdir(corpus)
             if os.path.isfile(os.path.join(corpus, f))]
    if not seeds:
        sys.exit("%s: empty seed corpus" % corpus)
    name = os.path.basename(target)
    with tempfile.TemporaryDirectory(prefix="fuzz-smoke-") as tmp:
        work = os.path.join(tmp, "corpus")
        shutil.copytree(corpus, work)
        art = os.path.join(tmp, "art") + "/"
        os.mkdir(art)
        cmd = [target, "-max_total_time=%d" % seconds, "-rss_limit_mb=2048",
               "-timeout=25", "-print_final_stats=1",
               "-artifact_prefix=" + art, work]
        print(" ".join(cmd), flush=True)
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=seconds + 120)
        out = p.stdout
        stats = [ln for ln in out.splitlines() if re.search(r"\sDONE\s", ln)]
        done = re.search(r"^Done (\d+) runs in (\d+) second", out, re.M)
        found = sorted(os.listdir(art))
        if found:
            keep = os.path.join(os.getcwd(), "fuzz-smoke-artifacts", name)
            os.makedirs(keep, exist_ok=True)
            for f in found:
                shutil.copy(os.path.join(art, f), keep)
                print("finding: %s" % os.path.join(keep, f))
        if p.returncode != 0 or found or not done or not stats:
            print(out[-6000:])
            print("%s: FAILED (exit %d)" % (name, p.returncode))
            return 1
        runs = int(done.group(1))
        print(stats[-1])
        print("%s: %d runs in %s s, %d seeds" % (name, runs, done.group(2),
                                               len(seeds)))
        if runs <= len(seeds):
            print("%s: FAILED: no input beyond the seeds ran" % name)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
