/*
 * profile.c - what every page of a simulated guest contains.
 *
 * Content is a deterministic function, so the guest (or `simhv check`)
 * can recompute any page instead of remembering it:
 *	common image block b:	f(seed, b)	 same in every domain with
 *						 that seed, on any host
 *	unique page:		f(uid, pfn, v)	 v = 0 initial, else the
 *						 version of the write
 *	zero page:		all zero bytes
 * f fills the page's 512 words from a splitmix64 stream keyed by a hash
 * of the arguments; 256 MiB is generated in a few tens of milliseconds.
 *
 * The data pages are a rotated sequence of slots: slot i lives at pfn
 * first + (i + rot) % ndata with rot derived from the domain's uid, so the
 * same image block sits at different pfns in different domains.  Slots
 * 0..ncommon-1 hold image blocks 0..ncommon-1, the next nzero slots are
 * zero, the rest unique.
 */
#include <errno.h>
#include <string.h>

#include "simguest.h"

#define TAG_COMMON	0x436f6d6d6f6e496dull
#define TAG_UNIQUE	0x556e697175655067ull
#define TAG_ROT		0x526f746174696f6eull
#define TAG_ENTRY	0x5461626c65456e74ull

static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t
key3(uint64_t tag, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t k = mix64(tag);

	k = mix64(k ^ a);
	k = mix64((k + 0x9e3779b97f4a7c15ull) ^ b);
	return mix64((k + 0x632be59bd9b4e019ull) ^ c);
}

static void
fill(void *page, uint64_t key)
{
	uint64_t *w = page, x = key;
	size_t i;

	for (i = 0; i < HV_PAGE_SIZE / 8; i++) {
		x += 0x9e3779b97f4a7c15ull;
		w[i] = mix64(x);
	}
}

uint64_t
sg_rand(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return mix64(*state);
}

uint64_t
sg_entry_hash(uint64_t pfn, uint32_t entry)
{
	return entry == 0 ? 0 : key3(TAG_ENTRY, pfn, entry, 0);
}

void
sg_gen_common(void *page, uint64_t seed, uint64_t block)
{
	fill(page, key3(TAG_COMMON, seed, block, 0));
}

void
sg_gen_unique(void *page, uint64_t uid, uint64_t pfn, uint32_t ver)
{
	fill(page, key3(TAG_UNIQUE, uid, pfn, ver));
}

/*
 * Text-like bytes: words of a small vocabulary separated by spaces and
 * now and then a newline, chosen by a splitmix64 stream.  zstd and lz4
 * shrink such bytes about 2-4 times, like the text, code and heap
 * structures of a real guest.
 */
static void
fill_text(uint8_t *p, size_t n, uint64_t key)
{
	static const char *const vocab[64] = {
		"the", "of", "and", "to", "in", "is", "that", "for", "it",
		"as", "was", "with", "be", "by", "on", "not", "this", "are",
		"or", "from", "at", "which", "but", "have", "an", "they",
		"one", "all", "can", "has", "there", "been", "if", "more",
		"when", "will", "would", "who", "no", "kernel", "page",
		"memory", "struct", "return", "int", "void", "const", "char",
		"static", "error", "value", "buffer", "data", "0x0000",
		"NULL", "request", "session", "user", "GET", "HTTP/1.1",
		"200", "Content-Length:", "cache", "key",
	};
	uint64_t x = key, r;
	size_t pos = 0, len;
	const char *w;

	while (pos < n) {
		x += 0x9e3779b97f4a7c15ull;
		r = mix64(x);
		w = vocab[r & 63];
		len = strlen(w);
		if (len > n - pos)
			len = n - pos;
		memcpy(p + pos, w, len);
		pos += len;
		if (pos < n)
			p[pos++] = (r >> 6) % 12 == 0 ? '\n' : ' ';
	}
}

void
sg_gen_private(const struct sg_layout *l, void *page, uint64_t pfn,
    uint32_t ver)
{
	uint64_t key = key3(TAG_UNIQUE, l->cfg.uid, pfn, ver);
	size_t n;

	fill(page, key);
	if (l->cfg.compressible <= 0)
		return;
	n = (size_t)(l->cfg.compressible * HV_PAGE_SIZE + 0.5);
	fill_text(page, n > HV_PAGE_SIZE ? HV_PAGE_SIZE : n, mix64(key));
}

/*
 * Realistic workloads (variants of `writer`, see simguest.h).  Data slots
 * 0..ncommon-1 are the common image (share * pages, counted over all
 * pages as for micro: OS, binaries, libraries and the files every guest
 * of that image caches), then nzero zero slots (free memory), the rest
 * unique (heap, private page cache).  Writes never touch the image.
 *
 *	web	20% zero; 90% of writes to a hot set of 3% of the data
 *		slots right after the image (connection buffers, session
 *		state, log tails), 10% anywhere outside the image (page
 *		cache churn); 2% of writes zero a page (fresh buffers).
 *	kv	2% zero, the rest a preallocated private heap (slab);
 *		writes uniform over everything outside the image.
 *	kbuild	35% zero; writes walk a cursor through the slots outside
 *		the image, so each write lands on a page not written for a
 *		long time (fresh pages: object files, compiler heap), in
 *		bursts: SG_KB_BURST_MS of every SG_KB_PERIOD_MS at
 *		PERIOD/BURST times the rate, nothing in between (I/O).
 */
uint32_t
sg_workload(const struct sd_config *cfg)
{
	uint32_t w = (uint32_t)(cfg->seed >> SG_WL_SHIFT);

	if (cfg->profile != SD_PROFILE_WRITER)
		return SG_WL_NONE;
	switch (w) {
	case SG_WL_WEB:
	case SG_WL_KV:
	case SG_WL_KBUILD:
		return w;
	default:
		return SG_WL_NONE;
	}
}

static int
wl_layout(struct sg_layout *l)
{
	uint64_t zpct = 0, rest;
	double c = l->cfg.share * (double)l->pages + 0.5;	/* round */

	l->ncommon = c >= (double)l->ndata ? l->ndata : (uint64_t)c;
	rest = l->ndata - l->ncommon;
	switch (l->wl) {
	case SG_WL_WEB:
		zpct = 20;
		break;
	case SG_WL_KV:
		zpct = 2;
		break;
	case SG_WL_KBUILD:
		zpct = 35;
		l->burst_phase = (uint32_t)(mix64(l->cfg.uid ^ TAG_ROT ^ 1) %
		    SG_KB_PERIOD_MS);
		break;
	}
	l->nzero = l->ndata * zpct / 100;
	if (l->nzero > rest)
		l->nzero = rest;
	l->wset = l->ndata * 3 / 100 ? l->ndata * 3 / 100 : 1;
	if (l->wset > rest)
		l->wset = rest;
	return 0;
}

static uint64_t
slot_pfn(const struct sg_layout *l, uint64_t slot)
{
	return l->first + (slot + l->rot) % l->ndata;
}

static int
wl_pick(const struct sg_layout *l, struct sg_state *st, uint64_t *pfn,
    int *zero)
{
	uint64_t r, n = l->ndata - l->ncommon;

	if (n == 0)
		return -ENOENT;
	*zero = 0;
	switch (l->wl) {
	case SG_WL_WEB:
		r = sg_rand(&st->rng);
		if (r % 10 != 0)
			*pfn = slot_pfn(l, l->ncommon + (r >> 8) % l->wset);
		else
			*pfn = slot_pfn(l, l->ncommon + (r >> 8) % n);
		*zero = (r >> 48) % 50 == 0;
		return 0;
	case SG_WL_KV:
		r = sg_rand(&st->rng);
		*pfn = slot_pfn(l, l->ncommon + r % n);
		return 0;
	case SG_WL_KBUILD:
		*pfn = slot_pfn(l, l->ncommon +
		    (st->writes + (l->cfg.uid >> 7)) % n);
		return 0;
	default:
		return -ENOENT;
	}
}

int
sg_next_write(const struct sg_layout *l, struct sg_state *st,
    uint64_t *pfn, int *zero)
{
	if (l->wl != SG_WL_NONE)
		return wl_pick(l, st, pfn, zero);
	return sg_pick_write(l, &st->rng, pfn, zero);
}

double
sg_rate_factor(const struct sg_layout *l, uint64_t t_ms, double *peak)
{
	double burst = (double)SG_KB_PERIOD_MS / SG_KB_BURST_MS;

	if (l->wl != SG_WL_KBUILD) {
		*peak = 1.0;
		return 1.0;
	}
	*peak = burst;
	return (t_ms + l->burst_phase) % SG_KB_PERIOD_MS < SG_KB_BURST_MS ?
	    burst : 0.0;
}

int
sg_layout_init(struct sg_layout *l, const struct sd_config *cfg,
    uint64_t pages)
{
	double c;

	if (pages < SD_PAGES_MIN || pages > SD_PAGES_MAX)
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	l->cfg = *cfg;
	l->pages = pages;
	l->ntable = (pages + SG_TABLE_ENTRIES - 1) / SG_TABLE_ENTRIES;
	l->first = 1 + l->ntable;
	l->ndata = pages - l->first;
	l->rot = mix64(cfg->uid ^ TAG_ROT) % l->ndata;
	switch (cfg->profile) {
	case SD_PROFILE_IDLE:
		l->ncommon = l->ndata * 30 / 100;
		l->nzero = l->ndata * 30 / 100;
		break;
	case SD_PROFILE_MICRO:
		/* Counted over all pages; header and table are unique. */
		c = cfg->share * (double)pages + 0.5;	/* round */
		l->ncommon = c >= (double)l->ndata ? l->ndata : (uint64_t)c;
		l->nzero = 0;
		break;
	case SD_PROFILE_WRITER:
		if ((l->wl = sg_workload(cfg)) != SG_WL_NONE)
			return wl_layout(l);
		l->ncommon = l->ndata * 25 / 100;
		l->nzero = l->ndata * 45 / 100;
		l->wset = l->ndata / 10 ? l->ndata / 10 : 1;
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

enum sg_kind
sg_initial_kind(const struct sg_layout *l, uint64_t pfn, uint64_t *block)
{
	uint64_t i;

	if (pfn == 0)
		return SG_HEADER;
	if (pfn < l->first)
		return SG_TABLE;
	i = (pfn - l->first + l->ndata - l->rot) % l->ndata;
	if (i < l->ncommon) {
		*block = i;
		return SG_COMMON;
	}
	if (i < l->ncommon + l->nzero)
		return SG_ZERO;
	return SG_UNIQUE;
}

uint32_t *
sg_entry(uint8_t *mem, uint64_t pfn)
{
	uint8_t *tp = mem + (1 + pfn / SG_TABLE_ENTRIES) * HV_PAGE_SIZE;

	return (uint32_t *)(tp + sizeof(struct sg_table_head)) +
	    pfn % SG_TABLE_ENTRIES;
}

void
sg_expected(const struct sg_layout *l, uint64_t pfn, uint32_t entry,
    void *page)
{
	struct sg_header h;
	struct sg_table_head th;
	uint64_t block = 0;

	if (pfn >= l->first && entry != 0) {
		if (entry & SG_VER_ZERO)
			memset(page, 0, HV_PAGE_SIZE);
		else
			sg_gen_private(l, page, pfn, entry & SG_VER_MASK);
		return;
	}
	switch (sg_initial_kind(l, pfn, &block)) {
	case SG_HEADER:
		sg_gen_unique(page, l->cfg.uid, 0, 0);
		memset(&h, 0, sizeof(h));
		h.magic = SG_HEADER_MAGIC;
		h.uid = l->cfg.uid;
		h.pages = l->pages;
		h.seed = l->cfg.seed;
		h.profile = l->cfg.profile;
		h.ntable = (uint32_t)l->ntable;
		h.share_ppb = (uint64_t)(l->cfg.share * 1e9 + 0.5);
		memcpy(page, &h, sizeof(h));
		break;
	case SG_TABLE:
		memset(page, 0, HV_PAGE_SIZE);
		th.uid = l->cfg.uid;
		th.index = (uint32_t)(pfn - 1);
		th.magic = SG_TABLE_MAGIC;
		memcpy(page, &th, sizeof(th));
		break;
	case SG_COMMON:
		sg_gen_common(page, l->cfg.seed, block);
		break;
	case SG_ZERO:
		memset(page, 0, HV_PAGE_SIZE);
		break;
	case SG_UNIQUE:
		sg_gen_private(l, page, pfn, 0);
		break;
	}
}

int
sg_pick_write(const struct sg_layout *l, uint64_t *rng, uint64_t *pfn,
    int *zero)
{
	uint64_t r = sg_rand(rng), nuniq;

	switch (l->cfg.profile) {
	case SD_PROFILE_MICRO:
		/* Only unique slots; common pages stay shared. */
		nuniq = l->ndata - l->ncommon;
		if (nuniq == 0)
			return -ENOENT;
		*pfn = l->first + (l->ncommon + r % nuniq + l->rot) % l->ndata;
		*zero = 0;
		return 0;
	case SD_PROFILE_WRITER:
		*pfn = l->first + r % l->wset;
		*zero = (r >> 40) % 20 == 0;
		return 0;
	default:
		return -ENOENT;
	}
}

int
sg_init_memory(struct simdom *sd)
{
	struct sg_layout l;
	struct sg_state st;
	uint64_t pfn;
	int r;

	if (!sd->mem_writable)
		return -EPERM;
	if ((r = sg_layout_init(&l, &sd->ctrl->cfg, sd->ctrl->pages)) < 0)
		return r;
	for (pfn = 0; pfn < l.pages; pfn++)
		sg_expected(&l, pfn, 0, sd->mem + pfn * HV_PAGE_SIZE);
	sg_state_init(&st, &l);
	sg_state_save(sd, &st);
	return 0;
}
