/*
 * test_bitmap.c - bm_count/bm_next/bm_or/bm_zero over edge sizes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bitmap.h"

static const uint64_t sizes[] = { 0, 1, 63, 64, 65, 127, 128, 1000 };
#define NSIZES	(sizeof(sizes) / sizeof(sizes[0]))

/* A deterministic bit pattern: bit i set by rule `kind`. */
static int
pattern(int kind, uint64_t i, uint64_t n)
{
	switch (kind) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return i % 3 == 0;
	case 3:
		return i == 0 || i + 1 == n;	/* first and last */
	default:
		return i % 64 == 63 || i % 64 == 0;
	}
}

/* Fill: the pattern, plus garbage above nbits in the last word. */
static uint64_t *
make(int kind, uint64_t n, uint64_t *expect)
{
	uint64_t *bm = bm_alloc(n), i;

	assert_non_null(bm);
	*expect = 0;
	for (i = 0; i < n; i++)
		if (pattern(kind, i, n)) {
			bm_set(bm, i);
			(*expect)++;
		}
	if (n % 64 != 0)
		bm[n / 64] |= ~0ull << (n % 64);
	return bm;
}

static void
test_alloc_zeroed(void **state)
{
	size_t s, w;

	for (s = 0; s < NSIZES; s++) {
		uint64_t *bm = bm_alloc(sizes[s]);

		assert_non_null(bm);
		for (w = 0; w < bm_words(sizes[s]); w++)
			assert_int_equal(bm[w], 0);
		assert_int_equal(bm_count(bm, sizes[s]), 0);
		assert_int_equal(bm_next(bm, sizes[s], 0), sizes[s]);
		free(bm);
	}
}

static void
test_count_next(void **state)
{
	uint64_t *bm, n, expect, i, got, seen;
	size_t s;
	int k;

	for (s = 0; s < NSIZES; s++)
		for (k = 0; k < 5; k++) {
			n = sizes[s];
			bm = make(k, n, &expect);
			assert_int_equal(bm_count(bm, n), expect);
			/* bm_next visits exactly the pattern's bits. */
			seen = 0;
			for (i = bm_next(bm, n, 0); i < n;
			    i = bm_next(bm, n, i + 1)) {
				assert_true(pattern(k, i, n));
				seen++;
			}
			assert_int_equal(i, n);
			assert_int_equal(seen, expect);
			/* From every position. */
			for (i = 0; i < n; i++) {
				got = bm_next(bm, n, i);
				assert_true(got >= i && got <= n);
				if (got < n)
					assert_true(bm_test(bm, got));
				if (pattern(k, i, n))
					assert_int_equal(got, i);
			}
			assert_int_equal(bm_next(bm, n, n), n);
			assert_int_equal(bm_next(bm, n, n + 100), n);
			free(bm);
		}
}

static void
test_or_zero(void **state)
{
	uint64_t *a, *b, n, ea, eb, i, both;
	size_t s;

	for (s = 0; s < NSIZES; s++) {
		n = sizes[s];
		a = make(2, n, &ea);
		b = make(3, n, &eb);
		both = 0;
		for (i = 0; i < n; i++)
			both += pattern(2, i, n) && pattern(3, i, n);
		bm_or(a, b, n);
		assert_int_equal(bm_count(a, n), ea + eb - both);
		for (i = 0; i < n; i++)
			assert_int_equal(bm_test(a, i),
			    pattern(2, i, n) || pattern(3, i, n));
		bm_zero(a, n);
		assert_int_equal(bm_count(a, n), 0);
		assert_int_equal(bm_next(a, n, 0), n);
		if (n > 0) {
			bm_set(a, n - 1);
			assert_int_equal(bm_next(a, n, 0), n - 1);
			bm_clear(a, n - 1);
			assert_int_equal(bm_count(a, n), 0);
		}
		free(a);
		free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_zeroed),
		cmocka_unit_test(test_count_next),
		cmocka_unit_test(test_or_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
