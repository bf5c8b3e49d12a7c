/*
 * mig_src.h - one outgoing migration: the pre-copy engine on the source.
 *
 * The algorithm reads top to bottom in mig_src.c: connect, HELLO,
 * DOMAIN_INFO, log-dirty on, hash negotiation (OFFER/HAVE), iteration 0,
 * dirty iterations until the stop policy says so, stop-and-copy, CONTEXT,
 * END, READY, GO, RUNNING, destroy the source copy (DESIGN.md step 1-9).
 * Everything runs on the daemon's event-loop thread, driven by the link's
 * callbacks; page production is paced by the output buffer's watermark.
 */
#ifndef SHAREMIG_MIG_SRC_H
#define SHAREMIG_MIG_SRC_H

#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "hv.h"
#include "proto.h"

struct event_base;
struct json_object;
struct mig_src;

/* Daemon-wide state a job uses; read-only after start-up. */
/*
 * What one destination's handover takes beyond the final round's pages:
 * pausing, END to READY, GO to RUNNING, the destination loading the
 * context and unpausing.  The stop rule estimates the final round from
 * the dirty set and the bandwidth; this part it learns, per destination
 * host (HELLO's host id), from the downtime of earlier migrations there:
 * an exponentially weighted average of downtime minus that estimate.
 * Kept in memory only (a restarted sourced learns again).
 */
#define SRC_HANDOVER_HOSTS	64

struct src_handover {
	uint8_t		host_id[16];
	double		ms;		/* the average */
	unsigned	n;		/* samples; 0 = a free slot */
	uint64_t	used;		/* last use, for replacement */
};

struct src_env {
	struct event_base	*base;
	const struct hv_ops	*ops;
	struct hv		*hv;		/* event-loop thread's instance */
	SSL_CTX			*tls;		/* NULL with --insecure */
	const char		*index_socket;	/* this host's destd control socket */
	const char		*journal_dir;	/* in-flight journal, NULL = none */
	uint8_t			 host_id[16];
	char			 host_name[64];
	unsigned		 timeout_s;	/* silence that ends a session */
	struct src_handover	 handover[SRC_HANDOVER_HOSTS];
	uint64_t		 handover_tick;
};

struct mig_opts {
	int		dedup;		/* enum proto_dedup */
	int		paused;		/* leave paused on the destination */
	int		verify;		/* compare whole-memory digests */
	unsigned	downtime_ms;	/* stop-and-copy target */
	unsigned	max_iters;	/* iteration cap (>= 1) */
	double		max_bytes_factor; /* stop when data sent > factor x memory */
	int		advise;		/* dry run: how much does the destination
					 * hold?  (OFFER/HAVE only, no pages) */
	uint64_t	bandwidth;	/* cap on queued bytes/s, 0 = none */
	int		auto_converge;	/* throttle a guest that outruns us */
	int		compress;	/* enum proto_compress of PAGE_DATA */
	int		zero_pages;	/* MIG_ZERO_*: all-zero pages as
					 * PAGE_ZERO or in full */
	unsigned	streams;	/* TCP streams asked for, 1..
					 * PROTO_STREAMS_MAX (0 = 1) */
	int		order;		/* MIG_ORDER_*: iteration 0's order */
};

/* mig_opts.order */
#define MIG_ORDER_DEFAULT	(-1)	/* unique-first when dedup is on and
					 * the host index answers, else pfn */
#define MIG_ORDER_PFN		0
#define MIG_ORDER_UNIQUE_FIRST	1	/* pages not shared on this host,
					 * then the shared ones */

/* mig_opts.zero_pages */
#define MIG_ZERO_DEFAULT	(-1)	/* send with dedup none, else elide */
#define MIG_ZERO_SEND		0
#define MIG_ZERO_ELIDE		1

/* One iteration's figures (the stop-and-copy is the last one). */
struct mig_iter_stat {
	uint64_t	pages;		/* pages it sent (any kind) */
	uint64_t	bytes;		/* bytes it queued */
	double		ms;		/* its duration */
};

enum mig_state {
	MS_CONNECTING, MS_HELLO, MS_INFO, MS_OFFER, MS_ITERATING,
	MS_STOPCOPY, MS_FINAL, MS_HANDOVER,
	/* terminal */
	MS_COMPLETED, MS_FAILED, MS_CANCELLED, MS_AMBIGUOUS,
};

struct mig_stats {
	uint64_t	pages_total;
	uint64_t	pages_data;
	uint64_t	pages_ref;
	uint64_t	pages_zero;
	uint64_t	pages_need;	/* DATA sent because the destination asked */
	uint64_t	pages_offered;
	uint64_t	pages_first;	/* unique-first: pages in pass 0 (not
					 * shared on this host) */
	uint64_t	pages_keyed;	/* offered with the host index's digest
					 * prefix, unhashed (src_offer_batch) */
	uint64_t	pages_filtered;	/* not offered: the destination's
					 * FILTER said it lacks them */
	uint64_t	pages_unlooked;	/* from iteration 1 on, sent as DATA
					 * without a content lookup while the
					 * yield gate was closed (ygate.h) */
	uint64_t	pages_have;
	uint64_t	pages_unconfirmed;	/* fills refused */
	uint64_t	bytes_wire;
	uint64_t	bytes_queued;
	uint64_t	bytes_data_raw;	/* PAGE_DATA page bytes, uncompressed */
	uint64_t	bytes_data;	/* ... as queued (compressed or raw) */
	uint64_t	dirty_last;
	unsigned	iterations;
	double		total_ms;
	double		downtime_ms;
	double		downtime_est_ms;	/* the stop rule's estimate */
	double		handover_est_ms;	/* ... its learned handover part
						 * (struct src_handover) */
	unsigned	handover_samples;	/* ... learned from this many
						 * earlier migrations */
	double		cpu_source_s;
	double		cpu_dest_s;
	uint64_t	refs_failed_dest;
	double		offer_wait_ms;	/* pages held up waiting for HAVE */
	unsigned	throttle_max;	/* highest auto-converge throttle, % */
};

typedef void (*mig_done_cb)(struct mig_src *m, void *arg);

/*
 * Start migrating `domain` to `dest` ("HOST:PORT").  0 or -errno with a
 * reason in err (nothing started).  done is called once the job reached a
 * terminal state (the job stays queryable until mig_src_free()).
 */
int	mig_src_start(struct src_env *env, uint32_t id, const char *domain,
	    const char *dest, const struct mig_opts *o, mig_done_cb done,
	    void *arg, struct mig_src **out, char *err, size_t errlen);
/* Change the bandwidth cap (bytes/s, 0 = none) of a running job, from
 * now on.  -EALREADY if it has ended. */
int	mig_src_set_bandwidth(struct mig_src *m, uint64_t rate);
/* Cancel: before GO the source keeps running; -EBUSY after GO. */
int	mig_src_cancel(struct mig_src *m);
void	mig_src_free(struct mig_src *m);	/* terminal jobs only */

/*
 * Start-up recovery from the journal of a daemon that died mid-migration
 * (one file per migration that had paused its guest).  Before GO: the
 * guest is unpaused here (I5) and the job reported "failed".  After GO:
 * the outcome is unknown; the copy stays paused, reported "ambiguous"
 * until the domain is gone from this host.  Each recovered job is handed
 * to add(); returns how many, or -errno.
 */
int	mig_src_recover(struct src_env *env, uint32_t *next_id,
	    void (*add)(struct mig_src *m, void *arg), void *arg);

uint32_t	 mig_src_id(const struct mig_src *m);
enum mig_state	 mig_src_state(const struct mig_src *m);
int		 mig_src_terminal(const struct mig_src *m);
int		 mig_src_is_advise(const struct mig_src *m);
const char	*mig_state_name(enum mig_state s);
/* The job as the documented JSON object (see docs/CONTROL.md). */
struct json_object *mig_src_json(const struct mig_src *m);

#endif
