/*
 * test_dmap.c - digest map: put/get/overwrite/growth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dmap.h"

/* A digest-like key from an index: spread bytes, like SHA-256 output. */
static void
key(uint8_t d[32], uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
	int j;

	for (j = 0; j < 32; j++) {
		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ull;
		d[j] = (uint8_t)(x >> 56);
	}
}

static void
test_put_get(void **state)
{
	static const size_t hints[] = { 0, 1, 1000 };
	uint8_t k[32], k2[32];
	uint64_t v;
	size_t h;

	for (h = 0; h < sizeof(hints) / sizeof(hints[0]); h++) {
		struct dmap *m = dmap_new(hints[h]);

		assert_non_null(m);
		key(k, 1);
		assert_int_equal(dmap_get(m, k, &v), 0);
		assert_int_equal(dmap_put(m, k, 42), 0);
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, 42);
		assert_int_equal(dmap_size(m), 1);
		/* Overwrite keeps the size. */
		assert_int_equal(dmap_put(m, k, 7), 0);
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, 7);
		assert_int_equal(dmap_size(m), 1);
		/* Same first 8 bytes, different rest: a distinct key. */
		memcpy(k2, k, 32);
		k2[20] ^= 1;
		assert_int_equal(dmap_get(m, k2, &v), 0);
		assert_int_equal(dmap_put(m, k2, 8), 0);
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, 7);
		assert_int_equal(dmap_get(m, k2, &v), 1);
		assert_int_equal(v, 8);
		/* All-zero key is an ordinary key. */
		memset(k, 0, 32);
		assert_int_equal(dmap_get(m, k, &v), 0);
		assert_int_equal(dmap_put(m, k, 0), 0);
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, 0);
		assert_int_equal(dmap_size(m), 3);
		dmap_free(m);
	}
	dmap_free(NULL);
}

/* Keys that differ only in the last byte all share one home slot. */
static void
test_last_byte(void **state)
{
	struct dmap *m = dmap_new(0);
	uint8_t k[32];
	uint64_t v;
	int i;

	assert_non_null(m);
	memset(k, 0xab, 32);
	for (i = 0; i < 256; i++) {
		k[31] = (uint8_t)i;
		assert_int_equal(dmap_put(m, k, (uint64_t)i * 3), 0);
	}
	assert_int_equal(dmap_size(m), 256);
	for (i = 0; i < 256; i++) {
		k[31] = (uint8_t)i;
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, (uint64_t)i * 3);
	}
	k[30] = 0;
	assert_int_equal(dmap_get(m, k, &v), 0);
	dmap_free(m);
}

static void
test_growth(void **state)
{
	struct dmap *m = dmap_new(0);
	uint8_t k[32];
	uint64_t i, v, n = 100000;

	assert_non_null(m);
	for (i = 0; i < n; i++) {
		key(k, i);
		assert_int_equal(dmap_put(m, k, i + 1), 0);
	}
	assert_int_equal(dmap_size(m), n);
	/* Overwrite half. */
	for (i = 0; i < n; i += 2) {
		key(k, i);
		assert_int_equal(dmap_put(m, k, i * 2), 0);
	}
	assert_int_equal(dmap_size(m), n);
	for (i = 0; i < n; i++) {
		key(k, i);
		assert_int_equal(dmap_get(m, k, &v), 1);
		assert_int_equal(v, i % 2 == 0 ? i * 2 : i + 1);
	}
	for (i = n; i < n + 1000; i++) {
		key(k, i);
		assert_int_equal(dmap_get(m, k, &v), 0);
	}
	dmap_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get),
		cmocka_unit_test(test_last_byte),
		cmocka_unit_test(test_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
