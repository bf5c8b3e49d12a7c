/*
 * pagehash.h - hashing of 4 KiB guest pages.
 *
 * SHA-256 (OpenSSL) is content identity across guests (DESIGN I3).
 * XXH3-64 is only for change detection of a page against its own earlier
 * state and for hash-table keys; never as proof that two pages are equal.
 * All functions are thread-safe.
 */
#ifndef SHAREMIG_PAGEHASH_H
#define SHAREMIG_PAGEHASH_H

#include <stddef.h>
#include <stdint.h>

#define PH_PAGE_SIZE	4096u
#define PH_DIGEST_LEN	32u

/* SHA-256 of one page. */
void	ph_sha256(const void *page, uint8_t out[PH_DIGEST_LEN]);
/*
 * SHA-256 of two pages at once: on CPUs with SHA-NI about 1.6 times the
 * rate of two ph_sha256 calls (2.35 against 1.44 GB/s in stop 16's full
 * run; pagehash.c says why).
 */
void	ph_sha256_2(const void *p0, const void *p1,
	    uint8_t out0[PH_DIGEST_LEN], uint8_t out1[PH_DIGEST_LEN]);
/*
 * Copy a page and hash the copy: dst gets src's 4096 bytes and out the
 * SHA-256 of the bytes written to dst (DESIGN I4: the copy's digest),
 * even if src changes meanwhile; nothing else may write dst meanwhile.
 * With SHA-NI one pass over src, the copy riding in the hash's idle issue
 * slots; else memcpy, then ph_sha256 of dst.  dst == src hashes in place.
 */
void	ph_copy_sha256(void *dst, const void *src, uint8_t out[PH_DIGEST_LEN]);
void	ph_copy_sha256_2(void *d0, const void *s0, void *d1, const void *s1,
	    uint8_t out0[PH_DIGEST_LEN], uint8_t out1[PH_DIGEST_LEN]);
/*
 * Pairs pages up for ph_sha256_2: ph_queue_add hashes a page when a second
 * one arrives, so a digest is written only after the next add or the
 * flush; the page must stay mapped and out stay valid until then.  Start
 * from a zeroed struct; flush before using the digests.
 */
struct ph_queue {
	const void	*page;		/* waiting for a partner, or NULL */
	uint8_t		*out;
};
void	ph_queue_add(struct ph_queue *q, const void *page,
	    uint8_t out[PH_DIGEST_LEN]);
void	ph_queue_flush(struct ph_queue *q);
/* 1 if pages are hashed by the SHA-NI code, 0 if by OpenSSL. */
int	ph_sha256_ni(void);
/* SHA-256 of len bytes (whole-memory digests are built with ph_ctx_*). */
void	ph_sha256_buf(const void *buf, size_t len, uint8_t out[PH_DIGEST_LEN]);
/* XXH3-64 of one page. */
uint64_t ph_xxh3(const void *page);
/* 1 if the page is all zero bytes. */
int	ph_is_zero(const void *page);
/* The SHA-256 of an all-zero page. */
const uint8_t *ph_zero_digest(void);

/* Incremental SHA-256 (whole-memory digests). NULL on allocation failure. */
struct ph_ctx;
struct ph_ctx *ph_ctx_new(void);
void	ph_ctx_update(struct ph_ctx *c, const void *buf, size_t len);
void	ph_ctx_final(struct ph_ctx *c, uint8_t out[PH_DIGEST_LEN]);	/* also frees */
void	ph_ctx_free(struct ph_ctx *c);	/* accepts NULL */

/* Lowercase hex of a digest into out (65 bytes with NUL). */
void	ph_hex(const uint8_t d[PH_DIGEST_LEN], char out[2 * PH_DIGEST_LEN + 1]);

#endif
