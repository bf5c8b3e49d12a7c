/*
 * filler.h - filling a page from local content, and a session's OFFER
 * fills on a worker thread.
 *
 * A fill copies a local page (a hint pfn of the incoming guest, then the
 * host index's locations) and keeps the copy only if its SHA-256 starts
 * with the digest bytes asked for (DESIGN I4: the index and the hint are
 * only hints).  struct fill_ctx holds what one thread needs for that: its
 * own hv instance and a small cache of open local domains.
 *
 * The worker.  A destination's event-loop thread also decrypts and
 * stores PAGE_DATA; with the fills of an OFFER on the same thread, every
 * page of a batch of offers (a copy and a SHA-256 each, a few
 * microseconds) holds up the pages queued behind it, and the link idles.
 * So a session hands each OFFER to a worker thread of its own, with the
 * incoming pages already mapped writable by the event loop (hv ops stay
 * with the thread that owns the instance; the worker opens its own for
 * the local domains it copies from).  Jobs come back to the event loop in
 * the order they were submitted, through an event, and the session sends
 * HAVE then.  The session keeps the order of records: a later record
 * that touches a pfn of an unfinished job waits for the worker
 * (filler_drain), so a fill never lands after a record that supersedes
 * it.
 */
#ifndef SHAREMIG_FILLER_H
#define SHAREMIG_FILLER_H

#include <stddef.h>
#include <stdint.h>

#include "hv.h"
#include "pidx.h"
#include "proto.h"

struct event_base;

#define FILL_SRC_DOMS	8	/* local domains kept open per context */
#define FILL_LOCS	4	/* index locations tried per digest */

struct fill_ctx {
	const struct hv_ops	*ops;
	struct hv		*hv;		/* this thread's instance */
	struct pidx		*index;
	struct {
		uint32_t	 domid;
		struct hv_dom	*dom;
	}			 src[FILL_SRC_DOMS];
	unsigned		 src_next;
	struct hv_dom		*pinned;	/* mapped now: not to close */
	uint64_t		 stale;		/* copies rejected by SHA-256 */
	uint64_t		 hinted;	/* fills from the hint pfn */
};

void	fill_ctx_init(struct fill_ctx *c, const struct hv_ops *ops,
	    struct hv *hv, struct pidx *index);
/* Close the cached local domains (not c->hv). */
void	fill_ctx_close(struct fill_ctx *c);
/*
 * Fill dst (a mapped page) with content whose SHA-256 starts with
 * dg[0..dlen): first pfn hint of domain self (PROTO_PFN_NONE or self NULL:
 * none; hint must be below self's page count), then the index's locations
 * of the key dg[0..PIDX_KEY_LEN).  0 with the copy's full digest in got,
 * or -ENOENT.
 */
int	fill_page(struct fill_ctx *c, struct hv_dom *self, uint64_t hint,
	    const uint8_t *dg, size_t dlen, void *dst, uint8_t got[32]);
/*
 * An OFFER entry: try each index key that starts with the 8-byte prefix
 * (at most 4).  0 with the copy's digest in got, or -ENOENT.
 */
int	fill_offered(struct fill_ctx *c, const uint8_t prefix[8], void *dst,
	    uint8_t got[32]);

/* One OFFER for the worker. */
struct fill_job {
	/* Set by the submitter. */
	uint32_t	 batch, count;
	uint64_t	*pfns;		/* count */
	uint8_t		(*prefix)[8];	/* count */
	void		**pages;	/* count: writable, NULL = a hole */
	struct hv_map	*maps[(PROTO_PFN_BATCH_MAX + HV_MAP_BATCH_MAX - 1) /
			    HV_MAP_BATCH_MAX];
	unsigned	 nmaps;		/* the submitter unmaps them */
	/* Set by the worker. */
	uint8_t		*has;		/* count: entry filled */
	uint32_t	 nhad;
	uint8_t		 confirm[32];	/* SHA-256 of the filled entries'
					 * digests, in entry order; zero if
					 * none */
	uint64_t	 stale;
	double		 cpu_s;		/* worker CPU time on this job */
	struct fill_job	*next;
};

/* Fill a job's entries with c (the worker's body; also usable inline). */
void	fill_job_run(struct fill_ctx *c, struct fill_job *j);

struct filler;

/* The event loop gets each finished job, in submission order. */
typedef void (*filler_done_cb)(struct fill_job *j, void *arg);

/*
 * Start a worker: it opens its own instance of ops with hvp.  done runs
 * on base's thread.  0, -ENOMEM or -errno of pthread_create.
 */
int	filler_new(const struct hv_ops *ops, const struct hv_params *hvp,
	    struct pidx *index, struct event_base *base, filler_done_cb done,
	    void *arg, struct filler **out);
/* Queue a job; the worker owns it until done gets it. */
void	filler_submit(struct filler *f, struct fill_job *j);
/* Jobs submitted and not yet handed to done. */
unsigned filler_busy(const struct filler *f);
/* Wait for the worker to finish every job and hand them all to done
 * (which may call filler_stop). */
void	filler_drain(struct filler *f);
/*
 * Stop the worker and join it.  The jobs done has not had are returned
 * as a list (next) for the caller to unmap and free; done is not called
 * again.  Idempotent.
 */
struct fill_job *filler_stop(struct filler *f);
/* Stop (unless stopped) and free.  Jobs still held are freed unmapped:
 * call filler_stop first to unmap them.  Accepts NULL. */
void	filler_free(struct filler *f);

void	fill_job_free(struct fill_job *j);

#endif
