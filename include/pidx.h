/*
 * pidx.h - the host's shared-page index: SHA-256 digest -> locations
 * (domid, pfn) with a count.  The index keys a content by the first
 * PIDX_KEY_LEN bytes of its digest (memory: docs/INDEX.md); lookups take
 * a full digest and match on that key, so a match is a candidate whose
 * copy the caller verifies with the full SHA-256 (DESIGN I3, I4).  Content is "shared" when it occurs at two or
 * more locations on the host.  Target: at most 32 bytes per indexed page.
 *
 * Threads: one writer (the scanner thread) calls the update functions;
 * any thread may call the lookup functions concurrently.  Lookups never
 * wait for a scan pass: the writer holds the lock only to apply a batch of
 * already-computed updates.  The index is stale by nature: a location
 * says where the content WAS when scanned; users verify (DESIGN I4).
 */
#ifndef SHAREMIG_PIDX_H
#define SHAREMIG_PIDX_H

#include <stddef.h>
#include <stdint.h>

struct pidx;

#define PIDX_KEY_LEN	16	/* SHA-256 bytes the index keeps per content */

struct pidx_loc {
	uint32_t	domid;
	uint64_t	pfn;
};

struct pidx_stats {
	uint64_t	pages;		/* indexed pages (zero pages included) */
	uint64_t	zero_pages;
	uint64_t	unique_digests;
	uint64_t	shared_pages;	/* pages whose content count >= 2 */
	uint64_t	bytes;		/* memory the index uses */
};

struct pidx *pidx_new(void);
void	pidx_free(struct pidx *ix);	/* accepts NULL */

/* ---- writer side (scanner thread only) ---- */

/* Start tracking a domain of `pages` pfns, or resize it (pages beyond the
 * new size are dropped).  0 or -ENOMEM (also when the host would exceed
 * the index's capacity of 2^31 pfns in total; the domain is unchanged). */
int	pidx_dom_set(struct pidx *ix, uint32_t domid, uint64_t pages);
/* Drop a domain and all its locations. */
void	pidx_dom_remove(struct pidx *ix, uint32_t domid);
/* The domids tracked, malloc'd array. 0 or -ENOMEM. */
int	pidx_doms(struct pidx *ix, uint32_t **domids, size_t *n);
/*
 * The fingerprint (XXH3) recorded for each of n pfns of a domain, or 0
 * for pages never indexed (fp 0 is treated as "unknown"; pfns beyond the
 * domain's size also read as 0).  0, -ENOENT.
 */
int	pidx_fp_get(struct pidx *ix, uint32_t domid, const uint64_t *pfns,
	    size_t n, uint64_t *fps);
/*
 * For pfns [first, first + n) of a domain, the pages whose content is
 * held once on the host: fps[i] the fingerprint and prefixes[i] the
 * first 8 bytes of the SHA-256 the scanner took with it.  Every other
 * pfn (shared content, zero page, not indexed, beyond the domain) reads
 * as fps[i] = 0 and a zero prefix.  Both come from the same scan of the
 * page, so a page whose XXH3 still equals fps[i] has that prefix: the
 * source offers it without hashing it (DESIGN I2; the prefix is a hint,
 * the full SHA-256 proves a fill), and, as nothing else on its host had
 * that content, it cannot repeat a page sent earlier in its stream.
 * O(n).  0, -ENOENT.
 */
int	pidx_dom_keys(struct pidx *ix, uint32_t domid, uint64_t first,
	    size_t n, uint64_t *fps, uint8_t (*prefixes)[8]);
/*
 * Record n pages: fps[i] and digests[i] for pfns[i] (replacing any
 * earlier content of that location).  fps[i] = 0 drops the location (a
 * hole; digests[i] is then ignored).  A digest equal to ph_zero_digest()
 * is counted as a zero page, not chained.  0, -ENOENT, -EINVAL (a pfn >=
 * the domain's size; nothing applied), -ENOMEM (the pages before the
 * failing one are applied, the failing one is left unindexed).
 * Replacing a location costs O(locations of its old content).
 */
int	pidx_update(struct pidx *ix, uint32_t domid, const uint64_t *pfns,
	    size_t n, const uint64_t *fps, const uint8_t (*digests)[32]);

/* ---- reader side (any thread) ---- */

/* Up to max locations of the content whose key is key[0..PIDX_KEY_LEN)
 * (a full digest or a key from pidx_find_prefix); returns how many were
 * written.  Always 0 for the zero page's digest (zero pages are sent as
 * ZERO, never as REF, so the index keeps no locations for them). */
size_t	pidx_lookup(struct pidx *ix, const uint8_t *key,
	    struct pidx_loc *locs, size_t max);
/* Keys (digest prefixes of PIDX_KEY_LEN bytes) of contents whose SHA-256
 * starts with the 8-byte prefix (usually 0 or 1; zero pages excluded), at
 * most max.  Returns how many were written. */
size_t	pidx_find_prefix(struct pidx *ix, const uint8_t prefix[8],
	    uint8_t (*keys)[PIDX_KEY_LEN], size_t max);
/*
 * pidx_find_prefix for one key, then pidx_lookup of that key for one
 * location, in one probe sequence: 0 if no content has that prefix, 1
 * if one does (its key in key) but has no location, 2 if *loc is its
 * first location too.
 */
int	pidx_find_prefix_loc(struct pidx *ix, const uint8_t prefix[8],
	    uint8_t key[PIDX_KEY_LEN], struct pidx_loc *loc);
/* The same for n prefixes under one read lock, their memory fetched
 * ahead: res[i] as pidx_find_prefix_loc would return for prefixes[i]. */
void	pidx_find_prefix_loc_n(struct pidx *ix, size_t n,
	    const uint8_t (*prefixes)[8], uint8_t (*keys)[PIDX_KEY_LEN],
	    struct pidx_loc *locs, int *res);
/* Number of locations holding this content (0 if unknown, and 0 for the
 * zero page's digest: see pidx_lookup). */
uint64_t pidx_count(struct pidx *ix, const uint8_t *key);
/*
 * Set bit p of bitmap (bm_words(pages) words, zeroed by the caller) for
 * each pfn p < pages of the domain whose content is shared (count >= 2),
 * zero pages excluded.  0, -ENOENT.
 */
int	pidx_dom_shared(struct pidx *ix, uint32_t domid, uint64_t *bitmap,
	    uint64_t pages);
/*
 * Call fn(key, arg) for each distinct non-zero content on the host, with
 * its key (the first PIDX_KEY_LEN bytes of its SHA-256), under the read
 * lock: fn must not call into the index, and the scanner's next batch
 * waits until the walk ends (O(contents): about 1 ms per 100,000).
 * Returns the number of contents walked.
 */
uint64_t pidx_each_key(struct pidx *ix,
	    void (*fn)(const uint8_t *key, void *arg), void *arg);
/*
 * Totals for one domain (domid) or the host (domid = UINT32_MAX).  For a
 * domain: pages/zero_pages/shared_pages count its pfns, unique_digests
 * the distinct non-zero contents it holds (O(host pages) to compute),
 * bytes its own per-pfn arrays.  For the host: bytes is everything the
 * index allocated.  0 or -ENOENT.
 */
int	pidx_stats(struct pidx *ix, uint32_t domid, struct pidx_stats *out);

#endif
