/*
 * test_ygate.c - the yield gate of content lookups: when it closes, how
 * much it still samples, and that it opens again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ygate.h"

/*
 * Offer n pages; a page looked up hits when hit_every > 0 and it is the
 * hit_every-th lookup.  Returns how many were looked up.
 */
static unsigned
run(struct ygate *g, unsigned n, unsigned hit_every, unsigned *nlook)
{
	unsigned i, looked = 0;

	for (i = 0; i < n; i++) {
		if (!ygate_look(g))
			continue;
		(*nlook)++;
		looked++;
		ygate_seen(g, hit_every > 0 && *nlook % hit_every == 0);
	}
	return looked;
}

/* Every page is looked up until YG_PROBE lookups are measured. */
static void
test_probe_open(void **state)
{
	struct ygate g;
	unsigned nl = 0;

	(void)state;
	ygate_init(&g);
	assert_int_equal(run(&g, YG_PROBE - 1, 0, &nl), YG_PROBE - 1);
	assert_false(ygate_closed(&g));
	assert_int_equal(run(&g, 1, 0, &nl), 1);
	assert_true(ygate_closed(&g));
}

/* Closed, it looks up exactly one page in YG_SAMPLE. */
static void
test_closed_samples(void **state)
{
	struct ygate g;
	unsigned nl = 0;

	(void)state;
	ygate_init(&g);
	run(&g, YG_PROBE, 0, &nl);
	assert_true(ygate_closed(&g));
	assert_int_equal(run(&g, 80 * YG_SAMPLE, 0, &nl), 80);
	assert_true(ygate_closed(&g));
}

/* Above the threshold yield it stays open; below, it closes. */
static void
test_threshold(void **state)
{
	struct ygate g;
	unsigned nl = 0;

	(void)state;
	ygate_init(&g);
	assert_int_equal(run(&g, 20000, YG_MIN * 3 / 4, &nl), 20000);
	assert_false(ygate_closed(&g));
	ygate_init(&g);
	nl = 0;
	run(&g, 20000, 2 * YG_MIN, &nl);
	assert_true(ygate_closed(&g));
	assert_true(nl < 20000 / 2);
}

/* A closed gate opens again soon after the samples start finding
 * content: within a few hundred pages, whatever its history. */
static void
test_reopens(void **state)
{
	struct ygate g;
	unsigned nl = 0, pages = 0;

	(void)state;
	ygate_init(&g);
	run(&g, 100000, 0, &nl);
	assert_true(ygate_closed(&g));
	while (ygate_closed(&g) && pages < 100000) {
		nl = 0;
		run(&g, 1, 1, &nl);
		pages++;
	}
	assert_false(ygate_closed(&g));
	assert_true(pages <= (YG_WINDOW / (YG_MIN - 1) + 1) * YG_SAMPLE);
	/* Open: every page is looked up again. */
	nl = 0;
	assert_int_equal(run(&g, 100, 1, &nl), 100);
}

/* The counts stay within the window (the past fades). */
static void
test_window(void **state)
{
	struct ygate g;
	unsigned nl = 0;

	(void)state;
	ygate_init(&g);
	run(&g, 1000000, 3, &nl);
	assert_true(g.lookups < YG_WINDOW);
	assert_true(g.hits <= g.lookups);
	assert_false(ygate_closed(&g));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_open),
		cmocka_unit_test(test_closed_samples),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_reopens),
		cmocka_unit_test(test_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
