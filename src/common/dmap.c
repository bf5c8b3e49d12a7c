/*
 * dmap.c - SHA-256 digest -> uint64_t, open addressing with linear
 * probing.  The capacity is a power of two and the load factor stays at
 * or below 0.7 (the table doubles before it would exceed it).  The slot
 * is chosen by the digest's first 8 bytes: SHA-256 output is uniform, so
 * no further mixing is needed; keys are compared in full.  There is no
 * removal, so no tombstones.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dmap.h"

#define DMAP_MIN_CAP	16

struct dmap_ent {
	uint8_t		key[32];
	uint64_t	val;
};

struct dmap {
	struct dmap_ent	*ents;
	uint8_t		*used;		/* 1 per occupied slot */
	size_t		 cap;		/* power of two */
	size_t		 n;
};

static inline size_t
dmap_slot(const uint8_t d[32], size_t mask)
{
	uint64_t k;

	memcpy(&k, d, sizeof(k));
	return (size_t)k & mask;
}

/* Smallest power-of-two capacity that holds n entries at load <= 0.7. */
static size_t
dmap_cap_for(size_t n)
{
	size_t cap = DMAP_MIN_CAP;

	while (cap / 10 * 7 < n) {
		if (cap > SIZE_MAX / 4)
			return 0;
		cap *= 2;
	}
	return cap;
}

/* Allocate empty tables of cap slots into m.  0 or -ENOMEM. */
static int
dmap_alloc(struct dmap *m, size_t cap)
{
	struct dmap_ent *e;
	uint8_t *u;

	if (cap == 0 || (e = calloc(cap, sizeof(*e))) == NULL)
		return -ENOMEM;
	if ((u = calloc(cap, 1)) == NULL) {
		free(e);
		return -ENOMEM;
	}
	m->ents = e;
	m->used = u;
	m->cap = cap;
	return 0;
}

struct dmap *
dmap_new(size_t hint)
{
	struct dmap *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if (dmap_alloc(m, dmap_cap_for(hint)) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

void
dmap_free(struct dmap *m)
{
	if (m == NULL)
		return;
	free(m->ents);
	free(m->used);
	free(m);
}

/* Index of the slot holding d, or of the empty slot where it would go. */
static size_t
dmap_find(const struct dmap *m, const uint8_t d[32])
{
	size_t mask = m->cap - 1, i = dmap_slot(d, mask);

	while (m->used[i] && memcmp(m->ents[i].key, d, 32) != 0)
		i = (i + 1) & mask;
	return i;
}

/* Double the capacity and reinsert everything.  0 or -ENOMEM (m intact). */
static int
dmap_grow(struct dmap *m)
{
	struct dmap old = *m;
	size_t i, j;

	if (old.cap > SIZE_MAX / 2 / sizeof(struct dmap_ent) ||
	    dmap_alloc(m, old.cap * 2) != 0) {
		*m = old;
		return -ENOMEM;
	}
	for (i = 0; i < old.cap; i++) {
		if (!old.used[i])
			continue;
		j = dmap_find(m, old.ents[i].key);
		m->ents[j] = old.ents[i];
		m->used[j] = 1;
	}
	free(old.ents);
	free(old.used);
	return 0;
}

int
dmap_put(struct dmap *m, const uint8_t digest[32], uint64_t val)
{
	size_t i;
	int r;

	i = dmap_find(m, digest);
	if (m->used[i]) {
		m->ents[i].val = val;
		return 0;
	}
	if (m->n + 1 > m->cap / 10 * 7) {
		if ((r = dmap_grow(m)) != 0)
			return r;
		i = dmap_find(m, digest);
	}
	memcpy(m->ents[i].key, digest, 32);
	m->ents[i].val = val;
	m->used[i] = 1;
	m->n++;
	return 0;
}

int
dmap_get(const struct dmap *m, const uint8_t digest[32], uint64_t *val)
{
	size_t i = dmap_find(m, digest);

	if (!m->used[i])
		return 0;
	*val = m->ents[i].val;
	return 1;
}

size_t
dmap_size(const struct dmap *m)
{
	return m->n;
}
