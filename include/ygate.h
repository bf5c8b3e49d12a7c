/*
 * ygate.h - whether a re-dirtied page is worth a content lookup.
 *
 * From iteration 1 on, the pre-copy engine SHA-256es each dirty page and
 * looks the digest up among the contents its stream already sent, so that
 * a page whose new content is one of those goes as a REF.  Whether that
 * pays depends on the guest.  A key-value cache that rewrites its heap
 * with fresh values finds almost nothing: 78-85 REFs in about 34,000
 * pages, each a SHA-256 (docs/BENCHMARKS.md, "kv").  A guest that copies
 * data it already holds finds many.
 *
 * The gate measures the yield, hits per lookup, over the recent lookups.
 * After YG_PROBE lookups with fewer than one hit in YG_MIN, it closes:
 * then only one page in YG_SAMPLE is looked up.  Those samples keep the
 * yield measured, so the gate opens again as soon as they find content
 * (the counts halve past YG_WINDOW lookups, so the past fades).  A page
 * not looked up goes as DATA: a REF is never required for correctness.
 *
 * Pure arithmetic on the caller's struct, no clock and no I/O
 * (tests/test_ygate.c).
 */
#ifndef SHAREMIG_YGATE_H
#define SHAREMIG_YGATE_H

#include <stdint.h>

#define YG_PROBE	1024u	/* lookups before the gate may close */
#define YG_MIN		64u	/* closed below one hit per YG_MIN lookups */
#define YG_SAMPLE	8u	/* closed: one page in YG_SAMPLE is looked up */
#define YG_WINDOW	4096u	/* the counts halve when lookups reach it */

struct ygate {
	uint32_t	lookups;	/* recent lookups (decayed) */
	uint32_t	hits;		/* ... that found the content */
	uint32_t	skipped;	/* pages passed since the last sample */
};

/* A gate that looks up every page until it has measured YG_PROBE. */
void	ygate_init(struct ygate *g);
/* 1: look this page up (then report with ygate_seen), 0: send it as it
 * is. */
int	ygate_look(struct ygate *g);
/* A lookup was made; hit: it found the content. */
void	ygate_seen(struct ygate *g, int hit);
/* 1 if the gate is closed now. */
int	ygate_closed(const struct ygate *g);

#endif
