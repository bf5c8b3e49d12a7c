/*
 * test_pagehash.c - SHA-256 and XXH3 of pages, zero detection, hex.
 *
 * SHAREMIG_BENCH=1 also prints a pages/s throughput figure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "pagehash.h"

static const char zero_hex[] =
    "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";

static const struct {
	const char	*in;
	const char	*hex;
} vectors[] = {
	{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
};

static void
test_vectors(void **state)
{
	uint8_t d[PH_DIGEST_LEN];
	char hex[2 * PH_DIGEST_LEN + 1];
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		ph_sha256_buf(vectors[i].in, strlen(vectors[i].in), d);
		ph_hex(d, hex);
		assert_string_equal(hex, vectors[i].hex);
	}
}

static void
test_zero_page(void **state)
{
	static uint8_t page[PH_PAGE_SIZE];
	uint8_t d[PH_DIGEST_LEN];
	char hex[2 * PH_DIGEST_LEN + 1];

	ph_sha256(page, d);
	ph_hex(d, hex);
	assert_string_equal(hex, zero_hex);
	assert_memory_equal(d, ph_zero_digest(), PH_DIGEST_LEN);
	ph_hex(ph_zero_digest(), hex);
	assert_string_equal(hex, zero_hex);
}

static void
test_xxh3(void **state)
{
	static uint8_t a[PH_PAGE_SIZE], b[PH_PAGE_SIZE];
	size_t i;

	for (i = 0; i < PH_PAGE_SIZE; i++)
		a[i] = b[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(ph_xxh3(a), ph_xxh3(b));
	b[PH_PAGE_SIZE - 1] ^= 1;
	assert_int_not_equal(ph_xxh3(a), ph_xxh3(b));
	/*
	 * Known values (XXH3_64bits, seed 0; libxxhash 0.8.1, whose empty
	 * input hash matches the reference 0x2d06800538d394c2).  They must
	 * never change: fingerprints are compared across scanner passes.
	 */
	memset(a, 0, sizeof(a));
	assert_int_equal(ph_xxh3(a), 0x93d76fe148c689baull);
	for (i = 0; i < PH_PAGE_SIZE; i++)
		a[i] = (uint8_t)i;
	assert_int_equal(ph_xxh3(a), 0xeb4b7c3707879151ull);
}

static void
test_is_zero(void **state)
{
	static const size_t pos[] = { 0, 1, 7, 8, 63, 64, 2047, 2048,
	    4031, 4032, 4088, PH_PAGE_SIZE - 1 };
	uint8_t *page;
	size_t i;

	/* Also unaligned: the function must not assume alignment. */
	page = malloc(PH_PAGE_SIZE + 1);
	assert_non_null(page);
	memset(page, 0, PH_PAGE_SIZE + 1);
	assert_true(ph_is_zero(page));
	assert_true(ph_is_zero(page + 1));
	for (i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
		page[pos[i]] = 0x80;
		assert_false(ph_is_zero(page));
		page[pos[i]] = 0;
		page[1 + pos[i]] = 1;
		assert_false(ph_is_zero(page + 1));
		page[1 + pos[i]] = 0;
	}
	assert_true(ph_is_zero(page));
	free(page);
}

static void
test_ctx(void **state)
{
	static const size_t splits[] = { 0, 1, 63, 64, 65, 4095, 4096, 9999 };
	uint8_t *buf, one[PH_DIGEST_LEN], inc[PH_DIGEST_LEN];
	struct ph_ctx *c;
	size_t i, len = 3 * PH_PAGE_SIZE + 17;

	buf = malloc(len);
	assert_non_null(buf);
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i ^ (i >> 8));
	ph_sha256_buf(buf, len, one);
	for (i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		c = ph_ctx_new();
		assert_non_null(c);
		ph_ctx_update(c, buf, splits[i]);
		ph_ctx_update(c, buf + splits[i], len - splits[i]);
		ph_ctx_final(c, inc);
		assert_memory_equal(one, inc, PH_DIGEST_LEN);
	}
	/* A page hashed via ph_sha256 equals the buffer form. */
	ph_sha256(buf, one);
	ph_sha256_buf(buf, PH_PAGE_SIZE, inc);
	assert_memory_equal(one, inc, PH_DIGEST_LEN);
	ph_ctx_free(NULL);
	ph_ctx_free(ph_ctx_new());
	free(buf);
}

static void
test_hex(void **state)
{
	uint8_t d[PH_DIGEST_LEN];
	char hex[2 * PH_DIGEST_LEN + 1];
	size_t i;

	for (i = 0; i < PH_DIGEST_LEN; i++)
		d[i] = (uint8_t)(i * 8 + 0x0f);
	ph_hex(d, hex);
	assert_int_equal(strlen(hex), 64);
	assert_memory_equal(hex, "0f171f272f373f474f575f676f777f87", 32);
	assert_memory_equal(hex + 32, "8f979fa7afb7bfc7cfd7dfe7eff7ff07", 32);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Whole pages through ph_sha256, ph_sha256_2 and ph_queue against
 * ph_sha256_buf (OpenSSL's EVP, the reference) on random pages, at an
 * odd offset too: the SHA-NI path when the CPU has it, else OpenSSL
 * itself (the test's second run sets SHAREMIG_SHA=openssl).
 */
static void
test_pages_vs_openssl(void **state)
{
	enum { NPG = 257 };
	uint8_t *mem, (*want)[PH_DIGEST_LEN], (*got)[PH_DIGEST_LEN];
	struct ph_queue q;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t i, j, off;
	const uint8_t *pg;

	(void)state;
	mem = malloc(NPG * PH_PAGE_SIZE + 64);
	want = malloc(NPG * PH_DIGEST_LEN);
	got = malloc(NPG * PH_DIGEST_LEN);
	assert_non_null(mem);
	assert_non_null(want);
	assert_non_null(got);
	for (i = 0; i < NPG * PH_PAGE_SIZE + 64; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		mem[i] = (uint8_t)x;
	}
	/* a page of 0xff and a page with one bit set, among random ones */
	memset(mem + 5 * PH_PAGE_SIZE, 0xff, PH_PAGE_SIZE);
	memset(mem + 6 * PH_PAGE_SIZE, 0, PH_PAGE_SIZE);
	mem[6 * PH_PAGE_SIZE + 4095] = 1;
	for (off = 0; off <= 5; off += 5) {
		for (i = 0; i < NPG; i++)
			ph_sha256_buf(mem + off + i * PH_PAGE_SIZE,
			    PH_PAGE_SIZE, want[i]);
		for (i = 0; i < NPG; i++) {
			pg = mem + off + i * PH_PAGE_SIZE;
			ph_sha256(pg, got[i]);
			assert_memory_equal(got[i], want[i], PH_DIGEST_LEN);
		}
		memset(got, 0, NPG * PH_DIGEST_LEN);
		for (i = 0; i + 1 < NPG; i += 2)
			ph_sha256_2(mem + off + i * PH_PAGE_SIZE,
			    mem + off + (i + 1) * PH_PAGE_SIZE, got[i],
			    got[i + 1]);
		for (i = 0; i + 1 < NPG; i++)
			assert_memory_equal(got[i], want[i], PH_DIGEST_LEN);
		/* the queue, in a shuffled order, odd count */
		memset(got, 0, NPG * PH_DIGEST_LEN);
		memset(&q, 0, sizeof(q));
		for (i = 0; i < NPG; i++) {
			j = (i * 101) % NPG;
			ph_queue_add(&q, mem + off + j * PH_PAGE_SIZE, got[j]);
		}
		ph_queue_flush(&q);
		ph_queue_flush(&q);		/* empty: does nothing */
		assert_null(q.page);
		for (i = 0; i < NPG; i++)
			assert_memory_equal(got[i], want[i], PH_DIGEST_LEN);
	}
	/* the same page twice in one call */
	ph_sha256_2(mem, mem, got[0], got[1]);
	ph_sha256_buf(mem, PH_PAGE_SIZE, want[0]);
	assert_memory_equal(got[0], want[0], PH_DIGEST_LEN);
	assert_memory_equal(got[1], want[0], PH_DIGEST_LEN);
	free(mem);
	free(want);
	free(got);
}

/*
 * ph_copy_sha256 and ph_copy_sha256_2 on random pages at an odd source
 * offset and an odd destination offset: each copy equals its page and
 * each digest is OpenSSL's of the page; in place (dst == src) too.
 */
static void
test_copy_vs_openssl(void **state)
{
	enum { NPG = 65 };
	uint8_t *mem, *dst, want[PH_DIGEST_LEN], got[2][PH_DIGEST_LEN];
	uint64_t x = 0x2545f4914f6cdd1dull;
	size_t i;

	(void)state;
	mem = malloc(NPG * PH_PAGE_SIZE + 64);
	dst = malloc(NPG * PH_PAGE_SIZE + 64);
	assert_non_null(mem);
	assert_non_null(dst);
	for (i = 0; i < NPG * PH_PAGE_SIZE + 64; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		mem[i] = (uint8_t)x;
	}
	memset(dst, 0xa5, NPG * PH_PAGE_SIZE + 64);
	for (i = 0; i + 1 < NPG; i += 2) {
		ph_copy_sha256_2(dst + 3 + i * PH_PAGE_SIZE,
		    mem + 5 + i * PH_PAGE_SIZE,
		    dst + 3 + (i + 1) * PH_PAGE_SIZE,
		    mem + 5 + (i + 1) * PH_PAGE_SIZE, got[0], got[1]);
		ph_sha256_buf(mem + 5 + i * PH_PAGE_SIZE, PH_PAGE_SIZE, want);
		assert_memory_equal(got[0], want, PH_DIGEST_LEN);
		ph_sha256_buf(mem + 5 + (i + 1) * PH_PAGE_SIZE, PH_PAGE_SIZE,
		    want);
		assert_memory_equal(got[1], want, PH_DIGEST_LEN);
	}
	ph_copy_sha256(dst + 3 + (NPG - 1) * PH_PAGE_SIZE,
	    mem + 5 + (NPG - 1) * PH_PAGE_SIZE, got[0]);
	ph_sha256_buf(mem + 5 + (NPG - 1) * PH_PAGE_SIZE, PH_PAGE_SIZE, want);
	assert_memory_equal(got[0], want, PH_DIGEST_LEN);
	assert_memory_equal(dst + 3, mem + 5, NPG * PH_PAGE_SIZE);
	/* nothing written around the copies */
	for (i = 0; i < 3; i++)
		assert_int_equal(dst[i], 0xa5);
	for (i = 3 + NPG * PH_PAGE_SIZE; i < NPG * PH_PAGE_SIZE + 64; i++)
		assert_int_equal(dst[i], 0xa5);
	/* in place */
	ph_copy_sha256(mem, mem, got[0]);
	ph_sha256_buf(mem, PH_PAGE_SIZE, want);
	assert_memory_equal(got[0], want, PH_DIGEST_LEN);
	free(mem);
	free(dst);
}

/* SHAREMIG_SHA=openssl turns the SHA-NI path off. */
static void
test_path(void **state)
{
	const char *e = getenv("SHAREMIG_SHA");

	(void)state;
	if (e != NULL && strcmp(e, "openssl") == 0)
		assert_int_equal(ph_sha256_ni(), 0);
	printf("page SHA-256 by %s\n", ph_sha256_ni() ? "SHA-NI (own code)" :
	    "OpenSSL");
}

/* Throwaway benchmark: pages/s of each primitive over 64 MiB. */
static void
bench(void)
{
	size_t n = 16384, i, rounds = 4, r;
	uint8_t *mem, d[PH_DIGEST_LEN], d2[PH_DIGEST_LEN];
	uint8_t *cp;
	volatile uint64_t sink = 0;
	double t;

	/* copies go to 64 MiB of their own, as fills go to a new domain */
	mem = malloc(n * PH_PAGE_SIZE);
	cp = malloc(n * PH_PAGE_SIZE);
	if (mem == NULL || cp == NULL) {
		free(mem);
		free(cp);
		return;
	}
	memset(cp, 1, n * PH_PAGE_SIZE);
	for (i = 0; i < n * PH_PAGE_SIZE; i++)
		mem[i] = (uint8_t)(i * 2654435761u >> 13);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++) {
			ph_sha256(mem + i * PH_PAGE_SIZE, d);
			sink += d[0];
		}
	t = now_s() - t;
	printf("sha256: %.0f pages/s (%.2f GB/s)\n", n * rounds / t,
	    n * rounds * PH_PAGE_SIZE / t / 1e9);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i + 1 < n; i += 2) {
			ph_sha256_2(mem + i * PH_PAGE_SIZE,
			    mem + (i + 1) * PH_PAGE_SIZE, d, d2);
			sink += d[0] + d2[0];
		}
	t = now_s() - t;
	printf("sha256 two at once: %.0f pages/s (%.2f GB/s)\n",
	    n * rounds / t, n * rounds * PH_PAGE_SIZE / t / 1e9);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i + 1 < n; i += 2) {
			memcpy(cp + i * PH_PAGE_SIZE, mem + i * PH_PAGE_SIZE,
			    2 * PH_PAGE_SIZE);
			ph_sha256_2(cp + i * PH_PAGE_SIZE,
			    cp + (i + 1) * PH_PAGE_SIZE, d, d2);
			sink += d[0] + d2[0];
		}
	t = now_s() - t;
	printf("memcpy, then sha256 two at once: %.0f pages/s (%.2f GB/s)\n",
	    n * rounds / t, n * rounds * PH_PAGE_SIZE / t / 1e9);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i + 1 < n; i += 2) {
			ph_copy_sha256_2(cp + i * PH_PAGE_SIZE,
			    mem + i * PH_PAGE_SIZE, cp + (i + 1) * PH_PAGE_SIZE,
			    mem + (i + 1) * PH_PAGE_SIZE, d, d2);
			sink += d[0] + d2[0];
		}
	t = now_s() - t;
	printf("copy and sha256 two at once: %.0f pages/s (%.2f GB/s)\n",
	    n * rounds / t, n * rounds * PH_PAGE_SIZE / t / 1e9);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++) {
			ph_sha256_buf(mem + i * PH_PAGE_SIZE, PH_PAGE_SIZE, d);
			sink += d[0];
		}
	t = now_s() - t;
	printf("sha256 OpenSSL EVP: %.0f pages/s (%.2f GB/s)\n",
	    n * rounds / t, n * rounds * PH_PAGE_SIZE / t / 1e9);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++)
			sink += ph_xxh3(mem + i * PH_PAGE_SIZE);
	t = now_s() - t;
	printf("xxh3:   %.0f pages/s (%.2f GB/s)\n", n * rounds / t,
	    n * rounds * PH_PAGE_SIZE / t / 1e9);
	memset(mem, 0, n * PH_PAGE_SIZE);
	t = now_s();
	for (r = 0; r < rounds; r++)
		for (i = 0; i < n; i++)
			sink += (uint64_t)ph_is_zero(mem + i * PH_PAGE_SIZE);
	t = now_s() - t;
	printf("is_zero (zero pages): %.0f pages/s (%.2f GB/s)\n",
	    n * rounds / t, n * rounds * PH_PAGE_SIZE / t / 1e9);
	free(mem);
	free(cp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_zero_page),
		cmocka_unit_test(test_xxh3),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_ctx),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_pages_vs_openssl),
		cmocka_unit_test(test_copy_vs_openssl),
		cmocka_unit_test(test_path),
	};

	if (getenv("SHAREMIG_BENCH") != NULL)
		bench();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
