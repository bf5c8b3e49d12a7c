/*
 * dmap.h - a map from SHA-256 digest to a 64-bit value (open addressing,
 * keyed by the digest's first 8 bytes, full 32-byte compare).  Used by the
 * source for "the destination has this content" and "already sent in this
 * stream as pfn X".  Not thread-safe: one owner thread.
 */
#ifndef SHAREMIG_DMAP_H
#define SHAREMIG_DMAP_H

#include <stddef.h>
#include <stdint.h>

struct dmap;

/* NULL on allocation failure.  hint = expected number of entries. */
struct dmap *dmap_new(size_t hint);
void	dmap_free(struct dmap *m);	/* accepts NULL */
/* Insert or overwrite.  0 or -ENOMEM. */
int	dmap_put(struct dmap *m, const uint8_t digest[32], uint64_t val);
/* 1 and *val if present, else 0. */
int	dmap_get(const struct dmap *m, const uint8_t digest[32], uint64_t *val);
size_t	dmap_size(const struct dmap *m);

#endif
