/*
 * smoke.c - the lab's smoke test of hv_xen_ops, run inside an emulated
 * Xen dom0 against a running PVH domU whose /dirty (guest-dirty.c) keeps
 * rewriting 2048 marked pages.
 *
 *   smoke NAME          list, open, map every page, log-dirty, pause,
 *                       context, config; prints "SHAREMIG-XEN-SMOKE: PASS"
 *   smoke NAME copy     then also builds a copy with create(), fills it
 *                       through writable mappings, sets the context,
 *                       commits, checks byte equality and that the copy
 *                       runs (its marker pages and its PV console: the
 *                       cooperative suspend re-binds its event channels);
 *                       prints "SHAREMIG-XEN-COPY: PASS"
 *   smoke common A B    commonality of two running guests: how many of A's
 *                       populated pages have their exact content (memcmp)
 *                       somewhere in B; prints "SHAREMIG-XEN-COMMON: ..."
 *
 * Every check is on pages and bytes; waits are bounded polls (a slow
 * emulator makes them longer, never makes them fail).
 */
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"

#include <time.h>
#include <sys/mman.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>

/* Exported by libxenctrl 4.17 (VERS_4.17.0), declared only in its private
 * xc_private.h; Xen's own save code (xg_sr_save.c) uses it. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
    xen_pfn_t *arr);

/* hv_xen.c's pure helper: the cap throttle(percent) must set. */
uint16_t hv_xen_throttle_cap(uint16_t own_cap, uint32_t vcpus,
    unsigned percent);

/* Xen's save code (xg_sr_save.c) maps no XTAB, BROKEN or XALLOC pfn. */
static int
type_populated(xen_pfn_t t)
{
	t &= XEN_DOMCTL_PFINFO_LTAB_MASK;
	return t != XEN_DOMCTL_PFINFO_XTAB && t != XEN_DOMCTL_PFINFO_BROKEN &&
	    t != XEN_DOMCTL_PFINFO_XALLOC;
}

#define MARK_PAGES	2048
#define POLL_MAX	600	/* x 100 ms */

static const struct hv_ops *ops = &hv_xen_ops;
static int failed;
static void unlogged_probe(struct hv_dom *d, uint64_t pages, uint64_t *bm,
    int final, unsigned wait_ms, const char *phase);

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		printf("smoke: FAILED %s:%d: ", __FILE__, __LINE__);	\
		printf(__VA_ARGS__);					\
		printf("\n");						\
		failed = 1;						\
		goto out;						\
	}								\
} while (0)

struct hdr {
	char		magic[8];
	uint64_t	index;
	volatile uint64_t round;
	volatile uint64_t check;
};

/* The marker pages of a domain, mapped read-only (or writable). */
struct marks {
	uint64_t	 pfn[MARK_PAGES];
	struct hdr	*page[MARK_PAGES];
	struct hv_map	*map[MARK_PAGES / HV_MAP_BATCH_MAX];
	size_t		 n;
	size_t		 stale;		/* older twins seen by scan() */
};

static uint64_t
popcount_bm(const uint64_t *bm, uint64_t nbits)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < (nbits + 63) / 64; i++)
		c += (uint64_t)__builtin_popcountll(bm[i]);
	return c;
}

static int
bit(const uint64_t *bm, uint64_t p)
{
	return (bm[p / 64] >> (p % 64)) & 1;
}

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/*
 * Measurement for the backend (printed, not asserted): the populated pfns
 * as Xen's page-type query (xc_get_pfn_type_batch, one domctl per 1024
 * pfns, what Xen's own save code uses) sees them, against what a
 * foreign map finds, and how long each takes over the whole pfn space.
 */
static void
pfn_type_probe(uint32_t domid, uint64_t pages, double map_ms,
    uint64_t populated)
{
	static xen_pfn_t t[HV_MAP_BATCH_MAX], x[HV_MAP_BATCH_MAX];
	static int err[HV_MAP_BATCH_MAX];
	xc_interface *xch = xc_interface_open(NULL, NULL, 0);
	xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
	uint64_t xtab = 0, other = 0, xtab_mapped = 0, typed_hole = 0;
	uint64_t raw_pop = 0;
	double t0, type_ms = 0, raw_ms = 0;

	if (xch == NULL || fm == NULL) {
		printf("smoke: pfn-type probe: cannot open libxc\n");
		goto out;
	}
	for (uint64_t base = 0; base < pages; base += HV_MAP_BATCH_MAX) {
		unsigned n = pages - base < HV_MAP_BATCH_MAX ?
		    (unsigned)(pages - base) : HV_MAP_BATCH_MAX;
		void *addr;

		for (unsigned i = 0; i < n; i++)
			t[i] = x[i] = base + i;
		t0 = now_ms();
		if (xc_get_pfn_type_batch(xch, domid, n, t) != 0) {
			printf("smoke: pfn-type probe: get_pfn_type_batch at "
			    "%llu: %s\n", (unsigned long long)base,
			    strerror(errno));
			goto out;
		}
		type_ms += now_ms() - t0;
		/* What the backend did before: map every pfn. */
		t0 = now_ms();
		addr = xenforeignmemory_map(fm, domid, PROT_READ, n, x, err);
		raw_ms += now_ms() - t0;
		for (unsigned i = 0; i < n; i++) {
			int hole = !type_populated(t[i]);

			xtab += hole;
			other += !hole;
			if (addr == NULL)
				continue;
			raw_pop += err[i] == 0;
			xtab_mapped += hole && err[i] == 0;
			typed_hole += !hole && err[i] != 0;
			if (hole && err[i] == 0 && xtab_mapped <= 8)
				printf("smoke: pfn-type probe: pfn %#llx typed "
				    "%#llx but mappable\n",
				    (unsigned long long)(base + i),
				    (unsigned long long)t[i]);
		}
		if (addr != NULL) {
			t0 = now_ms();
			xenforeignmemory_unmap(fm, addr, n);
			raw_ms += now_ms() - t0;
		}
	}
	printf("SHAREMIG-XEN-PFNTYPE: pfns=%llu backend_populated=%llu "
	    "backend_map_ms=%.0f raw_populated=%llu raw_map_ms=%.0f "
	    "type_ms=%.0f type_populated=%llu type_holes=%llu "
	    "hole_but_mapped=%llu typed_but_unmapped=%llu\n",
	    (unsigned long long)pages, (unsigned long long)populated, map_ms,
	    (unsigned long long)raw_pop, raw_ms, type_ms,
	    (unsigned long long)other, (unsigned long long)xtab,
	    (unsigned long long)xtab_mapped, (unsigned long long)typed_hole);
out:
	if (fm != NULL)
		xenforeignmemory_close(fm);
	if (xch != NULL)
		xc_interface_close(xch);
}

/*
 * Map every pfn in batches; count populated pages and find the marker
 * pages (by index).  Returns 0 or a negative errno.
 */
static int
scan(struct hv_dom *d, uint64_t pages, uint64_t *populated, struct marks *mk)
{
	static uint64_t pfns[HV_MAP_BATCH_MAX];
	static void *pg[HV_MAP_BATCH_MAX];
	static uint64_t best[MARK_PAGES];
	int rc;

	*populated = 0;
	memset(mk->pfn, 0xff, sizeof(mk->pfn));
	memset(best, 0, sizeof(best));
	for (uint64_t base = 0; base < pages; base += HV_MAP_BATCH_MAX) {
		size_t n = pages - base < HV_MAP_BATCH_MAX ?
		    (size_t)(pages - base) : HV_MAP_BATCH_MAX;
		struct hv_map *m;

		for (size_t i = 0; i < n; i++)
			pfns[i] = base + i;
		if ((rc = ops->map(d, pfns, n, 0, pg, &m)) != 0)
			return rc;
		for (size_t i = 0; i < n; i++) {
			const struct hdr *h = pg[i];

			if (h == NULL)
				continue;
			(*populated)++;
			/*
			 * A page the guest kernel moved or freed keeps a
			 * stale copy of a marker: the highest round wins.
			 */
			if (memcmp(h->magic, "SMGDIRTY", 8) == 0 &&
			    h->index < MARK_PAGES &&
			    (mk->pfn[h->index] == UINT64_MAX ||
			    h->round > best[h->index])) {
				if (mk->pfn[h->index] != UINT64_MAX)
					mk->stale++;
				mk->pfn[h->index] = pfns[i];
				best[h->index] = h->round;
			}
		}
		ops->unmap(d, m);
	}
	return 0;
}

static int
map_marks(struct hv_dom *d, struct marks *mk, int writable)
{
	void *pg[HV_MAP_BATCH_MAX];
	int rc;

	for (size_t b = 0; b < MARK_PAGES / HV_MAP_BATCH_MAX; b++) {
		rc = ops->map(d, mk->pfn + b * HV_MAP_BATCH_MAX,
		    HV_MAP_BATCH_MAX, writable, pg, &mk->map[b]);
		if (rc != 0)
			return rc;
		for (size_t i = 0; i < HV_MAP_BATCH_MAX; i++) {
			mk->page[b * HV_MAP_BATCH_MAX + i] = pg[i];
			if (pg[i] == NULL)
				return -EFAULT;
		}
	}
	mk->n = MARK_PAGES;
	return 0;
}

static void
unmap_marks(struct hv_dom *d, struct marks *mk)
{
	for (size_t b = 0; b < MARK_PAGES / HV_MAP_BATCH_MAX; b++) {
		ops->unmap(d, mk->map[b]);
		mk->map[b] = NULL;
	}
}

/*
 * The domain's scheduler cap, read with libxc directly (credit2, Debian's
 * default, else credit): what throttle() is checked against.
 */
static int
sched_cap_of(uint32_t domid, uint16_t *cap)
{
	xc_interface *xch = xc_interface_open(NULL, NULL, 0);
	struct xen_domctl_sched_credit2 c2;
	struct xen_domctl_sched_credit c1;
	int rc = -1;

	if (xch == NULL)
		return -1;
	if (xc_sched_credit2_domain_get(xch, domid, &c2) == 0) {
		*cap = c2.cap;
		rc = 0;
	} else if (xc_sched_credit_domain_get(xch, domid, &c1) == 0) {
		*cap = c1.cap;
		rc = 0;
	}
	xc_interface_close(xch);
	return rc;
}

static void
rounds(const struct marks *mk, uint64_t *r)
{
	for (size_t i = 0; i < MARK_PAGES; i++)
		r[i] = mk->page[i]->round;
}

static size_t
changed(const uint64_t *a, const uint64_t *b)
{
	size_t c = 0;

	for (size_t i = 0; i < MARK_PAGES; i++)
		c += a[i] != b[i];
	return c;
}

/* Poll until at least want marker pages changed since snap; cur gets
 * the last reading.  Returns how many changed. */
static size_t
wait_changes(const struct marks *mk, const uint64_t *snap, uint64_t *cur,
    size_t want)
{
	size_t c = 0;

	for (int i = 0; i < POLL_MAX; i++) {
		rounds(mk, cur);
		if ((c = changed(snap, cur)) >= want)
			break;
		usleep(100000);
	}
	return c;
}

/*
 * Lines "sharemig-guest: round" in the console logs xenconsoled writes
 * for the guests matching pattern (a glob under /var/log/xen/console).
 * The guest prints one a second from a sleeping loop: its count advances
 * only while its timer and PV console work.
 */
static int
console_rounds(const char *pattern)
{
	char path[256], line[256];
	glob_t g;
	int count = 0;

	snprintf(path, sizeof(path), "/var/log/xen/console/guest-%s.log",
	    pattern);
	if (glob(path, 0, NULL, &g) != 0)
		return 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");

		if (f == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL)
			count += strstr(line, "sharemig-guest: round") != NULL;
		fclose(f);
	}
	globfree(&g);
	return count;
}

/* Poll (bounded) until pattern's console gained want lines since r0. */
static int
wait_console(const char *pattern, int r0, int want)
{
	int r = r0;

	for (int i = 0; i < POLL_MAX; i++) {
		if ((r = console_rounds(pattern)) >= r0 + want)
			break;
		usleep(100000);
	}
	return r;
}

static int
copy_test(struct hv *hv, struct hv_dom *src, const struct hv_dom_info *si,
    const struct marks *smk);
static int	common_test(const char *a, const char *b);

int
main(int argc, char **argv)
{
	static uint64_t snap[MARK_PAGES], cur[MARK_PAGES];
	struct hv_params p = { 0 };
	struct hv_dom_info *list = NULL, info;
	struct hv *hv = NULL;
	struct hv_dom *d = NULL, *d2 = NULL;
	struct marks mk;
	uint64_t *bm = NULL, populated, ndirty, must, seen;
	void *ctx = NULL, *cfg = NULL;
	size_t n = 0, ctxlen, cfglen, c;
	char idstr[16];
	int rc, found = 0, passed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: smoke DOMAIN [copy] | "
		    "smoke common DOMAIN-A DOMAIN-B\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "common") == 0) {
		if (argc != 4) {
			fprintf(stderr, "usage: smoke common A B\n");
			return 2;
		}
		return common_test(argv[2], argv[3]) == 0 ? 0 : 1;
	}
	memset(&mk, 0, sizeof(mk));

	rc = ops->open(&p, &hv);
	CHECK(rc == 0, "open: %s", strerror(-rc));
	rc = ops->list(hv, &list, &n);
	CHECK(rc == 0, "list: %s", strerror(-rc));
	for (size_t i = 0; i < n; i++) {
		printf("smoke: list: domid %u name %s pages %llu vcpus %u "
		    "flags %#x\n", list[i].domid, list[i].name,
		    (unsigned long long)list[i].pages, list[i].vcpus,
		    list[i].flags);
		CHECK(list[i].domid != 0, "list includes Domain-0");
		found += strcmp(list[i].name, argv[1]) == 0;
	}
	CHECK(found == 1, "list: %s found %d times", argv[1], found);

	CHECK(ops->dom_open(hv, "0", &d) == -ENOENT, "dom_open(0)");
	CHECK(ops->dom_open(hv, "no-such-guest", &d) == -ENOENT,
	    "dom_open(no-such-guest)");
	rc = ops->dom_open(hv, argv[1], &d);
	CHECK(rc == 0, "dom_open(%s): %s", argv[1], strerror(-rc));
	rc = ops->dom_info(d, &info);
	CHECK(rc == 0, "dom_info: %s", strerror(-rc));
	printf("smoke: info: domid %u name %s pages %llu vcpus %u flags %#x\n",
	    info.domid, info.name, (unsigned long long)info.pages,
	    info.vcpus, info.flags);
	CHECK(strcmp(info.name, argv[1]) == 0, "dom_info name");
	CHECK(info.flags & HV_DOM_RUNNING, "not running");
	snprintf(idstr, sizeof(idstr), "%u", info.domid);
	rc = ops->dom_open(hv, idstr, &d2);
	CHECK(rc == 0, "dom_open(%s): %s", idstr, strerror(-rc));
	ops->dom_close(d2);
	d2 = NULL;

	/* Writable maps are for incoming domains only. */
	{
		uint64_t pfn0 = 0;
		void *pg0;
		struct hv_map *m0;

		CHECK(ops->map(d, &pfn0, 1, 1, &pg0, &m0) == -EPERM,
		    "writable map of a running domain");
		pfn0 = info.pages;
		CHECK(ops->map(d, &pfn0, 1, 0, &pg0, &m0) == -EINVAL,
		    "map past the pfn space");
	}

	{
		double t0 = now_ms();

		rc = scan(d, info.pages, &populated, &mk);
		CHECK(rc == 0, "scan: %s", strerror(-rc));
		pfn_type_probe(info.domid, info.pages, now_ms() - t0,
		    populated);
	}
	c = 0;
	for (size_t i = 0; i < MARK_PAGES; i++)
		c += mk.pfn[i] != UINT64_MAX;
	printf("smoke: mapped %llu populated pages of %llu pfns, %zu marker "
	    "pages (%zu stale twins)\n", (unsigned long long)populated,
	    (unsigned long long)info.pages, c, mk.stale);
	CHECK(populated > 16384 && populated < info.pages,
	    "populated pages %llu", (unsigned long long)populated);
	CHECK(c == MARK_PAGES, "found %zu of %d marker pages", c, MARK_PAGES);
	rc = map_marks(d, &mk, 0);
	CHECK(rc == 0, "map marker pages: %s", strerror(-rc));

	bm = calloc((info.pages + 63) / 64, sizeof(*bm));
	CHECK(bm != NULL, "calloc");
	CHECK(ops->dirty_fetch(d, bm, 0) == -EINVAL, "fetch with log-dirty off");
	rc = ops->logdirty_enable(d);
	CHECK(rc == 0, "logdirty_enable: %s", strerror(-rc));
	rc = ops->dirty_fetch(d, bm, 0);
	CHECK(rc == 0, "dirty_fetch 1: %s", strerror(-rc));
	ndirty = popcount_bm(bm, info.pages);
	printf("smoke: dirty fetch 1: %llu pages\n", (unsigned long long)ndirty);

	/* Pages seen changing between two fetches must be dirty in the second. */
	rounds(&mk, snap);
	c = wait_changes(&mk, snap, cur, MARK_PAGES / 2);
	CHECK(c >= MARK_PAGES / 2, "guest changed only %zu marker pages", c);
	rc = ops->dirty_fetch(d, bm, 0);
	CHECK(rc == 0, "dirty_fetch 2: %s", strerror(-rc));
	ndirty = popcount_bm(bm, info.pages);
	must = seen = 0;
	for (size_t i = 0; i < MARK_PAGES; i++)
		if (snap[i] != cur[i]) {
			must++;
			seen += bit(bm, mk.pfn[i]);
		}
	printf("smoke: dirty fetch 2: %llu pages; %llu marker pages changed, "
	    "%llu of them dirty\n", (unsigned long long)ndirty,
	    (unsigned long long)must, (unsigned long long)seen);
	CHECK(must > 0 && seen == must, "changed pages missing from bitmap");
	unlogged_probe(d, info.pages, bm, 0, 1000, "running");

	/* Paused: nothing changes, the final fetch sees no marker page. */
	rc = ops->pause(d);
	CHECK(rc == 0, "pause: %s", strerror(-rc));
	rc = ops->dom_info(d, &info);
	CHECK(rc == 0 && (info.flags & HV_DOM_PAUSED), "not paused");
	rc = ops->dirty_fetch(d, bm, 1);
	CHECK(rc == 0, "dirty_fetch final: %s", strerror(-rc));
	rounds(&mk, snap);
	usleep(500000);
	rc = ops->dirty_fetch(d, bm, 1);
	CHECK(rc == 0, "dirty_fetch final 2: %s", strerror(-rc));
	rounds(&mk, cur);
	seen = 0;
	for (size_t i = 0; i < MARK_PAGES; i++)
		seen += bit(bm, mk.pfn[i]);
	printf("smoke: paused: %zu marker pages changed, %llu dirty, "
	    "%llu pages dirty in all\n", changed(snap, cur),
	    (unsigned long long)seen,
	    (unsigned long long)popcount_bm(bm, info.pages));
	CHECK(changed(snap, cur) == 0 && seen == 0, "paused guest wrote");
	unlogged_probe(d, info.pages, bm, 1, 3000, "paused");

	rc = ops->context_get(d, &ctx, &ctxlen);
	CHECK(rc == 0, "context_get: %s", strerror(-rc));
	printf("smoke: context: %zu bytes\n", ctxlen);
	CHECK(ctxlen > 48 && memcmp(ctx, "SMXHVMC1", 8) == 0, "context blob");
	rc = ops->config_get(d, &cfg, &cfglen);
	CHECK(rc == 0, "config_get: %s", strerror(-rc));
	printf("smoke: config: %zu bytes of JSON\n", cfglen);
	CHECK(memmem(cfg, cfglen, argv[1], strlen(argv[1])) != NULL,
	    "config lacks the name");

	rc = ops->unpause(d);
	CHECK(rc == 0, "unpause: %s", strerror(-rc));
	rounds(&mk, snap);
	c = wait_changes(&mk, snap, cur, MARK_PAGES);
	printf("smoke: unpaused: %zu marker pages changed\n", c);
	CHECK(c == MARK_PAGES, "guest did not resume");
	{
		/* Resumed (fast) after a suspend: its console keeps going. */
		char pat[HV_NAME_MAX];
		int r0, r1;

		snprintf(pat, sizeof(pat), "%s", argv[1]);
		r0 = console_rounds(pat);
		r1 = wait_console(pat, r0, 3);
		printf("smoke: unpaused: console rounds %d -> %d\n", r0, r1);
		CHECK(r1 >= r0 + 3, "guest console stopped after unpause");
	}

	{
		/*
		 * Auto-converge's throttle: the scheduler cap is set from the
		 * domain's own cap at each step (not compounded), the guest
		 * still runs under it, and percent 0 gives the own cap back.
		 */
		uint64_t saved = 0;
		uint16_t own, cap;

		CHECK(sched_cap_of(info.domid, &own) == 0, "read the cap");
		rc = ops->throttle(d, 50, &saved);
		CHECK(rc == 0, "throttle 50: %s", strerror(-rc));
		CHECK(saved != 0, "throttle kept no record of the own cap");
		CHECK(sched_cap_of(info.domid, &cap) == 0 &&
		    cap == hv_xen_throttle_cap(own, info.vcpus, 50),
		    "throttle 50: cap %u", cap);
		rc = ops->throttle(d, 80, &saved);
		CHECK(rc == 0, "throttle 80: %s", strerror(-rc));
		CHECK(sched_cap_of(info.domid, &cap) == 0 &&
		    cap == hv_xen_throttle_cap(own, info.vcpus, 80),
		    "throttle 80: cap %u", cap);
		printf("smoke: throttle: own cap %u, 50%% -> %u, 80%% -> %u\n",
		    own, hv_xen_throttle_cap(own, info.vcpus, 50), cap);
		rounds(&mk, snap);
		c = wait_changes(&mk, snap, cur, MARK_PAGES);
		printf("smoke: throttled 80%%: %zu marker pages changed\n", c);
		CHECK(c == MARK_PAGES, "throttled guest stopped");
		rc = ops->throttle(d, 0, &saved);
		CHECK(rc == 0, "throttle 0: %s", strerror(-rc));
		CHECK(sched_cap_of(info.domid, &cap) == 0 && cap == own,
		    "throttle 0: cap %u, own %u", cap, own);
	}

	rc = ops->logdirty_disable(d);
	CHECK(rc == 0, "logdirty_disable: %s", strerror(-rc));
	CHECK(ops->dirty_fetch(d, bm, 0) == -EINVAL, "fetch after disable");
	printf("SHAREMIG-XEN-SMOKE: PASS\n");
	passed = 1;

	if (argc > 2 && strcmp(argv[2], "copy") == 0) {
		rc = copy_test(hv, d, &info, &mk);
		printf("SHAREMIG-XEN-COPY: %s\n", rc == 0 ? "PASS" : "FAIL");
	}
out:
	if (!passed)
		printf("SHAREMIG-XEN-SMOKE: FAIL\n");
	free(ctx);
	free(cfg);
	free(bm);
	free(list);
	if (d) {
		unmap_marks(d, &mk);
		ops->dom_close(d);
	}
	ops->close(hv);
	return failed;
}

/*
 * The destination's steps, on one host: create an incoming domain from the
 * source's config, fill it through writable mappings while the source is
 * paused, set the context, commit, compare every page, unpause the copy,
 * see its marker pages advance, destroy it, unpause the source.
 */
static int
copy_test(struct hv *hv, struct hv_dom *src, const struct hv_dom_info *si,
    const struct marks *smk)
{
	static uint64_t pfns[HV_MAP_BATCH_MAX], snap[MARK_PAGES],
	    cur[MARK_PAGES];
	static void *sp[HV_MAP_BATCH_MAX], *dp[HV_MAP_BATCH_MAX];
	struct hv_dom_info shape, info;
	struct hv_dom *dst = NULL;
	struct marks dmk;
	void *cfg = NULL, *ctx = NULL;
	size_t cfglen, ctxlen, c;
	uint64_t copied = 0, differ = 0;
	char pat[HV_NAME_MAX];
	int rc, r0, r1;

	memset(&dmk, 0, sizeof(dmk));
	rc = ops->dom_info(src, &shape);
	CHECK(rc == 0, "dom_info: %s", strerror(-rc));
	snprintf(shape.name, sizeof(shape.name), "%.40s-copy", si->name);
	shape.uuid[15] ^= 0x5a;
	rc = ops->config_get(src, &cfg, &cfglen);
	CHECK(rc == 0, "config_get: %s", strerror(-rc));
	rc = ops->create(hv, &shape, cfg, cfglen, &dst);
	CHECK(rc == 0, "create: %s", strerror(-rc));
	rc = ops->dom_info(dst, &info);
	CHECK(rc == 0 && (info.flags & HV_DOM_INCOMING) &&
	    (info.flags & HV_DOM_PAUSED), "incoming domain flags %#x",
	    info.flags);
	printf("copy: created domid %u (%s), %llu pfns\n", info.domid,
	    info.name, (unsigned long long)info.pages);

	rc = ops->pause(src);
	CHECK(rc == 0, "pause: %s", strerror(-rc));
	for (uint64_t base = 0; base < shape.pages; base += HV_MAP_BATCH_MAX) {
		size_t n = shape.pages - base < HV_MAP_BATCH_MAX ?
		    (size_t)(shape.pages - base) : HV_MAP_BATCH_MAX;
		size_t k = 0;
		struct hv_map *sm, *dm;

		for (size_t i = 0; i < n; i++)
			pfns[i] = base + i;
		rc = ops->map(src, pfns, n, 0, sp, &sm);
		CHECK(rc == 0, "map source: %s", strerror(-rc));
		/* Only the source's populated pfns go across. */
		for (size_t i = 0; i < n; i++)
			if (sp[i] != NULL) {
				pfns[k] = pfns[i];
				sp[k++] = sp[i];
			}
		if (k) {
			rc = ops->map(dst, pfns, k, 1, dp, &dm);
			if (rc != 0)
				ops->unmap(src, sm);
			CHECK(rc == 0, "map destination: %s", strerror(-rc));
			for (size_t i = 0; i < k; i++)
				memcpy(dp[i], sp[i], HV_PAGE_SIZE);
			copied += k;
			ops->unmap(dst, dm);
		}
		ops->unmap(src, sm);
	}
	rc = ops->context_get(src, &ctx, &ctxlen);
	CHECK(rc == 0, "context_get: %s", strerror(-rc));
	rc = ops->context_set(dst, ctx, ctxlen);
	CHECK(rc == 0, "context_set: %s", strerror(-rc));
	rc = ops->commit(dst);
	CHECK(rc == 0, "commit: %s", strerror(-rc));
	rc = ops->dom_info(dst, &info);
	CHECK(rc == 0 && !(info.flags & HV_DOM_INCOMING) &&
	    strcmp(info.name, shape.name) == 0, "committed domain %s %#x",
	    info.name, info.flags);

	/* I1: byte equality of every source page while both are paused. */
	for (uint64_t base = 0; base < shape.pages; base += HV_MAP_BATCH_MAX) {
		size_t n = shape.pages - base < HV_MAP_BATCH_MAX ?
		    (size_t)(shape.pages - base) : HV_MAP_BATCH_MAX;
		struct hv_map *sm, *dm;

		for (size_t i = 0; i < n; i++)
			pfns[i] = base + i;
		rc = ops->map(src, pfns, n, 0, sp, &sm);
		CHECK(rc == 0, "map source: %s", strerror(-rc));
		rc = ops->map(dst, pfns, n, 0, dp, &dm);
		if (rc != 0)
			ops->unmap(src, sm);
		CHECK(rc == 0, "map copy: %s", strerror(-rc));
		for (size_t i = 0; i < n; i++)
			if (sp[i] && (dp[i] == NULL ||
			    memcmp(sp[i], dp[i], HV_PAGE_SIZE) != 0))
				differ++;
		ops->unmap(dst, dm);
		ops->unmap(src, sm);
	}
	printf("copy: %llu pages copied, %llu differ\n",
	    (unsigned long long)copied, (unsigned long long)differ);
	CHECK(differ == 0, "copy differs from source");

	/* The copy runs: its own marker pages advance. */
	memcpy(dmk.pfn, smk->pfn, sizeof(dmk.pfn));
	rc = map_marks(dst, &dmk, 0);
	CHECK(rc == 0, "map copy's marker pages: %s", strerror(-rc));
	rounds(&dmk, snap);
	snprintf(pat, sizeof(pat), "%.40s*", shape.name);
	r0 = console_rounds(pat);
	rc = ops->unpause(dst);
	CHECK(rc == 0, "unpause copy: %s", strerror(-rc));
	c = wait_changes(&dmk, snap, cur, MARK_PAGES);
	printf("copy: running copy changed %zu marker pages\n", c);
	CHECK(c == MARK_PAGES, "copy does not run");
	/* Its timer and PV console work on the copy: the guest re-bound
	 * them when it woke from the suspend (a plain pause left them dead:
	 * one line in 5 s, docs/XEN.md). */
	r1 = wait_console(pat, r0, 3);
	printf("copy: copy's console rounds %d -> %d\n", r0, r1);
	CHECK(r1 >= r0 + 3, "copy's console does not advance");
out:
	if (dst) {
		unmap_marks(dst, &dmk);
		rc = ops->destroy(dst);
		if (rc != 0) {
			printf("copy: destroy: %s\n", strerror(-rc));
			failed = 1;
		}
	}
	ops->unpause(src);
	free(cfg);
	free(ctx);
	return failed ? -1 : 0;
}

/* ---- commonality of two guests ---- */

struct slot {
	uint64_t	 h;
	const void	*page;	/* NULL: empty slot */
};

static uint64_t
page_hash(const void *p)
{
	const uint64_t *w = p;
	uint64_t h = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < HV_PAGE_SIZE / 8; i++) {
		h ^= w[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	return h;
}

static int
is_zero(const void *p)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < HV_PAGE_SIZE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* The populated pfns of d (a malloc'd array). */
static int
populated_pfns(struct hv_dom *d, uint64_t pages, uint64_t **out, size_t *nout)
{
	static uint64_t pfns[HV_MAP_BATCH_MAX];
	static void *pg[HV_MAP_BATCH_MAX];
	uint64_t *v = NULL, *nv;
	size_t n = 0, cap = 0;
	int rc;

	for (uint64_t base = 0; base < pages; base += HV_MAP_BATCH_MAX) {
		size_t k = pages - base < HV_MAP_BATCH_MAX ?
		    (size_t)(pages - base) : HV_MAP_BATCH_MAX;
		struct hv_map *m;

		for (size_t i = 0; i < k; i++)
			pfns[i] = base + i;
		if ((rc = ops->map(d, pfns, k, 0, pg, &m)) != 0) {
			free(v);
			return rc;
		}
		for (size_t i = 0; i < k; i++) {
			if (pg[i] == NULL)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 4096;
				if ((nv = realloc(v, cap * sizeof(*v))) ==
				    NULL) {
					ops->unmap(d, m);
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			v[n++] = pfns[i];
		}
		ops->unmap(d, m);
	}
	*out = v;
	*nout = n;
	return 0;
}

/*
 * I2 probe (printed, not asserted): copy every populated page, wait,
 * compare, and report pages whose content changed without their bit in
 * the dirty bitmap (Xen writing guest memory it does not log, e.g. its
 * own pages placed in the guest's physmap).  The bitmap is cleared
 * before the first copy, so every guest write after it is logged.
 */
static void
unlogged_probe(struct hv_dom *d, uint64_t pages, uint64_t *bm, int final,
    unsigned wait_ms, const char *phase)
{
	static uint64_t pfns[HV_MAP_BATCH_MAX];
	static void *pg[HV_MAP_BATCH_MAX];
	uint64_t *pop = NULL, changed_n = 0, notdirty = 0;
	uint8_t *copy = NULL;
	size_t npop = 0;
	char list[256] = "";
	size_t ll = 0;
	int rc;

	if ((rc = populated_pfns(d, pages, &pop, &npop)) != 0 ||
	    (copy = malloc(npop * (size_t)HV_PAGE_SIZE)) == NULL) {
		printf("smoke: unlogged probe (%s): setup failed\n", phase);
		goto out;
	}
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			if (ops->dirty_fetch(d, bm, final) != 0)
				goto out;
		} else {
			usleep(wait_ms * 1000u);
		}
		for (size_t b = 0; b < npop; b += HV_MAP_BATCH_MAX) {
			size_t k = npop - b < HV_MAP_BATCH_MAX ?
			    npop - b : HV_MAP_BATCH_MAX;
			struct hv_map *m;

			memcpy(pfns, pop + b, k * sizeof(*pfns));
			if (ops->map(d, pfns, k, 0, pg, &m) != 0)
				goto out;
			for (size_t i = 0; i < k; i++) {
				uint8_t *c = copy + (b + i) * HV_PAGE_SIZE;

				if (pg[i] == NULL)
					continue;
				if (pass == 0)
					memcpy(c, pg[i], HV_PAGE_SIZE);
				else if (memcmp(c, pg[i], HV_PAGE_SIZE) != 0) {
					changed_n++;
					pfns[i] |= 1ull << 63;
				}
			}
			ops->unmap(d, m);
			if (pass == 1)
				for (size_t i = 0; i < k; i++)
					pop[b + i] = pfns[i];
		}
	}
	if (ops->dirty_fetch(d, bm, final) != 0)
		goto out;
	for (size_t i = 0; i < npop; i++) {
		uint64_t p = pop[i] & ~(1ull << 63);

		if (!(pop[i] >> 63) || bit(bm, p))
			continue;
		notdirty++;
		if (ll < sizeof(list) - 24)
			ll += (size_t)snprintf(list + ll, sizeof(list) - ll,
			    "%s%#llx", ll ? "," : "", (unsigned long long)p);
	}
	printf("SHAREMIG-XEN-UNLOGGED: phase=%s populated=%zu wait_ms=%u "
	    "changed=%llu changed_not_dirty=%llu pfns=%s\n", phase, npop,
	    wait_ms, (unsigned long long)changed_n,
	    (unsigned long long)notdirty, ll ? list : "-");
out:
	free(copy);
	free(pop);
}

/*
 * How many of A's populated pages have their exact content somewhere in
 * B (any pfn), counted with and without the zero pages.  Both guests
 * keep running: a page that changes meanwhile may count either way,
 * which is noise of a few pages (the guests rewrite 2048 marker pages,
 * whose contents are unique per guest anyway).
 */
static int
common_test(const char *a, const char *b)
{
	struct hv_params p = { 0 };
	struct hv *hv = NULL;
	struct hv_dom *da = NULL, *db = NULL;
	struct hv_dom_info ia, ib;
	struct hv_map **bmaps = NULL;
	struct slot *tab = NULL;
	uint64_t *pa = NULL, *pb = NULL;
	size_t na = 0, nb = 0, nbm = 0, tsize = 1;
	uint64_t zero = 0, match = 0, match_nz = 0;
	void *pg[HV_MAP_BATCH_MAX];
	int rc;

	rc = ops->open(&p, &hv);
	CHECK(rc == 0, "open: %s", strerror(-rc));
	rc = ops->dom_open(hv, a, &da);
	CHECK(rc == 0, "dom_open(%s): %s", a, strerror(-rc));
	rc = ops->dom_open(hv, b, &db);
	CHECK(rc == 0, "dom_open(%s): %s", b, strerror(-rc));
	rc = ops->dom_info(da, &ia);
	CHECK(rc == 0, "dom_info(%s): %s", a, strerror(-rc));
	rc = ops->dom_info(db, &ib);
	CHECK(rc == 0, "dom_info(%s): %s", b, strerror(-rc));
	rc = populated_pfns(da, ia.pages, &pa, &na);
	CHECK(rc == 0, "scan %s: %s", a, strerror(-rc));
	rc = populated_pfns(db, ib.pages, &pb, &nb);
	CHECK(rc == 0, "scan %s: %s", b, strerror(-rc));
	CHECK(na > 0 && nb > 0, "no populated pages");

	/* B's pages stay mapped; an open-addressing table points at them. */
	while (tsize < 2 * nb)
		tsize *= 2;
	nbm = (nb + HV_MAP_BATCH_MAX - 1) / HV_MAP_BATCH_MAX;
	tab = calloc(tsize, sizeof(*tab));
	bmaps = calloc(nbm, sizeof(*bmaps));
	CHECK(tab != NULL && bmaps != NULL, "out of memory");
	for (size_t j = 0; j < nbm; j++) {
		size_t k = nb - j * HV_MAP_BATCH_MAX < HV_MAP_BATCH_MAX ?
		    nb - j * HV_MAP_BATCH_MAX : HV_MAP_BATCH_MAX;

		rc = ops->map(db, pb + j * HV_MAP_BATCH_MAX, k, 0, pg,
		    &bmaps[j]);
		CHECK(rc == 0, "map %s: %s", b, strerror(-rc));
		for (size_t i = 0; i < k; i++) {
			uint64_t h;
			size_t s;

			if (pg[i] == NULL)
				continue;	/* ballooned out meanwhile */
			h = page_hash(pg[i]);
			for (s = h & (tsize - 1); tab[s].page != NULL;
			    s = (s + 1) & (tsize - 1))
				;
			tab[s].h = h;
			tab[s].page = pg[i];
		}
	}
	for (size_t j = 0; j < na; j += HV_MAP_BATCH_MAX) {
		size_t k = na - j < HV_MAP_BATCH_MAX ? na - j :
		    HV_MAP_BATCH_MAX;
		struct hv_map *m;

		rc = ops->map(da, pa + j, k, 0, pg, &m);
		CHECK(rc == 0, "map %s: %s", a, strerror(-rc));
		for (size_t i = 0; i < k; i++) {
			uint64_t h;
			int z, found = 0;

			if (pg[i] == NULL)
				continue;
			z = is_zero(pg[i]);
			zero += z;
			h = page_hash(pg[i]);
			for (size_t s = h & (tsize - 1); tab[s].page != NULL;
			    s = (s + 1) & (tsize - 1))
				if (tab[s].h == h &&
				    memcmp(tab[s].page, pg[i], HV_PAGE_SIZE) ==
				    0) {
					found = 1;
					break;
				}
			match += found;
			match_nz += found && !z;
		}
		ops->unmap(da, m);
	}
	printf("SHAREMIG-XEN-COMMON: a=%s b=%s populated=%zu zero=%llu "
	    "matched=%llu matched_nonzero=%llu pct=%.1f pct_nonzero=%.1f\n",
	    a, b, na, (unsigned long long)zero, (unsigned long long)match,
	    (unsigned long long)match_nz, 100.0 * match / na,
	    na > zero ? 100.0 * match_nz / (na - zero) : 0.0);
out:
	if (bmaps != NULL)
		for (size_t j = 0; j < nbm; j++)
			ops->unmap(db, bmaps[j]);
	free(bmaps);
	free(tab);
	free(pa);
	free(pb);
	ops->dom_close(da);
	ops->dom_close(db);
	ops->close(hv);
	return failed ? -1 : 0;
}
