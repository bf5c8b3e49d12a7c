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
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#if defined(__x86_64__)
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

static void
ph_ctx_destroy(void *p)
{
	EVP_MD_CTX_free(p);
}

static void
ph_init(void)
{
	ph_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (ph_md == NULL)
		abort();
	if (pthread_key_create(&ph_key, ph_ctx_destroy) != 0)
		abort();
}

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

void
ph_sha256(const void *page, uint8_t out[PH_DIGEST_LEN])
{
	ph_sha256_buf(page, PH_PAGE_SIZE, out);
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
