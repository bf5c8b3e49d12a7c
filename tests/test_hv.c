/*
 * test_hv.c - backend lookup (hv.c) and the ops tables' completeness:
 * every member of every built backend is implemented (STYLE rule 3).
 */
#include <setjmp.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bitmap.h"
#include "hv.h"
#include "pagehash.h"

static void
test_find(void **state)
{
	static const struct {
		const char	*name;
		int		 found;
	} cases[] = {
		{ "sim", 1 },
#ifdef HAVE_XEN
		{ "xen", 1 },
#else
		{ "xen", 0 },
#endif
		{ "kvm", 0 },
		{ "", 0 },
		{ "SIM", 0 },
		{ "sim ", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hv_ops *o = hv_find(cases[i].name);

		if (!cases[i].found) {
			assert_null(o);
			continue;
		}
		assert_non_null(o);
		assert_string_equal(o->name, cases[i].name);
	}
}

static void
check_complete(const struct hv_ops *o)
{
	const void *const members[] = {
		(const void *)o->open, (const void *)o->close,
		(const void *)o->list, (const void *)o->dom_open,
		(const void *)o->dom_close, (const void *)o->dom_info,
		(const void *)o->map, (const void *)o->unmap,
		(const void *)o->logdirty_enable,
		(const void *)o->logdirty_disable,
		(const void *)o->dirty_fetch, (const void *)o->pause,
		(const void *)o->unpause, (const void *)o->throttle,
		(const void *)o->context_get,
		(const void *)o->context_set, (const void *)o->config_get,
		(const void *)o->create, (const void *)o->commit,
		(const void *)o->destroy, (const void *)o->reap_incoming,
		(const void *)o->outside_pfns,
	};
	size_t i;

	/* A new member must be added here too: the table has them all. */
	_Static_assert(sizeof(members) / sizeof(members[0]) ==
	    (sizeof(struct hv_ops) - sizeof(const char *)) / sizeof(void *),
	    "test_hv.c: list every hv_ops member");
	for (i = 0; i < sizeof(members) / sizeof(members[0]); i++)
		assert_non_null(members[i]);
}

static void
test_complete(void **state)
{
	(void)state;
	check_complete(&hv_sim_ops);
#ifdef HAVE_XEN
	check_complete(&hv_xen_ops);
#endif
}

/* hv_digest hashes exactly the selected pfns, in pfn order. */
static void
test_digest(void **state)
{
	char dir[] = "/tmp/test_hv.XXXXXX", cmd[64];
	const struct hv_ops *ops = &hv_sim_ops;
	struct hv_params hp = { 0 };
	struct hv_dom_info shape = { .vcpus = 1, .pages = 64 };
	uint64_t pfns[64], *set;
	void *pages[64];
	uint8_t want[32];
	struct hv_digest got;
	struct ph_ctx *ctx;
	struct hv_map *map;
	struct hv_dom *d;
	struct hv *hv;
	size_t i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	hp.state_dir = dir;
	assert_int_equal(ops->open(&hp, &hv), 0);
	snprintf(shape.name, sizeof(shape.name), "d");
	assert_int_equal(ops->create(hv, &shape, "profile=idle uid=7", 18, &d),
	    0);
	for (i = 0; i < 64; i++)
		pfns[i] = i;
	assert_int_equal(ops->map(d, pfns, 64, 1, pages, &map), 0);
	for (i = 0; i < 64; i++)
		memset(pages[i], (int)i + 1, 4096);
	set = bm_alloc(64);
	bm_set(set, 3);
	bm_set(set, 40);
	/* want = 1: pfns 3 and 40. */
	ctx = ph_ctx_new();
	ph_ctx_update(ctx, pages[3], 4096);
	ph_ctx_update(ctx, pages[40], 4096);
	ph_ctx_final(ctx, want);
	assert_int_equal(hv_digest(ops, d, set, 64, 1, NULL, 0, &got, NULL, NULL), 0);
	assert_memory_equal(want, got.sha256, 32);
	assert_int_equal(got.pages, 2);
	assert_int_equal(got.noutside, 0);
	/* want = 0: all the others, in order. */
	ctx = ph_ctx_new();
	for (i = 0; i < 64; i++)
		if (i != 3 && i != 40)
			ph_ctx_update(ctx, pages[i], 4096);
	ph_ctx_final(ctx, want);
	assert_int_equal(hv_digest(ops, d, set, 64, 0, NULL, 0, &got, NULL, NULL), 0);
	assert_memory_equal(want, got.sha256, 32);
	assert_int_equal(got.pages, 62);
	ops->unmap(d, map);
	assert_int_equal(ops->destroy(d), 0);
	ops->close(hv);
	free(set);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* outside_pfns of this test's backend: pfns 5 and 1500, if offered. */
static size_t
two_outside(struct hv_dom *d, const uint64_t *cand, size_t n, uint64_t *out,
    size_t max)
{
	size_t k = 0;

	(void)d;
	for (size_t i = 0; i < n; i++)
		if ((cand[i] == 5 || cand[i] == 1500) && k < max)
			out[k++] = cand[i];
	return k;
}

struct seg_log {
	struct hv_digest_seg	s[4];
	size_t			n;
};

static void
note_seg(void *arg, const struct hv_digest_seg *s)
{
	struct seg_log *l = arg;

	assert_true(l->n < 4);
	l->s[l->n++] = *s;
}

/*
 * The pfns the backend names as written behind the dirty log are left
 * out of the digest, and the segments of HV_DIGEST_SEG pages each hash
 * their own pages, first and last pfn named.
 */
static void
test_digest_outside(void **state)
{
	enum { NP = 2100 };
	char dir[] = "/tmp/test_hv.XXXXXX", cmd[64];
	struct hv_ops ops = hv_sim_ops;
	struct hv_params hp = { 0 };
	struct hv_dom_info shape = { .vcpus = 1, .pages = NP };
	static uint64_t pfns[NP];
	static void *pages[NP];
	uint64_t *set, idx[NP];
	uint8_t want[32];
	struct hv_digest got;
	struct seg_log segs = { .n = 0 };
	struct ph_ctx *ctx, *sctx;
	struct hv_map *map[3];
	struct hv_dom *d;
	struct hv *hv;
	size_t i, k, n = 0;

	(void)state;
	ops.outside_pfns = two_outside;
	assert_non_null(mkdtemp(dir));
	hp.state_dir = dir;
	assert_int_equal(ops.open(&hp, &hv), 0);
	snprintf(shape.name, sizeof(shape.name), "d");
	assert_int_equal(ops.create(hv, &shape, "profile=idle uid=7", 18, &d),
	    0);
	for (i = 0; i < NP; i++)
		pfns[i] = i;
	for (k = 0; k < 3; k++) {
		size_t off = k * HV_MAP_BATCH_MAX;
		size_t cnt = NP - off < HV_MAP_BATCH_MAX ? NP - off :
		    HV_MAP_BATCH_MAX;

		assert_int_equal(ops.map(d, pfns + off, cnt, 1, pages + off,
		    &map[k]), 0);
	}
	for (i = 0; i < NP; i++) {
		memset(pages[i], (int)(i % 251), 4096);
		((uint64_t *)pages[i])[0] = i;
	}
	set = bm_alloc(NP);	/* want = 0: every pfn */
	ctx = ph_ctx_new();
	for (i = 0; i < NP; i++)
		if (i != 5 && i != 1500) {
			ph_ctx_update(ctx, pages[i], 4096);
			idx[n++] = i;
		}
	ph_ctx_final(ctx, want);
	assert_int_equal(hv_digest(&ops, d, set, NP, 0, NULL, 0, &got,
	    note_seg, &segs), 0);
	assert_memory_equal(want, got.sha256, 32);
	assert_int_equal(got.pages, NP - 2);
	assert_int_equal(got.noutside, 2);
	assert_int_equal(got.outside[0], 5);
	assert_int_equal(got.outside[1], 1500);
	assert_int_equal(segs.n, 3);
	for (k = 0; k < segs.n; k++) {
		size_t lo = k * HV_DIGEST_SEG;
		size_t hi = lo + HV_DIGEST_SEG < n ? lo + HV_DIGEST_SEG : n;

		assert_int_equal(segs.s[k].index, k);
		assert_int_equal(segs.s[k].pages, hi - lo);
		assert_int_equal(segs.s[k].first, idx[lo]);
		assert_int_equal(segs.s[k].last, idx[hi - 1]);
		sctx = ph_ctx_new();
		for (i = lo; i < hi; i++)
			ph_ctx_update(sctx, pages[idx[i]], 4096);
		ph_ctx_final(sctx, want);
		assert_memory_equal(want, segs.s[k].sha256, 32);
	}
	/* The destination's way: the source's list, the backend not asked
	 * (the sim backend would leave nothing out). */
	{
		const uint64_t skip[2] = { 5, 1500 };
		struct hv_digest dst;

		assert_int_equal(hv_digest(&hv_sim_ops, d, set, NP, 0, skip, 2,
		    &dst, NULL, NULL), 0);
		assert_memory_equal(dst.sha256, got.sha256, 32);
		assert_int_equal(dst.pages, NP - 2);
		assert_int_equal(dst.noutside, 2);
		assert_int_equal(hv_digest(&hv_sim_ops, d, set, NP, 0, NULL, 0,
		    &dst, NULL, NULL), 0);
		assert_int_equal(dst.pages, NP);
		assert_int_equal(dst.noutside, 0);
		assert_int_equal(hv_digest(&hv_sim_ops, d, set, NP, 0, skip,
		    HV_OUTSIDE_MAX + 1, &dst, NULL, NULL), -EINVAL);
	}
	/* The logging callback takes a prefix and any segment. */
	hv_digest_log_seg("test", &segs.s[0]);
	hv_digest_log("test", &got);
	for (k = 0; k < 3; k++)
		ops.unmap(d, map[k]);
	assert_int_equal(ops.destroy(d), 0);
	ops.close(hv);
	free(set);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_complete),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_digest_outside),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
