/*
 * test_pfilt.c - the Bloom filter of FILTER records: its sizes, the bit
 * positions the wire format fixes, no false negatives, the false
 * positive rate destd's sizing gives, and the wire form's bounds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pfilt.h"

/* splitmix64: uniform 8-byte prefixes, as SHA-256's are. */
static uint64_t
next_u64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
prefix_of(uint64_t v, uint8_t p[8])
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int
bit_set(const struct pfilt *f, uint64_t b)
{
	return (f->words[b / 64] >> (b % 64)) & 1;
}

static void
test_size(void **state)
{
	uint64_t nbits;
	uint32_t k;

	(void)state;
	pfilt_size(0, 1ull << 27, &nbits, &k);
	assert_int_equal(nbits, PFILT_BITS_MIN);
	assert_int_equal(k, 1);
	pfilt_size(131072, 1ull << 27, &nbits, &k);	/* a 512 MiB guest */
	assert_int_equal(nbits, 131072 * 8);
	assert_int_equal(k, 6);
	pfilt_size(100, 1ull << 27, &nbits, &k);	/* 800, up to 64s */
	assert_int_equal(nbits, 832);
	assert_int_equal(k, 6);
	/* Over the cap: fewer bits per content, fewer probes. */
	pfilt_size(1u << 25, 1ull << 27, &nbits, &k);	/* 4 per content */
	assert_int_equal(nbits, 1ull << 27);
	assert_int_equal(k, 3);
	pfilt_size(1u << 26, 1ull << 27, &nbits, &k);	/* 2 per content */
	assert_int_equal(nbits, 1ull << 27);
	assert_int_equal(k, 1);
	pfilt_size((1u << 26) + 1, 1ull << 27, &nbits, &k);	/* < 2 */
	assert_int_equal(nbits, 0);
	assert_int_equal(k, 0);
}

/* The positions docs/PROTOCOL.md gives, computed independently. */
static void
test_positions(void **state)
{
	static const uint64_t want1024[6] = { 4, 555, 81, 632, 159, 709 };
	static const uint64_t want262144[6] = { 1165, 142140, 20971, 161946,
	    40777, 181753 };
	/* h = 0x0123456789abcdef, little-endian */
	const uint8_t p[8] = { 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01 };
	struct pfilt f;
	uint64_t b, set;
	int j;

	(void)state;
	assert_int_equal(pfilt_init(&f, 1024, 6), 0);
	pfilt_add(&f, p);
	for (j = 0; j < 6; j++)
		assert_true(bit_set(&f, want1024[j]));
	for (b = 0, set = 0; b < 1024; b++)
		set += (uint64_t)bit_set(&f, b);
	assert_int_equal(set, 6);
	assert_true(pfilt_maybe(&f, p));
	pfilt_free(&f);
	assert_null(f.words);
	assert_int_equal(f.nbits, 0);

	assert_int_equal(pfilt_init(&f, 262144, 6), 0);
	pfilt_add(&f, p);
	for (j = 0; j < 6; j++)
		assert_true(bit_set(&f, want262144[j]));
	/* Any one of its bits clear: certainly not there. */
	f.words[want262144[3] / 64] &= ~(1ull << (want262144[3] % 64));
	assert_false(pfilt_maybe(&f, p));
	pfilt_free(&f);
}

/* Every member is found; non-members pass at about the rate the size
 * promises (8 bits and 6 probes a content: 2.2%). */
static void
test_members_and_rate(void **state)
{
	const uint64_t n = 100000;
	struct pfilt f;
	uint64_t nbits, s = 42, i, fp = 0;
	uint32_t k;
	uint8_t p[8];

	(void)state;
	pfilt_size(n, 1ull << 27, &nbits, &k);
	assert_int_equal(pfilt_init(&f, nbits, k), 0);
	for (i = 0; i < n; i++) {
		prefix_of(next_u64(&s), p);
		pfilt_add(&f, p);
	}
	s = 42;
	for (i = 0; i < n; i++) {
		prefix_of(next_u64(&s), p);
		assert_true(pfilt_maybe(&f, p));
	}
	for (i = 0; i < n; i++) {
		prefix_of(next_u64(&s), p);	/* the sequence goes on */
		fp += (uint64_t)pfilt_maybe(&f, p);
	}
	print_message("false positives: %llu of %llu, fill %.3f\n",
	    (unsigned long long)fp, (unsigned long long)n, pfilt_fill(&f));
	assert_true(fp > n / 100 && fp < n * 35 / 1000);
	assert_true(pfilt_fill(&f) > 0.45 && pfilt_fill(&f) < 0.55);
	pfilt_free(&f);
}

/* The wire form: little-endian words, in chunks, bounds checked. */
static void
test_wire(void **state)
{
	struct pfilt a, b;
	uint8_t buf[512], p[8];
	uint64_t s = 7, i;

	(void)state;
	assert_int_equal(pfilt_init(&a, 4096, 4), 0);
	assert_int_equal(pfilt_init(&b, 4096, 4), 0);
	for (i = 0; i < 300; i++) {
		prefix_of(next_u64(&s), p);
		pfilt_add(&a, p);
	}
	a.words[0] = 0x0102030405060708ull;
	assert_int_equal(pfilt_get(&a, 0, buf, 256), 0);
	assert_int_equal(buf[0], 0x08);
	assert_int_equal(buf[7], 0x01);
	assert_int_equal(pfilt_put(&b, 0, buf, 256), 0);
	assert_int_equal(pfilt_get(&a, 256, buf, 256), 0);
	assert_int_equal(pfilt_put(&b, 256, buf, 256), 0);
	assert_memory_equal(a.words, b.words, 4096 / 8);
	/* Bounds: beyond the array, unaligned, overflowing offsets. */
	assert_int_equal(pfilt_get(&a, 512, buf, 8), -EINVAL);
	assert_int_equal(pfilt_get(&a, 504, buf, 16), -EINVAL);
	assert_int_equal(pfilt_put(&b, 4, buf, 8), -EINVAL);
	assert_int_equal(pfilt_put(&b, 0, buf, 12), -EINVAL);
	assert_int_equal(pfilt_put(&b, UINT64_MAX - 7, buf, 16), -EINVAL);
	assert_int_equal(pfilt_get(&a, 512, buf, 0), 0);
	pfilt_free(&a);
	pfilt_free(&b);
	assert_int_equal(pfilt_init(&a, 100, 4), -EINVAL);
	assert_int_equal(pfilt_init(&a, 0, 4), -EINVAL);
	assert_int_equal(pfilt_init(&a, 64, 0), -EINVAL);
	pfilt_free(&a);		/* a zeroed or freed struct is fine */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_positions),
		cmocka_unit_test(test_members_and_rate),
		cmocka_unit_test(test_wire),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
