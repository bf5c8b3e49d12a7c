/*
 * lookup.c - hash lookups per second of the two digest maps on the
 * migration path, one thread:
 *	pidx_lookup	 the destination host's index (digest -> locations)
 *	pidx_find_prefix the destination's answer to an OFFER (8-byte prefix)
 *	dmap_get	 the source's "destination has it / sent earlier" map
 * Index shape as test_pidx's bytes-per-page case: PAGES pfns in 4
 * domains, half of them unique contents, the rest 4096 repeated ones.
 * Digests are random 32-byte strings (SHA-256 output is uniform; hashing
 * pages here would measure SHA-256, which test_pagehash does).
 *
 * Built and run by bench/run against the meson build's common library:
 *	lookup [PAGES]   prints one JSON object.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmap.h"
#include "pidx.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t
next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
digest_of(uint64_t content, uint8_t d[32])
{
	uint64_t w[4], s = rng;
	int i;

	rng = content * 0x9e3779b97f4a7c15ull + 1;
	for (i = 0; i < 4; i++)
		w[i] = next();
	rng = s;
	memcpy(d, w, 32);
}

static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
main(int argc, char **argv)
{
	uint64_t pages = argc > 1 ? strtoull(argv[1], NULL, 0) : 1u << 20;
	uint64_t per = pages / 4, p, i, n = 2000000, hits = 0, sink = 0;
	uint8_t (*dg)[32], (*pre)[PIDX_KEY_LEN], d[32];
	uint64_t *pfns, *fps, v;
	struct pidx *ix = pidx_new();
	struct pidx_loc locs[4];
	struct pidx_stats st;
	struct dmap *m;
	double t0, t_lookup, t_miss, t_prefix, t_ploc, t_plocn, t_dmap;
	uint8_t bpre[64][8], bkeys[64][PIDX_KEY_LEN];
	struct pidx_loc blocs[64];
	int bres[64];
	size_t k;
	uint32_t dom;

	dg = malloc(per * sizeof(*dg));
	pre = malloc(4 * sizeof(*pre));
	pfns = malloc(per * sizeof(*pfns));
	fps = malloc(per * sizeof(*fps));
	if (ix == NULL || dg == NULL || pfns == NULL || fps == NULL ||
	    pre == NULL)
		return 1;
	for (dom = 1; dom <= 4; dom++) {
		if (pidx_dom_set(ix, dom, per) != 0)
			return 1;
		for (p = 0; p < per; p++) {
			uint64_t c = p % 2 ? ((uint64_t)dom << 32) + p :
			    (p % 4096) + 1;

			pfns[p] = p;
			fps[p] = c | 1;
			digest_of(c, dg[p]);
		}
		for (p = 0; p < per; p += 4096) {
			size_t k = per - p < 4096 ? per - p : 4096;

			if (pidx_update(ix, dom, pfns + p, k, fps + p,
			    (const uint8_t (*)[32])dg + p) != 0)
				return 1;
		}
	}
	pidx_stats(ix, UINT32_MAX, &st);

	/* Hits: contents of domain 4 (dg still holds them). */
	t0 = cpu_s();
	for (i = 0; i < n; i++) {
		size_t k = pidx_lookup(ix, dg[next() % per], locs, 1);

		hits += k;
		sink += k ? locs[0].pfn : 0;
	}
	t_lookup = cpu_s() - t0;
	/* Misses: random digests. */
	t0 = cpu_s();
	for (i = 0; i < n; i++) {
		uint64_t w[4] = { next(), next(), next(), next() };

		sink += pidx_lookup(ix, (const uint8_t *)w, locs, 1);
	}
	t_miss = cpu_s() - t0;
	t0 = cpu_s();
	for (i = 0; i < n; i++)
		sink += pidx_find_prefix(ix, dg[next() % per], pre, 4);
	t_prefix = cpu_s() - t0;
	/* The fill worker's first try: one at a time, then 64 at once. */
	t0 = cpu_s();
	for (i = 0; i < n; i++)
		sink += (uint64_t)pidx_find_prefix_loc(ix, dg[next() % per],
		    pre[0], locs);
	t_ploc = cpu_s() - t0;
	t0 = cpu_s();
	for (i = 0; i < n; i += 64) {
		for (k = 0; k < 64; k++)
			memcpy(bpre[k], dg[next() % per], 8);
		pidx_find_prefix_loc_n(ix, 64, (const uint8_t (*)[8])bpre,
		    bkeys, blocs, bres);
		sink += (uint64_t)bres[63];
	}
	t_plocn = cpu_s() - t0;

	/* Source side: dmap of one 512 MiB guest's worth of digests. */
	if ((m = dmap_new(131072)) == NULL)
		return 1;
	for (p = 0; p < 131072; p++) {
		digest_of(p + 7, d);
		dmap_put(m, d, p);
	}
	for (p = 0; p < 131072 && p < per; p++)
		digest_of(p + 7, dg[p]);
	t0 = cpu_s();
	for (i = 0; i < n; i++)
		sink += dmap_get(m, dg[next() % (per < 131072 ? per : 131072)],
		    &v) ? v : 0;
	t_dmap = cpu_s() - t0;

	printf("{\"pages\":%llu,\"unique_digests\":%llu,\"index_bytes\":%llu,"
	    "\"bytes_per_page\":%.2f,\"pidx_lookup_hit_per_s\":%.0f,"
	    "\"pidx_lookup_miss_per_s\":%.0f,\"pidx_find_prefix_per_s\":%.0f,"
	    "\"pidx_find_prefix_loc_per_s\":%.0f,"
	    "\"pidx_find_prefix_loc_n_per_s\":%.0f,"
	    "\"dmap_get_per_s\":%.0f,\"hits\":%llu,\"sink\":%llu}\n",
	    (unsigned long long)st.pages,
	    (unsigned long long)st.unique_digests,
	    (unsigned long long)st.bytes, (double)st.bytes / (double)st.pages,
	    n / t_lookup, n / t_miss, n / t_prefix, n / t_ploc, n / t_plocn,
	    n / t_dmap,
	    (unsigned long long)hits, (unsigned long long)(sink & 1));
	dmap_free(m);
	pidx_free(ix);
	return 0;
}
