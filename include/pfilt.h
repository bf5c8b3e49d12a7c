/*
 * pfilt.h - a Bloom filter of 8-byte SHA-256 prefixes: the FILTER record
 * (docs/PROTOCOL.md "FILTER").
 *
 * The destination puts the prefix of every content its host index holds
 * into one and sends it before DOMAIN_ACK.  The source asks it about the
 * pages it would offer by the scanner's prefix without reading them
 * (keyed offers): a page the filter says "no" to goes as DATA, unread and
 * unoffered.  A Bloom filter has no false negatives, so a "no" loses
 * nothing the destination held when it built the filter; a false
 * positive costs one offer entry.  Identity is still proven by SHA-256
 * (HAVE's confirm): the filter is a hint, never a correctness matter.
 *
 * Bit positions (the wire format fixes them): h = the prefix as a
 * little-endian u64, step = rotl64(h, 32) | 1, and bit j (j < k) is
 * floor((h + j * step) * nbits / 2^64).  SHA-256 prefixes are uniform, so
 * no further mixing is needed; a guest cannot aim at a bit without
 * searching for SHA-256 inputs, and would win only an offer by it.
 *
 * Pure memory, no I/O, no locks: one thread per filter
 * (tests/test_pfilt.c).
 */
#ifndef SHAREMIG_PFILT_H
#define SHAREMIG_PFILT_H

#include <stddef.h>
#include <stdint.h>

#define PFILT_BITS_PER	8u	/* bits per content destd aims at */
#define PFILT_K_MAX	6u	/* bit probes destd uses at most */
#define PFILT_BITS_MIN	64u	/* the smallest filter */

struct pfilt {
	uint64_t	 nbits;		/* a multiple of 64; 0 = none */
	uint32_t	 k;		/* probes per content */
	uint64_t	*words;		/* nbits / 64, host order */
};

/*
 * The filter destd builds for n contents: PFILT_BITS_PER bits each (at
 * least PFILT_BITS_MIN, at most max_bits, a multiple of 64) and the k
 * that minimises false positives for that size (1..PFILT_K_MAX).
 * *nbits = *k = 0 when max_bits leaves fewer than 2 bits per content:
 * such a filter says "maybe" to most pages and costs more than it saves.
 */
void	pfilt_size(uint64_t n, uint64_t max_bits, uint64_t *nbits,
	    uint32_t *k);
/* An empty filter of nbits (a multiple of 64, > 0) and k >= 1 probes.
 * 0, -EINVAL, -ENOMEM; *f is written only on success. */
int	pfilt_init(struct pfilt *f, uint64_t nbits, uint32_t k);
/* Release the words; f becomes "none".  Accepts a zeroed struct. */
void	pfilt_free(struct pfilt *f);

void	pfilt_add(struct pfilt *f, const uint8_t prefix[8]);
/* 1: the content may be in the set; 0: it certainly is not. */
int	pfilt_maybe(const struct pfilt *f, const uint8_t prefix[8]);
/* The fraction of bits set (how full it is, for the logs). */
double	pfilt_fill(const struct pfilt *f);

/*
 * The wire form: bytes [off, off + len) of the bit array as little-endian
 * u64 words (off and len multiples of 8, off + len <= nbits / 8).
 * pfilt_get writes them into out; pfilt_put reads them from in.
 * 0 or -EINVAL.
 */
int	pfilt_get(const struct pfilt *f, uint64_t off, uint8_t *out,
	    size_t len);
int	pfilt_put(struct pfilt *f, uint64_t off, const uint8_t *in,
	    size_t len);

#endif
