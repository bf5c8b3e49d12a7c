/*
 * bitmap.c - dirty bitmaps (see bitmap.h for the layout).
 */
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

/* Mask of the valid bits of the last word of an nbits bitmap. */
static inline uint64_t
bm_tail_mask(uint64_t nbits)
{
	unsigned r = nbits % 64;

	return r == 0 ? ~0ull : (1ull << r) - 1;
}

uint64_t *
bm_alloc(uint64_t nbits)
{
	size_t w = bm_words(nbits);

	/* calloc(0) may return NULL; keep "NULL means failure". */
	return calloc(w == 0 ? 1 : w, sizeof(uint64_t));
}

uint64_t
bm_count(const uint64_t *bm, uint64_t nbits)
{
	size_t i, w = bm_words(nbits);
	uint64_t n = 0;

	if (w == 0)
		return 0;
	for (i = 0; i + 1 < w; i++)
		n += (uint64_t)__builtin_popcountll(bm[i]);
	n += (uint64_t)__builtin_popcountll(bm[w - 1] & bm_tail_mask(nbits));
	return n;
}

/* First set bit >= from, or nbits; scans a word at a time. */
uint64_t
bm_next(const uint64_t *bm, uint64_t nbits, uint64_t from)
{
	size_t i, w = bm_words(nbits);
	uint64_t word, bit;

	if (from >= nbits)
		return nbits;
	i = from / 64;
	word = bm[i] & (~0ull << (from % 64));
	for (;;) {
		if (word != 0) {
			bit = (uint64_t)i * 64 + (uint64_t)__builtin_ctzll(word);
			return bit < nbits ? bit : nbits;
		}
		if (++i >= w)
			return nbits;
		word = bm[i];
	}
}

void
bm_or(uint64_t *dst, const uint64_t *src, uint64_t nbits)
{
	size_t i, w = bm_words(nbits);

	if (w == 0)
		return;
	for (i = 0; i + 1 < w; i++)
		dst[i] |= src[i];
	dst[w - 1] |= src[w - 1] & bm_tail_mask(nbits);
}

void
bm_zero(uint64_t *bm, uint64_t nbits)
{
	memset(bm, 0, bm_words(nbits) * sizeof(uint64_t));
}
