/*
 * pidx.c - the host's shared-page index.
 *
 * Layout (memory per indexed page is what matters, see docs/INDEX.md):
 *
 *  - Locations.  Each domain's pfn space is cut into segments of
 *    PIDX_SEG_PAGES pfns.  A segment holds two arrays indexed by
 *    pfn - pfn_base: fp[] (the XXH3 fingerprint, 0 = not indexed) and
 *    next[] (the content chain, below): 12 bytes per pfn.  A location id
 *    is (segment id << PIDX_SEG_SHIFT) | offset, a u32 below 2^31, so
 *    domains can grow or shrink without renumbering anybody's chains.
 *
 *  - Contents.  One entry per distinct non-zero content: its key (the
 *    first PIDX_KEY_LEN = 16 bytes of its SHA-256 digest), the number of
 *    locations and the first location of its chain (24 bytes).  The key
 *    is a hint, like every location: a user copies the page and checks
 *    the copy's full SHA-256 (DESIGN I3, I4; docs/INDEX.md).  Entries live in fixed-size chunks (no realloc
 *    copies, small slack) and are recycled through a free list.
 *
 *  - Hash.  An open-addressing table of u32 entry ids, power-of-two
 *    capacity, load <= 0.7, linear probing, home slot from the digest's
 *    first 8 bytes, backward-shift deletion (no tombstones).
 *
 *  - Chains.  next[] links the locations of one content into a singly
 *    linked list that starts at entry.head and whose last element holds
 *    PIDX_TAG_ENT | entry id instead of a location.  So a location finds
 *    its entry by walking to the end of its chain and nobody stores an
 *    entry id per page.  A page is shared iff its next[] is another
 *    location, or it is last and its entry's count is >= 2: O(1).
 *    Unlinking a location is O(chain length).
 *
 *  - Zero pages are not chained (there are many and they are never used
 *    as REF): next[] = PIDX_NEXT_ZERO, and only a counter is kept.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pagehash.h"
#include "pidx.h"

#define PIDX_SEG_SHIFT	16
#define PIDX_SEG_PAGES	(1u << PIDX_SEG_SHIFT)
#define PIDX_SEG_MAX	(1u << 15)		/* location ids < 2^31 */
#define PIDX_ENT_SHIFT	12
#define PIDX_ENT_CHUNK	(1u << PIDX_ENT_SHIFT)
#define PIDX_ENT_MAX	0x7ffffff0u

#define PIDX_TAG_ENT	0x80000000u		/* next[]: end of chain | entry */
#define PIDX_NEXT_ZERO	0xfffffffeu		/* next[]: zero page */
#define PIDX_NONE	0xffffffffu		/* next[]: not indexed; no id */

#define PIDX_SLOTS_MIN	1024u

struct pidx_dom;

struct pidx_seg {
	struct pidx_dom	*dom;
	uint64_t	 pfn_base;
	uint32_t	 nr;		/* pfns in use */
	uint32_t	 cap;		/* pfns allocated */
	uint64_t	*fp;		/* 0 = not indexed */
	uint32_t	*next;
};

struct pidx_dom {
	uint32_t	 domid;
	uint32_t	 nseg;
	uint64_t	 pages;
	uint32_t	*segs;		/* nseg segment ids, in pfn order */
};

struct pidx_ent {
	uint8_t		 d[PIDX_KEY_LEN];	/* SHA-256 prefix */
	uint32_t	 count;		/* 0 = free */
	uint32_t	 head;		/* first location; free: next free */
};

/*
 * Everything below lock is protected by it: written only with it held
 * for writing (by the one writer thread), read with it held for reading.
 */
struct pidx {
	pthread_rwlock_t  lock;

	struct pidx_dom	**doms;
	size_t		  ndoms, doms_cap;

	struct pidx_seg	**segtab;	/* by segment id; NULL = free */
	uint32_t	  segtab_cap;

	struct pidx_ent	**chunks;
	uint32_t	  nchunks, chunks_cap;
	uint32_t	  ent_hw;	/* ids >= ent_hw never used */
	uint32_t	  ent_free;	/* free list, PIDX_NONE = empty */

	uint32_t	 *slots;	/* entry ids, PIDX_NONE = empty */
	uint32_t	  slot_cap;	/* power of two */

	uint64_t	  nents;	/* live entries */
	uint64_t	  pages;	/* indexed locations, zero included */
	uint64_t	  zero_pages;
	uint64_t	  shared_pages;	/* locations in entries of count >= 2 */
};

/* ---- small helpers (lock held by the caller) ---- */

static inline struct pidx_ent *
ent(const struct pidx *ix, uint32_t e)
{
	return &ix->chunks[e >> PIDX_ENT_SHIFT][e & (PIDX_ENT_CHUNK - 1)];
}

static inline uint32_t *
loc_next(const struct pidx *ix, uint32_t loc)
{
	return &ix->segtab[loc >> PIDX_SEG_SHIFT]->next[loc &
	    (PIDX_SEG_PAGES - 1)];
}

static inline int
is_loc(uint32_t nx)
{
	return (nx & PIDX_TAG_ENT) == 0;
}

static inline int
is_zero_digest(const uint8_t d[PH_DIGEST_LEN])
{
	return memcmp(d, ph_zero_digest(), PH_DIGEST_LEN) == 0;
}

/* A key equal to the zero page's: lookups of it find nothing.  (No
 * entry is the zero page: loc_link checks the full digest first.) */
static inline int
is_zero_key(const uint8_t k[PIDX_KEY_LEN])
{
	return memcmp(k, ph_zero_digest(), PIDX_KEY_LEN) == 0;
}

static inline uint32_t
home(const uint8_t *d, uint32_t mask)
{
	uint64_t k;

	memcpy(&k, d, sizeof(k));
	return (uint32_t)k & mask;
}

static struct pidx_dom *
dom_find(const struct pidx *ix, uint32_t domid, size_t *pos)
{
	size_t i;

	for (i = 0; i < ix->ndoms; i++)
		if (ix->doms[i]->domid == domid) {
			if (pos != NULL)
				*pos = i;
			return ix->doms[i];
		}
	return NULL;
}

static inline struct pidx_seg *
dom_seg(const struct pidx *ix, const struct pidx_dom *d, uint64_t pfn,
    uint32_t *loc)
{
	uint32_t sid = d->segs[pfn >> PIDX_SEG_SHIFT];

	*loc = (sid << PIDX_SEG_SHIFT) | (uint32_t)(pfn & (PIDX_SEG_PAGES - 1));
	return ix->segtab[sid];
}

/* ---- hash of entries ---- */

/* Entry id holding digest d, or PIDX_NONE. */
static uint32_t
hash_find(const struct pidx *ix, const uint8_t *d)
{
	uint32_t mask = ix->slot_cap - 1, i = home(d, mask), e;

	while ((e = ix->slots[i]) != PIDX_NONE) {
		if (memcmp(ent(ix, e)->d, d, PIDX_KEY_LEN) == 0)
			return e;
		i = (i + 1) & mask;
	}
	return PIDX_NONE;
}

static void
hash_place(uint32_t *slots, uint32_t mask, const uint8_t *d,
    uint32_t e)
{
	uint32_t i = home(d, mask);

	while (slots[i] != PIDX_NONE)
		i = (i + 1) & mask;
	slots[i] = e;
}

/* Make room for one more entry at load <= 0.7.  0 or -ENOMEM. */
static int
hash_reserve(struct pidx *ix)
{
	uint32_t *ns, ncap, i;

	if ((ix->nents + 1) * 10 <= (uint64_t)ix->slot_cap * 7)
		return 0;
	if (ix->slot_cap >= (1u << 31))
		return -ENOMEM;
	ncap = ix->slot_cap * 2;
	if ((ns = malloc((size_t)ncap * sizeof(*ns))) == NULL)
		return -ENOMEM;
	memset(ns, 0xff, (size_t)ncap * sizeof(*ns));
	for (i = 0; i < ix->slot_cap; i++)
		if (ix->slots[i] != PIDX_NONE)
			hash_place(ns, ncap - 1, ent(ix, ix->slots[i])->d,
			    ix->slots[i]);
	free(ix->slots);
	ix->slots = ns;
	ix->slot_cap = ncap;
	return 0;
}

/* Remove entry e (present) from the hash, backward-shift deletion. */
static void
hash_delete(struct pidx *ix, uint32_t e)
{
	uint32_t mask = ix->slot_cap - 1, i, j, k;

	i = home(ent(ix, e)->d, mask);
	while (ix->slots[i] != e)
		i = (i + 1) & mask;
	j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (ix->slots[j] == PIDX_NONE)
			break;
		k = home(ent(ix, ix->slots[j])->d, mask);
		/* Move slots[j] into the hole at i unless its home lies
		 * cyclically in (i, j]. */
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			ix->slots[i] = ix->slots[j];
			i = j;
		}
	}
	ix->slots[i] = PIDX_NONE;
}

/* ---- entries ---- */

/* A new empty entry for digest d, in the hash.  Its id or PIDX_NONE. */
static uint32_t
ent_new(struct pidx *ix, const uint8_t *d)
{
	struct pidx_ent *x;
	uint32_t e;

	if (hash_reserve(ix) != 0)
		return PIDX_NONE;
	if (ix->ent_free != PIDX_NONE) {
		e = ix->ent_free;
		ix->ent_free = ent(ix, e)->head;
	} else {
		if (ix->ent_hw >= PIDX_ENT_MAX)
			return PIDX_NONE;
		if ((ix->ent_hw >> PIDX_ENT_SHIFT) >= ix->nchunks) {
			if (ix->nchunks == ix->chunks_cap) {
				uint32_t nc = ix->chunks_cap ?
				    ix->chunks_cap * 2 : 16;
				struct pidx_ent **c;

				c = realloc(ix->chunks, nc * sizeof(*c));
				if (c == NULL)
					return PIDX_NONE;
				ix->chunks = c;
				ix->chunks_cap = nc;
			}
			ix->chunks[ix->nchunks] = malloc(PIDX_ENT_CHUNK *
			    sizeof(struct pidx_ent));
			if (ix->chunks[ix->nchunks] == NULL)
				return PIDX_NONE;
			ix->nchunks++;
		}
		e = ix->ent_hw++;
	}
	x = ent(ix, e);
	memcpy(x->d, d, PIDX_KEY_LEN);
	x->count = 0;
	x->head = PIDX_NONE;
	hash_place(ix->slots, ix->slot_cap - 1, d, e);
	ix->nents++;
	return e;
}

static void
ent_free(struct pidx *ix, uint32_t e)
{
	hash_delete(ix, e);
	ent(ix, e)->count = 0;
	ent(ix, e)->head = ix->ent_free;
	ix->ent_free = e;
	ix->nents--;
}

/* ---- locations ---- */

/*
 * Drop location loc (fp = seg->fp[off]) from whatever it is indexed as.
 * O(chain length).  Frees the entry when its last location goes.
 */
static void
loc_unlink(struct pidx *ix, struct pidx_seg *s, uint32_t off, uint32_t loc)
{
	uint32_t nx = s->next[off], p, e, *q;
	struct pidx_ent *x;

	if (s->fp[off] == 0)
		return;
	s->fp[off] = 0;
	s->next[off] = PIDX_NONE;
	ix->pages--;
	if (nx == PIDX_NEXT_ZERO) {
		ix->zero_pages--;
		return;
	}
	/* Walk to the chain's end to learn the entry. */
	for (p = nx; is_loc(p); p = *loc_next(ix, p))
		;
	e = p & ~PIDX_TAG_ENT;
	x = ent(ix, e);
	/* Unlink: from the head, or after its predecessor. */
	if (x->head == loc) {
		x->head = nx;
	} else {
		for (q = loc_next(ix, x->head); *q != loc; q = loc_next(ix, *q))
			;
		*q = nx;
	}
	if (x->count == 2)
		ix->shared_pages -= 2;
	else if (x->count > 2)
		ix->shared_pages--;
	if (--x->count == 0)
		ent_free(ix, e);
}

/* Index location loc (not indexed now) as content d.  0 or -ENOMEM. */
static int
loc_link(struct pidx *ix, struct pidx_seg *s, uint32_t off, uint32_t loc,
    uint64_t fp, const uint8_t d[PH_DIGEST_LEN])
{
	struct pidx_ent *x;
	uint32_t e;

	if (is_zero_digest(d)) {
		s->next[off] = PIDX_NEXT_ZERO;
		ix->zero_pages++;
	} else {
		if ((e = hash_find(ix, d)) == PIDX_NONE &&
		    (e = ent_new(ix, d)) == PIDX_NONE)
			return -ENOMEM;
		x = ent(ix, e);
		s->next[off] = x->count == 0 ? (PIDX_TAG_ENT | e) : x->head;
		x->head = loc;
		x->count++;
		if (x->count == 2)
			ix->shared_pages += 2;
		else if (x->count > 2)
			ix->shared_pages++;
	}
	s->fp[off] = fp;
	ix->pages++;
	return 0;
}

/* ---- segments and domains ---- */

static void
seg_free(struct pidx_seg *s)
{
	if (s == NULL)
		return;
	free(s->fp);
	free(s->next);
	free(s);
}

/* Resize a segment's arrays to cap pfns (new pfns not indexed). */
static int
seg_realloc(struct pidx_seg *s, uint32_t cap)
{
	uint64_t *fp;
	uint32_t *nx;

	if (cap == s->cap)
		return 0;
	if ((fp = realloc(s->fp, (size_t)cap * sizeof(*fp))) == NULL)
		return -ENOMEM;
	s->fp = fp;
	if ((nx = realloc(s->next, (size_t)cap * sizeof(*nx))) == NULL)
		return -ENOMEM;
	s->next = nx;
	if (cap > s->cap) {
		memset(fp + s->cap, 0, (size_t)(cap - s->cap) * sizeof(*fp));
		memset(nx + s->cap, 0xff, (size_t)(cap - s->cap) * sizeof(*nx));
	}
	s->cap = cap;
	return 0;
}

/* A free segment id, growing segtab if needed; PIDX_NONE if none. */
static uint32_t
seg_id_alloc(struct pidx *ix)
{
	struct pidx_seg **t;
	uint32_t i, nc;

	for (i = 0; i < ix->segtab_cap; i++)
		if (ix->segtab[i] == NULL)
			return i;
	if (ix->segtab_cap >= PIDX_SEG_MAX)
		return PIDX_NONE;
	nc = ix->segtab_cap ? ix->segtab_cap * 2 : 64;
	if ((t = realloc(ix->segtab, nc * sizeof(*t))) == NULL)
		return PIDX_NONE;
	memset(t + ix->segtab_cap, 0, (nc - ix->segtab_cap) * sizeof(*t));
	ix->segtab = t;
	i = ix->segtab_cap;
	ix->segtab_cap = nc;
	return i;
}

/* Drop every indexed location of d at pfn >= from. */
static void
dom_drop_from(struct pidx *ix, struct pidx_dom *d, uint64_t from)
{
	struct pidx_seg *s;
	uint64_t pfn;
	uint32_t loc;

	for (pfn = from; pfn < d->pages; pfn++) {
		s = dom_seg(ix, d, pfn, &loc);
		loc_unlink(ix, s, (uint32_t)(pfn - s->pfn_base), loc);
	}
}

/* Shrink d to pages pfns (pages <= d->pages). */
static void
dom_shrink(struct pidx *ix, struct pidx_dom *d, uint64_t pages)
{
	uint32_t nseg = (uint32_t)((pages + PIDX_SEG_PAGES - 1) >>
	    PIDX_SEG_SHIFT);
	struct pidx_seg *s;

	dom_drop_from(ix, d, pages);
	while (d->nseg > nseg) {
		d->nseg--;
		seg_free(ix->segtab[d->segs[d->nseg]]);
		ix->segtab[d->segs[d->nseg]] = NULL;
	}
	if (nseg > 0) {
		s = ix->segtab[d->segs[nseg - 1]];
		s->nr = (uint32_t)(pages - s->pfn_base);
		(void)seg_realloc(s, s->nr);	/* failure keeps more room */
	}
	d->pages = pages;
}

/* Grow d to pages pfns.  0 or -ENOMEM (d unchanged). */
static int
dom_grow(struct pidx *ix, struct pidx_dom *d, uint64_t pages)
{
	uint64_t nseg64 = (pages + PIDX_SEG_PAGES - 1) >> PIDX_SEG_SHIFT;
	uint32_t nseg, i, *segs, sid, first = d->nseg;
	struct pidx_seg *s;

	if (nseg64 > PIDX_SEG_MAX)
		return -ENOMEM;
	nseg = (uint32_t)nseg64;
	if ((segs = realloc(d->segs, nseg * sizeof(*segs))) == NULL)
		return -ENOMEM;
	d->segs = segs;
	/* The partial last segment grows in place (ids stay valid). */
	if (first > 0) {
		s = ix->segtab[d->segs[first - 1]];
		if (seg_realloc(s, (uint32_t)(pages - s->pfn_base <
		    PIDX_SEG_PAGES ? pages - s->pfn_base : PIDX_SEG_PAGES)) != 0)
			return -ENOMEM;
	}
	for (i = first; i < nseg; i++) {
		if ((sid = seg_id_alloc(ix)) == PIDX_NONE ||
		    (s = calloc(1, sizeof(*s))) == NULL)
			goto fail;
		s->dom = d;
		s->pfn_base = (uint64_t)i << PIDX_SEG_SHIFT;
		if (seg_realloc(s, (uint32_t)(pages - s->pfn_base <
		    PIDX_SEG_PAGES ? pages - s->pfn_base : PIDX_SEG_PAGES)) != 0) {
			seg_free(s);
			goto fail;
		}
		ix->segtab[sid] = s;
		d->segs[i] = sid;
		d->nseg = i + 1;
	}
	for (i = first > 0 ? first - 1 : 0; i < nseg; i++) {
		s = ix->segtab[d->segs[i]];
		s->nr = s->cap;
	}
	d->pages = pages;
	return 0;
fail:
	while (d->nseg > first) {
		d->nseg--;
		seg_free(ix->segtab[d->segs[d->nseg]]);
		ix->segtab[d->segs[d->nseg]] = NULL;
	}
	return -ENOMEM;
}

/* ---- public ---- */

/* An empty index with a writer-preferring rwlock; NULL on failure. */
struct pidx *
pidx_new(void)
{
	pthread_rwlockattr_t a;
	struct pidx *ix;

	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		return NULL;
	ix->ent_free = PIDX_NONE;
	ix->slot_cap = PIDX_SLOTS_MIN;
	if ((ix->slots = malloc(ix->slot_cap * sizeof(*ix->slots))) == NULL) {
		free(ix);
		return NULL;
	}
	memset(ix->slots, 0xff, ix->slot_cap * sizeof(*ix->slots));
	/* Prefer the writer: readers are many and short, and lookups must
	 * not keep a batch from being applied for long. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	if (pthread_rwlock_init(&ix->lock, &a) != 0) {
		pthread_rwlockattr_destroy(&a);
		free(ix->slots);
		free(ix);
		return NULL;
	}
	pthread_rwlockattr_destroy(&a);
	return ix;
}

void
pidx_free(struct pidx *ix)
{
	uint32_t i;
	size_t j;

	if (ix == NULL)
		return;
	for (j = 0; j < ix->ndoms; j++) {
		free(ix->doms[j]->segs);
		free(ix->doms[j]);
	}
	free(ix->doms);
	for (i = 0; i < ix->segtab_cap; i++)
		seg_free(ix->segtab[i]);
	free(ix->segtab);
	for (i = 0; i < ix->nchunks; i++)
		free(ix->chunks[i]);
	free(ix->chunks);
	free(ix->slots);
	pthread_rwlock_destroy(&ix->lock);
	free(ix);
}

/*
 * Track or resize a domain.  Shrinking unlinks the dropped pfns first;
 * growing allocates before committing, so -ENOMEM leaves it as it was.
 */
int
pidx_dom_set(struct pidx *ix, uint32_t domid, uint64_t pages)
{
	struct pidx_dom *d, **nd;
	int r = 0, added = 0;
	size_t pos;

	pthread_rwlock_wrlock(&ix->lock);
	if ((d = dom_find(ix, domid, &pos)) == NULL) {
		if (ix->ndoms == ix->doms_cap) {
			size_t nc = ix->doms_cap ? ix->doms_cap * 2 : 8;

			if ((nd = realloc(ix->doms, nc * sizeof(*nd))) == NULL) {
				r = -ENOMEM;
				goto out;
			}
			ix->doms = nd;
			ix->doms_cap = nc;
		}
		if ((d = calloc(1, sizeof(*d))) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		d->domid = domid;
		pos = ix->ndoms;
		ix->doms[ix->ndoms++] = d;
		added = 1;
	}
	if (pages < d->pages)
		dom_shrink(ix, d, pages);
	else if (pages > d->pages)
		r = dom_grow(ix, d, pages);
	if (r != 0 && added) {
		ix->doms[pos] = ix->doms[--ix->ndoms];
		free(d->segs);
		free(d);
	}
out:
	pthread_rwlock_unlock(&ix->lock);
	return r;
}

/* Drop a domain: unlink each of its locations (O(chain) each), free it.
 * Unknown domids are ignored. */
void
pidx_dom_remove(struct pidx *ix, uint32_t domid)
{
	struct pidx_dom *d;
	size_t pos;

	pthread_rwlock_wrlock(&ix->lock);
	if ((d = dom_find(ix, domid, &pos)) != NULL) {
		dom_shrink(ix, d, 0);
		ix->doms[pos] = ix->doms[--ix->ndoms];
		free(d->segs);
		free(d);
	}
	pthread_rwlock_unlock(&ix->lock);
}

int
pidx_doms(struct pidx *ix, uint32_t **domids, size_t *n)
{
	uint32_t *v;
	size_t i;

	pthread_rwlock_rdlock(&ix->lock);
	if ((v = malloc((ix->ndoms ? ix->ndoms : 1) * sizeof(*v))) == NULL) {
		pthread_rwlock_unlock(&ix->lock);
		return -ENOMEM;
	}
	for (i = 0; i < ix->ndoms; i++)
		v[i] = ix->doms[i]->domid;
	*n = ix->ndoms;
	pthread_rwlock_unlock(&ix->lock);
	*domids = v;
	return 0;
}

/* pfns beyond the domain's size read as 0 (never indexed). */
int
pidx_fp_get(struct pidx *ix, uint32_t domid, const uint64_t *pfns,
    size_t n, uint64_t *fps)
{
	struct pidx_dom *d;
	struct pidx_seg *s;
	uint32_t loc;
	size_t i;

	pthread_rwlock_rdlock(&ix->lock);
	if ((d = dom_find(ix, domid, NULL)) == NULL) {
		pthread_rwlock_unlock(&ix->lock);
		return -ENOENT;
	}
	for (i = 0; i < n; i++) {
		if (pfns[i] >= d->pages) {
			fps[i] = 0;
			continue;
		}
		s = dom_seg(ix, d, pfns[i], &loc);
		fps[i] = s->fp[pfns[i] - s->pfn_base];
	}
	pthread_rwlock_unlock(&ix->lock);
	return 0;
}

int
pidx_dom_keys(struct pidx *ix, uint32_t domid, uint64_t first, size_t n,
    uint64_t *fps, uint8_t (*prefixes)[8])
{
	struct pidx_dom *d;
	struct pidx_seg *s;
	struct pidx_ent *x;
	uint32_t loc, off, nx;
	uint64_t pfn;
	size_t i;

	memset(fps, 0, n * sizeof(*fps));
	memset(prefixes, 0, n * 8);
	pthread_rwlock_rdlock(&ix->lock);
	if ((d = dom_find(ix, domid, NULL)) == NULL) {
		pthread_rwlock_unlock(&ix->lock);
		return -ENOENT;
	}
	for (i = 0; i < n; i++) {
		if ((pfn = first + i) < first || pfn >= d->pages)
			break;
		s = dom_seg(ix, d, pfn, &loc);
		off = loc & (PIDX_SEG_PAGES - 1);
		/* Held once: the location is its chain, head and end. */
		if (s->fp[off] == 0 || (nx = s->next[off]) == PIDX_NEXT_ZERO ||
		    is_loc(nx) || (x = ent(ix, nx & ~PIDX_TAG_ENT))->count != 1)
			continue;
		fps[i] = s->fp[off];
		memcpy(prefixes[i], x->d, 8);
	}
	pthread_rwlock_unlock(&ix->lock);
	return 0;
}

/*
 * Apply a batch.  All pfns are checked first (-EINVAL, nothing applied,
 * if one is >= the domain's size).  On -ENOMEM the pages before the
 * failing one are applied and the failing one is left unindexed.
 */
int
pidx_update(struct pidx *ix, uint32_t domid, const uint64_t *pfns,
    size_t n, const uint64_t *fps, const uint8_t (*digests)[32])
{
	struct pidx_dom *d;
	struct pidx_seg *s;
	uint32_t loc, off;
	size_t i;
	int r = 0;

	pthread_rwlock_wrlock(&ix->lock);
	if ((d = dom_find(ix, domid, NULL)) == NULL) {
		r = -ENOENT;
		goto out;
	}
	for (i = 0; i < n; i++)
		if (pfns[i] >= d->pages) {
			r = -EINVAL;
			goto out;
		}
	for (i = 0; i < n; i++) {
		s = dom_seg(ix, d, pfns[i], &loc);
		off = (uint32_t)(pfns[i] - s->pfn_base);
		loc_unlink(ix, s, off, loc);
		if (fps[i] == 0)
			continue;
		if ((r = loc_link(ix, s, off, loc, fps[i], digests[i])) != 0)
			break;
	}
out:
	pthread_rwlock_unlock(&ix->lock);
	return r;
}

/* Location id p as (domid, pfn). */
static void
loc_of(const struct pidx *ix, uint32_t p, struct pidx_loc *out)
{
	const struct pidx_seg *s = ix->segtab[p >> PIDX_SEG_SHIFT];

	out->domid = s->dom->domid;
	out->pfn = s->pfn_base + (p & (PIDX_SEG_PAGES - 1));
}

/*
 * The next entry, from slot *slot on, whose key starts with prefix (zero
 * pages excluded), with *slot left just past it; PIDX_NONE at the end of
 * the probe sequence.  The hash is keyed by those 8 bytes, so the
 * contents of one prefix all lie on the probe sequence from its home
 * slot.  Under the read lock.
 */
static uint32_t
prefix_next(const struct pidx *ix, const uint8_t prefix[8], uint32_t *slot)
{
	uint32_t mask = ix->slot_cap - 1, e;
	const struct pidx_ent *en;

	while ((e = ix->slots[*slot]) != PIDX_NONE) {
		*slot = (*slot + 1) & mask;
		en = ent(ix, e);
		if (memcmp(en->d, prefix, 8) == 0 && !is_zero_key(en->d))
			return e;
	}
	return PIDX_NONE;
}

/* Walk the content's chain from its head, at most max locations.  The
 * zero digest never matches (zero pages are not chained). */
size_t
pidx_lookup(struct pidx *ix, const uint8_t *key,
    struct pidx_loc *locs, size_t max)
{
	uint32_t e, p;
	size_t n = 0;

	if (max == 0 || is_zero_key(key))
		return 0;
	pthread_rwlock_rdlock(&ix->lock);
	if ((e = hash_find(ix, key)) != PIDX_NONE)
		for (p = ent(ix, e)->head; is_loc(p) && n < max;
		    p = *loc_next(ix, p))
			loc_of(ix, p, &locs[n++]);
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

/*
 * Keys of the contents whose SHA-256 starts with prefix (the digest's
 * first 8 bytes), at most max of them.  The hash is keyed by those same
 * bytes, so this is one probe sequence.  Zero pages excluded.
 */
size_t
pidx_find_prefix(struct pidx *ix, const uint8_t prefix[8],
    uint8_t (*keys)[PIDX_KEY_LEN], size_t max)
{
	uint32_t slot, e;
	size_t n = 0;

	if (max == 0)
		return 0;
	pthread_rwlock_rdlock(&ix->lock);
	slot = home(prefix, ix->slot_cap - 1);
	while (n < max && (e = prefix_next(ix, prefix, &slot)) != PIDX_NONE)
		memcpy(keys[n++], ent(ix, e)->d, PIDX_KEY_LEN);
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

/* pidx_find_prefix_loc under the read lock. */
static int
find_prefix_loc(struct pidx *ix, const uint8_t prefix[8],
    uint8_t key[PIDX_KEY_LEN], struct pidx_loc *loc)
{
	uint32_t slot = home(prefix, ix->slot_cap - 1), e, p;

	if ((e = prefix_next(ix, prefix, &slot)) == PIDX_NONE)
		return 0;
	memcpy(key, ent(ix, e)->d, PIDX_KEY_LEN);
	if (!is_loc(p = ent(ix, e)->head))
		return 1;
	loc_of(ix, p, loc);
	return 2;
}

int
pidx_find_prefix_loc(struct pidx *ix, const uint8_t prefix[8],
    uint8_t key[PIDX_KEY_LEN], struct pidx_loc *loc)
{
	int r;

	pthread_rwlock_rdlock(&ix->lock);
	r = find_prefix_loc(ix, prefix, key, loc);
	pthread_rwlock_unlock(&ix->lock);
	return r;
}

/*
 * Many at once, under one read lock, in a pipeline: the home slot of
 * entry i + 2 * PIDX_AHEAD is prefetched, the entry its slot names for
 * i + PIDX_AHEAD, then entry i is probed.  The probes of one OFFER batch
 * are independent cache misses; one at a time they wait for memory in
 * turn.
 */
#define PIDX_AHEAD	4

void
pidx_find_prefix_loc_n(struct pidx *ix, size_t n,
    const uint8_t (*prefixes)[8], uint8_t (*keys)[PIDX_KEY_LEN],
    struct pidx_loc *locs, int *res)
{
	uint32_t mask, e;
	size_t i;

	pthread_rwlock_rdlock(&ix->lock);
	mask = ix->slot_cap - 1;
	for (i = 0; i < n + 2 * PIDX_AHEAD; i++) {
		if (i < n)
			__builtin_prefetch(&ix->slots[home(prefixes[i], mask)]);
		if (i >= PIDX_AHEAD && i - PIDX_AHEAD < n &&
		    (e = ix->slots[home(prefixes[i - PIDX_AHEAD], mask)]) !=
		    PIDX_NONE)
			__builtin_prefetch(ent(ix, e));
		if (i >= 2 * PIDX_AHEAD)
			res[i - 2 * PIDX_AHEAD] = find_prefix_loc(ix,
			    prefixes[i - 2 * PIDX_AHEAD],
			    keys[i - 2 * PIDX_AHEAD], &locs[i - 2 * PIDX_AHEAD]);
	}
	pthread_rwlock_unlock(&ix->lock);
}

uint64_t
pidx_count(struct pidx *ix, const uint8_t *key)
{
	uint64_t c = 0;
	uint32_t e;

	if (is_zero_key(key))
		return 0;
	pthread_rwlock_rdlock(&ix->lock);
	if ((e = hash_find(ix, key)) != PIDX_NONE)
		c = ent(ix, e)->count;
	pthread_rwlock_unlock(&ix->lock);
	return c;
}

/* O(domain pfns): a pfn is shared when its next[] is a location or it
 * ends a chain whose entry counts >= 2.  Bits are only ever set. */
int
pidx_dom_shared(struct pidx *ix, uint32_t domid, uint64_t *bitmap,
    uint64_t pages)
{
	struct pidx_dom *d;
	struct pidx_seg *s;
	uint64_t pfn, end;
	uint32_t i, off, nx;

	pthread_rwlock_rdlock(&ix->lock);
	if ((d = dom_find(ix, domid, NULL)) == NULL) {
		pthread_rwlock_unlock(&ix->lock);
		return -ENOENT;
	}
	end = pages < d->pages ? pages : d->pages;
	for (i = 0; i < d->nseg; i++) {
		s = ix->segtab[d->segs[i]];
		for (off = 0; off < s->nr; off++) {
			pfn = s->pfn_base + off;
			if (pfn >= end)
				break;
			if (s->fp[off] == 0 || (nx = s->next[off]) ==
			    PIDX_NEXT_ZERO)
				continue;
			if (is_loc(nx) ||
			    ent(ix, nx & ~PIDX_TAG_ENT)->count >= 2)
				bitmap[pfn / 64] |= 1ull << (pfn % 64);
		}
	}
	pthread_rwlock_unlock(&ix->lock);
	return 0;
}

uint64_t
pidx_each_key(struct pidx *ix, void (*fn)(const uint8_t *key, void *arg),
    void *arg)
{
	uint64_t n = 0;
	uint32_t e;

	pthread_rwlock_rdlock(&ix->lock);
	for (e = 0; e < ix->ent_hw; e++) {
		if (ent(ix, e)->count == 0)
			continue;
		fn(ent(ix, e)->d, arg);
		n++;
	}
	pthread_rwlock_unlock(&ix->lock);
	return n;
}

/* Bytes allocated by the index (lock held). */
static uint64_t
pidx_bytes(const struct pidx *ix)
{
	uint64_t b;
	uint32_t i;
	size_t j;

	b = sizeof(*ix) + ix->doms_cap * sizeof(*ix->doms);
	for (j = 0; j < ix->ndoms; j++)
		b += sizeof(struct pidx_dom) +
		    ix->doms[j]->nseg * sizeof(uint32_t);
	b += (uint64_t)ix->segtab_cap * sizeof(*ix->segtab);
	for (i = 0; i < ix->segtab_cap; i++)
		if (ix->segtab[i] != NULL)
			b += sizeof(struct pidx_seg) + (uint64_t)ix->segtab[i]->cap *
			    (sizeof(uint64_t) + sizeof(uint32_t));
	b += (uint64_t)ix->chunks_cap * sizeof(*ix->chunks);
	b += (uint64_t)ix->nchunks * PIDX_ENT_CHUNK * sizeof(struct pidx_ent);
	b += (uint64_t)ix->slot_cap * sizeof(*ix->slots);
	return b;
}

/*
 * Host totals come from counters.  Per domain: pages, zero_pages and
 * shared_pages count the domain's pfns; unique_digests is the number of
 * distinct non-zero contents the domain holds (walks every chain once,
 * O(host locations)); bytes is the domain's own location arrays.
 */
int
pidx_stats(struct pidx *ix, uint32_t domid, struct pidx_stats *out)
{
	struct pidx_stats st;
	struct pidx_dom *d;
	struct pidx_seg *s;
	uint32_t i, off, e, p;
	uint64_t mine;

	memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&ix->lock);
	if (domid == UINT32_MAX) {
		st.pages = ix->pages;
		st.zero_pages = ix->zero_pages;
		st.unique_digests = ix->nents;
		st.shared_pages = ix->shared_pages;
		st.bytes = pidx_bytes(ix);
		goto done;
	}
	if ((d = dom_find(ix, domid, NULL)) == NULL) {
		pthread_rwlock_unlock(&ix->lock);
		return -ENOENT;
	}
	st.bytes = sizeof(*d) + d->nseg * sizeof(uint32_t);
	for (i = 0; i < d->nseg; i++) {
		s = ix->segtab[d->segs[i]];
		st.bytes += sizeof(*s) + (uint64_t)s->cap *
		    (sizeof(uint64_t) + sizeof(uint32_t));
		for (off = 0; off < s->nr; off++) {
			if (s->fp[off] == 0)
				continue;
			st.pages++;
			if (s->next[off] == PIDX_NEXT_ZERO)
				st.zero_pages++;
		}
	}
	for (e = 0; e < ix->ent_hw; e++) {
		if (ent(ix, e)->count == 0)
			continue;
		mine = 0;
		for (p = ent(ix, e)->head; is_loc(p); p = *loc_next(ix, p))
			if (ix->segtab[p >> PIDX_SEG_SHIFT]->dom == d)
				mine++;
		if (mine > 0)
			st.unique_digests++;
		if (ent(ix, e)->count >= 2)
			st.shared_pages += mine;
	}
done:
	pthread_rwlock_unlock(&ix->lock);
	*out = st;
	return 0;
}
