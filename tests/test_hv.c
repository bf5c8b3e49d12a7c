/*
 * test_hv.c - backend lookup (hv.c) and the ops tables' completeness:
 * every member of every built backend is implemented (STYLE rule 3).
 */
#include <setjmp.h>
#include <stdio.h>
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
	uint8_t want[32], got[32];
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
	assert_int_equal(hv_digest(ops, d, set, 64, 1, got), 0);
	assert_memory_equal(want, got, 32);
	/* want = 0: all the others, in order. */
	ctx = ph_ctx_new();
	for (i = 0; i < 64; i++)
		if (i != 3 && i != 40)
			ph_ctx_update(ctx, pages[i], 4096);
	ph_ctx_final(ctx, want);
	assert_int_equal(hv_digest(ops, d, set, 64, 0, got), 0);
	assert_memory_equal(want, got, 32);
	ops->unmap(d, map);
	assert_int_equal(ops->destroy(d), 0);
	ops->close(hv);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
