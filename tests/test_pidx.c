/*
 * test_pidx.c - the shared-page index: sharing, content changes, holes,
 * domain removal and resize, zero pages, stats, a randomized comparison
 * with a brute-force model, concurrent readers, and memory per page.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pagehash.h"
#include "pidx.h"

#define HOST	UINT32_MAX

/*
 * Digest of content id c: c = 0 is the zero page, others are spread
 * bytes.  With `collide`, every digest has the same first 8 bytes (one
 * hash home slot: exercises probing and backward-shift deletion).
 */
static void
dig(uint8_t d[32], uint64_t c, int collide)
{
	uint64_t x = c * 0x9e3779b97f4a7c15ull + 0x1234567;
	int j;

	if (c == 0) {
		memcpy(d, ph_zero_digest(), 32);
		return;
	}
	for (j = 0; j < 32; j++) {
		x ^= x >> 31;
		x *= 0xbf58476d1ce4e5b9ull;
		d[j] = (uint8_t)(x >> 56);
	}
	if (collide)
		memset(d, 0x5a, 8);
}

/* Set one page of domid to content c (fp derived from c; c = -1: hole). */
static void
put(struct pidx *ix, uint32_t domid, uint64_t pfn, int64_t c)
{
	uint8_t d[1][32];
	uint64_t fp = c < 0 ? 0 : (uint64_t)c * 1000 + 7;

	dig(d[0], c < 0 ? 1 : (uint64_t)c, 0);
	assert_int_equal(pidx_update(ix, domid, &pfn, 1, &fp,
	    (const uint8_t (*)[32])d), 0);
}

static uint64_t
cnt(struct pidx *ix, uint64_t c)
{
	uint8_t d[32];

	dig(d, c, 0);
	return pidx_count(ix, d);
}

static struct pidx_stats
stats(struct pidx *ix, uint32_t domid)
{
	struct pidx_stats st;

	assert_int_equal(pidx_stats(ix, domid, &st), 0);
	return st;
}

static void
test_shared(void **state)
{
	struct pidx *ix = pidx_new();
	struct pidx_loc locs[4];
	uint64_t bm1[1] = { 0 }, bm2[1] = { 0 };
	struct pidx_stats st;
	uint8_t d[32];
	size_t n;

	assert_non_null(ix);
	assert_int_equal(pidx_dom_set(ix, 1, 8), 0);
	assert_int_equal(pidx_dom_set(ix, 2, 8), 0);
	put(ix, 1, 3, 10);
	put(ix, 2, 5, 10);
	put(ix, 1, 4, 11);
	assert_int_equal(cnt(ix, 10), 2);
	assert_int_equal(cnt(ix, 11), 1);
	assert_int_equal(cnt(ix, 12), 0);
	dig(d, 10, 0);
	n = pidx_lookup(ix, d, locs, 4);
	assert_int_equal(n, 2);
	/* Both locations, in some order. */
	assert_true((locs[0].domid == 1 && locs[0].pfn == 3 &&
	    locs[1].domid == 2 && locs[1].pfn == 5) ||
	    (locs[1].domid == 1 && locs[1].pfn == 3 &&
	    locs[0].domid == 2 && locs[0].pfn == 5));
	assert_int_equal(pidx_lookup(ix, d, locs, 1), 1);
	assert_int_equal(pidx_lookup(ix, d, locs, 0), 0);
	assert_int_equal(pidx_dom_shared(ix, 1, bm1, 8), 0);
	assert_int_equal(pidx_dom_shared(ix, 2, bm2, 8), 0);
	assert_int_equal(bm1[0], 1u << 3);
	assert_int_equal(bm2[0], 1u << 5);
	assert_int_equal(pidx_dom_shared(ix, 3, bm2, 8), -ENOENT);
	{
		uint64_t fps[2] = { 1, 1 };
		uint8_t pre[2][8];

		assert_int_equal(pidx_dom_keys(ix, 3, 0, 2, fps, pre),
		    -ENOENT);
		assert_int_equal(fps[0] | fps[1], 0);
	}
	st = stats(ix, HOST);
	assert_int_equal(st.pages, 3);
	assert_int_equal(st.unique_digests, 2);
	assert_int_equal(st.shared_pages, 2);
	assert_int_equal(st.zero_pages, 0);
	assert_true(st.bytes > 0);
	st = stats(ix, 1);
	assert_int_equal(st.pages, 2);
	assert_int_equal(st.unique_digests, 2);
	assert_int_equal(st.shared_pages, 1);
	assert_int_equal(pidx_stats(ix, 9, &st), -ENOENT);
	pidx_free(ix);
	pidx_free(NULL);
}

static void
test_change_and_holes(void **state)
{
	struct pidx *ix = pidx_new();
	uint64_t pfns[3] = { 0, 1, 2 }, fps[3], got[3];
	uint8_t d[3][32];

	assert_non_null(ix);
	assert_int_equal(pidx_dom_set(ix, 1, 4), 0);
	assert_int_equal(pidx_dom_set(ix, 2, 4), 0);
	put(ix, 1, 0, 20);
	put(ix, 2, 0, 20);
	put(ix, 2, 1, 20);
	assert_int_equal(cnt(ix, 20), 3);
	/* A content change moves the location to another entry. */
	put(ix, 1, 0, 21);
	assert_int_equal(cnt(ix, 20), 2);
	assert_int_equal(cnt(ix, 21), 1);
	put(ix, 2, 0, 21);
	put(ix, 2, 1, 21);
	assert_int_equal(cnt(ix, 20), 0);	/* entry freed */
	assert_int_equal(cnt(ix, 21), 3);
	assert_int_equal(stats(ix, HOST).unique_digests, 1);
	assert_int_equal(stats(ix, HOST).shared_pages, 3);
	/* Rewriting the same content keeps the count. */
	put(ix, 2, 1, 21);
	assert_int_equal(cnt(ix, 21), 3);
	/* fp_get reports what was recorded; 0 for unknown. */
	assert_int_equal(pidx_fp_get(ix, 2, pfns, 3, got), 0);
	assert_int_equal(got[0], 21 * 1000 + 7);
	assert_int_equal(got[1], 21 * 1000 + 7);
	assert_int_equal(got[2], 0);
	assert_int_equal(pidx_fp_get(ix, 7, pfns, 3, got), -ENOENT);
	/* Holes drop locations. */
	put(ix, 2, 1, -1);
	assert_int_equal(cnt(ix, 21), 2);
	fps[0] = 0; fps[1] = 0; fps[2] = 5;
	dig(d[2], 22, 0);
	assert_int_equal(pidx_update(ix, 2, pfns, 3, fps,
	    (const uint8_t (*)[32])d), 0);
	assert_int_equal(cnt(ix, 21), 1);
	assert_int_equal(cnt(ix, 22), 1);
	assert_int_equal(stats(ix, HOST).pages, 2);
	assert_int_equal(stats(ix, HOST).shared_pages, 0);
	/* Bad arguments change nothing. */
	pfns[0] = 4;
	assert_int_equal(pidx_update(ix, 2, pfns, 1, fps,
	    (const uint8_t (*)[32])d), -EINVAL);
	assert_int_equal(pidx_update(ix, 5, pfns, 1, fps,
	    (const uint8_t (*)[32])d), -ENOENT);
	assert_int_equal(stats(ix, HOST).pages, 2);
	pidx_free(ix);
}

static void
test_remove_resize(void **state)
{
	struct pidx *ix = pidx_new();
	uint64_t pfn, got, big = 70000;	/* crosses a segment */
	uint32_t *doms;
	size_t n;

	assert_non_null(ix);
	assert_int_equal(pidx_dom_set(ix, 1, 10), 0);
	assert_int_equal(pidx_dom_set(ix, 2, big), 0);
	for (pfn = 0; pfn < 10; pfn++)
		put(ix, 1, pfn, 30 + pfn % 2);
	for (pfn = 0; pfn < big; pfn += 1000)
		put(ix, 2, pfn, 30);
	put(ix, 2, big - 1, 31);
	assert_int_equal(cnt(ix, 30), 5 + 70);
	assert_int_equal(cnt(ix, 31), 6);
	/* Shrink across the segment boundary drops the tail. */
	assert_int_equal(pidx_dom_set(ix, 2, 65000), 0);
	assert_int_equal(cnt(ix, 30), 5 + 65);
	assert_int_equal(cnt(ix, 31), 5);
	/* Growing back: the new pfns are unknown. */
	assert_int_equal(pidx_dom_set(ix, 2, big), 0);
	pfn = big - 1;
	assert_int_equal(pidx_fp_get(ix, 2, &pfn, 1, &got), 0);
	assert_int_equal(got, 0);
	put(ix, 2, big - 1, 31);
	assert_int_equal(cnt(ix, 31), 6);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 2);
	free(doms);
	/* Remove a domain: all its locations go. */
	pidx_dom_remove(ix, 1);
	pidx_dom_remove(ix, 1);		/* unknown: no-op */
	assert_int_equal(cnt(ix, 30), 65);
	assert_int_equal(cnt(ix, 31), 1);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(doms[0], 2);
	free(doms);
	assert_int_equal(pidx_dom_set(ix, 2, 0), 0);
	assert_int_equal(stats(ix, HOST).pages, 0);
	assert_int_equal(stats(ix, HOST).unique_digests, 0);
	pidx_dom_remove(ix, 2);
	assert_int_equal(pidx_doms(ix, &doms, &n), 0);
	assert_int_equal(n, 0);
	free(doms);
	pidx_free(ix);
}

static void
test_zero(void **state)
{
	struct pidx *ix = pidx_new();
	struct pidx_loc loc;
	uint64_t bm[1] = { 0 }, pfn, fp;
	struct pidx_stats st;

	assert_non_null(ix);
	assert_int_equal(pidx_dom_set(ix, 1, 8), 0);
	assert_int_equal(pidx_dom_set(ix, 2, 8), 0);
	for (pfn = 0; pfn < 8; pfn++) {
		put(ix, 1, pfn, 0);
		put(ix, 2, pfn, 0);
	}
	assert_int_equal(cnt(ix, 0), 0);
	assert_int_equal(pidx_lookup(ix, ph_zero_digest(), &loc, 1), 0);
	assert_int_equal(pidx_dom_shared(ix, 1, bm, 8), 0);
	assert_int_equal(bm[0], 0);
	st = stats(ix, HOST);
	assert_int_equal(st.pages, 16);
	assert_int_equal(st.zero_pages, 16);
	assert_int_equal(st.unique_digests, 0);
	assert_int_equal(st.shared_pages, 0);
	st = stats(ix, 2);
	assert_int_equal(st.zero_pages, 8);
	/* A zero page keeps its fingerprint like any page. */
	pfn = 3;
	assert_int_equal(pidx_fp_get(ix, 1, &pfn, 1, &fp), 0);
	assert_int_equal(fp, 7);
	put(ix, 1, 3, 40);
	put(ix, 2, 3, -1);
	st = stats(ix, HOST);
	assert_int_equal(st.pages, 15);
	assert_int_equal(st.zero_pages, 14);
	pidx_free(ix);
}

/* ---- randomized comparison with a brute-force model ---- */

#define M_DOMS	3
#define M_CONT	12

static const uint64_t m_sizes[M_DOMS][4] = {
	{ 1, 5, 9, 16 },
	{ 65530, 65536, 65537, 70000 },
	{ 0, 3, 64, 200 },
};

struct model {
	uint64_t	 pages[M_DOMS];
	int64_t		*c[M_DOMS];	/* content per pfn, -1 = none */
	int		 live[M_DOMS];
};

static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A pfn of domain i worth touching (both ends of each segment). */
static uint64_t
m_pfn(struct model *m, int i, uint64_t *s)
{
	static const uint64_t hot[] = { 0, 1, 65534, 65535, 65536, 65537,
	    69998, 69999 };
	uint64_t p;

	if (i == 1) {
		p = hot[rnd(s) % 8];
		return p < m->pages[i] ? p : m->pages[i] - 1;
	}
	return rnd(s) % m->pages[i];
}

/*
 * pidx_dom_keys over a window that starts inside the domain and reaches
 * past its end: a page whose content is held once on the host has its
 * fingerprint and prefix; shared and zero pages, holes and pfns beyond
 * the domain read as zeros.
 */
static void
m_check_keys(struct pidx *ix, struct model *m, int i, int collide,
    const uint64_t *want)
{
	uint64_t first = m->pages[i] / 3, n = m->pages[i] - first + 5, p;
	uint64_t *fps = calloc(n, 8);
	uint8_t (*pre)[8] = calloc(n, 8), d[32], none[8] = { 0 };
	int64_t c;

	assert_non_null(fps);
	assert_non_null(pre);
	assert_int_equal(pidx_dom_keys(ix, (uint32_t)i, first, n, fps, pre),
	    0);
	for (p = 0; p < n; p++) {
		c = first + p < m->pages[i] ? m->c[i][first + p] : -1;
		if (c <= 0 || want[c] != 1) {
			assert_int_equal(fps[p], 0);
			assert_memory_equal(pre[p], none, 8);
			continue;
		}
		assert_int_equal(fps[p], (uint64_t)c + 100);
		dig(d, (uint64_t)c, collide);
		assert_memory_equal(pre[p], d, 8);
	}
	free(fps);
	free(pre);
}

static void
m_check(struct pidx *ix, struct model *m, int collide)
{
	uint64_t want[M_CONT], shared = 0, pages = 0, zero = 0, uniq = 0;
	struct pidx_loc locs[256];
	struct pidx_stats st;
	uint64_t *bm, p;
	uint8_t d[32];
	size_t n, k;
	int i, c;

	memset(want, 0, sizeof(want));
	for (i = 0; i < M_DOMS; i++)
		for (p = 0; m->live[i] && p < m->pages[i]; p++)
			if (m->c[i][p] >= 0) {
				want[m->c[i][p]]++;
				pages++;
			}
	zero = want[0];
	for (c = 1; c < M_CONT; c++) {
		dig(d, (uint64_t)c, collide);
		assert_int_equal(pidx_count(ix, d), want[c]);
		n = pidx_lookup(ix, d, locs, 256);
		assert_int_equal(n, want[c] < 256 ? want[c] : 256);
		for (k = 0; k < n; k++) {
			assert_true(locs[k].domid < M_DOMS);
			assert_true(m->live[locs[k].domid]);
			assert_int_equal(m->c[locs[k].domid][locs[k].pfn], c);
		}
		uniq += want[c] > 0;
		shared += want[c] >= 2 ? want[c] : 0;
	}
	st = stats(ix, HOST);
	assert_int_equal(st.pages, pages);
	assert_int_equal(st.zero_pages, zero);
	assert_int_equal(st.unique_digests, uniq);
	assert_int_equal(st.shared_pages, shared);
	for (i = 0; i < M_DOMS; i++) {
		if (!m->live[i])
			continue;
		bm = calloc(m->pages[i] / 64 + 1, 8);
		assert_non_null(bm);
		assert_int_equal(pidx_dom_shared(ix, (uint32_t)i, bm,
		    m->pages[i]), 0);
		for (p = 0; p < m->pages[i]; p++)
			assert_int_equal((bm[p / 64] >> (p % 64)) & 1,
			    m->c[i][p] > 0 && want[m->c[i][p]] >= 2);
		free(bm);
		m_check_keys(ix, m, i, collide, want);
	}
}

static void
m_run(uint64_t seed, int collide)
{
	struct pidx *ix = pidx_new();
	struct model m;
	uint64_t s = seed, pfn, fp, np, op;
	uint8_t d[1][32];
	int64_t c;
	int i, step;

	assert_non_null(ix);
	memset(&m, 0, sizeof(m));
	for (step = 0; step < 3000; step++) {
		i = (int)(rnd(&s) % M_DOMS);
		op = rnd(&s) % 100;
		if (!m.live[i] || op < 3) {
			/* (Re)size, creating if needed. */
			np = m_sizes[i][rnd(&s) % 4];
			assert_int_equal(pidx_dom_set(ix, (uint32_t)i, np), 0);
			if (!m.live[i]) {
				free(m.c[i]);
				m.c[i] = NULL;
				m.pages[i] = 0;
			}
			m.c[i] = realloc(m.c[i], (np + 1) * sizeof(int64_t));
			assert_non_null(m.c[i]);
			for (pfn = m.pages[i]; pfn < np; pfn++)
				m.c[i][pfn] = -1;
			m.pages[i] = np;
			m.live[i] = 1;
		} else if (op < 5) {
			pidx_dom_remove(ix, (uint32_t)i);
			m.live[i] = 0;
		} else if (m.pages[i] > 0) {
			pfn = m_pfn(&m, i, &s);
			c = (int64_t)(rnd(&s) % (M_CONT + 2)) - 2;
			if (c < -1)
				c = -1;
			fp = c < 0 ? 0 : (uint64_t)c + 100;
			dig(d[0], c < 0 ? 1 : (uint64_t)c, collide);
			assert_int_equal(pidx_update(ix, (uint32_t)i, &pfn, 1,
			    &fp, (const uint8_t (*)[32])d), 0);
			m.c[i][pfn] = c;
		}
		if (step % 97 == 0)
			m_check(ix, &m, collide);
	}
	m_check(ix, &m, collide);
	for (i = 0; i < M_DOMS; i++)
		free(m.c[i]);
	pidx_free(ix);
}

static void
test_model(void **state)
{
	static const struct {
		uint64_t	seed;
		int		collide;
	} runs[] = {
		{ 1, 0 }, { 2, 0 }, { 3, 1 }, { 4, 1 }, { 0xdeadbeef, 1 },
	};
	size_t r;

	for (r = 0; r < sizeof(runs) / sizeof(runs[0]); r++)
		m_run(runs[r].seed, runs[r].collide);
}

/* ---- concurrency ---- */

#define C_PAGES	4096
#define C_CONT	64

struct conc {
	struct pidx	*ix;
	int		 stop;		/* atomic */
	uint64_t	 lookups;
};

/*
 * The writer moves pages among C_CONT contents in two domains; at every
 * moment each domain holds all C_PAGES pages, so the counts of all
 * contents always sum to 2 * C_PAGES (updates are applied as batches
 * under the write lock, and a reader sees a batch all or nothing).
 */
/* Prefix lookup: exact contents found by their first 8 bytes (the
 * answer is the index's key: the digest's first PIDX_KEY_LEN bytes),
 * several contents with one prefix all returned, zero pages and unknowns
 * not. */
static void
test_find_prefix(void **state)
{
	struct pidx *ix = pidx_new();
	uint8_t d[32], got[4][PIDX_KEY_LEN], pre[8], kl[PIDX_KEY_LEN];
	uint64_t fps[3] = { 11, 12, 13 }, pfns[3] = { 0, 1, 2 };
	struct pidx_loc l1, l2;
	uint8_t cd[3][32];
	int i;

	assert_non_null(ix);
	assert_int_equal(pidx_dom_set(ix, 1, 16), 0);
	put(ix, 1, 5, 42);
	put(ix, 1, 6, 0);
	dig(d, 42, 0);
	assert_int_equal(pidx_find_prefix(ix, d, got, 4), 1);
	assert_memory_equal(got[0], d, PIDX_KEY_LEN);
	/* The key finds the locations, as the full digest does. */
	{
		struct pidx_loc loc;

		assert_int_equal(pidx_lookup(ix, got[0], &loc, 1), 1);
		assert_int_equal(loc.pfn, 5);
		assert_int_equal(pidx_count(ix, got[0]), 1);
		/* Both in one call. */
		memset(&loc, 0, sizeof(loc));
		assert_int_equal(pidx_find_prefix_loc(ix, d, kl, &loc), 2);
		assert_memory_equal(kl, d, PIDX_KEY_LEN);
		assert_int_equal(loc.domid, 1);
		assert_int_equal(loc.pfn, 5);
	}
	dig(d, 43, 0);
	assert_int_equal(pidx_find_prefix(ix, d, got, 4), 0);
	assert_int_equal(pidx_find_prefix(ix, ph_zero_digest(), got, 4), 0);
	assert_int_equal(pidx_find_prefix_loc(ix, d, kl, &l2), 0);
	assert_int_equal(pidx_find_prefix_loc(ix, ph_zero_digest(), kl, &l2),
	    0);
	/* Three contents sharing one prefix. */
	for (i = 0; i < 3; i++)
		dig(cd[i], 100 + i, 1);
	assert_int_equal(pidx_update(ix, 1, pfns, 3, fps,
	    (const uint8_t (*)[32])cd), 0);
	memcpy(pre, cd[0], 8);
	assert_int_equal(pidx_find_prefix(ix, pre, got, 4), 3);
	assert_int_equal(pidx_find_prefix(ix, pre, got, 2), 2);
	/* The first of them, with its location, as the two calls give. */
	assert_int_equal(pidx_find_prefix(ix, pre, got, 1), 1);
	assert_int_equal(pidx_find_prefix_loc(ix, pre, kl, &l2), 2);
	assert_memory_equal(kl, got[0], PIDX_KEY_LEN);
	assert_int_equal(pidx_lookup(ix, kl, &l1, 1), 1);
	assert_int_equal(l2.domid, l1.domid);
	assert_int_equal(l2.pfn, l1.pfn);
	/* Many at once: what one at a time gives, for hits, misses and the
	 * zero page, batches shorter and longer than the pipeline. */
	{
		uint8_t bp[21][8], bk[21][PIDX_KEY_LEN], k1[PIDX_KEY_LEN];
		struct pidx_loc bl[21];
		int br[21], r1;
		size_t n, m;

		/* zero pages, the three contents of one prefix, and the
		 * contents 41..60 (only 42 is indexed) */
		for (i = 0; i < 21; i++) {
			if (i % 5 == 4) {
				memcpy(bp[i], ph_zero_digest(), 8);
			} else if (i % 3 == 0) {
				memcpy(bp[i], cd[(i / 3) % 3], 8);
			} else {
				dig(d, 40 + i, 0);
				memcpy(bp[i], d, 8);
			}
		}
		memcpy(bp[1], pre, 8);
		for (n = 0; n <= 21; n += 1 + n / 2) {
			memset(br, 0x55, sizeof(br));
			pidx_find_prefix_loc_n(ix, n, (const uint8_t (*)[8])bp,
			    bk, bl, br);
			for (m = 0; m < n; m++) {
				r1 = pidx_find_prefix_loc(ix, bp[m], k1, &l1);
				assert_int_equal(br[m], r1);
				if (r1 == 0)
					continue;
				assert_memory_equal(bk[m], k1, PIDX_KEY_LEN);
				assert_int_equal(bl[m].domid, l1.domid);
				assert_int_equal(bl[m].pfn, l1.pfn);
			}
			if (n < 21)
				assert_int_equal(br[n], 0x55555555);
		}
		/* some of each kind were asked */
		pidx_find_prefix_loc_n(ix, 21, (const uint8_t (*)[8])bp, bk,
		    bl, br);
		assert_int_equal(br[1], 2);
		assert_int_equal(br[2], 2);
		assert_int_equal(br[4], 0);
		assert_int_equal(br[5], 0);
	}
	pidx_free(ix);
}

/* pidx_each_key: every distinct non-zero content once, none freed. */
struct keys_seen {
	uint8_t		keys[8][PIDX_KEY_LEN];
	unsigned	n;
};

static void
keys_cb(const uint8_t *key, void *arg)
{
	struct keys_seen *ks = arg;

	assert_true(ks->n < 8);
	memcpy(ks->keys[ks->n++], key, PIDX_KEY_LEN);
}

static int
keys_has(const struct keys_seen *ks, uint64_t c)
{
	uint8_t d[32];
	unsigned i;

	dig(d, c, 0);
	for (i = 0; i < ks->n; i++)
		if (memcmp(ks->keys[i], d, PIDX_KEY_LEN) == 0)
			return 1;
	return 0;
}

static void
test_each_key(void **state)
{
	struct pidx *ix = pidx_new();
	struct keys_seen ks;

	(void)state;
	assert_non_null(ix);
	memset(&ks, 0, sizeof(ks));
	assert_int_equal(pidx_each_key(ix, keys_cb, &ks), 0);
	assert_int_equal(pidx_dom_set(ix, 1, 16), 0);
	assert_int_equal(pidx_dom_set(ix, 2, 16), 0);
	put(ix, 1, 0, 5);
	put(ix, 2, 0, 5);	/* shared: one content */
	put(ix, 1, 1, 6);
	put(ix, 1, 2, 0);	/* zero: not a key */
	put(ix, 2, 3, 7);
	put(ix, 2, 3, 8);	/* 7's entry is freed */
	assert_int_equal(pidx_each_key(ix, keys_cb, &ks), 3);
	assert_int_equal(ks.n, 3);
	assert_true(keys_has(&ks, 5) && keys_has(&ks, 6) && keys_has(&ks, 8));
	assert_false(keys_has(&ks, 7));
	pidx_dom_remove(ix, 2);
	ks.n = 0;
	assert_int_equal(pidx_each_key(ix, keys_cb, &ks), 2);
	assert_true(keys_has(&ks, 5) && keys_has(&ks, 6));
	pidx_free(ix);
}

static void *
c_writer(void *arg)
{
	struct conc *c = arg;
	uint64_t pfns[256], fps[256], s = 99;
	uint8_t (*d)[32] = malloc(256 * 32);
	int round, i;

	for (round = 0; round < 400; round++) {
		for (i = 0; i < 256; i++) {
			uint64_t ct = rnd(&s) % C_CONT + 1;

			pfns[i] = rnd(&s) % C_PAGES;
			fps[i] = ct;
			dig(d[i], ct, 0);
		}
		assert_int_equal(pidx_update(c->ix, (uint32_t)(round % 2),
		    pfns, 256, fps, (const uint8_t (*)[32])d), 0);
	}
	free(d);
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *
c_reader(void *arg)
{
	struct conc *c = arg;
	struct pidx_loc locs[8];
	struct pidx_stats st;
	uint64_t k;
	uint8_t d[32];
	size_t n, j;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		for (k = 1; k <= C_CONT; k++) {
			dig(d, k, 0);
			n = pidx_lookup(c->ix, d, locs, 8);
			for (j = 0; j < n; j++) {
				assert_true(locs[j].domid < 2);
				assert_true(locs[j].pfn < C_PAGES);
			}
			(void)pidx_count(c->ix, d);
			__atomic_fetch_add(&c->lookups, 1, __ATOMIC_RELAXED);
		}
		assert_int_equal(pidx_stats(c->ix, HOST, &st), 0);
		assert_int_equal(st.pages, 2 * C_PAGES);
		assert_true(st.shared_pages <= st.pages);
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	struct conc c = { 0 };
	pthread_t w, r[2];
	uint64_t sum = 0, k, pfn, fp = 1;
	uint8_t d[1][32];
	int i;

	c.ix = pidx_new();
	assert_non_null(c.ix);
	dig(d[0], 1, 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pidx_dom_set(c.ix, (uint32_t)i, C_PAGES), 0);
		for (pfn = 0; pfn < C_PAGES; pfn++)
			assert_int_equal(pidx_update(c.ix, (uint32_t)i, &pfn,
			    1, &fp, (const uint8_t (*)[32])d), 0);
	}
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, c_reader, &c), 0);
	assert_int_equal(pthread_create(&w, NULL, c_writer, &c), 0);
	pthread_join(w, NULL);
	for (i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	for (k = 1; k <= C_CONT; k++) {
		dig(d[0], k, 0);
		sum += pidx_count(c.ix, d[0]);
	}
	assert_int_equal(sum, 2 * C_PAGES);
	assert_true(c.lookups > 0);
	pidx_free(c.ix);
}

/*
 * Memory per indexed page: 1M pages in 4 domains, 50% unique contents
 * (the other half repeat contents of the first half).
 */
static void
test_bytes_per_page(void **state)
{
	struct pidx *ix = pidx_new();
	uint64_t pfns[1024], fps[1024], n = 1u << 20, per = n / 4, p, b, g;
	uint8_t (*d)[32] = malloc(1024 * 32);
	struct pidx_stats st;
	uint32_t dom;
	double bpp;
	int i;

	assert_non_null(ix);
	assert_non_null(d);
	for (dom = 0; dom < 4; dom++) {
		assert_int_equal(pidx_dom_set(ix, dom, per), 0);
		for (p = 0; p < per; p += 1024) {
			for (i = 0; i < 1024; i++) {
				g = dom * per + p + (uint64_t)i;
				pfns[i] = p + (uint64_t)i;
				b = g < n / 2 ? g : g - n / 2;
				fps[i] = b + 1;
				dig(d[i], b + 1, 0);
			}
			assert_int_equal(pidx_update(ix, dom, pfns, 1024, fps,
			    (const uint8_t (*)[32])d), 0);
		}
	}
	st = stats(ix, HOST);
	assert_int_equal(st.pages, n);
	assert_int_equal(st.unique_digests, n / 2);
	assert_int_equal(st.shared_pages, n);
	bpp = (double)st.bytes / (double)st.pages;
	printf("pidx: %llu pages, %llu unique: %llu bytes, %.2f bytes/page\n",
	    (unsigned long long)st.pages,
	    (unsigned long long)st.unique_digests,
	    (unsigned long long)st.bytes, bpp);
	/* The design target (docs/INDEX.md: 12 per pfn + 24 per entry / 2
	 * + hash slots). */
	assert_true(bpp <= 32.0);
	free(d);
	pidx_free(ix);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_change_and_holes),
		cmocka_unit_test(test_remove_resize),
		cmocka_unit_test(test_zero),
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_bytes_per_page),
		cmocka_unit_test(test_find_prefix),
		cmocka_unit_test(test_each_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
