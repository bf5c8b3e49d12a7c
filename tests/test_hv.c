/*
 * test_hv.c - backend lookup (hv.c) and the ops tables' completeness:
 * every member of every built backend is implemented (STYLE rule 3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hv.h"

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
		(const void *)o->unpause, (const void *)o->context_get,
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_complete),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
