/*
 * pfilt.c - a Bloom filter of 8-byte SHA-256 prefixes (pfilt.h).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pfilt.h"

void
pfilt_size(uint64_t n, uint64_t max_bits, uint64_t *nbits, uint32_t *k)
{
	uint64_t bits, kk;

	max_bits &= ~63ull;
	if (n > max_bits / 2 || max_bits < PFILT_BITS_MIN) {
		*nbits = 0;
		*k = 0;
		return;
	}
	bits = n <= max_bits / PFILT_BITS_PER ? n * PFILT_BITS_PER : max_bits;
	bits = (bits + 63) & ~63ull;
	if (bits < PFILT_BITS_MIN)
		bits = PFILT_BITS_MIN;
	if (bits > max_bits)
		bits = max_bits;
	/* The best k is ln 2 * bits per content, rounded: 0.69 * 8 -> 6. */
	kk = n == 0 ? 1 : (bits * 69 + n * 50) / (n * 100);
	*k = kk < 1 ? 1 : kk > PFILT_K_MAX ? PFILT_K_MAX : (uint32_t)kk;
	*nbits = bits;
}

int
pfilt_init(struct pfilt *f, uint64_t nbits, uint32_t k)
{
	uint64_t *w;

	if (nbits == 0 || nbits % 64 != 0 || k == 0)
		return -EINVAL;
	if ((w = calloc(nbits / 64, sizeof(*w))) == NULL)
		return -ENOMEM;
	f->nbits = nbits;
	f->k = k;
	f->words = w;
	return 0;
}

void
pfilt_free(struct pfilt *f)
{
	free(f->words);
	f->words = NULL;
	f->nbits = 0;
	f->k = 0;
}

static inline uint64_t
pf_h(const uint8_t prefix[8])
{
	uint64_t h;

	memcpy(&h, prefix, 8);
	return le64toh(h);
}

/* Bit j of a content with hash h. */
static inline uint64_t
pf_bit(const struct pfilt *f, uint64_t h, uint32_t j)
{
	uint64_t step = ((h << 32) | (h >> 32)) | 1;
	uint64_t g = h + (uint64_t)j * step;

	return (uint64_t)(((unsigned __int128)g * f->nbits) >> 64);
}

void
pfilt_add(struct pfilt *f, const uint8_t prefix[8])
{
	uint64_t h = pf_h(prefix), b;
	uint32_t j;

	for (j = 0; j < f->k; j++) {
		b = pf_bit(f, h, j);
		f->words[b / 64] |= 1ull << (b % 64);
	}
}

int
pfilt_maybe(const struct pfilt *f, const uint8_t prefix[8])
{
	uint64_t h = pf_h(prefix), b;
	uint32_t j;

	for (j = 0; j < f->k; j++) {
		b = pf_bit(f, h, j);
		if (!(f->words[b / 64] & (1ull << (b % 64))))
			return 0;
	}
	return 1;
}

double
pfilt_fill(const struct pfilt *f)
{
	uint64_t i, set = 0;

	if (f->nbits == 0)
		return 0.0;
	for (i = 0; i < f->nbits / 64; i++)
		set += (uint64_t)__builtin_popcountll(f->words[i]);
	return (double)set / (double)f->nbits;
}

static int
pf_range_ok(const struct pfilt *f, uint64_t off, size_t len)
{
	return off % 8 == 0 && len % 8 == 0 && off <= f->nbits / 8 &&
	    len <= f->nbits / 8 - off;
}

int
pfilt_get(const struct pfilt *f, uint64_t off, uint8_t *out, size_t len)
{
	uint64_t w;
	size_t i;

	if (!pf_range_ok(f, off, len))
		return -EINVAL;
	for (i = 0; i < len / 8; i++) {
		w = htole64(f->words[off / 8 + i]);
		memcpy(out + i * 8, &w, 8);
	}
	return 0;
}

int
pfilt_put(struct pfilt *f, uint64_t off, const uint8_t *in, size_t len)
{
	uint64_t w;
	size_t i;

	if (!pf_range_ok(f, off, len))
		return -EINVAL;
	for (i = 0; i < len / 8; i++) {
		memcpy(&w, in + i * 8, 8);
		f->words[off / 8 + i] = le64toh(w);
	}
	return 0;
}
