/*
 * scan.h - the host's scanner thread: walks every local domain in batches
 * (map, XXH3 each page, SHA-256 only the pages whose XXH3 changed, unmap)
 * and keeps a pidx up to date, rate-limited to a CPU budget.  It opens its
 * own hv instance (hv instances are single-threaded).
 */
#ifndef SHAREMIG_SCAN_H
#define SHAREMIG_SCAN_H

#include <stdint.h>

#include "hv.h"
#include "pidx.h"

struct scan_params {
	const struct hv_ops	*ops;
	struct hv_params	 hvp;		/* strings copied by scan_start() */
	double			 cpu_budget;	/* fraction of one core, (0, 1];
						 * out of range = 1 (no limit) */
	unsigned		 interval_ms;	/* pause between full passes */
	unsigned		 batch_pages;	/* pages per map batch; 0 = 256,
						 * capped at HV_MAP_BATCH_MAX */
	/* Called on the scanner thread after each full pass, before it
	 * counts (so scan_wait() returns after it), or NULL.  It may read
	 * the index, not update it; its time counts as the scanner's. */
	void			(*pass_done)(struct pidx *ix, void *arg);
	void			*pass_arg;
};

struct scan_stats {
	uint64_t	passes;		/* completed full passes */
	uint64_t	pages_scanned;	/* pages fingerprinted, all passes */
	uint64_t	pages_hashed;	/* pages SHA-256'd, all passes */
	uint64_t	domains;	/* domains in the last pass */
	double		cpu_s;		/* thread CPU time so far */
	int		busy;		/* a pass is under way (scan_get_stats) */
};

struct scan;

/*
 * Start the thread.  0 or a negative errno (*out untouched).  The thread
 * retries ops->open() every interval until it succeeds; a domain that
 * cannot be opened or mapped is dropped from the index for that pass.
 * The pidx must outlive the scan.
 */
int	scan_start(struct pidx *ix, const struct scan_params *p, struct scan **out);
/* Stop and join the thread, free; accepts NULL. */
void	scan_stop(struct scan *s);
/* Ask for a new pass now (skips the interval). */
void	scan_kick(struct scan *s);
/* Wait until `passes` more full passes have completed (from the call),
 * or timeout_ms (< 0: forever): 0 or -ETIMEDOUT.  Any thread.  A pass
 * under way at the call counts when it completes. */
int	scan_wait(struct scan *s, unsigned passes, int timeout_ms);
/*
 * Kick, then wait until a pass that began after this call has completed,
 * so the index reflects memory as it was at the call (scan_wait(s, 1, ...)
 * may be satisfied by a pass already under way).  timeout_ms < 0 waits
 * forever.  0 or -ETIMEDOUT.  Any thread.
 */
int	scan_sync(struct scan *s, int timeout_ms);
void	scan_get_stats(struct scan *s, struct scan_stats *out);

#endif
