/*
 * bitmap.h - dirty bitmaps: arrays of uint64_t, bit p of word p/64 is pfn
 * p (LSB first).  The layout matches hv_ops.dirty_fetch().
 */
#ifndef SHAREMIG_BITMAP_H
#define SHAREMIG_BITMAP_H

#include <stddef.h>
#include <stdint.h>

static inline size_t
bm_words(uint64_t nbits)
{
	return (size_t)((nbits + 63) / 64);
}

static inline void
bm_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static inline void
bm_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~(1ull << (i % 64));
}

static inline int
bm_test(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

/* malloc'd zeroed bitmap of nbits; NULL on failure. */
uint64_t *bm_alloc(uint64_t nbits);
/* Number of set bits among the first nbits. */
uint64_t bm_count(const uint64_t *bm, uint64_t nbits);
/* First set bit >= from, or nbits if none. */
uint64_t bm_next(const uint64_t *bm, uint64_t nbits, uint64_t from);
/* dst |= src over nbits. */
void	bm_or(uint64_t *dst, const uint64_t *src, uint64_t nbits);
/* Clear all bits. */
void	bm_zero(uint64_t *bm, uint64_t nbits);

#endif
