/*
 * pagehash.c - SHA-256 (OpenSSL 3 EVP) and XXH3-64 (libxxhash) of pages.
 *
 * XXH3 goes through libxxhash's own x86 dispatcher (xxh_x86dispatch.h:
 * AVX2/AVX-512 when the CPU has them; the same values as the portable
 * code, which test_pagehash pins): the scanner's re-pass of unchanged
 * pages is XXH3-bound, and went from 5.9 to 10.1 GB/s per core with it
 * (SHAREMIG_BENCH=1024 test_scan, docs/BENCHMARKS.md).
 *
 * The SHA-256 EVP_MD is fetched once (pthread_once) and each thread keeps
 * one EVP_MD_CTX in thread-local storage, so hashing a page allocates
 * nothing.  OpenSSL picks the SHA-NI code path by itself when the CPU has
 * it.  SHA-256 failures cannot be reported through these void functions
 * and a wrong digest would break DESIGN I1/I3, so they abort(): they only
 * happen when OpenSSL itself is broken or out of memory at start-up.
 *
 * Whole pages, on x86-64 CPUs with the SHA extensions, go through this
 * file's own SHA-NI code instead (ph_ni_*), which hashes two pages at
 * once.  Why not OpenSSL for those: one SHA-256 is a chain of 64
 * dependent sha256rnds2 pairs per block, so a single message runs at the
 * instruction's latency, not its throughput; OpenSSL has no call that
 * hashes two independent messages, and two interleaved chains keep the
 * unit busy.  Measured on an AMD EPYC of this project's machines
 * (test_pagehash with SHAREMIG_BENCH=1 in stop 16's full bench/run,
 * docs/BENCHMARKS.md): OpenSSL's EVP 1.39 GB/s, this code 1.44 GB/s for
 * one page (the padding block of a 4096-byte message is constant, so its
 * schedule is precomputed, and there is no EVP call per page) and 2.35
 * GB/s for two (the Linux
 * kernel's sha256_finup_2x, 6.11, interleaves two messages for the same
 * reason).  OpenSSL stays the reference: the first use checks both
 * paths against it on fixed pages and falls back to OpenSSL if either
 * differs, test_pagehash compares them on random pages, and
 * SHAREMIG_SHA=openssl in the environment turns the SHA-NI path off (for
 * A/B runs).
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <xxh_x86dispatch.h>
#endif

#include "pagehash.h"

struct ph_ctx {
	EVP_MD_CTX	*md;
};

static pthread_once_t	 ph_once = PTHREAD_ONCE_INIT;
static EVP_MD		*ph_md;		/* written once under ph_once */
static pthread_key_t	 ph_key;	/* per-thread EVP_MD_CTX */

/* SHA-256 of 4096 zero bytes (checked against OpenSSL by test_pagehash). */
static const uint8_t ph_zero[PH_DIGEST_LEN] = {
	0xad, 0x7f, 0xac, 0xb2, 0x58, 0x6f, 0xc6, 0xe9,
	0x66, 0xc0, 0x04, 0xd7, 0xd1, 0xd1, 0x6b, 0x02,
	0x4f, 0x58, 0x05, 0xff, 0x7c, 0xb4, 0x7c, 0x7a,
	0x85, 0xda, 0xbd, 0x8b, 0x48, 0x89, 0x2c, 0xa7,
};

static int	 ph_use_ni;	/* SHA-NI path checked and on (ph_init) */

static int	ph_ni_init(void);
static void	ph_ni_pages(const void *const *p, uint8_t *const *out,
		    unsigned n);

static void
ph_ctx_destroy(void *p)
{
	EVP_MD_CTX_free(p);
}

static void
ph_init(void)
{
	const char *e;

	ph_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (ph_md == NULL)
		abort();
	if (pthread_key_create(&ph_key, ph_ctx_destroy) != 0)
		abort();
	e = getenv("SHAREMIG_SHA");
	if (e == NULL || strcmp(e, "openssl") != 0)
		ph_use_ni = ph_ni_init();
}

#if defined(__x86_64__)
/*
 * SHA-256 of 4096-byte pages with the x86 SHA extensions (FIPS 180-4;
 * Intel's SHA extensions guide for the register layout).  The state lives
 * in two registers, ABEF and CDGH (a in the top lane); sha256rnds2 does
 * two rounds, taking W[t] + K[t] from the low half of its third operand.
 */
#define PH_NI	__attribute__((target("sha,sse4.1,ssse3")))
#define PH_NI_INLINE	PH_NI __attribute__((always_inline)) static inline

static const uint32_t ph_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b,
	0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
	0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7,
	0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152,
	0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
	0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
	0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
	0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/*
 * W[t] + K[t] of the padding block that ends every 4096-byte message
 * (0x80, zeros, the length 32768 in bits): the same for every page, so
 * computed once (ph_ni_init).
 */
static uint32_t ph_padwk[64] __attribute__((aligned(16)));

static uint32_t
ph_ror(uint32_t x, unsigned n)
{
	return x >> n | x << (32 - n);
}

static void
ph_ni_pad_schedule(void)
{
	uint32_t w[64];
	unsigned t;

	memset(w, 0, sizeof(w));
	w[0] = 0x80000000u;
	w[15] = PH_PAGE_SIZE * 8;
	for (t = 16; t < 64; t++)
		w[t] = w[t - 16] + (ph_ror(w[t - 15], 7) ^
		    ph_ror(w[t - 15], 18) ^ w[t - 15] >> 3) + w[t - 7] +
		    (ph_ror(w[t - 2], 17) ^ ph_ror(w[t - 2], 19) ^
		    w[t - 2] >> 10);
	for (t = 0; t < 64; t++)
		ph_padwk[t] = w[t] + ph_k[t];
}

/* Four rounds: wk holds W[t..t+3] + K[t..t+3]. */
PH_NI_INLINE void
ph_ni_rounds4(__m128i *abef, __m128i *cdgh, __m128i wk)
{
	*cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
	*abef = _mm_sha256rnds2_epu32(*abef, *cdgh,
	    _mm_shuffle_epi32(wk, 0x0e));
}

/*
 * Hash n (1 or 2, a constant after inlining) pages side by side: the two
 * chains are independent, so their instructions interleave.  With copy
 * (also a constant), each 16 bytes of p[l] loaded for the schedule is
 * also stored to d[l]: the digest is of exactly the bytes written there,
 * whatever a writer of p[l] does meanwhile, and the stores fill issue
 * slots the latency-bound rounds leave idle.
 */
PH_NI_INLINE void
ph_ni_lanes(const uint8_t *const *p, uint8_t *const *out, const unsigned n,
    uint8_t *const *d, const unsigned copy)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll,
	    0x0405060700010203ll);
	const __m128i rev = _mm_set_epi64x(0x0001020304050607ll,
	    0x08090a0b0c0d0e0fll);
	__m128i abef[2], cdgh[2], sabef[2], scdgh[2], w[2][4], x;
	unsigned b, q, l, j;

	for (l = 0; l < n; l++) {
		/* a, b, e, f and c, d, g, h, from the top lane down */
		abef[l] = _mm_set_epi32(0x6a09e667, 0xbb67ae85, 0x510e527f,
		    0x9b05688c);
		cdgh[l] = _mm_set_epi32(0x3c6ef372, 0xa54ff53a, 0x1f83d9ab,
		    0x5be0cd19);
	}
	for (b = 0; b < PH_PAGE_SIZE / 64; b++) {
#pragma GCC unroll 2
		for (l = 0; l < n; l++) {
			sabef[l] = abef[l];
			scdgh[l] = cdgh[l];
#pragma GCC unroll 4
			for (j = 0; j < 4; j++) {
				x = _mm_loadu_si128((const __m128i *)(p[l] +
				    64 * b + 16 * j));
				if (copy)
					_mm_storeu_si128((__m128i *)(d[l] +
					    64 * b + 16 * j), x);
				w[l][j] = _mm_shuffle_epi8(x, bswap);
			}
		}
#pragma GCC unroll 16
		for (q = 0; q < 16; q++) {
#pragma GCC unroll 2
			for (l = 0; l < n; l++) {
				if (q < 4) {
					x = w[l][q];
				} else {
					/* W[4q..4q+3] from the 16 before */
					x = _mm_sha256msg2_epu32(
					    _mm_add_epi32(
					    _mm_sha256msg1_epu32(w[l][q & 3],
					    w[l][(q + 1) & 3]),
					    _mm_alignr_epi8(w[l][(q + 3) & 3],
					    w[l][(q + 2) & 3], 4)),
					    w[l][(q + 3) & 3]);
					w[l][q & 3] = x;
				}
				ph_ni_rounds4(&abef[l], &cdgh[l],
				    _mm_add_epi32(x, _mm_loadu_si128(
				    (const __m128i *)&ph_k[4 * q])));
			}
		}
		for (l = 0; l < n; l++) {
			abef[l] = _mm_add_epi32(abef[l], sabef[l]);
			cdgh[l] = _mm_add_epi32(cdgh[l], scdgh[l]);
		}
	}
	for (l = 0; l < n; l++) {
		sabef[l] = abef[l];
		scdgh[l] = cdgh[l];
	}
#pragma GCC unroll 16
	for (q = 0; q < 16; q++)
#pragma GCC unroll 2
		for (l = 0; l < n; l++)
			ph_ni_rounds4(&abef[l], &cdgh[l], _mm_load_si128(
			    (const __m128i *)&ph_padwk[4 * q]));
	for (l = 0; l < n; l++) {
		abef[l] = _mm_add_epi32(abef[l], sabef[l]);
		cdgh[l] = _mm_add_epi32(cdgh[l], scdgh[l]);
		/* lanes d, c, b, a and h, g, f, e; then big-endian bytes */
		_mm_storeu_si128((__m128i *)out[l], _mm_shuffle_epi8(
		    _mm_unpackhi_epi64(cdgh[l], abef[l]), rev));
		_mm_storeu_si128((__m128i *)(out[l] + 16), _mm_shuffle_epi8(
		    _mm_unpacklo_epi64(cdgh[l], abef[l]), rev));
	}
}

PH_NI static void
ph_ni_one(const uint8_t *const *p, uint8_t *const *out)
{
	ph_ni_lanes(p, out, 1, NULL, 0);
}

PH_NI static void
ph_ni_two(const uint8_t *const *p, uint8_t *const *out)
{
	ph_ni_lanes(p, out, 2, NULL, 0);
}

PH_NI static void
ph_ni_copy_one(const uint8_t *const *p, uint8_t *const *out,
    uint8_t *const *d)
{
	ph_ni_lanes(p, out, 1, d, 1);
}

PH_NI static void
ph_ni_copy_two(const uint8_t *const *p, uint8_t *const *out,
    uint8_t *const *d)
{
	ph_ni_lanes(p, out, 2, d, 1);
}

static void
ph_ni_pages(const void *const *p, uint8_t *const *out, unsigned n)
{
	if (n == 2)
		ph_ni_two((const uint8_t *const *)p, out);
	else
		ph_ni_one((const uint8_t *const *)p, out);
}

static void
ph_ni_copy_pages(void *const *d, const void *const *p, uint8_t *const *out,
    unsigned n)
{
	if (n == 2)
		ph_ni_copy_two((const uint8_t *const *)p, out,
		    (uint8_t *const *)d);
	else
		ph_ni_copy_one((const uint8_t *const *)p, out,
		    (uint8_t *const *)d);
}

/*
 * 1 if the CPU has SHA, SSSE3 and SSE4.1 and this code agrees with
 * OpenSSL on two fixed pages, one at a time and both at once, hashing
 * alone and copying too (the copies equal to their pages).
 */
static int
ph_ni_init(void)
{
	static uint8_t pg[2][PH_PAGE_SIZE], cp[3][PH_PAGE_SIZE];
	uint8_t want[2][PH_DIGEST_LEN], got[6][PH_DIGEST_LEN];
	uint8_t *o1[1] = { got[0] }, *o2[2] = { got[1], got[2] };
	uint8_t *c1[1] = { got[3] }, *c2[2] = { got[4], got[5] };
	void *d1[1] = { cp[0] }, *d2[2] = { cp[1], cp[2] };
	const void *p1[1] = { pg[0] }, *p2[2] = { pg[0], pg[1] };
	unsigned a, b, c, d, i;

	if (__get_cpuid(1, &a, &b, &c, &d) == 0 ||
	    (c & bit_SSSE3) == 0 || (c & bit_SSE4_1) == 0)
		return 0;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0 ||
	    (b & bit_SHA) == 0)
		return 0;
	ph_ni_pad_schedule();
	for (i = 0; i < PH_PAGE_SIZE; i++) {
		pg[0][i] = (uint8_t)(i * 7 + 1);
		pg[1][i] = (uint8_t)(i * 13 ^ 0x5a);
	}
	/* (under ph_once: EVP_Digest, not the thread's context) */
	for (i = 0; i < 2; i++)
		if (EVP_Digest(pg[i], PH_PAGE_SIZE, want[i], NULL, ph_md,
		    NULL) != 1)
			return 0;
	ph_ni_pages(p1, o1, 1);
	ph_ni_pages(p2, o2, 2);
	ph_ni_copy_pages(d1, p1, c1, 1);
	ph_ni_copy_pages(d2, p2, c2, 2);
	for (i = 0; i < 6; i++)
		if (memcmp(got[i], want[i == 2 || i == 5], PH_DIGEST_LEN) != 0)
			return 0;
	return memcmp(cp[0], pg[0], PH_PAGE_SIZE) == 0 &&
	    memcmp(cp[1], pg[0], PH_PAGE_SIZE) == 0 &&
	    memcmp(cp[2], pg[1], PH_PAGE_SIZE) == 0;
}
#else
static int
ph_ni_init(void)
{
	return 0;
}

static void
ph_ni_pages(const void *const *p, uint8_t *const *out, unsigned n)
{
	(void)p;
	(void)out;
	(void)n;
	abort();		/* never called: ph_use_ni is 0 */
}

static void
ph_ni_copy_pages(void *const *d, const void *const *p, uint8_t *const *out,
    unsigned n)
{
	(void)d;
	(void)p;
	(void)out;
	(void)n;
	abort();		/* never called: ph_use_ni is 0 */
}
#endif

static const EVP_MD *
ph_sha(void)
{
	pthread_once(&ph_once, ph_init);
	return ph_md;
}

/* The calling thread's digest context, created on first use. */
static EVP_MD_CTX *
ph_tls_ctx(void)
{
	EVP_MD_CTX *c;

	ph_sha();
	c = pthread_getspecific(ph_key);
	if (c == NULL) {
		if ((c = EVP_MD_CTX_new()) == NULL)
			abort();
		if (pthread_setspecific(ph_key, c) != 0)
			abort();
	}
	return c;
}

void
ph_sha256_buf(const void *buf, size_t len, uint8_t out[PH_DIGEST_LEN])
{
	EVP_MD_CTX *c = ph_tls_ctx();
	unsigned int olen = 0;

	if (EVP_DigestInit_ex2(c, ph_md, NULL) != 1 ||
	    EVP_DigestUpdate(c, buf, len) != 1 ||
	    EVP_DigestFinal_ex(c, out, &olen) != 1 || olen != PH_DIGEST_LEN)
		abort();
}

static void
ph_evp_page(const void *page, uint8_t out[PH_DIGEST_LEN])
{
	ph_sha256_buf(page, PH_PAGE_SIZE, out);
}

void
ph_sha256(const void *page, uint8_t out[PH_DIGEST_LEN])
{
	ph_sha();
	if (ph_use_ni)
		ph_ni_pages(&page, &out, 1);
	else
		ph_evp_page(page, out);
}

void
ph_sha256_2(const void *p0, const void *p1, uint8_t out0[PH_DIGEST_LEN],
    uint8_t out1[PH_DIGEST_LEN])
{
	const void *p[2] = { p0, p1 };
	uint8_t *o[2] = { out0, out1 };

	ph_sha();
	if (ph_use_ni) {
		ph_ni_pages(p, o, 2);
	} else {
		ph_evp_page(p0, out0);
		ph_evp_page(p1, out1);
	}
}

void
ph_copy_sha256(void *dst, const void *src, uint8_t out[PH_DIGEST_LEN])
{
	ph_sha();
	if (ph_use_ni) {
		ph_ni_copy_pages(&dst, &src, &out, 1);
		return;
	}
	if (dst != src)
		memcpy(dst, src, PH_PAGE_SIZE);
	ph_evp_page(dst, out);
}

void
ph_copy_sha256_2(void *d0, const void *s0, void *d1, const void *s1,
    uint8_t out0[PH_DIGEST_LEN], uint8_t out1[PH_DIGEST_LEN])
{
	void *d[2] = { d0, d1 };
	const void *p[2] = { s0, s1 };
	uint8_t *o[2] = { out0, out1 };

	ph_sha();
	if (ph_use_ni) {
		ph_ni_copy_pages(d, p, o, 2);
		return;
	}
	ph_copy_sha256(d0, s0, out0);
	ph_copy_sha256(d1, s1, out1);
}

void
ph_queue_add(struct ph_queue *q, const void *page, uint8_t out[PH_DIGEST_LEN])
{
	if (q->page == NULL) {
		q->page = page;
		q->out = out;
		return;
	}
	ph_sha256_2(q->page, page, q->out, out);
	q->page = NULL;
}

void
ph_queue_flush(struct ph_queue *q)
{
	if (q->page == NULL)
		return;
	ph_sha256(q->page, q->out);
	q->page = NULL;
}

int
ph_sha256_ni(void)
{
	ph_sha();
	return ph_use_ni;
}

uint64_t
ph_xxh3(const void *page)
{
#if defined(__x86_64__)
	return XXH3_64bits_dispatch(page, PH_PAGE_SIZE);
#else
	return XXH3_64bits(page, PH_PAGE_SIZE);
#endif
}

/*
 * 1 if the page is all zero.  OR-reduces 64-byte blocks and stops at the
 * first non-zero block; most non-zero pages fail in the first block.
 */
int
ph_is_zero(const void *page)
{
	const unsigned char *p = page;
	size_t off;
	int i;

	for (off = 0; off < PH_PAGE_SIZE; off += 64) {
		uint64_t w[8], acc = 0;

		memcpy(w, p + off, sizeof(w));
		for (i = 0; i < 8; i++)
			acc |= w[i];
		if (acc != 0)
			return 0;
	}
	return 1;
}

const uint8_t *
ph_zero_digest(void)
{
	return ph_zero;
}

struct ph_ctx *
ph_ctx_new(void)
{
	struct ph_ctx *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex2(c->md, ph_sha(), NULL) != 1) {
		ph_ctx_free(c);
		return NULL;
	}
	return c;
}

void
ph_ctx_update(struct ph_ctx *c, const void *buf, size_t len)
{
	if (EVP_DigestUpdate(c->md, buf, len) != 1)
		abort();
}

void
ph_ctx_final(struct ph_ctx *c, uint8_t out[PH_DIGEST_LEN])
{
	unsigned int olen = 0;

	if (EVP_DigestFinal_ex(c->md, out, &olen) != 1 ||
	    olen != PH_DIGEST_LEN)
		abort();
	ph_ctx_free(c);
}

void
ph_ctx_free(struct ph_ctx *c)
{
	if (c == NULL)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}

void
ph_hex(const uint8_t d[PH_DIGEST_LEN], char out[2 * PH_DIGEST_LEN + 1])
{
	static const char hx[] = "0123456789abcdef";
	unsigned i;

	for (i = 0; i < PH_DIGEST_LEN; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 0xf];
	}
	out[2 * PH_DIGEST_LEN] = '\0';
}
