#!/usr/bin/env python3
"""Dedup accounting on `micro --share F` guests made with the same seed on
both hosts (the seed report's micro benchmark):
  - --dedup all: pages_ref / pages_total within 2 points of F;
  - bytes_wire(all) <= (1 - F) * 1.02 * bytes_wire(none) + 1 MiB;
  - --dedup shared offers only pages shared on the source host, so with
    no same-image guest on the source it sends (almost) no REF;
  - zero pages never go in full except with --dedup none;
  - with --dedup all, a page held once on the source host is offered
    keyed (unhashed) and the ones the destination fills pass HAVE's
    check; the ones the destination's FILTER rules out are not offered
    at all (`pages_filtered`);
  - from iteration 1 on, a guest that rewrites pages with fresh content
    (nothing to find) gets most of them sent without a SHA-256 lookup
    (`pages_unlooked`, include/ygate.h), and its memory still verifies;
  - iteration 0 goes unique-first by default (the pages not shared on
    the source host, then the shared ones) and in pfn order with
    --order pfn; both give the same dedup and a verified memory.
Guests are 256 MiB (65536 pages), as in the issue's measurement, writing
100 pages/s (see main()).
"""

import hashlib
import json
import os

from harness import Cluster, Runner, check

PAGES = int(os.environ.get("SHAREMIG_DEDUP_PAGES", "65536"))
MiB = 1 << 20


def pair(c, tag):
    a = c.host("host-a-" + tag)
    b = c.host("host-b-" + tag)
    a.start("a")
    b.start("b")
    return a, b


def none_and_all(a, b, tag, pages, share, seed, rate):
    """Migrate a fresh micro guest from a to b with --dedup none, then
    another with all, both --verify; their JSON by mode."""
    res = {}
    for mode in ("none", "all"):
        name = "%s-%s" % (tag, mode)
        a.create(name, pages, share=share, seed=seed, rate=rate)
        a.scan_wait()
        b.scan_wait()
        rc, out = a.migrate(name, b, "--dedup", mode, "--verify")
        check(rc == 0 and out["status"] == "completed", "%r" % out)
        check(out["memory_sha256_source"] == out["memory_sha256_dest"],
              "I1: %r" % out)
        res[mode] = out
        print("  share %.3f %-4s %s" % (share, mode, json.dumps(out)),
              flush=True)
    return res


def share_rate(c, share, rate=None):
    a, b = pair(c, str(share))
    b.create("img-b", PAGES, share=share, seed=5)
    res = none_and_all(a, b, "mig", PAGES, share, 5, rate)
    al, no = res["all"], res["none"]
    # Alone on host-a, every page of the guest is held once there: each
    # offer is keyed (the scanner's prefix, no hashing), and the pages
    # host-b fills are hashed when HAVE comes; none fails the check.
    check(al["pages_keyed"] >= 0.95 * al["pages_offered"] > 0,
          "keyed %d of %d offered" % (al["pages_keyed"],
                                      al["pages_offered"]))
    check(al["pages_unconfirmed"] == 0, "unconfirmed fills: %r" % al)
    # host-b lacks the guest's private pages: its FILTER says so, and
    # host-a neither reads nor offers them (about 2% false positives are
    # offered).  Iteration 0's pages of each kind come once.
    private = (1 - share) * PAGES
    check(0.95 * private <= al["pages_filtered"] <= private + 64,
          "filtered %d of about %d private pages" % (al["pages_filtered"],
                                                     private))
    check(al["pages_offered"] <= share * PAGES + 0.05 * private + 64,
          "offered %d with %d filtered" % (al["pages_offered"],
                                           al["pages_filtered"]))
    check(no["pages_filtered"] == 0, "none filtered: %r" % no)
    ratio = al["pages_ref"] / al["pages_total"]
    check(abs(ratio - share) <= 0.02,
          "pages_ref/pages_total = %.4f, F = %.2f" % (ratio, share))
    limit = (1 - share) * 1.02 * no["bytes_wire"] + MiB
    check(al["bytes_wire"] <= limit,
          "bytes_wire(all) %d > (1-F)*1.02*none + 1 MiB = %d (ratio %.4f)"
          % (al["bytes_wire"], limit, al["bytes_wire"] / no["bytes_wire"]))


def shared_policy(c):
    """Only pages shared on the source host are offered."""
    a, b = pair(c, "shared")
    b.create("img-b", PAGES // 4, share=0.5, seed=9)
    a.create("lonely", PAGES // 4, share=0.5, seed=9)
    a.scan_wait()
    b.scan_wait()
    rc, out = a.migrate("lonely", b, "--dedup", "shared")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    # Nothing of lonely's is shared on host-a: nothing offered.
    check(out["pages_offered"] == 0, "offered %r" % out)
    # A second same-image guest on host-a makes half the pages shared.
    a.create("twin1", PAGES // 4, share=0.5, seed=9)
    a.create("twin2", PAGES // 4, share=0.5, seed=9)
    a.scan_wait()
    b.scan_wait()
    rc, out = a.migrate("twin1", b, "--dedup", "shared")
    check(rc == 0 and out["status"] == "completed", "%r" % out)
    frac = out["pages_ref"] / out["pages_total"]
    check(abs(frac - 0.5) <= 0.02, "shared: ref fraction %.3f" % frac)
    # Every candidate of `shared` is shared here: hashed, never keyed.
    check(out["pages_keyed"] == 0, "shared policy keyed: %r" % out)


def order(c):
    """unique-first (default with dedup) and pfn order: same result."""
    a, b = pair(c, "order")
    n = PAGES // 4
    b.create("img-b", n, share=0.5, seed=11)
    a.create("img-a", n, share=0.5, seed=11)	# makes the image shared
    res = {}
    for mode, opts in (("all", ()), ("shared", ()),
                       ("all", ("--order", "pfn")),
                       ("all", ("--order", "unique-first"))):
        name = "o-%s-%d" % (mode, len(res))
        a.create(name, n, share=0.5, seed=11, rate=100)
        a.scan_wait()
        b.scan_wait()
        rc, out = a.migrate(name, b, "--dedup", mode, "--verify", *opts)
        check(rc == 0 and out["status"] == "completed", "%r" % out)
        print("  %s %s: %s" % (mode, " ".join(opts), json.dumps(out)),
              flush=True)
        want = "pfn" if "pfn" in opts else "unique-first"
        check(out["order"] == want, "order %r, want %s" % (out["order"],
                                                           want))
        first = out["order_first_pages"]
        if want == "pfn":
            check(first == 0, "pfn order with a first pass: %r" % out)
        else:
            # Not shared on host-a: the guest's unique half, its header
            # and page tables.
            check(abs(first / n - 0.5) <= 0.02,
                  "pass 0 has %d of %d pages" % (first, n))
        frac = out["pages_ref"] / out["pages_total"]
        check(abs(frac - 0.5) <= 0.02, "%s %s: ref fraction %.3f" %
              (mode, opts, frac))
        res[len(res)] = out
    rc, out = a.migrate("img-a", b, "--dedup", "none", "--order", "bogus")
    check(rc != 0 and "order" in json.dumps(out), "bad --order: %r" % out)


def zero_pages(c):
    """writer guests have many zero pages: ZERO unless --dedup none."""
    a, b = pair(c, "zero")
    for mode in ("none", "shared", "all"):
        name = "w-" + mode
        a.create(name, PAGES // 4, profile="writer", rate=200, seed=3)
        a.scan_wait()
        b.scan_wait()
        rc, out = a.migrate(name, b, "--dedup", mode, "--verify")
        check(rc == 0 and out["status"] == "completed", "%r" % out)
        sess = [x for x in b.destd_call({"cmd": "status"})["sessions"]
                if x["domain"] == name and x["status"] == "completed"]
        check(len(sess) == 1, "%s: destd sessions %r" % (mode, sess))
        skipped = sess[0]["pages_zero_skipped"]
        if mode == "none":
            check(out["pages_zero"] == 0, "none sent ZERO: %r" % out)
            check(skipped == 0, "none: %d zero pages skipped" % skipped)
        else:
            check(out["pages_zero"] > out["pages_total"] // 4,
                  "%s: zero pages not elided: %r" % (mode, out))
            # The sim builds the new domain zeroed (HV_DOM_ZEROED):
            # iteration 0's ZERO pages are not written (--verify above
            # compared every page).  A page the guest zeroed after
            # iteration 0 sent its content is written.
            check(out["pages_zero"] // 2 <= skipped <= out["pages_zero"],
                  "%s: %d of %d ZERO pages skipped" %
                  (mode, skipped, out["pages_zero"]))
        # The migrated guest's memory is what the guest expects.
        rc, txt = b.selfcheck(name)
        check(rc == 0, "%s: self-check: %s" % (mode, txt))


def later_gate(c):
    """A micro guest rewrites its unique pages with fresh content, fast:
    after the gate's probe, the later iterations look up only a sample
    of the dirty pages.  --dedup none never counts any."""
    a, b = pair(c, "gate")
    n = PAGES // 2
    b.create("img-b", n, share=0.5, seed=13)
    res = none_and_all(a, b, "gate", n, 0.5, 13, 40000)
    check(res["none"]["pages_unlooked"] == 0, "none: %r" % res["none"])
    al = res["all"]
    later = sum(i["pages"] for i in al["iteration_stats"][1:])
    # 40,000 pages/s against a 128 MiB iteration 0: thousands of dirty
    # pages after it on any machine this runs on.
    check(later >= 3 * 1024, "only %d pages after iteration 0" % later)
    # The first 1024 are looked up (YG_PROBE), then one in 8 while the
    # yield stays below 1/64.  It hovers near that here: a page dirtied
    # in iteration 0 before it was sent goes again unchanged, and its
    # lookup finds it (1.6% of these pages in three runs), so the gate
    # opens and closes; most pages still go unlooked.
    check((later - 1024) // 4 <= al["pages_unlooked"] <= later,
          "unlooked %d of %d pages after iteration 0"
          % (al["pages_unlooked"], later))
    # Iteration 0 still deduplicates against host-b's image.
    check(abs(al["pages_have"] / n - 0.5) <= 0.02, "%r" % al)


def index_keys(c):
    """destd's index-keys: a page held once on the host has its
    fingerprint and the first 8 bytes of its SHA-256; once another page
    holds the same content, neither has (both are shared); bad requests
    get an error."""
    a = c.host("host-keys")
    a.start("a")
    n = 256
    a.create("k", n, profile="idle", seed=31)
    page = bytes((i * 7 + 3) & 0xff for i in range(4096))
    f = os.path.join(c.tmp, "keys.page")
    open(f, "wb").write(page)
    a.simhv("poke", "k", "100", "--from", f)
    a.scan_wait()
    doms = json.loads(a.simhv("list", "--json").stdout)
    if isinstance(doms, dict):
        doms = doms.get("domains", [])
    dom = [d for d in doms if d["name"] == "k"][0]
    rep = a.destd_call({"cmd": "index-keys", "domid": dom["domid"],
                        "first": 64, "count": n})
    check(rep.get("ok") and rep.get("indexed"), "index-keys: %r" % rep)
    keys = rep["keys"]
    check(len(keys) == 32 * n, "%d hex digits for %d pfns" % (len(keys), n))

    def at(pfn):
        return keys[32 * (pfn - 64):32 * (pfn - 64) + 32]
    check(at(100)[16:] == hashlib.sha256(page).hexdigest()[:16] and
          int(at(100)[:16], 16) != 0, "pfn 100: %s" % at(100))
    check(all(int(at(p), 16) == 0 for p in range(n, n + 64)),
          "pfns beyond the domain are not all zero")
    # The binary form (what sourced asks for): the same keys, 16 octets
    # a pfn, the fingerprint little-endian, then the prefix.
    rep, raw = a.destd_call({"cmd": "index-keys", "domid": dom["domid"],
                             "first": 64, "count": n, "binary": True},
                            data=True)
    check(rep.get("ok") and rep.get("indexed") and "keys" not in rep and
          rep.get("data_bytes") == 16 * n and len(raw) == 16 * n,
          "binary index-keys: %r, %d octets" % (rep, len(raw)))
    for i in range(n):
        fp = int.from_bytes(raw[16 * i:16 * i + 8], "little")
        check("%016x%s" % (fp, raw[16 * i + 8:16 * i + 16].hex()) ==
              at(64 + i), "pfn %d: binary and hex forms differ" % (64 + i))
    # The same content at a second pfn: shared now, keyed nowhere.
    a.simhv("poke", "k", "101", "--from", f)
    a.scan_wait()
    rep = a.destd_call({"cmd": "index-keys", "domid": dom["domid"],
                        "first": 100, "count": 2})
    check(rep.get("ok") and rep["keys"] == "0" * 64,
          "shared content still keyed: %r" % rep)
    for bad in ({"count": 0}, {"count": 131073}, {"first": -1},
                {"domid": "x"}, {"binary": 1}):
        req = {"cmd": "index-keys", "domid": dom["domid"], "first": 0,
               "count": 1}
        req.update(bad)
        rep = a.destd_call(req)
        check(not rep.get("ok") and "index-keys" in rep.get("error", ""),
              "%r accepted: %r" % (bad, rep))


def main():
    r = Runner("integration_dedup")
    c = Cluster("dedup")
    try:
        # Pages the guest rewrites while it migrates are sent again, and
        # how many depends on how fast this machine migrates (a sanitizer
        # build, a loaded CI host); that is convergence, which bench/
        # measures.  This test checks the dedup accounting, so its guests
        # write 100 pages/s; the closing notes quote the default 1000.
        r.case("micro --share 0.5 --rate 100: ref rate and bytes",
               share_rate, c, 0.5, 100)
        # At F = 0.828 only 17% of the pages go in full, so every page the
        # guest rewrites during the migration weighs six times more
        # against the 2% budget than at F = 0; how many it rewrites
        # depends on this machine's speed (a convergence matter, measured
        # by bench/).  A calmer guest keeps this an accounting test.
        r.case("micro --share 0.828 --rate 100: ref rate and bytes",
               share_rate, c, 0.828, 100)
        r.case("--dedup shared offers only source-shared pages",
               shared_policy, c)
        r.case("zero pages elided except with --dedup none", zero_pages, c)
        r.case("iteration 0's order: unique-first and pfn", order, c)
        r.case("content lookups after iteration 0 follow their yield",
               later_gate, c)
        r.case("destd index-keys: pages held once, and bad requests",
               index_keys, c)
    finally:
        if r.failed:
            c.dump_logs()
        c.close()
    r.exit()


if __name__ == "__main__":
    main()
