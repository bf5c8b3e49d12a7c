/*
 * test_scan.c - the scanner thread against an in-memory fake host.
 *
 * The fake hv_ops below keeps a few domains as malloc'd page arrays
 * (holes allowed, domains can disappear or refuse to be opened or mapped).
 * In the default mode map() hands out copies made under the host lock, so
 * the test may change pages while the scanner runs; the benchmark maps the
 * memory directly.
 *
 * SHAREMIG_BENCH=<MiB> also prints scanner throughput on one large domain.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "hv.h"
#include "pagehash.h"
#include "pidx.h"
#include "hfilt.h"
#include "scan.h"

/* ---- the fake host ---- */

#define F_DOMS	8

struct fdom {
	int		 present;
	uint32_t	 domid;
	uint64_t	 pages;
	uint8_t		*mem;
	uint8_t		*hole;		/* 1 per pfn */
};

/* All fields protected by mu (the scanner thread and the test share it). */
static struct fhost {
	pthread_mutex_t	 mu;
	struct fdom	 d[F_DOMS];
	int		 direct;	/* map without copying */
	int		 fail_open;	/* open() fails this many times */
	uint32_t	 fail_map;	/* map() of this domid fails (0: none) */
	uint32_t	 fail_dopen;	/* dom_open() of this domid fails */
	uint64_t	 maps;
} H = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct hv {
	int	 unused;
};

struct hv_dom {
	uint32_t domid;
};

struct hv_map {
	void	*copy;
};

static struct fdom *
f_find(uint32_t domid)
{
	int i;

	for (i = 0; i < F_DOMS; i++)
		if (H.d[i].present && H.d[i].domid == domid)
			return &H.d[i];
	return NULL;
}

static int
f_open(const struct hv_params *p, struct hv **out)
{
	int r = 0;

	assert_non_null(p->state_dir);
	assert_string_equal(p->state_dir, "fake-host");
	pthread_mutex_lock(&H.mu);
	if (H.fail_open > 0) {
		H.fail_open--;
		r = -ENOENT;
	}
	pthread_mutex_unlock(&H.mu);
	if (r != 0)
		return r;
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return -ENOMEM;
	return 0;
}

static void
f_close(struct hv *hv)
{
	free(hv);
}

static int
f_list(struct hv *hv, struct hv_dom_info **out, size_t *n)
{
	struct hv_dom_info *v;
	size_t k = 0;
	int i;

	if ((v = calloc(F_DOMS, sizeof(*v))) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&H.mu);
	for (i = 0; i < F_DOMS; i++) {
		if (!H.d[i].present)
			continue;
		v[k].domid = H.d[i].domid;
		v[k].pages = H.d[i].pages;
		v[k].vcpus = 1;
		v[k].flags = HV_DOM_RUNNING;
		snprintf(v[k].name, sizeof(v[k].name), "fake%u",
		    H.d[i].domid);
		k++;
	}
	pthread_mutex_unlock(&H.mu);
	*out = v;
	*n = k;
	return 0;
}

static int
f_dom_open(struct hv *hv, const char *name, struct hv_dom **out)
{
	uint32_t domid = (uint32_t)strtoul(name, NULL, 10);
	struct hv_dom *d;
	int r = 0;

	pthread_mutex_lock(&H.mu);
	if (f_find(domid) == NULL || H.fail_dopen == domid)
		r = -ENOENT;
	pthread_mutex_unlock(&H.mu);
	if (r != 0)
		return r;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	d->domid = domid;
	*out = d;
	return 0;
}

static void
f_dom_close(struct hv_dom *d)
{
	free(d);
}

static int
f_dom_info(struct hv_dom *d, struct hv_dom_info *out)
{
	struct fdom *f;
	int r = -ENOENT;

	pthread_mutex_lock(&H.mu);
	if ((f = f_find(d->domid)) != NULL) {
		memset(out, 0, sizeof(*out));
		out->domid = f->domid;
		out->pages = f->pages;
		r = 0;
	}
	pthread_mutex_unlock(&H.mu);
	return r;
}

static int
f_map(struct hv_dom *d, const uint64_t *pfns, size_t n, int writable,
    void **pages, struct hv_map **out)
{
	struct hv_map *m;
	struct fdom *f;
	size_t i;
	int r = 0;

	if (writable || n > HV_MAP_BATCH_MAX)
		return writable ? -EPERM : -EINVAL;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&H.mu);
	H.maps++;
	if ((f = f_find(d->domid)) == NULL || H.fail_map == d->domid) {
		r = -ENOENT;
		goto out;
	}
	for (i = 0; i < n; i++)
		if (pfns[i] >= f->pages) {
			r = -EINVAL;
			goto out;
		}
	if (!H.direct && (m->copy = malloc(n * HV_PAGE_SIZE)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		uint8_t *src = f->mem + pfns[i] * HV_PAGE_SIZE;

		if (f->hole[pfns[i]]) {
			pages[i] = NULL;
		} else if (H.direct) {
			pages[i] = src;
		} else {
			pages[i] = (uint8_t *)m->copy + i * HV_PAGE_SIZE;
			memcpy(pages[i], src, HV_PAGE_SIZE);
		}
	}
out:
	pthread_mutex_unlock(&H.mu);
	if (r != 0) {
		free(m);
		return r;
	}
	*out = m;
	return 0;
}

static void
f_unmap(struct hv_dom *d, struct hv_map *m)
{
	if (m == NULL)
		return;
	free(m->copy);
	free(m);
}

static int
f_nosup(struct hv_dom *d)
{
	return -EOPNOTSUPP;
}

static int
f_dirty(struct hv_dom *d, uint64_t *bm, int final)
{
	return -EOPNOTSUPP;
}

static int
f_blob_get(struct hv_dom *d, void **buf, size_t *len)
{
	return -EOPNOTSUPP;
}

static int
f_blob_set(struct hv_dom *d, const void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

static int
f_create(struct hv *hv, const struct hv_dom_info *shape, const void *cfg,
    size_t len, struct hv_dom **out)
{
	return -EOPNOTSUPP;
}

static int
f_destroy(struct hv_dom *d)
{
	free(d);
	return -EOPNOTSUPP;
}

static const struct hv_ops fake_ops = {
	.name = "fake",
	.open = f_open,
	.close = f_close,
	.list = f_list,
	.dom_open = f_dom_open,
	.dom_close = f_dom_close,
	.dom_info = f_dom_info,
	.map = f_map,
	.unmap = f_unmap,
	.logdirty_enable = f_nosup,
	.logdirty_disable = f_nosup,
	.dirty_fetch = f_dirty,
	.pause = f_nosup,
	.unpause = f_nosup,
	.context_get = f_blob_get,
	.context_set = f_blob_set,
	.config_get = f_blob_get,
	.create = f_create,
	.commit = f_nosup,
	.destroy = f_destroy,
};

/* ---- helpers ---- */

/* Content c >= 1: a page of bytes derived from c; c = 0: zero page. */
static void
fill(uint8_t *page, uint64_t c)
{
	uint64_t x = c * 0x9e3779b97f4a7c15ull, w;
	size_t i;

	if (c == 0) {
		memset(page, 0, HV_PAGE_SIZE);
		return;
	}
	for (i = 0; i < HV_PAGE_SIZE; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w = x | 1;
		memcpy(page + i, &w, 8);
	}
}

/* Add a domain; content[p] < 0 is a hole.  Under the host lock. */
static void
f_add(uint32_t domid, uint64_t pages, const int64_t *content)
{
	struct fdom *f = NULL;
	uint64_t p;
	int i;

	pthread_mutex_lock(&H.mu);
	for (i = 0; i < F_DOMS; i++)
		if (!H.d[i].present) {
			f = &H.d[i];
			break;
		}
	assert_non_null(f);
	f->domid = domid;
	f->pages = pages;
	f->mem = malloc(pages * HV_PAGE_SIZE);
	f->hole = calloc(pages, 1);
	assert_non_null(f->mem);
	assert_non_null(f->hole);
	for (p = 0; p < pages; p++) {
		if (content[p] < 0)
			f->hole[p] = 1;
		else
			fill(f->mem + p * HV_PAGE_SIZE, (uint64_t)content[p]);
	}
	f->present = 1;
	pthread_mutex_unlock(&H.mu);
}

static void
f_set(uint32_t domid, uint64_t pfn, int64_t c)
{
	struct fdom *f;

	pthread_mutex_lock(&H.mu);
	f = f_find(domid);
	assert_non_null(f);
	f->hole[pfn] = c < 0;
	if (c >= 0)
		fill(f->mem + pfn * HV_PAGE_SIZE, (uint64_t)c);
	pthread_mutex_unlock(&H.mu);
}

static void
f_del(uint32_t domid)
{
	struct fdom *f;

	pthread_mutex_lock(&H.mu);
	f = f_find(domid);
	assert_non_null(f);
	f->present = 0;
	free(f->mem);
	free(f->hole);
	f->mem = NULL;
	f->hole = NULL;
	pthread_mutex_unlock(&H.mu);
}

static int
f_reset(void **state)
{
	int i;

	for (i = 0; i < F_DOMS; i++)
		if (H.d[i].present)
			f_del(H.d[i].domid);
	H.direct = 0;
	H.fail_open = 0;
	H.fail_map = 0;
	H.fail_dopen = 0;
	return 0;
}

static uint64_t
count_of(struct pidx *ix, uint64_t c)
{
	uint8_t page[HV_PAGE_SIZE], d[32];

	fill(page, c);
	ph_sha256(page, d);
	return pidx_count(ix, d);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct scan *
start(struct pidx *ix, double budget, unsigned interval_ms, unsigned batch)
{
	struct scan_params p;
	struct scan *s = NULL;
	char dir[] = "fake-host";

	memset(&p, 0, sizeof(p));
	p.ops = &fake_ops;
	p.hvp.state_dir = dir;
	p.cpu_budget = budget;
	p.interval_ms = interval_ms;
	p.batch_pages = batch;
	assert_int_equal(scan_start(ix, &p, &s), 0);
	/* The strings were copied: scribbling on ours changes nothing. */
	memset(dir, 'x', sizeof(dir) - 1);
	assert_non_null(s);
	return s;
}

/* ---- tests ---- */

/*
 * Three domains: 1 and 2 share contents 100..109 at different pfns,
 * 3 has holes; zero pages in all.  Expected counts are table-driven.
 */
static const int64_t dom1[] = { 100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 };
static const int64_t dom2[] = { 0, 109, 108, 107, 106, 105, 104, 103, 102,
    101, 100, 9, 10, 11, 0, 100 };
static const int64_t dom3[] = { -1, -1, 12, 13, 0, -1, 100, 12, -1 };

static const struct {
	uint64_t	c;
	uint64_t	count;
} want1[] = {
	{ 100, 4 }, { 101, 2 }, { 105, 2 }, { 109, 2 }, { 1, 1 }, { 9, 1 },
	{ 12, 2 }, { 13, 1 }, { 14, 0 },
};

#define NEL(a)	(sizeof(a) / sizeof((a)[0]))

static void
test_first_pass(void **state)
{
	struct pidx *ix = pidx_new();
	struct scan_stats st0, st1;
	struct pidx_stats ps;
	struct scan *s;
	uint32_t *doms;
	size_t i, n;

	assert_non_null(ix);
	f_add(1, NEL(dom1), dom1);
	f_add(2, NEL(dom2), dom2);
	f_add(3, NEL(dom3), dom3);
	/* Batches of 4 pages: several per domain, a partial one at the end. */
	s = start(ix, 1.0, 60000, 4);
	/*
	 * Not scan_wait(s, 1, ...): with a long interval the first pass
	 * may complete before the call and the wait would need a second.
	 */
	assert_int_equal(scan_sync(s, 10000), 0);
	for (i = 0; i < NEL(want1); i++)
		assert_int_equal(count_of(ix, want1[i].c), want1[i].count);
	assert_int_equal(pidx_stats(ix, UINT32_MAX, &ps), 0);
	assert_int_equal(ps.pages, NEL(dom1) + NEL(dom2) + NEL(dom3) - 4);
	assert_int_equal(ps.zero_pages, 5);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 3);
	free(doms);
	scan_get_stats(s, &st0);
	assert_true(st0.passes >= 1);
	assert_int_equal(st0.domains, 3);
	/* Every non-zero non-hole page was SHA-256'd exactly once. */
	assert_int_equal(st0.pages_hashed, ps.pages - ps.zero_pages);
	assert_int_equal(st0.pages_scanned % (NEL(dom1) + NEL(dom2) +
	    NEL(dom3)), 0);

	/* Change one page, turn one into zero and one into a hole. */
	f_set(1, 12, 100);
	f_set(2, 11, 0);
	f_set(3, 6, -1);
	assert_int_equal(scan_sync(s, 10000), 0);
	scan_get_stats(s, &st1);
	assert_int_equal(st1.pages_hashed - st0.pages_hashed, 1);
	assert_int_equal(count_of(ix, 100), 4);	/* +1 (dom1), -1 (hole) */
	assert_int_equal(count_of(ix, 1), 0);
	assert_int_equal(count_of(ix, 9), 0);
	assert_int_equal(pidx_stats(ix, UINT32_MAX, &ps), 0);
	assert_int_equal(ps.zero_pages, 6);
	assert_int_equal(ps.pages, NEL(dom1) + NEL(dom2) + NEL(dom3) - 5);

	/* A quiet re-pass hashes nothing. */
	assert_int_equal(scan_sync(s, 10000), 0);
	scan_get_stats(s, &st0);
	assert_int_equal(st0.pages_hashed, st1.pages_hashed);
	assert_true(st0.pages_scanned > st1.pages_scanned);

	/* A domain that goes away is dropped. */
	f_del(2);
	assert_int_equal(scan_sync(s, 10000), 0);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 2);
	assert_true(doms[0] != 2 && doms[1] != 2);
	free(doms);
	assert_int_equal(count_of(ix, 100), 2);	/* dom1 pfn 0 and 12 */
	assert_int_equal(count_of(ix, 109), 1);
	scan_get_stats(s, &st1);
	assert_int_equal(st1.domains, 2);
	scan_stop(s);
	pidx_free(ix);
}

/*
 * pass_done: called after every pass, before the pass counts, so that the
 * host filter it publishes (hfilt.h, as destd does) holds every content
 * once scan_sync() returns; a snapshot outlives its replacement while
 * referenced.
 */
struct pd_arg {
	struct hfilt	*h;
	unsigned	 calls;		/* scanner thread, read after sync */
};

static void
pd_hook(struct pidx *ix, void *arg)
{
	struct pd_arg *a = arg;
	struct hfilt_snap *sn;

	assert_int_equal(hfilt_build(ix, 1u << 20, &sn), 0);
	hfilt_set(a->h, sn);
	__atomic_add_fetch(&a->calls, 1, __ATOMIC_RELAXED);
}

static int
snap_has(const struct hfilt_snap *sn, uint64_t c)
{
	uint8_t page[HV_PAGE_SIZE], d[32];

	fill(page, c);
	ph_sha256(page, d);
	return pfilt_maybe(&sn->f, d);
}

static void
test_pass_done(void **state)
{
	struct pidx *ix = pidx_new();
	struct pd_arg a = { .h = hfilt_new() };
	struct hfilt_snap *old, *sn;
	struct scan_params p;
	struct scan *s = NULL;
	char dir[] = "fake-host";
	size_t i;

	assert_non_null(ix);
	assert_non_null(a.h);
	assert_null(hfilt_get(a.h));
	f_add(1, NEL(dom1), dom1);
	f_add(2, NEL(dom2), dom2);
	memset(&p, 0, sizeof(p));
	p.ops = &fake_ops;
	p.hvp.state_dir = dir;
	p.cpu_budget = 1.0;
	p.interval_ms = 60000;
	p.pass_done = pd_hook;
	p.pass_arg = &a;
	assert_int_equal(scan_start(ix, &p, &s), 0);
	assert_int_equal(scan_sync(s, 10000), 0);
	assert_true(__atomic_load_n(&a.calls, __ATOMIC_RELAXED) >= 1);
	assert_non_null(old = hfilt_get(a.h));
	/* dom1 and dom2's 21 distinct non-zero contents, none missing. */
	assert_int_equal(old->contents, 21);
	assert_true(old->f.nbits >= 21 * PFILT_BITS_PER);
	for (i = 0; i < NEL(dom1); i++)
		if (dom1[i] > 0)
			assert_true(snap_has(old, (uint64_t)dom1[i]));
	/* A new content is in the next pass's filter. */
	f_set(1, 12, 4242);
	assert_int_equal(scan_sync(s, 10000), 0);
	assert_non_null(sn = hfilt_get(a.h));
	assert_true(sn != old);
	assert_true(snap_has(sn, 4242));
	/* The old snapshot is still ours to read until we put it. */
	assert_true(snap_has(old, 100));
	hfilt_put(old);
	hfilt_put(sn);
	scan_stop(s);
	hfilt_free(a.h);
	pidx_free(ix);
}

/* Domains that cannot be opened or mapped are skipped, never fatal. */
static void
test_failures(void **state)
{
	struct pidx *ix = pidx_new();
	struct scan *s;
	uint32_t *doms;
	size_t n;

	assert_non_null(ix);
	f_add(1, NEL(dom1), dom1);
	f_add(2, NEL(dom2), dom2);
	f_add(3, NEL(dom3), dom3);
	pthread_mutex_lock(&H.mu);
	H.fail_open = 2;	/* the backend comes up late */
	H.fail_map = 2;
	H.fail_dopen = 3;
	pthread_mutex_unlock(&H.mu);
	s = start(ix, 1.0, 5, 0);
	assert_int_equal(scan_wait(s, 1, 10000), 0);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(doms[0], 1);
	free(doms);
	assert_int_equal(count_of(ix, 100), 1);
	/* They come back once usable. */
	pthread_mutex_lock(&H.mu);
	H.fail_map = 0;
	H.fail_dopen = 0;
	pthread_mutex_unlock(&H.mu);
	assert_int_equal(scan_sync(s, 10000), 0);
	assert_int_equal(count_of(ix, 100), 4);
	scan_stop(s);
	pidx_free(ix);
}

/* A big fake domain of n pages, every page distinct and non-zero. */
static void
big_domain(uint32_t domid, uint64_t n)
{
	int64_t *c = malloc(n * sizeof(*c));
	uint64_t p;

	assert_non_null(c);
	for (p = 0; p < n; p++)
		c[p] = (int64_t)(p + 1000);
	f_add(domid, n, c);
	free(c);
}

static void
test_budget_and_stop(void **state)
{
	struct pidx *ix = pidx_new();
	struct scan_stats st;
	double t0, wall, t;
	struct scan *s;
	int r;

	assert_non_null(ix);
	big_domain(1, 16384);		/* 64 MiB */
	t0 = now_s();
	s = start(ix, 0.2, 0, 0);
	/* Run about 1.5 s worth of passes (first pass and re-passes). */
	r = scan_wait(s, 1, 20000);
	assert_int_equal(r, 0);
	while (now_s() - t0 < 1.5)
		(void)scan_wait(s, 1, 200);
	scan_get_stats(s, &st);
	wall = now_s() - t0;
	printf("budget 0.2: cpu %.3f s / wall %.3f s = %.3f, %" PRIu64
	    " passes\n", st.cpu_s, wall, st.cpu_s / wall, st.passes);
	assert_true(st.cpu_s / wall < 0.3);
	assert_true(st.passes >= 1);
	/* Stop is prompt even in the middle of a throttled pass. */
	t = now_s();
	scan_stop(s);
	t = now_s() - t;
	printf("scan_stop: %.3f s\n", t);
	assert_true(t < 1.0);
	pidx_free(ix);
}

static void
test_wait_timeout(void **state)
{
	struct pidx *ix = pidx_new();
	struct scan_stats st;
	struct scan *s;
	uint64_t before;
	double t;

	assert_non_null(ix);
	f_add(1, NEL(dom1), dom1);
	s = start(ix, 1.0, 60000, 0);
	assert_int_equal(scan_sync(s, 10000), 0);
	/* No pass for a minute: a short wait times out. */
	t = now_s();
	assert_int_equal(scan_wait(s, 1, 100), -ETIMEDOUT);
	assert_true(now_s() - t >= 0.09);
	/* A kick starts one at once.  (Not scan_wait(s, 1, ...) after the
	 * kick: the pass may end before the call, which would then wait for
	 * a second one, a minute away.) */
	scan_get_stats(s, &st);
	before = st.passes;
	scan_kick(s);
	t = now_s();
	do {
		(void)scan_wait(s, 1, 50);
		scan_get_stats(s, &st);
	} while (st.passes == before && now_s() - t < 10.0);
	assert_true(st.passes > before);
	t = now_s();
	scan_stop(s);
	assert_true(now_s() - t < 1.0);
	scan_stop(NULL);
	pidx_free(ix);
}

/* Throughput on one large domain; numbers for docs/INDEX.md. */
static void
bench(unsigned mib)
{
	uint64_t n = (uint64_t)mib << 8, p;
	struct scan_stats a, b;
	struct pidx_stats ps;
	struct pidx *ix = pidx_new();
	struct scan *s;
	double t0, t1, t2;
	int64_t *c;

	if (ix == NULL || (c = malloc(n * sizeof(*c))) == NULL)
		return;
	/* 1/8 zero pages, half the rest repeated (shared), half unique. */
	for (p = 0; p < n; p++)
		c[p] = p % 8 == 0 ? 0 : (p % 2 ? (int64_t)p : (int64_t)(p % 4096 + 1));
	f_add(1, n, c);
	free(c);
	H.direct = 1;
	t0 = now_s();
	s = start(ix, 1.0, 600000, 0);
	if (scan_wait(s, 1, 600000) != 0)
		return;
	t1 = now_s();
	scan_get_stats(s, &a);
	if (scan_sync(s, 600000) != 0)
		return;
	t2 = now_s();
	scan_get_stats(s, &b);
	pidx_stats(ix, UINT32_MAX, &ps);
	printf("bench %u MiB: first pass %.2f s wall, %.2f s cpu, %.2f GB/s "
	    "per core, %" PRIu64 " hashed\n", mib, t1 - t0, a.cpu_s,
	    n * 4096.0 / a.cpu_s / 1e9, a.pages_hashed);
	printf("bench %u MiB: re-pass %.2f s wall, %.2f s cpu, %.2f GB/s "
	    "per core, %" PRIu64 " hashed\n", mib, t2 - t1, b.cpu_s - a.cpu_s,
	    n * 4096.0 / (b.cpu_s - a.cpu_s) / 1e9,
	    b.pages_hashed - a.pages_hashed);
	printf("bench index: %" PRIu64 " pages, %" PRIu64 " unique, %.2f "
	    "bytes/page\n", ps.pages, ps.unique_digests,
	    (double)ps.bytes / (double)ps.pages);
	scan_stop(s);
	pidx_free(ix);
	f_reset(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_first_pass, f_reset),
		cmocka_unit_test_teardown(test_failures, f_reset),
		cmocka_unit_test_teardown(test_pass_done, f_reset),
		cmocka_unit_test_teardown(test_budget_and_stop, f_reset),
		cmocka_unit_test_teardown(test_wait_timeout, f_reset),
	};
	const char *b = getenv("SHAREMIG_BENCH");

	if (b != NULL)
		bench((unsigned)atoi(b) > 0 ? (unsigned)atoi(b) : 1024);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
