/*
 * hfilt.h - the host's FILTER (pfilt.h) of its index's contents, built
 * off the migration path and shared by destd's sessions.
 *
 * destd's scanner thread rebuilds it at the end of each pass (scan.h,
 * pass_done), before the pass counts as complete, so an incoming
 * migration sends a copy instead of walking the index on its event loop.
 * That walk is O(contents), about 1 ms per 100,000, and would hold every
 * session of the daemon for tens of milliseconds on a host with millions
 * of contents.  The price: the filter lags the index by what the pass
 * under way has added.  A content indexed since the last pass ended is
 * missing, so the source sends such a page in full; a Bloom filter's "no"
 * costs dedup, never correctness.  Before the first pass ends there is no
 * filter: hfilt_get() returns NULL and the caller builds one itself.
 *
 * Threads: hfilt_set() and hfilt_get() from any thread (a mutex); a
 * snapshot is immutable once published, read by any number of threads,
 * and freed by its last hfilt_put().
 */
#ifndef SHAREMIG_HFILT_H
#define SHAREMIG_HFILT_H

#include <stdint.h>
#include <time.h>

#include "pfilt.h"

struct pidx;
struct hfilt;

struct hfilt_snap {
	struct pfilt	 f;		/* nbits 0: none (index too large) */
	uint64_t	 contents;	/* contents put in */
	double		 build_ms;	/* wall time the build took */
	struct timespec	 built;		/* CLOCK_MONOTONIC, at the end */
	unsigned	 refs;		/* atomic */
};

struct hfilt *hfilt_new(void);		/* NULL: out of memory */
void	hfilt_free(struct hfilt *h);	/* accepts NULL; drops its snapshot */
/*
 * A snapshot of every content of the index, sized by pfilt_size() for
 * max_bits (nbits 0 when that leaves too few bits per content), with one
 * reference.  Walks the index under its read lock (pidx_each_key).
 * 0 or -ENOMEM.
 */
int	hfilt_build(struct pidx *ix, uint64_t max_bits,
	    struct hfilt_snap **out);
/* Publish snap (the caller's reference passes to h), dropping the one
 * it replaces. */
void	hfilt_set(struct hfilt *h, struct hfilt_snap *snap);
/* The published snapshot with a reference for the caller, or NULL. */
struct hfilt_snap *hfilt_get(struct hfilt *h);
void	hfilt_put(struct hfilt_snap *snap);	/* accepts NULL */
/* Milliseconds since snap was built (CLOCK_MONOTONIC). */
double	hfilt_age_ms(const struct hfilt_snap *snap);

#endif
