/*
 * test_pace.c - the token bucket of the bandwidth cap and the
 * auto-converge step, driven by a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pace.h"

#define MS	1000000ull
#define S	1000000000ull

static void
test_unlimited_never_waits(void **state)
{
	struct pace_bucket b;

	(void)state;
	pace_bucket_init(&b, 0, 0);
	pace_bucket_charge(&b, 1ull << 40, 1);
	assert_int_equal(pace_bucket_wait_ns(&b, 1), 0);
}

static void
test_burst_size(void **state)
{
	struct pace_bucket b;

	(void)state;
	/* 20 ms at the rate ... */
	pace_bucket_init(&b, 100u << 20, 0);
	assert_int_equal(b.burst, (100u << 20) / 50);
	/* ... but never less than 64 KiB. */
	pace_bucket_init(&b, 1000, 0);
	assert_int_equal(b.burst, PACE_BURST_MIN);
}

/* The debt of a batch is paid back at exactly the rate. */
static void
test_debt_wait(void **state)
{
	struct pace_bucket b;
	uint64_t rate = 8u << 20;

	(void)state;
	pace_bucket_init(&b, rate, 0);
	assert_int_equal(pace_bucket_wait_ns(&b, 0), 0);
	/* Charge the burst plus one second's worth: wait one second. */
	pace_bucket_charge(&b, b.burst + rate, 0);
	assert_true(pace_bucket_wait_ns(&b, 0) >= S);
	assert_true(pace_bucket_wait_ns(&b, 0) <= S + MS);
	assert_true(pace_bucket_wait_ns(&b, S / 2) >= S / 2);
	assert_int_equal(pace_bucket_wait_ns(&b, S + MS), 0);
}

/* Idle time fills the bucket only up to the burst. */
static void
test_refill_capped(void **state)
{
	struct pace_bucket b;

	(void)state;
	pace_bucket_init(&b, 1u << 20, 0);
	pace_bucket_charge(&b, 1u << 20, 0);
	assert_int_equal(b.tokens, (int64_t)b.burst - (1 << 20));
	(void)pace_bucket_wait_ns(&b, 3600 * S);
	assert_int_equal(b.tokens, (int64_t)b.burst);
	/* A clock going backwards earns nothing and does not crash. */
	pace_bucket_charge(&b, 100, 10);
	assert_int_equal(b.tokens, (int64_t)b.burst - 100);
}

/*
 * A sender that queues 1 MiB batches whenever it may: over a simulated
 * 10 s, what it charged stays within burst + rate * t + one batch, and
 * gets close to rate * t (the cap does not starve it).
 */
static void
test_sender_bound(void **state)
{
	static const uint64_t rates[] = { 1u << 20, 8u << 20, 100u << 20,
	    3000001 };
	struct pace_bucket b;
	uint64_t now, sent, w, batch = 1u << 20, end = 10 * S;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		pace_bucket_init(&b, rates[i], 0);
		for (now = 0, sent = 0; now < end;) {
			if ((w = pace_bucket_wait_ns(&b, now)) != 0) {
				now += w;
				continue;
			}
			pace_bucket_charge(&b, batch, now);
			sent += batch;
			now += 100000;	/* 0.1 ms of work per batch */
		}
		assert_true(sent <= b.burst + rates[i] * 10 + batch);
		assert_true(sent + 2 * batch >= rates[i] * 10);
	}
}

static void
test_set_rate(void **state)
{
	struct pace_bucket b;

	(void)state;
	pace_bucket_init(&b, 1u << 20, 0);
	pace_bucket_charge(&b, 10u << 20, 0);
	assert_true(pace_bucket_wait_ns(&b, 0) > 9 * S);
	/* Lifting the cap forgives the debt. */
	pace_bucket_set_rate(&b, 0, MS);
	assert_int_equal(pace_bucket_wait_ns(&b, MS), 0);
	/* A lower cap clamps what was saved to the new burst. */
	pace_bucket_set_rate(&b, 100u << 20, 2 * MS);
	pace_bucket_set_rate(&b, 1u << 20, 3 * MS);
	assert_int_equal(b.tokens, (int64_t)PACE_BURST_MIN);
	/* Keep the debt when only the rate changes. */
	pace_bucket_charge(&b, 2u << 20, 3 * MS);
	pace_bucket_set_rate(&b, 2u << 20, 3 * MS);
	assert_true(pace_bucket_wait_ns(&b, 3 * MS) >= S - 40 * MS);
}

static void
test_progress(void **state)
{
	static const struct {
		unsigned	round;
		uint64_t	dirty, prev, sent;
		int		want;
	} t[] = {
		/* Round 0 sent the whole 64 MiB; 1000 pages dirty. */
		{ 0, 1000, 0, 64u << 20, 1 },
		/* Round 0: the guest dirtied more than half of it. */
		{ 0, 9000, 0, 64u << 20, 0 },
		/* Shrank by more than 10%: progress... */
		{ 1, 899, 1000, 64u << 20, 1 },
		{ 2, 100, 1000, 64u << 20, 1 },
		/* ... by 10% or less: none. */
		{ 1, 900, 1000, 64u << 20, 0 },
		{ 3, 1000, 1000, 64u << 20, 0 },
		{ 3, 2000, 1000, 64u << 20, 0 },
		/* Shrinking, but dirtied more than half of what went. */
		{ 2, 500, 1000, 500 * 4096 * 2 - 1, 0 },
		{ 2, 500, 1000, 500 * 4096 * 2, 1 },
		/* Nothing dirty: always progress. */
		{ 5, 0, 0, 0, 1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (pace_progress(t[i].round, t[i].dirty, t[i].prev,
		    t[i].sent) != t[i].want)
			fail_msg("case %zu: want %d", i, t[i].want);
	}
}

static void
test_throttle_steps(void **state)
{
	unsigned p = 0, steps = 0;

	(void)state;
	assert_int_equal(pace_throttle_next(0, 1), 0);
	assert_int_equal(pace_throttle_next(0, 0), 20);
	assert_int_equal(pace_throttle_next(20, 0), 30);
	assert_int_equal(pace_throttle_next(30, 1), 30);
	assert_int_equal(pace_throttle_next(90, 0), 99);
	assert_int_equal(pace_throttle_next(99, 0), 99);
	/* 20, 30, ..., 90, 99: nine rounds without progress to the top. */
	while (p < PACE_THROTTLE_MAX) {
		p = pace_throttle_next(p, 0);
		steps++;
	}
	assert_int_equal(steps, 9);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlimited_never_waits),
		cmocka_unit_test(test_burst_size),
		cmocka_unit_test(test_debt_wait),
		cmocka_unit_test(test_refill_capped),
		cmocka_unit_test(test_sender_bound),
		cmocka_unit_test(test_set_rate),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_throttle_steps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
