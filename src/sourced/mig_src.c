/*
 * mig_src.c - the pre-copy engine of the source daemon.
 *
 * One struct mig_src per outgoing migration.  The steps, in the order
 * they happen (DESIGN.md "Data flow of one migration"):
 *
 *   mig_src_start()      open the domain, connect (TLS unless --insecure)
 *   src_on_up()          stream header + HELLO
 *   REC_HELLO            DOMAIN_INFO (shape + backend config)
 *   REC_DOMAIN_ACK       log-dirty ON, then hash negotiation or iteration 0
 *   src_pump_offer()     OFFER batches: SHA-256 of candidate pages
 *   REC_HAVE             remember which digests the destination holds
 *   src_pump_iter()      one iteration: every page (0) or the dirty ones
 *   src_iter_done()      stop policy: another iteration or stop-and-copy
 *   src_stop_and_copy()  pause, final dirty pages, CONTEXT, END
 *   REC_NEED             resend pages whose REF fill failed
 *   REC_READY            compare digests (--verify), send GO
 *   REC_RUNNING          destroy the source copy: done
 *
 * Failure before GO: ERROR to the peer, log-dirty off, the guest
 * unpaused: it keeps running here (I5).  Failure after GO and before
 * RUNNING: "ambiguous", the source copy stays paused and is kept.
 */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "bitmap.h"
#include "ctl.h"
#include "dmap.h"
#include "hv.h"
#include "journal.h"
#include "link.h"
#include "log.h"
#include "mig_src.h"
#include "net.h"
#include "pace.h"
#include "pagehash.h"
#include "pcomp.h"
#include "pfilt.h"
#include "proto.h"
#include "tls.h"
#include "ygate.h"

#define SRC_OUT_HIGH	(4u << 20)	/* stop producing above this */
#define SRC_OUT_LOW	(1u << 20)	/* resume producing below this */
#define SRC_BATCH	PROTO_PAGE_BATCH_MAX	/* pages per production step */
#define SRC_OUT_CHUNK	(64u << 10)	/* output buffer size (src_out_record) */
#define SRC_OFFER_SPAN	4096u	/* pfns per OFFER window (<= PFN_BATCH_MAX) */
#define SRC_MIN_BW	(1u << 20)	/* floor of the bandwidth estimate */
#define SRC_OFFER_INFLIGHT 16u		/* OFFER batches awaiting HAVE */
#define SRC_OFFER_EAGER	2u		/* ... below this, offer before pages */
#define SRC_OFFER_PASS0	8u		/* ... while unique-first's pass 0
					 * still has pages to send (2, 8, 16
					 * measured: 8 was best at 82.8%) */
#define SRC_SYNC_PAGES	2048u		/* pages between dirty-log syncs */
#define SRC_SLICE_MS	20.0		/* work per loop turn before yielding */
#define SRC_SOCKQ_SLACK	(64u << 10)	/* kernel-queued bytes an iteration
					   may end with (src_sockq) */
#define SRC_SOCKQ_POLL_US 2000		/* how often to look meanwhile */
/* A compressed PAGE_DATA record of SRC_BATCH pages, at most. */
#define SRC_ZREC_CAP	(PROTO_REC_HDR_LEN + 16 + 8 * SRC_BATCH + \
			    SRC_BATCH * PROTO_PAGE_SIZE)

struct mig_src {
	/* Read-only after start. */
	uint32_t		 id;
	struct src_env		*env;
	char			 domain[HV_NAME_MAX];
	char			 dest[256];
	struct mig_opts		 o;
	mig_done_cb		 done;
	void			*done_arg;

	/* Everything below: event-loop thread only. */
	enum mig_state		 state;
	char			 error[512];
	struct hv_dom		*dom;
	struct hv_dom_info	 info;
	struct net_addr		 addr;		/* the destination's */
	struct link		*link;		/* the main connection */
	struct event		*ev_pump;

	/*
	 * Several streams (docs/PROTOCOL.md "Several streams"): the data
	 * connections 1..nstreams-1 (ss[0] is unused: m->link), opened one
	 * after the other once DOMAIN_ACK granted them.  PAGE_DATA of pfn
	 * p goes on stream proto_stream_of(p) while pages stream; ITER_END
	 * goes on every one.
	 */
	unsigned		 nstreams;	/* granted; 1 until DOMAIN_ACK */
	struct src_stream {
		struct mig_src	*m;
		struct link	*link;
		unsigned	 idx;
		int		 joined;	/* JOIN queued */
	}			 ss[PROTO_STREAMS_MAX];
	uint8_t			 token[PROTO_TOKEN_LEN];
	struct event		*ev_ka;		/* keepalives on data streams */
	uint64_t		*fresh;		/* DATA on a data stream since the
						 * last barrier: no REF hint */
	uint64_t		 wire_closed;	/* bytes_wire of streams closed
						 * before the job ended */
	int			 logdirty;	/* log-dirty is on */
	int			 paused;	/* we paused the guest */
	int			 go_sent;

	uint64_t		 pages;
	uint64_t		*todo;		/* pfns to send this iteration */
	uint64_t		*cand;		/* offer candidates (dedup) */
	uint64_t		*hashed;	/* digests[p] valid */
	uint64_t		*have;		/* destination holds digests[p] */
	uint64_t		*zero;		/* digests[p] is the zero page */
	uint8_t			(*digests)[32];
	struct dmap		*known;		/* digest -> PFN_NONE (dest has
						 * it) or a pfn sent earlier */
	struct ygate		 yg;		/* lookups from iteration 1 on */
	uint64_t		*kfp;		/* the host index's fingerprint
						 * of pages held once on this
						 * host (0 = other pages), */
	uint8_t			(*kpre)[8];	/* the prefix scanned with it;
						 * NULL = no keyed offers */
	struct pfilt		 filt;		/* the destination's FILTER
						 * (nbits 0: none) */
	uint64_t		 filt_got;	/* its bytes received */
	int			 filt_asked;	/* our HELLO had CAP_FILTER */
	int			 filt_none;	/* it said "no filter" */
	uint64_t		*keyed;		/* offered with kpre[p], not
						 * hashed: digests[p] invalid */
	pthread_t		 keys_thread;	/* src_keys_main */
	int			 keys_running;	/* ... not joined yet */
	int			 keys_ok;	/* kfp and kpre are filled */
	double			 keys_ms;
	char			 keys_why[96];	/* why not */
	uint64_t		 cursor;	/* next position of this iteration
						 * (src_vnext) */
	uint64_t		*order;		/* iteration 0 sends the pages not
						 * set here first (unique-first);
						 * NULL = pfn order */
	int			 iter_flushing;
	uint64_t		*next;		/* dirty bits for the next iteration,
						 * gathered by mid-iteration syncs */
	uint64_t		*tmp;
	uint64_t		*seen;		/* found dirty by a sync this round */
	uint64_t		*seen_prev;	/* ... and in the previous round */
	uint64_t		*hot;		/* found dirty twice in a row: held
						 * back for the stop-and-copy */
	uint64_t		*holes;		/* pfns found unpopulated */
	uint64_t		 since_sync;	/* pages queued since the last sync */

	/* Hash negotiation. */
	uint64_t		*offer_pfns;	/* every offered pfn, in order */
	size_t			 offer_n, offer_cap;
	uint32_t		*batch_start;	/* batch -> index in offer_pfns */
	uint64_t		*batch_base;	/* batch -> first position of its
						 * window */
	uint64_t		 ocursor;	/* next position to offer */
	int			 offering;	/* offers still running (iteration 0) */
	uint32_t		 batches, batch_cap;
	uint32_t		 batches_answered;

	/* Policy and statistics. */
	struct mig_stats	 st;
	uint64_t		 dirty_prev;
	unsigned		 no_progress;
	uint8_t			 peer_id[16];	/* the destination's host id */
	int			 peer_id_ok;
	double			 est_data_ms;	/* the last stop decision's
						 * estimate of its pages' time */
	struct timespec		 t_start, t_pause, t_iter;
	struct timespec		 t_wait;	/* since: pages wait for HAVE */
	int			 waiting;
	double			 cpu_start;
	uint64_t		 queued_iter_start;
	uint64_t		 data_bytes;	/* page bytes sent as DATA */

	/* Bandwidth cap and auto-converge. */
	struct pace_bucket	 bucket;	/* rate = the cap, 0 = none */
	uint64_t		 charged;	/* bytes_queued charged to it */
	unsigned		 throttle_pct;	/* applied now, 0 = none */
	int			 throttled;	/* a throttle may be applied */
	int			 throttle_broken; /* the op failed: stop trying */
	uint64_t		 throttle_saved; /* hv's record, journaled */
	uint64_t		 pages_iter_start;	/* pages sent before
							 * this iteration */
	uint64_t		 data_raw_iter_start, data_iter_start;
	struct mig_iter_stat	*iters;		/* one per finished iteration */
	unsigned		 iters_cap;

	/* PAGE_DATA compression (NULL: raw pages). */
	struct pcomp		*pc;
	uint8_t			*zin;		/* a record's pages, contiguous */
	uint8_t			*zout;		/* its compressed frame */
	uint8_t			*zrec;		/* the encoded record */
	struct hv_digest	 dg;		/* --verify: the source's digest */
	uint8_t			 sha_dst[32];
	int			 have_sha_src, have_sha_dst;
};

static void	src_on_up(struct link *l, void *arg);
static void	src_on_record(struct link *l, const struct proto_rec *r,
		    void *arg);
static void	src_on_drain(struct link *l, void *arg);
static void	src_on_error(struct link *l, int err, const char *why,
		    void *arg);
static void	src_pump_cb(evutil_socket_t fd, short what, void *arg);
static void	src_start_iteration(struct mig_src *m);
static void	src_release(struct mig_src *m);
static void	src_keys_join(struct mig_src *m);
static void	src_stop_and_copy(struct mig_src *m);
static void	src_hold_hot(struct mig_src *m);

static void	src_st_on_up(struct link *l, void *arg);
static void	src_st_on_record(struct link *l, const struct proto_rec *r,
		    void *arg);
static void	src_st_on_drain(struct link *l, void *arg);
static void	src_st_on_error(struct link *l, int err, const char *why,
		    void *arg);
static void	src_go_live(struct mig_src *m);

static const struct link_cbs src_link_cbs = {
	.on_up = src_on_up,
	.on_record = src_on_record,
	.on_drain = src_on_drain,
	.on_error = src_on_error,
};

static const struct link_cbs src_stream_cbs = {
	.on_up = src_st_on_up,
	.on_record = src_st_on_record,
	.on_drain = src_st_on_drain,
	.on_error = src_st_on_error,
};

static const char *const state_names[] = {
	[MS_CONNECTING] = "connecting",
	[MS_HELLO] = "hello",
	[MS_INFO] = "domain-info",
	[MS_OFFER] = "negotiating",
	[MS_ITERATING] = "iterating",
	[MS_STOPCOPY] = "stop-and-copy",
	[MS_FINAL] = "final",
	[MS_HANDOVER] = "handover",
	[MS_COMPLETED] = "completed",
	[MS_FAILED] = "failed",
	[MS_CANCELLED] = "cancelled",
	[MS_AMBIGUOUS] = "ambiguous",
};

const char *
mig_state_name(enum mig_state s)
{
	return state_names[s];
}

static double
ts_ms(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *
dedup_name(int d)
{
	return d == PROTO_DEDUP_NONE ? "none" :
	    d == PROTO_DEDUP_SHARED ? "shared" : "all";
}

/* Connection i: 0 the main one, else a data stream. */
static struct link *
src_link(const struct mig_src *m, unsigned i)
{
	return i == 0 ? m->link : m->ss[i].link;
}

/* Queue an encoded record on connection l; a failure here is fatal for
 * the session.  bytes_queued (and so the bandwidth cap) counts every
 * connection. */
static int
src_send_on(struct mig_src *m, struct link *l, const void *buf, int n)
{
	if (n < 0)
		return n;
	m->st.bytes_queued += (uint64_t)n;
	return link_send(l, buf, (size_t)n);
}

static int
src_send(struct mig_src *m, const void *buf, int n)
{
	return src_send_on(m, m->link, buf, n);
}

/* The fullest output buffer of all connections: production waits for
 * the slowest stream (a pfn's stream is fixed). */
static size_t
src_outq_max(const struct mig_src *m)
{
	size_t q, max = 0;
	unsigned i;

	for (i = 0; i < m->nstreams; i++)
		if (src_link(m, i) != NULL &&
		    (q = link_outq(src_link(m, i))) > max)
			max = q;
	return max;
}

/*
 * Bytes the kernel still holds for the peer on all connections: queued
 * in the socket, or sent and not yet acknowledged (SIOCOUTQ), which
 * includes what sits in a shaped link's qdisc.  An empty output buffer
 * does not mean the pages arrived: on a 1 Gbit/s link the socket buffer
 * and the qdisc hold tens of milliseconds of data.
 */
static uint64_t
src_sockq(const struct mig_src *m)
{
	uint64_t sum = 0;
	unsigned i;
	int fd, q;

	for (i = 0; i < m->nstreams; i++)
		if (src_link(m, i) != NULL &&
		    (fd = link_fd(src_link(m, i))) >= 0 &&
		    ioctl(fd, SIOCOUTQ, &q) == 0 && q > 0)
			sum += (uint64_t)q;
	return sum;
}

static void
src_set_drain_mark(struct mig_src *m, size_t bytes)
{
	unsigned i;

	for (i = 0; i < m->nstreams; i++)
		if (src_link(m, i) != NULL)
			link_set_drain_mark(src_link(m, i), bytes);
}

/* Bytes on the wire of all connections (TLS framing included), read
 * from the sockets now; 0 with *ok = 0 when none can be read. */
static uint64_t
src_wire_now(const struct mig_src *m, int *ok)
{
	uint64_t sent, rcvd, sum = m->wire_closed;
	unsigned i;

	*ok = 0;
	for (i = 0; i < m->nstreams; i++) {
		if (src_link(m, i) == NULL || link_fd(src_link(m, i)) < 0 ||
		    net_tcp_bytes(link_fd(src_link(m, i)), &sent, &rcvd) != 0)
			continue;
		sum += sent + rcvd;
		*ok = 1;
	}
	return sum;
}

/* Update wire byte counters from the sockets. */
static void
src_sample_wire(struct mig_src *m)
{
	uint64_t w;
	int ok;

	w = src_wire_now(m, &ok);
	if (ok)
		m->st.bytes_wire = w;
}

/* ---- the in-flight journal ----
 *
 * A migration writes JOURNAL/DOMAIN.json {"id","domain","destination",
 * "state"} when it turns log-dirty on ("logdirty"), before it pauses the
 * guest ("paused"), and before GO is queued ("go-sent"); while an
 * auto-converge throttle is applied it also holds "throttled": true and
 * "throttle_saved" (the hv's record of the domain's own setting, for
 * throttle(d, 0, &saved)), written right after the first throttle.  The file goes when the job ends with the guest settled
 * (completed: destroyed here; failed/cancelled: running here) and stays,
 * as "ambiguous", when the handover's outcome is unknown.  A sourced that
 * restarts reads it back (mig_src_recover).
 */

/* Atomically record the job's state; 0 or -errno. */
static int
journal_write(struct mig_src *m, const char *state)
{
	struct json_object *o;
	int rc;

	if (m->env->journal_dir == NULL || m->o.advise)
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_int64(m->id));
	json_object_object_add(o, "domain", json_object_new_string(m->domain));
	json_object_object_add(o, "destination",
	    json_object_new_string(m->dest));
	json_object_object_add(o, "state", json_object_new_string(state));
	if (m->throttled) {
		/* What a restarted sourced needs to remove the throttle. */
		json_object_object_add(o, "throttled",
		    json_object_new_boolean(1));
		json_object_object_add(o, "throttle_saved",
		    json_object_new_uint64(m->throttle_saved));
	}
	if ((rc = journal_put(m->env->journal_dir, m->domain, o)) != 0)
		log_warn("migration %u: %s: cannot write the journal in %s: "
		    "%s", m->id, m->domain, m->env->journal_dir,
		    strerror(-rc));
	json_object_put(o);
	return rc;
}

static void
journal_remove(struct mig_src *m)
{
	int rc;

	if (m->env->journal_dir == NULL || m->o.advise)
		return;
	if ((rc = journal_del(m->env->journal_dir, m->domain)) != 0)
		log_warn("migration %u: %s: cannot remove its journal entry "
		    "in %s: %s", m->id, m->domain, m->env->journal_dir,
		    strerror(-rc));
}

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Set the auto-converge throttle (0 removes it).  A failure is logged and
 * ends auto-converge for this job; the migration goes on without it.
 */
static int
src_throttle(struct mig_src *m, unsigned pct)
{
	int rc, first = !m->throttled;

	if (m->dom == NULL || m->throttle_broken || (pct == 0 && !m->throttled))
		return 0;
	if ((rc = m->env->ops->throttle(m->dom, pct, &m->throttle_saved))
	    != 0) {
		m->throttle_broken = 1;
		if (rc == -EOPNOTSUPP)
			log_warn("migration %u: %s: the guest cannot be "
			    "throttled (%s backend); auto-converge is off",
			    m->id, m->domain, m->env->ops->name);
		else
			log_warn("migration %u: %s: cannot %s the guest: %s%s",
			    m->id, m->domain, pct ? "throttle" : "unthrottle",
			    strerror(-rc), pct ? "; auto-converge is off" : "");
		return rc;
	}
	m->throttle_pct = pct;
	if (pct > m->st.throttle_max)
		m->st.throttle_max = pct;
	if (pct == 0) {
		m->throttled = 0;
		log_info("migration %u: %s: throttle removed", m->id,
		    m->domain);
		return 0;
	}
	m->throttled = 1;
	if (first)
		(void)journal_write(m, "logdirty");
	log_info("migration %u: %s: no progress: guest throttled by %u%%",
	    m->id, m->domain, pct);
	return 0;
}

/*
 * End the job in a terminal state.  Before GO the guest is put back the
 * way it was (log-dirty off, unpaused): it keeps running on this host.
 * After GO without RUNNING the outcome is unknown: keep the source copy
 * paused and intact, report "ambiguous".
 */
static void
src_finish(struct mig_src *m, enum mig_state st)
{
	struct timespec now;
	unsigned i;
	int rc;

	if (mig_src_terminal(m))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	m->st.total_ms = ts_ms(&m->t_start, &now);
	m->st.cpu_source_s = thread_cpu_s() - m->cpu_start;
	src_sample_wire(m);
	if (m->ev_pump != NULL)
		event_del(m->ev_pump);

	if (st != MS_COMPLETED && m->go_sent) {
		st = MS_AMBIGUOUS;
		log_err("migration %u: %s: handover outcome unknown (%s); the "
		    "source copy stays paused and is kept", m->id, m->domain,
		    m->error);
		/* Should the operator resume it, it runs at full speed. */
		m->throttle_broken = 0;
		(void)src_throttle(m, 0);
	} else if (st != MS_COMPLETED && m->dom != NULL) {
		/* Unthrottled before it runs again (I5: as it was). */
		m->throttle_broken = 0;
		(void)src_throttle(m, 0);
		if (m->logdirty &&
		    (rc = m->env->ops->logdirty_disable(m->dom)) != 0)
			log_warn("migration %u: %s: log-dirty off: %s", m->id,
			    m->domain, strerror(-rc));
		m->logdirty = 0;
		if (m->paused && (rc = m->env->ops->unpause(m->dom)) != 0)
			log_err("migration %u: %s: cannot unpause the source "
			    "copy: %s", m->id, m->domain, strerror(-rc));
		m->paused = 0;
	}
	if (m->ev_ka != NULL)
		event_del(m->ev_ka);
	for (i = 0; i < m->nstreams; i++) {
		struct link *l = src_link(m, i);

		if (l == NULL)
			continue;
		if (st != MS_COMPLETED && !m->go_sent)
			link_send_error(l, st == MS_CANCELLED ? ECANCELED :
			    EIO, m->error);
		link_close(l);
		if (i == 0)
			m->link = NULL;
		else
			m->ss[i].link = NULL;
	}
	m->state = st;
	if (st == MS_AMBIGUOUS)
		(void)journal_write(m, "ambiguous");
	else
		journal_remove(m);
	if (st == MS_COMPLETED && m->o.advise)
		log_notice("advice %u: %s: %s holds %llu of its %llu pages "
		    "(%llu offered)", m->id, m->domain, m->dest,
		    (unsigned long long)m->st.pages_have,
		    (unsigned long long)m->st.pages_total,
		    (unsigned long long)m->st.pages_offered);
	else if (st == MS_COMPLETED)
		log_notice("migration %u: %s -> %s completed: %llu pages "
		    "(%llu data, %llu ref, %llu zero), %llu bytes on the wire, "
		    "%u iterations, %.0f ms, downtime %.1f ms", m->id,
		    m->domain, m->dest,
		    (unsigned long long)m->st.pages_total,
		    (unsigned long long)m->st.pages_data,
		    (unsigned long long)m->st.pages_ref,
		    (unsigned long long)m->st.pages_zero,
		    (unsigned long long)m->st.bytes_wire, m->st.iterations,
		    m->st.total_ms, m->st.downtime_ms);
	else if (st != MS_AMBIGUOUS) {
		struct hv_dom_info di;
		/* A guest that died meanwhile (a crash, a destroy) is not
		 * "kept running": say which. */
		int gone = m->dom != NULL &&
		    m->env->ops->dom_info(m->dom, &di) != 0;

		log_err("migration %u: %s -> %s %s: %s; %s", m->id, m->domain,
		    m->dest, mig_state_name(st), m->error, gone ?
		    "the guest is gone from this host (it died or was "
		    "destroyed meanwhile)" : "the guest keeps running on this "
		    "host");
	}
	src_release(m);
	if (m->done != NULL)
		m->done(m, m->done_arg);
}

static void
src_fail(struct mig_src *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Free what only a running job needs: bitmaps, digests and buffers sized
 * by the guest (about 40 bytes per page with dedup).  An ended job is kept
 * for status with its counters only: sourced keeps the last 64, and with
 * them held sourced grew by 7.9 MB per migration of a 256 MiB guest.
 */
static void
src_release(struct mig_src *m)
{
	src_keys_join(m);
	free(m->fresh);
	dmap_free(m->known);
	free(m->order);
	free(m->todo);
	free(m->next);
	free(m->tmp);
	free(m->seen);
	free(m->seen_prev);
	free(m->hot);
	free(m->holes);
	free(m->batch_base);
	free(m->cand);
	free(m->hashed);
	free(m->have);
	free(m->zero);
	free(m->digests);
	free(m->kfp);
	free(m->kpre);
	free(m->keyed);
	pfilt_free(&m->filt);
	free(m->offer_pfns);
	free(m->batch_start);
	pcomp_free(m->pc);
	free(m->zin);
	free(m->zout);
	free(m->zrec);
	m->fresh = m->order = m->todo = m->next = m->tmp = NULL;
	m->seen = m->seen_prev = m->hot = m->holes = m->batch_base = NULL;
	m->cand = m->hashed = m->have = m->zero = m->offer_pfns = NULL;
	m->known = NULL;
	m->digests = NULL;
	m->kfp = m->keyed = NULL;
	m->kpre = NULL;
	m->batch_start = NULL;
	m->pc = NULL;
	m->zin = m->zout = m->zrec = NULL;
	m->offer_n = m->offer_cap = 0;
	m->batch_cap = 0;
}

static void
src_fail(struct mig_src *m, const char *fmt, ...)
{
	va_list ap;

	if (mig_src_terminal(m))
		return;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof(m->error), fmt, ap);
	va_end(ap);
	src_finish(m, MS_FAILED);
}

static void
src_kick(struct mig_src *m)
{
	event_active(m->ev_pump, EV_TIMEOUT, 0);
}

/* ---- connection and handshake ---- */

static void
src_on_error(struct link *l, int err, const char *why, void *arg)
{
	struct mig_src *m = arg;

	src_fail(m, "link to %s: %s", m->dest, why);
}

/* Stream header is out: say HELLO on connection l. */
static int
src_send_hello(struct mig_src *m, struct link *l)
{
	struct proto_hello h;
	uint8_t buf[256];

	memset(&h, 0, sizeof(h));
	h.version_min = PROTO_VERSION;
	h.version_max = PROTO_VERSION;
	h.caps = PROTO_CAP_REF | PROTO_CAP_ZERO | PROTO_CAP_VERIFY;
	/* The filter helps only keyed offers: --dedup all with an index. */
	if (l == m->link && m->o.dedup == PROTO_DEDUP_ALL &&
	    m->env->index_socket != NULL) {
		h.caps |= PROTO_CAP_FILTER;
		m->filt_asked = 1;
	}
	memcpy(h.host_id, m->env->host_id, sizeof(h.host_id));
	snprintf(h.host_name, sizeof(h.host_name), "%s", m->env->host_name);
	link_set_read_timeout(l, m->env->timeout_s);
	return src_send_on(m, l, buf, proto_enc_hello(buf, sizeof(buf), &h));
}

static void
src_on_up(struct link *l, void *arg)
{
	struct mig_src *m = arg;
	char peer[128];

	link_peer_name(l, peer, sizeof(peer));
	log_info("migration %u: %s: connected to %s%s%s", m->id, m->domain,
	    m->dest, peer[0] ? " as " : " (insecure, no TLS)", peer);
	if (src_send_hello(m, l) != 0) {
		src_fail(m, "cannot send HELLO");
		return;
	}
	m->state = MS_HELLO;
}

/*
 * Open a connection to the destination (TLS unless --insecure) whose
 * link calls cbs with arg.  0 or -errno with a reason in err.
 */
static int
src_connect(struct mig_src *m, const struct link_cbs *cbs, void *arg,
    struct link **out, char *err, size_t errlen)
{
	struct src_env *env = m->env;
	struct bufferevent *bev = NULL;
	struct timeval tv = { .tv_sec = env->timeout_s, .tv_usec = 0 };
	struct link *l;
	SSL *ssl;
	int rc, fd;

	if (env->tls != NULL) {
		if ((ssl = tls_client_ssl(env->tls, m->addr.host)) == NULL) {
			snprintf(err, errlen, "TLS setup failed");
			return -EPROTO;
		}
		bev = bufferevent_openssl_socket_new(env->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(env->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&m->addr.ss,
	    (int)m->addr.len) != 0) {
		rc = -errno ? -errno : -ECONNREFUSED;
		snprintf(err, errlen, "cannot connect to %s: %s", m->dest,
		    strerror(-rc));
		bufferevent_free(bev);
		return rc;
	}
	if ((fd = bufferevent_getfd(bev)) >= 0)
		(void)net_link_opts(fd, 10, 5, 3, env->timeout_s * 1000);
	if (env->tls != NULL)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	/* A plain socket still connecting reports CONNECTED too. */
	if ((l = link_new(bev, PROTO_D2S, 1, cbs, arg)) == NULL) {
		bufferevent_free(bev);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bufferevent_set_timeouts(bev, &tv, &tv);
	link_set_handshake_timeout(l, env->timeout_s);
	*out = l;
	return 0;
}

/* ---- data streams ---- */

/* Open data stream i (they go one after the other: a destination lets
 * an address have few connections before authentication). */
static void
src_stream_open(struct mig_src *m, unsigned i)
{
	char err[256];
	int rc;

	m->ss[i].m = m;
	m->ss[i].idx = i;
	if ((rc = src_connect(m, &src_stream_cbs, &m->ss[i], &m->ss[i].link,
	    err, sizeof(err))) != 0)
		src_fail(m, "stream %u: %s", i, err);
}

static void
src_st_on_up(struct link *l, void *arg)
{
	struct src_stream *ss = arg;

	if (src_send_hello(ss->m, l) != 0)
		src_fail(ss->m, "stream %u: cannot send HELLO", ss->idx);
}

/* The destination's HELLO on a data stream: JOIN, then the next one;
 * when all have joined, the pages can go. */
static void
src_st_on_hello(struct mig_src *m, struct src_stream *ss,
    const struct proto_hello *h)
{
	struct proto_join j;
	uint8_t buf[64];

	if (h->version_min > PROTO_VERSION || h->version_max < PROTO_VERSION) {
		src_fail(m, "stream %u: destination speaks protocol %u..%u",
		    ss->idx, h->version_min, h->version_max);
		return;
	}
	/* Nothing but KEEPALIVE and ERROR comes back on a data stream. */
	link_set_phase(ss->link, PH_LIVE);
	memset(&j, 0, sizeof(j));
	memcpy(j.token, m->token, sizeof(j.token));
	j.index = ss->idx;
	if (src_send_on(m, ss->link, buf, proto_enc_join(buf, sizeof(buf),
	    &j)) != 0) {
		src_fail(m, "stream %u: cannot send JOIN", ss->idx);
		return;
	}
	ss->joined = 1;
	log_debug("migration %u: %s: stream %u of %u joined", m->id,
	    m->domain, ss->idx, m->nstreams);
	if (ss->idx + 1 < m->nstreams)
		src_stream_open(m, ss->idx + 1);
	else
		src_go_live(m);
}

static void
src_st_on_record(struct link *l, const struct proto_rec *r, void *arg)
{
	struct src_stream *ss = arg;
	struct mig_src *m = ss->m;

	if (r->type == REC_HELLO && !ss->joined)
		src_st_on_hello(m, ss, &r->u.hello);
	else if (r->type == REC_ERROR)
		src_fail(m, "destination refused stream %u: %s", ss->idx,
		    r->u.error.msg);
	else
		src_fail(m, "unexpected %s record on stream %u",
		    proto_type_name(r->type), ss->idx);
}

static void
src_st_on_drain(struct link *l, void *arg)
{
	struct src_stream *ss = arg;

	src_on_drain(ss->m->link, ss->m);
}

static void
src_st_on_error(struct link *l, int err, const char *why, void *arg)
{
	struct src_stream *ss = arg;
	struct mig_src *m = ss->m;

	/* After END a data stream has carried all it will: the main
	 * connection's READY says whether its pages arrived. */
	if (m->state >= MS_FINAL) {
		uint64_t sent, rcvd;

		log_debug("migration %u: %s: stream %u closed after END: %s",
		    m->id, m->domain, ss->idx, why);
		if (link_fd(l) >= 0 &&
		    net_tcp_bytes(link_fd(l), &sent, &rcvd) == 0)
			m->wire_closed += sent + rcvd;
		link_free(l);
		ss->link = NULL;
		ss->joined = 0;
		return;
	}
	src_fail(m, "stream %u to %s: %s", ss->idx, m->dest, why);
}

/* The destination reads every stream: the data streams hear KEEPALIVE
 * from us when they carry nothing else for a while. */
static void
src_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct mig_src *m = arg;
	uint8_t buf[16];
	unsigned i;
	int n = proto_enc_keepalive(buf, sizeof(buf));

	for (i = 1; i < m->nstreams && !mig_src_terminal(m); i++)
		if (m->ss[i].joined && link_outq(m->ss[i].link) == 0)
			(void)src_send_on(m, m->ss[i].link, buf, n);
}

static void
src_on_hello(struct mig_src *m, const struct proto_hello *h)
{
	struct proto_domain_info di;
	void *config = NULL;
	size_t config_len = 0;
	uint8_t *buf = NULL;
	size_t cap;
	int n, rc;

	if (h->version_min > PROTO_VERSION || h->version_max < PROTO_VERSION) {
		src_fail(m, "destination speaks protocol %u..%u, we speak %u",
		    h->version_min, h->version_max, PROTO_VERSION);
		return;
	}
	if (m->o.compress != PROTO_COMPRESS_NONE &&
	    !(h->caps & pcomp_cap((uint32_t)m->o.compress))) {
		src_fail(m, "destination %s does not accept %s-compressed "
		    "pages (older destd, or not in its --compress-accept); "
		    "use --compress none", m->dest,
		    pcomp_name((uint32_t)m->o.compress));
		return;
	}
	memcpy(m->peer_id, h->host_id, sizeof(m->peer_id));
	m->peer_id_ok = 1;
	link_set_phase(m->link, PH_INFO);
	if ((rc = m->env->ops->config_get(m->dom, &config, &config_len)) != 0) {
		src_fail(m, "cannot read the domain's configuration: %s",
		    strerror(-rc));
		return;
	}
	memset(&di, 0, sizeof(di));
	di.pages = m->info.pages;
	di.vcpus = m->info.vcpus;
	di.flags = (m->o.paused ? PROTO_DI_PAUSED : 0) |
	    (m->o.verify ? PROTO_DI_VERIFY : 0) |
	    (m->o.advise ? PROTO_DI_ADVISE : 0);
	di.dedup = (uint32_t)m->o.dedup;
	di.compress = (uint32_t)m->o.compress;
	if (m->o.streams > 1 && !(h->caps & PROTO_CAP_STREAMS)) {
		log_info("migration %u: %s: %s takes one stream (an older "
		    "destd, or --max-streams 1)", m->id, m->domain, m->dest);
		m->o.streams = 1;
	}
	di.streams = m->o.streams;
	memcpy(di.uuid, m->info.uuid, sizeof(di.uuid));
	snprintf(di.name, sizeof(di.name), "%s", m->info.name);
	di.config = config;
	di.config_len = (uint32_t)config_len;
	cap = 256 + config_len;
	if ((buf = malloc(cap)) == NULL) {
		src_fail(m, "out of memory");
		goto out;
	}
	n = proto_enc_domain_info(buf, cap, &di);
	if (src_send(m, buf, n) != 0) {
		src_fail(m, "cannot encode DOMAIN_INFO: %s", strerror(-n));
		goto out;
	}
	m->state = MS_INFO;
out:
	free(buf);
	free(config);
}

/*
 * A chunk of the destination's FILTER (docs/PROTOCOL.md "FILTER"): only
 * if we asked, nbits and k as in the first chunk, each chunk where the
 * last one ended.  src_on_domain_ack checks it is complete.
 */
static void
src_on_filter(struct mig_src *m, const struct proto_filter *f)
{
	int rc;

	if (!m->filt_asked || m->state != MS_INFO) {
		src_fail(m, "unexpected FILTER");
		return;
	}
	if (f->nbits == 0) {
		if (m->filt.nbits != 0 || m->filt_none) {
			src_fail(m, "FILTER: 'none' out of order");
			return;
		}
		m->filt_none = 1;	/* nothing may follow */
		return;
	}
	if (f->offset == 0 && m->filt.nbits == 0 && !m->filt_none) {
		if ((rc = pfilt_init(&m->filt, f->nbits, f->k)) != 0) {
			src_fail(m, "FILTER of %llu bits: %s",
			    (unsigned long long)f->nbits, strerror(-rc));
			return;
		}
	} else if (f->nbits != m->filt.nbits || f->k != m->filt.k ||
	    f->offset != m->filt_got) {
		src_fail(m, "FILTER chunk at byte %llu of %llu bits, %u probes "
		    "does not continue %llu bytes of %llu bits, %u probes",
		    (unsigned long long)f->offset,
		    (unsigned long long)f->nbits, f->k,
		    (unsigned long long)m->filt_got,
		    (unsigned long long)m->filt.nbits, m->filt.k);
		return;
	}
	if ((rc = pfilt_put(&m->filt, f->offset, f->bits, f->bits_len)) != 0) {
		src_fail(m, "FILTER chunk out of range");
		return;
	}
	m->filt_got += f->bits_len;
}

/*
 * The destination built an empty domain and granted streams: open the
 * data streams, if any, then go live.
 */
static void
src_on_domain_ack(struct mig_src *m, const struct proto_domain_ack *a)
{
	struct timeval tv = { .tv_sec = m->env->timeout_s / 3 ?
	    m->env->timeout_s / 3 : 1, .tv_usec = 0 };

	if (m->filt.nbits != 0 && m->filt_got != m->filt.nbits / 8) {
		src_fail(m, "FILTER incomplete at DOMAIN_ACK: %llu of %llu "
		    "bytes", (unsigned long long)m->filt_got,
		    (unsigned long long)(m->filt.nbits / 8));
		return;
	}
	if (m->filt.nbits != 0)
		log_info("migration %u: %s: the destination's filter: %llu "
		    "KiB, %u probes, %.0f%% of bits set", m->id, m->domain,
		    (unsigned long long)(m->filt.nbits / 8192), m->filt.k,
		    100.0 * pfilt_fill(&m->filt));
	link_set_phase(m->link, PH_LIVE);
	link_set_pages(m->link, m->pages);
	if (a->streams > m->o.streams) {
		src_fail(m, "destination granted %u streams, %u asked",
		    a->streams, m->o.streams);
		return;
	}
	m->nstreams = a->streams;
	if (m->nstreams == 1) {
		src_go_live(m);
		return;
	}
	memcpy(m->token, a->token, sizeof(m->token));
	if (m->o.dedup != PROTO_DEDUP_NONE &&
	    (m->fresh = bm_alloc(m->pages)) == NULL) {
		src_fail(m, "out of memory");
		return;
	}
	m->ev_ka = event_new(m->env->base, -1, EV_PERSIST, src_keepalive, m);
	if (m->ev_ka == NULL) {
		src_fail(m, "out of memory");
		return;
	}
	event_add(m->ev_ka, &tv);
	log_info("migration %u: %s: %u streams granted (%u asked)", m->id,
	    m->domain, m->nstreams, m->o.streams);
	src_stream_open(m, 1);
}

/*
 * Every stream is there.  Turn log-dirty on before any page is read
 * (I2), then negotiate hashes or go straight to iteration 0.
 */
static void
src_go_live(struct mig_src *m)
{
	int rc;

	if (!m->o.advise &&
	    (rc = m->env->ops->logdirty_enable(m->dom)) != 0) {
		src_fail(m, "cannot enable log-dirty: %s", strerror(-rc));
		return;
	}
	m->logdirty = !m->o.advise;
	(void)journal_write(m, "logdirty");
	/* The destination sends KEEPALIVE while pages stream, so silence
	 * means a dead or stalled peer in every phase; the write side has
	 * TCP_USER_TIMEOUT. */
	link_set_read_timeout(m->link, m->env->timeout_s);
	src_set_drain_mark(m, SRC_OUT_LOW);
	/* With dedup, offers run ahead of iteration 0 (src_offer_safe). */
	m->offering = m->o.dedup != PROTO_DEDUP_NONE && m->cand != NULL;
	m->ocursor = 0;
	src_start_iteration(m);
}

/* Account the time iteration 0 had pages to send but no answer yet. */
static void
src_wait_end(struct mig_src *m)
{
	struct timespec now;

	if (!m->waiting)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	m->st.offer_wait_ms += ts_ms(&m->t_wait, &now);
	m->waiting = 0;
}

/*
 * Positions.  With m->order (the pages shared on this host, "unique-
 * first"), iteration 0 makes two passes over the pfns: pass 0 sends the
 * pages not shared here, pass 1 the shared ones.  Pass 0's pages will
 * almost all go as DATA, so the link is busy from the start, and the
 * destination fills pass 1's offers while it drains; in pfn order a long
 * run of shared pages leaves the link idle while both ends hash and fill,
 * and the pages that must go in full wait behind it.  Position v is pfn
 * v % pages of pass v / pages; the cursors, offer windows and the
 * answered limit move in positions.  Later iterations (and pfn order)
 * have one pass: position = pfn.
 */
static uint64_t
src_vend(const struct mig_src *m)
{
	return m->order != NULL && m->st.iterations == 0 ? 2 * m->pages :
	    m->pages;
}

static uint64_t
src_vpos(const struct mig_src *m, uint64_t pfn)
{
	if (m->order == NULL || m->st.iterations != 0)
		return pfn;
	return bm_test(m->order, pfn) ? m->pages + pfn : pfn;
}

/* The first position in [v, lim) whose pfn is set in bm, else lim. */
static uint64_t
src_vnext(const struct mig_src *m, const uint64_t *bm, uint64_t v,
    uint64_t lim)
{
	const uint64_t *ord = src_vend(m) > m->pages ? m->order : NULL;
	uint64_t pass, p, end, w, bits;

	while (v < lim) {
		pass = v / m->pages;
		p = v % m->pages;
		end = lim - pass * m->pages < m->pages ?
		    lim - pass * m->pages : m->pages;
		for (w = p / 64; w * 64 < end; w++) {
			bits = bm[w];
			if (ord != NULL)
				bits &= pass ? ord[w] : ~ord[w];
			if (w == p / 64)
				bits &= ~0ull << (p % 64);
			if (bits == 0)
				continue;
			p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			return p < end ? pass * m->pages + p : lim;
		}
		v = (pass + 1) * m->pages;
	}
	return lim;
}

/*
 * Unique-first: the next offer is one of pass 1's while pass 0 still has
 * pages to send.  Such an offer is not hashed just because pass 0's pages
 * wait for a HAVE (queued ahead of them, it would reach the destination
 * first), and at most SRC_OFFER_PASS0 of them are unanswered: they share
 * the link and the destination's fill worker with pass 0's pages
 * (src_pump_iter).
 */
static int
src_pass1_early(const struct mig_src *m)
{
	return src_vend(m) > m->pages && m->cursor < m->pages &&
	    m->ocursor >= m->pages;
}

/*
 * Iteration 0 may send positions below this limit: every offer covering
 * them has been answered, so we know which ones the destination holds.
 */
static uint64_t
src_offer_safe(const struct mig_src *m)
{
	if (!m->offering)
		return src_vend(m);
	if (m->batches_answered < m->batches)
		return m->batch_base[m->batches_answered];
	return m->ocursor;
}

/* ---- hash negotiation ---- */

static int
src_offer_grow(struct mig_src *m, size_t more)
{
	void *p;

	if (m->offer_n + more > m->offer_cap) {
		size_t cap = m->offer_cap ? m->offer_cap * 2 : 4096;

		while (cap < m->offer_n + more)
			cap *= 2;
		if ((p = realloc(m->offer_pfns, cap * sizeof(uint64_t))) == NULL)
			return -ENOMEM;
		m->offer_pfns = p;
		m->offer_cap = cap;
	}
	if (m->batches + 1 > m->batch_cap) {
		uint32_t cap = m->batch_cap ? m->batch_cap * 2 : 64;

		if ((p = realloc(m->batch_start, (cap + 1) * sizeof(uint32_t)))
		    == NULL)
			return -ENOMEM;
		m->batch_start = p;
		if ((p = realloc(m->batch_base, cap * sizeof(uint64_t))) == NULL)
			return -ENOMEM;
		m->batch_base = p;
		m->batch_cap = cap;
	}
	return 0;
}

/*
 * The 8-byte prefix to offer for page pfn, or NULL for a zero page (not
 * offered: it goes as ZERO).  A page held once on this host whose XXH3
 * still equals the host index's fingerprint is offered unhashed with the
 * prefix the scanner took with that fingerprint (keyed): few such pages
 * are filled, and a filled one is hashed when its HAVE comes
 * (src_hash_keyed).  Other pages are hashed through q, two at a time:
 * the returned prefix is written when q is flushed (pagehash.h).  Either
 * way the page is read after log-dirty was enabled, so a later write is in
 * the dirty log (I2), and the prefix is only a hint: identity is proven by
 * SHA-256.
 */
static const uint8_t *
src_offer_prefix(struct mig_src *m, struct ph_queue *q, uint64_t pfn,
    const void *page)
{
	if (ph_is_zero(page)) {
		memcpy(m->digests[pfn], ph_zero_digest(), 32);
		bm_set(m->hashed, pfn);
		bm_set(m->zero, pfn);
		return NULL;
	}
	if (m->kpre != NULL && m->kfp[pfn] != 0 &&
	    ph_xxh3(page) == m->kfp[pfn]) {
		bm_set(m->keyed, pfn);
		m->st.pages_keyed++;
		return m->kpre[pfn];
	}
	ph_queue_add(q, page, m->digests[pfn]);
	bm_set(m->hashed, pfn);
	return m->digests[pfn];
}

/*
 * Does the destination's FILTER say it certainly lacks page pfn's content
 * (by the prefix the scanner took of a page held once on this host)?
 * Then the page goes as DATA, neither read nor offered here: classified
 * as keyed, it is sent as it is in iteration 0 (src_classify).  Had the
 * page changed since its scan, it still goes in full, which is always
 * correct; only a content the destination gained since it built the
 * filter is missed.
 */
static int
src_filtered(struct mig_src *m, uint64_t pfn)
{
	if (m->filt.nbits == 0 || m->kpre == NULL || m->kfp[pfn] == 0 ||
	    pfilt_maybe(&m->filt, m->kpre[pfn]))
		return 0;
	bm_set(m->keyed, pfn);
	m->st.pages_filtered++;
	return 1;
}

/*
 * Offer the candidate pages of the next window of SRC_OFFER_SPAN pfns by
 * their 8-byte digest prefixes (src_offer_prefix).  Zero pages are not
 * offered: they go as ZERO records.
 */
static int
src_offer_batch(struct mig_src *m)
{
	uint64_t pfns[HV_MAP_BATCH_MAX], bits[SRC_OFFER_SPAN / 64];
	uint8_t (*pre)[8] = NULL;
	void *pages[HV_MAP_BATCH_MAX];
	struct ph_queue q = { NULL, NULL };
	struct hv_map *map;
	uint8_t *buf = NULL;
	uint64_t vbase = m->ocursor, pass = vbase / m->pages, v, vend;
	uint64_t base = vbase % m->pages, end, opfn[PROTO_PFN_BATCH_MAX];
	const uint8_t *p8, *pp[HV_MAP_BATCH_MAX];
	uint32_t n, i, on = 0, first;
	size_t cap;
	int rc, len;

	src_keys_join(m);	/* the keys, before the first offer */

	/* A window lies within one pass: its pfns are [base, end). */
	end = base + SRC_OFFER_SPAN < m->pages ? base + SRC_OFFER_SPAN :
	    m->pages;
	vend = pass * m->pages + end;
	m->ocursor = vend;
	memset(bits, 0, sizeof(bits));
	if ((pre = malloc(PROTO_PFN_BATCH_MAX * 8)) == NULL)
		return -ENOMEM;
	v = src_vnext(m, m->cand, vbase, vend);
	while (v < vend) {
		for (n = 0; v < vend && n < HV_MAP_BATCH_MAX;
		    v = src_vnext(m, m->cand, v + 1, vend))
			if (!src_filtered(m, v % m->pages))
				pfns[n++] = v % m->pages;
		if (n == 0)
			continue;
		if ((rc = m->env->ops->map(m->dom, pfns, n, 0, pages,
		    &map)) != 0)
			goto out;
		first = on;
		for (i = 0; i < n; i++) {
			if (pages[i] == NULL) {
				bm_set(m->holes, pfns[i]);
				continue;		/* hole */
			}
			if ((p8 = src_offer_prefix(m, &q, pfns[i],
			    pages[i])) == NULL)
				continue;
			bits[(pfns[i] - base) / 64] |=
			    1ull << ((pfns[i] - base) % 64);
			pp[on - first] = p8;
			opfn[on++] = pfns[i];
		}
		/* the digests are written once the queue is flushed */
		ph_queue_flush(&q);
		for (i = first; i < on; i++)
			memcpy(pre[i], pp[i - first], 8);
		m->env->ops->unmap(m->dom, map);
	}
	rc = 0;
	if (on == 0)
		goto out;
	if ((rc = src_offer_grow(m, on)) != 0)
		goto out;
	memcpy(m->offer_pfns + m->offer_n, opfn, on * sizeof(uint64_t));
	m->batch_start[m->batches] = (uint32_t)m->offer_n;
	m->batch_base[m->batches] = vbase;
	m->offer_n += on;
	m->batch_start[m->batches + 1] = (uint32_t)m->offer_n;
	cap = proto_rec_size(24 + SRC_OFFER_SPAN / 8 + (size_t)on * 8);
	if ((buf = malloc(cap)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	len = proto_enc_offer(buf, cap, m->batches, base, SRC_OFFER_SPAN,
	    bits, on, (const uint8_t (*)[8])pre);
	if ((rc = src_send(m, buf, len)) != 0)
		goto out;
	m->batches++;
	m->st.pages_offered += on;
out:
	free(pre);
	free(buf);
	return rc;
}

/*
 * Hash the keyed pages among the entries HAVE h says were filled (batch
 * entries start.. of offer_pfns), so the confirm digest can be checked.
 * A page the guest wrote since its offer gets its new digest and fails
 * the check: the batch then goes in full, and the page is in the dirty
 * log anyway.  0 or -errno.
 */
static int
src_hash_keyed(struct mig_src *m, const struct proto_have *h, uint32_t start)
{
	uint64_t batch[HV_MAP_BATCH_MAX];
	void *pages[HV_MAP_BATCH_MAX];
	struct ph_queue q = { NULL, NULL };
	struct hv_map *map;
	uint32_t i, k, nb;
	int rc;

	for (i = 0; i < h->count; ) {
		for (nb = 0; i < h->count && nb < HV_MAP_BATCH_MAX; i++)
			if (proto_have_bit(h, i) &&
			    bm_test(m->keyed, m->offer_pfns[start + i]))
				batch[nb++] = m->offer_pfns[start + i];
		if (nb == 0)
			continue;
		if ((rc = m->env->ops->map(m->dom, batch, nb, 0, pages,
		    &map)) != 0)
			return rc;
		for (k = 0; k < nb; k++) {
			if (pages[k] == NULL)	/* gone: fails the check */
				memset(m->digests[batch[k]], 0, 32);
			else
				ph_queue_add(&q, pages[k],
				    m->digests[batch[k]]);
		}
		ph_queue_flush(&q);
		for (k = 0; k < nb; k++) {
			if (memcmp(m->digests[batch[k]], ph_zero_digest(),
			    32) == 0)
				bm_set(m->zero, batch[k]);
			bm_clear(m->keyed, batch[k]);
			bm_set(m->hashed, batch[k]);
		}
		m->env->ops->unmap(m->dom, map);
	}
	return 0;
}

/*
 * The destination filled some offered pages from its own memory.  Its
 * confirm digest must equal SHA-256 over our full digests of exactly those
 * pages: then each fill is byte-identical (I3) and the pages count as
 * delivered.  Otherwise none of them do, and iteration 0 sends them as
 * DATA, overwriting the fills.
 */
static void
src_on_have(struct mig_src *m, const struct proto_have *h)
{
	uint32_t start, count, i, nhad = 0;
	uint8_t mine[32];
	struct ph_ctx *ctx;
	uint64_t p;

	if (!m->offering || h->batch >= m->batches ||
	    h->batch != m->batches_answered) {
		src_fail(m, "HAVE for unexpected batch %u", h->batch);
		return;
	}
	start = m->batch_start[h->batch];
	count = m->batch_start[h->batch + 1] - start;
	if (h->count != count) {
		src_fail(m, "HAVE for batch %u has %u entries, offered %u",
		    h->batch, h->count, count);
		return;
	}
	if (m->o.advise) {
		/* Advice: the destination's index holds these prefixes. */
		for (i = 0; i < count; i++)
			m->st.pages_have += proto_have_bit(h, i) ? 1 : 0;
		m->batches_answered++;
		src_kick(m);
		return;
	}
	if (m->keyed != NULL) {
		int rc = src_hash_keyed(m, h, start);

		if (rc != 0) {
			src_fail(m, "map for hashing: %s", strerror(-rc));
			return;
		}
	}
	if ((ctx = ph_ctx_new()) == NULL) {
		src_fail(m, "out of memory");
		return;
	}
	for (i = 0; i < count; i++) {
		if (!proto_have_bit(h, i))
			continue;
		ph_ctx_update(ctx, m->digests[m->offer_pfns[start + i]], 32);
		nhad++;
	}
	if (nhad == 0)
		memset(mine, 0, sizeof(mine));
	ph_ctx_final(ctx, mine);
	if (nhad == 0)
		memset(mine, 0, sizeof(mine));
	m->batches_answered++;
	src_wait_end(m);
	if (memcmp(mine, h->confirm, 32) != 0) {
		log_warn("migration %u: %s: batch %u: the destination's %u "
		    "fills do not match our digests; sending them in full",
		    m->id, m->domain, h->batch, nhad);
		m->st.pages_unconfirmed += nhad;
		nhad = 0;
	}
	for (i = 0; i < count && nhad > 0; i++) {
		if (!proto_have_bit(h, i))
			continue;
		p = m->offer_pfns[start + i];
		bm_set(m->have, p);
		/* The incoming domain holds this content at p now. */
		if (dmap_put(m->known, m->digests[p], p) != 0) {
			src_fail(m, "out of memory");
			return;
		}
		m->st.pages_have++;
	}
	src_kick(m);
}

/* ---- iterations ---- */

struct src_batch {
	uint64_t	data[SRC_BATCH];
	const void	*data_ptr[SRC_BATCH];
	uint32_t	ndata;
	uint64_t	zero[SRC_BATCH];
	uint32_t	nzero;
	uint64_t	ref[SRC_BATCH];
	uint64_t	hint[SRC_BATCH];
	uint8_t		digest[SRC_BATCH][32];
	uint32_t	nref;
};

/*
 * Decide how page pfn goes: DATA, ZERO or REF.  page is its current
 * content (mapped).  In iteration 0 a page hashed during the negotiation
 * uses that digest (it was taken after log-dirty was on; if the page has
 * changed since, it is dirty and goes again).  Other pages are hashed now
 * when a dedup mode is on.
 */
static void
src_classify(struct mig_src *m, struct src_batch *b, uint64_t pfn,
    const void *page)
{
	uint8_t dg[32];
	const uint8_t *d;
	uint64_t hint;
	int found;

	if (m->o.dedup == PROTO_DEDUP_NONE) {
		if (m->o.zero_pages == MIG_ZERO_ELIDE && ph_is_zero(page))
			goto zero;
		goto data;
	}
	if (m->st.iterations == 0 && m->keyed != NULL &&
	    bm_test(m->keyed, pfn))
		goto data;	/* held once on this host, and not filled */
	if (m->st.iterations == 0 && m->hashed != NULL &&
	    bm_test(m->hashed, pfn)) {
		if (bm_test(m->zero, pfn))
			goto zero;
		d = m->digests[pfn];
	} else {
		if (ph_is_zero(page))
			goto zero;
		if (m->st.iterations == 0 && m->o.dedup == PROTO_DEDUP_SHARED)
			goto data;	/* the seed's policy: only shared pages */
		if (m->st.iterations > 0 && !ygate_look(&m->yg)) {
			m->st.pages_unlooked++;
			goto data;	/* lookups stopped paying (ygate.h) */
		}
		ph_sha256(page, dg);
		d = dg;
	}
	found = dmap_get(m->known, d, &hint);
	if (m->st.iterations > 0)
		ygate_seen(&m->yg, found);
	if (found) {
		/* A hint sent as DATA on another stream in this iteration
		 * may not be there yet when the REF is filled: send the
		 * content instead of a REF that would come back as NEED. */
		if (m->fresh != NULL && hint != PROTO_PFN_NONE &&
		    bm_test(m->fresh, hint))
			goto data;
		b->ref[b->nref] = pfn;
		b->hint[b->nref] = hint;
		memcpy(b->digest[b->nref], d, 32);
		b->nref++;
		return;
	}
	/* First time in this stream: later copies can refer to it. */
	if (dmap_put(m->known, d, pfn) != 0)
		goto data;
data:
	b->data[b->ndata] = pfn;
	b->data_ptr[b->ndata] = page;
	b->ndata++;
	return;
zero:
	/* --zero-pages send: in full, like any other content never sent. */
	if (m->o.zero_pages == MIG_ZERO_SEND)
		goto data;
	b->zero[b->nzero++] = pfn;
}

/*
 * Queue a compressed PAGE_DATA record for n mapped pages.  Returns 1 when
 * they do not shrink (the caller sends them raw), else 0 or -errno.
 */
static int
src_send_data_z(struct mig_src *m, struct link *l, const uint64_t *pfns,
    const void *const *ptrs, uint32_t n)
{
	size_t raw = (size_t)n * PROTO_PAGE_SIZE;
	uint32_t i;
	int clen, len;

	for (i = 0; i < n; i++)
		memcpy(m->zin + (size_t)i * PROTO_PAGE_SIZE, ptrs[i],
		    PROTO_PAGE_SIZE);
	clen = pcomp_compress(m->pc, m->zin, raw, m->zout, raw - 1);
	if (clen <= 0)
		return clen < 0 ? clen : 1;
	len = proto_enc_page_data_z(m->zrec, SRC_ZREC_CAP,
	    n, pfns, (uint32_t)m->o.compress, m->zout, (uint32_t)clen);
	if (len < 0)
		return len;
	if (evbuffer_add(link_output(l), m->zrec, (size_t)len) != 0)
		return -ENOMEM;
	m->st.bytes_queued += (uint64_t)len;
	m->st.bytes_data += (uint64_t)clen;
	return 0;
}

/*
 * Append a record, head then n pages, to out in buffers of SRC_OUT_CHUNK
 * bytes.  A TLS link makes one TLS record of each buffer, up to 16 KiB, so
 * the buffer of a page each that evbuffer_add() would make cost a TLS
 * record and a write(2) per page; one buffer of the whole record (up to a
 * MiB) would be mapped and unmapped by malloc at every record.
 */
static int
src_out_record(struct evbuffer *out, const uint8_t *head, size_t hlen,
    const void *const *ptrs, uint32_t n)
{
	struct evbuffer_iovec v;
	size_t left = hlen + (size_t)n * PROTO_PAGE_SIZE, off = 0;
	size_t want, k, step, in;
	const uint8_t *from;

	while (left > 0) {
		want = left < SRC_OUT_CHUNK ? left : SRC_OUT_CHUNK;
		if (evbuffer_reserve_space(out, (ev_ssize_t)want, &v, 1) != 1)
			return -ENOMEM;
		for (k = 0; k < want; k += step, off += step) {
			if (off < hlen) {
				from = head + off;
				step = hlen - off;
			} else {
				in = (off - hlen) % PROTO_PAGE_SIZE;
				from = (const uint8_t *)ptrs[(off - hlen) /
				    PROTO_PAGE_SIZE] + in;
				step = PROTO_PAGE_SIZE - in;
			}
			if (step > want - k)
				step = want - k;
			memcpy((uint8_t *)v.iov_base + k, from, step);
		}
		v.iov_len = want;
		if (evbuffer_commit_space(out, &v, 1) != 0)
			return -ENOMEM;
		left -= want;
	}
	return 0;
}

/* Queue a PAGE_DATA record for n mapped pages on connection l,
 * compressed if asked and if they shrink. */
static int
src_send_data_on(struct mig_src *m, struct link *l, const uint64_t *pfns,
    const void *const *ptrs, uint32_t n)
{
	uint8_t head[PROTO_REC_HDR_LEN + 8 + 8 * PROTO_PAGE_BATCH_MAX];
	struct evbuffer *out = link_output(l);
	int len, rc = 1;

	if (n == 0)
		return 0;
	if (m->pc != NULL && (rc = src_send_data_z(m, l, pfns, ptrs, n)) < 0)
		return rc;
	if (rc == 1) {
		len = proto_enc_page_data_head(head, sizeof(head), n, pfns);
		if (len < 0)
			return len;
		if ((rc = src_out_record(out, head, (size_t)len, ptrs, n)) != 0)
			return rc;
		m->st.bytes_queued += (uint64_t)len +
		    (uint64_t)n * PROTO_PAGE_SIZE;
		m->st.bytes_data += (uint64_t)n * PROTO_PAGE_SIZE;
	}
	m->data_bytes += (uint64_t)n * PROTO_PAGE_SIZE;
	m->st.bytes_data_raw += (uint64_t)n * PROTO_PAGE_SIZE;
	m->st.pages_data += n;
	return 0;
}

/*
 * Queue PAGE_DATA for n mapped pages: while pages stream, each on its
 * pfn's stream (the destination applies a pfn's records in the order of
 * one connection, and iterations in order across them); after END, the
 * answers to NEED go on the main connection, behind every stream's last
 * barrier.
 */
static int
src_send_data(struct mig_src *m, const uint64_t *pfns, const void *const *ptrs,
    uint32_t n)
{
	uint64_t sp[PROTO_PAGE_BATCH_MAX];
	const void *sptr[PROTO_PAGE_BATCH_MAX];
	uint32_t i, k;
	unsigned j;
	int rc;

	if (m->nstreams == 1 || m->state >= MS_FINAL)
		return src_send_data_on(m, m->link, pfns, ptrs, n);
	for (j = 0; j < m->nstreams; j++) {
		for (i = k = 0; i < n; i++) {
			if (proto_stream_of(pfns[i], m->nstreams) != j)
				continue;
			sp[k] = pfns[i];
			sptr[k++] = ptrs[i];
			if (j != 0 && m->fresh != NULL)
				bm_set(m->fresh, pfns[i]);
		}
		if ((rc = src_send_data_on(m, src_link(m, j), sp, sptr,
		    k)) != 0)
			return rc;
	}
	return 0;
}

static int
src_send_batch(struct mig_src *m, struct src_batch *b)
{
	uint8_t *buf;
	size_t cap;
	int rc = 0, n;

	cap = proto_rec_size(8 + (size_t)SRC_BATCH * 48);
	if ((buf = malloc(cap)) == NULL)
		return -ENOMEM;
	if (b->nzero > 0) {
		n = proto_enc_pfn_list(buf, cap, REC_PAGE_ZERO, b->nzero,
		    b->zero);
		if ((rc = src_send(m, buf, n)) != 0)
			goto out;
		m->st.pages_zero += b->nzero;
	}
	if (b->nref > 0) {
		n = proto_enc_page_ref(buf, cap, b->nref, b->ref, b->hint,
		    (const uint8_t (*)[32])b->digest);
		if ((rc = src_send(m, buf, n)) != 0)
			goto out;
		m->st.pages_ref += b->nref;
	}
	rc = src_send_data(m, b->data, b->data_ptr, b->ndata);
out:
	free(buf);
	return rc;
}

/* Send up to SRC_BATCH pages of the todo set, from the cursor up to
 * limit. */
static int
src_iter_batch(struct mig_src *m, uint64_t limit)
{
	struct src_batch *b;
	uint64_t pfns[SRC_BATCH];
	void *pages[SRC_BATCH];
	struct hv_map *map = NULL;
	uint32_t n = 0, i, mapped = 0;
	uint64_t v, p;
	int rc;

	for (v = src_vnext(m, m->todo, m->cursor, limit);
	    v < limit && n < SRC_BATCH;
	    v = src_vnext(m, m->todo, v + 1, limit)) {
		p = v % m->pages;
		if (m->st.iterations == 0 && m->have != NULL &&
		    bm_test(m->have, p)) {
			/* Filled by the destination and confirmed. */
			bm_clear(m->todo, p);
			m->st.pages_ref++;
			continue;
		}
		if (m->st.iterations == 0 && bm_test(m->holes, p)) {
			/* Unpopulated when offered: a page populated since is
			 * in the dirty log. */
			bm_clear(m->todo, p);
			continue;
		}
		pfns[n++] = p;
	}
	m->cursor = v;
	if (n == 0)
		return 0;
	if ((b = malloc(sizeof(*b))) == NULL)
		return -ENOMEM;
	b->ndata = b->nzero = b->nref = 0;
	if ((rc = m->env->ops->map(m->dom, pfns, n, 0, pages, &map)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		bm_clear(m->todo, pfns[i]);
		if (pages[i] != NULL) {
			bm_clear(m->holes, pfns[i]);	/* populated since */
			src_classify(m, b, pfns[i], pages[i]);
			mapped++;
		} else if (m->st.iterations == 0) {
			bm_set(m->holes, pfns[i]);
		}
	}
	rc = src_send_batch(m, b);
	m->env->ops->unmap(m->dom, map);
	/* Holes do not count: a Xen PVH guest of 128 MiB has a pfn space
	 * of 1M pfns, and counting its holes made iteration 0 of --dedup
	 * none sync (a log-dirty CLEAN: every guest page write-protected
	 * again) about 490 times at its end.  In the emulated lab the
	 * guest then triple-faulted in 3 of 4 attempts (docs/XEN.md). */
	m->since_sync += mapped;
out:
	free(b);
	return rc;
}

/*
 * Record a fetched dirty set.  A page found dirty by a sync after an
 * earlier sync of this round or of the previous one also found it dirty
 * is hot: the guest keeps rewriting it, so sending it before the guest
 * is paused only sends it again (src_iter_done holds it back).
 */
static void
src_observe(struct mig_src *m, const uint64_t *dirty)
{
	size_t words = bm_words(m->pages), i;

	for (i = 0; i < words; i++) {
		m->hot[i] |= dirty[i] & (m->seen[i] | m->seen_prev[i]);
		m->seen[i] |= dirty[i];
	}
}

/*
 * Mid-iteration sync of the dirty log (Xen's "to_skip").  A page dirtied
 * again before this iteration has read it is skipped now and sent in the
 * next iteration: a page the guest keeps rewriting goes once, at the end,
 * instead of in every round.  Every dirty page goes in the next
 * iteration.  Pages delivered by an OFFER keep their iteration-0 place
 * (they are counted there) and go again next time like the others.
 */
static int
src_dirty_sync(struct mig_src *m)
{
	size_t words = bm_words(m->pages), i;
	uint64_t w, p;
	int rc;

	m->since_sync = 0;
	if ((rc = m->env->ops->dirty_fetch(m->dom, m->tmp, 0)) != 0)
		return rc;
	src_observe(m, m->tmp);
	for (i = 0; i < words; i++) {
		for (w = m->tmp[i]; w != 0; w &= w - 1) {
			p = i * 64 + (uint64_t)__builtin_ctzll(w);
			bm_set(m->next, p);
			if (src_vpos(m, p) >= m->cursor &&
			    bm_test(m->todo, p) &&
			    !(m->st.iterations == 0 && m->have != NULL &&
			    bm_test(m->have, p)))
				bm_clear(m->todo, p);
		}
	}
	return 0;
}

/* Pages sent so far, of any kind (REF counts offer-delivered pages). */
static uint64_t
src_pages_sent(const struct mig_src *m)
{
	return m->st.pages_data + m->st.pages_ref + m->st.pages_zero;
}

/* Remember the figures of the iteration that just ended. */
static int
src_iter_record(struct mig_src *m, uint64_t bytes, double ms)
{
	struct mig_iter_stat *t;
	unsigned cap;

	if (m->st.iterations >= m->iters_cap) {
		cap = m->iters_cap ? m->iters_cap * 2 : 8;
		if ((t = reallocarray(m->iters, cap, sizeof(*t))) == NULL)
			return -ENOMEM;
		m->iters = t;
		m->iters_cap = cap;
	}
	t = &m->iters[m->st.iterations];
	t->pages = src_pages_sent(m) - m->pages_iter_start;
	t->bytes = bytes;
	t->ms = ms;
	return 0;
}

static void
src_start_iteration(struct mig_src *m)
{
	if (m->st.iterations == 0) {
		/* Iteration 0 sends every page. */
		memset(m->todo, 0xff, bm_words(m->pages) * 8);
		if (m->pages % 64)
			m->todo[bm_words(m->pages) - 1] =
			    (1ull << (m->pages % 64)) - 1;
	}
	m->state = m->paused ? MS_STOPCOPY : MS_ITERATING;
	m->cursor = 0;
	m->since_sync = 0;
	m->iter_flushing = 0;
	clock_gettime(CLOCK_MONOTONIC, &m->t_iter);
	m->queued_iter_start = m->st.bytes_queued;
	m->pages_iter_start = src_pages_sent(m);
	m->data_raw_iter_start = m->st.bytes_data_raw;
	m->data_iter_start = m->st.bytes_data;
	src_kick(m);
}

/*
 * The barrier of an iteration on the data streams: ITER_END on each (the
 * main connection gets its own ITER_END, or END after the last one).
 * A hint sent as DATA before it is safe after it.
 */
static int
src_send_barrier(struct mig_src *m, const struct proto_iter_end *ie)
{
	uint8_t buf[64];
	unsigned i;
	int rc, n = proto_enc_iter_end(buf, sizeof(buf), ie);

	for (i = 1; i < m->nstreams; i++)
		if ((rc = src_send_on(m, m->ss[i].link, buf, n)) != 0)
			return rc;
	if (m->fresh != NULL)
		bm_zero(m->fresh, m->pages);
	return 0;
}

/*
 * After the last dirty pages went out while paused: the vCPU context,
 * then END (with the whole-memory digest for --verify).
 */
static void
src_send_final(struct mig_src *m)
{
	struct proto_end e;
	void *blob = NULL;
	uint8_t *buf = NULL;
	size_t blen = 0, cap;
	int rc, len;

	memset(&e, 0, sizeof(e));
	{
		struct proto_iter_end ie = {
			.iteration = m->st.iterations - 1,
			.pages_sent = m->iters[m->st.iterations - 1].pages,
		};

		if ((rc = src_send_barrier(m, &ie)) != 0) {
			src_fail(m, "cannot end the streams: %s",
			    strerror(-rc));
			return;
		}
	}
	if ((rc = m->env->ops->context_get(m->dom, &blob, &blen)) != 0) {
		src_fail(m, "cannot read the vCPU context: %s", strerror(-rc));
		return;
	}
	cap = proto_rec_size(8 + blen);
	if ((buf = malloc(cap)) == NULL) {
		src_fail(m, "out of memory");
		goto out;
	}
	len = proto_enc_context(buf, cap, blob, (uint32_t)blen);
	if ((rc = src_send(m, buf, len)) != 0) {
		src_fail(m, "cannot send CONTEXT: %s", strerror(-rc));
		goto out;
	}
	memset(&e, 0, sizeof(e));
	if (m->o.verify) {
		/*
		 * SHA-256 of the pages the stream carried (every pfn not
		 * found to be a hole), in pfn order, paused; the destination
		 * hashes the pfns it received.  Holes stay out of the
		 * downtime: a Xen PVH guest's pfn space is mostly holes.
		 * Each segment's digest goes to the debug log, to be set
		 * beside the destination's when the digests differ.
		 */
		char pfx[HV_NAME_MAX + 32];

		snprintf(pfx, sizeof(pfx), "migration %u: %s", m->id,
		    m->domain);
		if ((rc = hv_digest(m->env->ops, m->dom, m->holes, m->pages,
		    0, NULL, 0, &m->dg, hv_digest_log_seg, pfx)) != 0) {
			src_fail(m, "verify: cannot hash the memory: %s",
			    strerror(-rc));
			goto out;
		}
		hv_digest_log(pfx, &m->dg);
		m->have_sha_src = 1;
		e.flags = PROTO_END_VERIFY;
		memcpy(e.memory_sha256, m->dg.sha256, 32);
		if (m->dg.noutside > 0) {
			e.flags |= PROTO_END_UNVERIFIED;
			e.nunverified = (uint32_t)m->dg.noutside;
			memcpy(e.unverified, m->dg.outside,
			    m->dg.noutside * sizeof(e.unverified[0]));
		}
	}
	len = proto_enc_end(buf, cap, REC_END, &e);
	if ((rc = src_send(m, buf, len)) != 0) {
		src_fail(m, "cannot send END: %s", strerror(-rc));
		goto out;
	}
	m->state = MS_FINAL;
	link_set_phase(m->link, PH_FINAL);
	log_debug("migration %u: %s: END queued, %zu bytes to flush", m->id,
	    m->domain, src_outq_max(m));
	link_set_read_timeout(m->link, m->env->timeout_s);
out:
	free(buf);
	free(blob);
}

/*
 * Before another live iteration: the hot pages stay dirty (in next, so
 * the stop-and-copy or a later round that finds them cold sends them)
 * and are not sent now.  Without this a page the guest rewrites without
 * pause goes in every iteration; Xen's to_skip only catches the pages
 * dirtied again within one round.  The stop policy still counts them:
 * they are part of the downtime.
 */
static void
src_hold_hot(struct mig_src *m)
{
	size_t words = bm_words(m->pages), i;
	uint64_t *t;

	for (i = 0; i < words; i++) {
		m->next[i] = m->todo[i] & m->hot[i];
		m->todo[i] &= ~m->hot[i];
	}
	log_debug("migration %u: %s: %llu hot pages held back for the "
	    "stop-and-copy", m->id, m->domain,
	    (unsigned long long)bm_count(m->next, m->pages));
	t = m->seen_prev;
	m->seen_prev = m->seen;
	m->seen = t;
	bm_zero(m->seen, m->pages);
	bm_zero(m->hot, m->pages);
}

/* The destination's entry in env's handover table, or NULL. */
static struct src_handover *
src_handover_find(struct mig_src *m)
{
	struct src_handover *h = m->env->handover;
	size_t i;

	if (!m->peer_id_ok)
		return NULL;
	for (i = 0; i < SRC_HANDOVER_HOSTS; i++)
		if (h[i].n > 0 && memcmp(h[i].host_id, m->peer_id, 16) == 0)
			return &h[i];
	return NULL;
}

/*
 * Learn from a completed handover: downtime minus the estimate of the
 * final round's pages.  Only when that estimate was within twice the
 * target: a larger final round (an iteration cap, no progress) measures
 * the bandwidth estimate more than the handover.  A new destination
 * takes a free slot or the least recently used one.
 */
static void
src_handover_learn(struct mig_src *m)
{
	struct src_env *env = m->env;
	struct src_handover *h;
	double sample = m->st.downtime_ms - m->est_data_ms;
	size_t i;

	if (!m->peer_id_ok || m->est_data_ms < 0 ||
	    m->est_data_ms > 2.0 * m->o.downtime_ms)
		return;
	if (sample < 0)
		sample = 0;
	if (sample > 60000)
		sample = 60000;
	if ((h = src_handover_find(m)) == NULL) {
		h = &env->handover[0];
		for (i = 0; i < SRC_HANDOVER_HOSTS; i++) {
			if (env->handover[i].n == 0) {
				h = &env->handover[i];
				break;
			}
			if (env->handover[i].used < h->used)
				h = &env->handover[i];
		}
		memcpy(h->host_id, m->peer_id, 16);
		h->n = 0;
	}
	h->ms = h->n == 0 ? sample : 0.7 * h->ms + 0.3 * sample;
	h->n++;
	h->used = ++env->handover_tick;
}

/*
 * The stop policy, run when an iteration's records have all left the
 * output buffer and the kernel (src_sockq): fetch the dirty set and
 * decide whether to iterate again or stop and copy.  Stop when the dirty
 * set (plus what the kernel still holds) can be sent within the
 * downtime target at the bandwidth the last iteration achieved (never
 * more than the cap), or at the iteration cap, or when iterating makes
 * no progress, or when the data sent exceeds max_bytes_factor x memory.
 * With auto-converge a round without progress (pace_progress) throttles
 * the guest instead, one step more each time (pace_throttle_next); it
 * stops for want of progress only once a round at the highest throttle
 * made none, or when the guest cannot be throttled.
 */
static void
src_iter_done(struct mig_src *m)
{
	struct proto_iter_end ie;
	struct timespec now;
	uint8_t buf[64];
	struct src_handover *h;
	double ms, bw, est_ms, hand, floor_bw = SRC_MIN_BW;
	uint64_t dirty, bytes;
	int rc, stop, progress;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = ts_ms(&m->t_iter, &now);
	bytes = m->st.bytes_queued - m->queued_iter_start;
	/* The rate in uncompressed page bytes: the dirty set's estimate
	 * below counts whole pages. */
	bw = ms > 0 ? (double)(bytes + (m->st.bytes_data_raw -
	    m->data_raw_iter_start) - (m->st.bytes_data -
	    m->data_iter_start)) * 1e3 / ms : 0;
	if (m->bucket.rate != 0) {
		/* The stop-and-copy is capped too: estimate at the cap
		 * (conservative when pages compress). */
		if (bw > (double)m->bucket.rate)
			bw = (double)m->bucket.rate;
		if (floor_bw > (double)m->bucket.rate)
			floor_bw = (double)m->bucket.rate;
	}
	if (bw < floor_bw)
		bw = floor_bw;
	if (src_iter_record(m, bytes, ms) != 0) {
		src_fail(m, "out of memory");
		return;
	}
	m->st.iterations++;
	if (m->paused) {
		src_send_final(m);
		return;
	}
	if ((rc = m->env->ops->dirty_fetch(m->dom, m->todo, 0)) != 0) {
		src_fail(m, "cannot read the dirty bitmap: %s", strerror(-rc));
		return;
	}
	src_observe(m, m->todo);
	bm_or(m->todo, m->next, m->pages);
	bm_zero(m->next, m->pages);
	dirty = bm_count(m->todo, m->pages);
	m->st.dirty_last = dirty;
	memset(&ie, 0, sizeof(ie));
	ie.iteration = m->st.iterations - 1;
	ie.pages_sent = m->iters[ie.iteration].pages;
	ie.dirty = dirty;
	if ((rc = src_send_barrier(m, &ie)) != 0) {
		src_fail(m, "cannot end iteration %u on the streams: %s",
		    ie.iteration, strerror(-rc));
		return;
	}
	(void)src_send(m, buf, proto_enc_iter_end(buf, sizeof(buf), &ie));
	m->est_data_ms = ((double)dirty * PROTO_PAGE_SIZE +
	    (double)src_sockq(m)) * 1e3 / bw;
	hand = (h = src_handover_find(m)) != NULL ? h->ms : 0;
	est_ms = m->est_data_ms + hand;
	if (m->st.iterations > 1 && dirty * 10 >= m->dirty_prev * 9)
		m->no_progress++;
	else
		m->no_progress = 0;
	progress = pace_progress(m->st.iterations - 1, dirty, m->dirty_prev,
	    bytes);
	m->dirty_prev = dirty;
	stop = dirty == 0 || est_ms <= m->o.downtime_ms ||
	    m->st.iterations >= m->o.max_iters ||
	    (double)m->data_bytes > m->o.max_bytes_factor *
	    (double)(m->pages * PROTO_PAGE_SIZE);
	if (!m->o.auto_converge || m->throttle_broken)
		stop = stop || m->no_progress >= 1;
	else if (!stop && !progress) {
		if (m->throttle_pct >= PACE_THROTTLE_MAX ||
		    src_throttle(m, pace_throttle_next(m->throttle_pct, 0)) != 0)
			stop = 1;
	}
	m->st.downtime_est_ms = est_ms;
	m->st.handover_est_ms = hand;
	m->st.handover_samples = h != NULL ? h->n : 0;
	log_info("migration %u: %s: iteration %u: %llu bytes in %.0f ms, "
	    "%llu pages dirty, estimated downtime %.1f ms (%.1f of it the "
	    "handover), throttle %u%%%s%s",
	    m->id, m->domain, m->st.iterations - 1, (unsigned long long)bytes,
	    ms, (unsigned long long)dirty, est_ms, hand, m->throttle_pct,
	    m->known != NULL && ygate_closed(&m->yg) ?
	    ", content lookups sampled (low yield)" : "",
	    stop ? ": stop and copy" : "");
	if (stop) {
		src_stop_and_copy(m);
		return;
	}
	src_hold_hot(m);
	src_start_iteration(m);
}

/* Pause the guest and send what is still dirty, as a last iteration. */
static void
src_stop_and_copy(struct mig_src *m)
{
	uint64_t *fin;
	int rc;

	/* Written before the pause: a crash in between unpauses a running
	 * guest at recovery, which is harmless. */
	(void)journal_write(m, "paused");
	if ((rc = m->env->ops->pause(m->dom)) != 0) {
		src_fail(m, "cannot pause the guest: %s", strerror(-rc));
		return;
	}
	m->paused = 1;
	clock_gettime(CLOCK_MONOTONIC, &m->t_pause);
	log_debug("migration %u: %s: paused", m->id, m->domain);
	if ((fin = bm_alloc(m->pages)) == NULL) {
		src_fail(m, "out of memory");
		return;
	}
	if ((rc = m->env->ops->dirty_fetch(m->dom, fin, 1)) != 0) {
		free(fin);
		src_fail(m, "cannot read the final dirty bitmap: %s",
		    strerror(-rc));
		return;
	}
	bm_or(m->todo, fin, m->pages);
	free(fin);
	src_start_iteration(m);
}

/*
 * An advice session: offer every page, count what the destination holds,
 * then END; READY ends it (no pages, no pause, no GO).
 */
static void
src_pump_advise(struct mig_src *m)
{
	uint8_t buf[64];
	struct proto_end e;
	int rc;

	if (m->ocursor < src_vend(m) && src_outq_max(m) < SRC_OUT_HIGH &&
	    m->batches - m->batches_answered < SRC_OFFER_INFLIGHT) {
		/* One batch per loop turn; more when this one is out. */
		if ((rc = src_offer_batch(m)) != 0) {
			src_fail(m, "hashing pages for the offer: %s",
			    strerror(-rc));
			return;
		}
		src_kick(m);
		return;
	}
	if (m->ocursor < src_vend(m) || m->batches_answered < m->batches ||
	    m->state == MS_FINAL)
		return;
	memset(&e, 0, sizeof(e));
	if (src_send(m, buf, proto_enc_end(buf, sizeof(buf), REC_END,
	    &e)) != 0) {
		src_fail(m, "cannot send END");
		return;
	}
	m->state = MS_FINAL;
	link_set_phase(m->link, PH_FINAL);
}

/*
 * The bandwidth cap: charge what was queued since the last call to the
 * token bucket; if it is in debt, arm the pump's timer for when it is
 * not and return 1 (hold production back: no busy waiting, no sleep).
 */
static int
src_paced(struct mig_src *m)
{
	uint64_t now, wait;
	struct timeval tv;

	if (m->bucket.rate == 0)
		return 0;
	now = mono_ns();
	pace_bucket_charge(&m->bucket, m->st.bytes_queued - m->charged, now);
	m->charged = m->st.bytes_queued;
	if ((wait = pace_bucket_wait_ns(&m->bucket, now)) == 0)
		return 0;
	wait = (wait + 999) / 1000;	/* microseconds, rounded up */
	tv.tv_sec = (time_t)(wait / 1000000);
	tv.tv_usec = (suseconds_t)(wait % 1000000);
	event_add(m->ev_pump, &tv);
	return 1;
}

/*
 * Produce records until the output buffer is full: OFFER batches (running
 * ahead, at most SRC_OFFER_INFLIGHT unanswered) and the iteration's pages
 * (up to what the answered offers cover), with a dirty-log sync every
 * SRC_SYNC_PAGES pages, and no faster than the bandwidth cap
 * (src_paced).  When every page is queued, wait for the buffer to drain,
 * then let the stop policy decide.
 */
static void
src_pump_iter(struct mig_src *m)
{
	struct timespec t0, now;
	uint64_t limit;
	int rc, progress;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (m->iter_flushing) {
		/*
		 * A live iteration ends once its pages have left the kernel
		 * too: the stop policy then measures the rate the link
		 * achieved, and the guest is not paused while earlier pages
		 * still queue ahead of the last ones (that time would be
		 * downtime).  The kernel has no event for it: look again
		 * every SRC_SOCKQ_POLL_US; the link's timeouts still apply.
		 */
		if (src_outq_max(m) != 0)
			return;
		if (!m->paused && src_sockq(m) > SRC_SOCKQ_SLACK) {
			struct timeval tv = { 0, SRC_SOCKQ_POLL_US };

			event_add(m->ev_pump, &tv);
			return;
		}
		src_iter_done(m);
		return;
	}
	if (m->o.advise) {
		src_pump_advise(m);
		return;
	}
	while (!src_paced(m)) {
		progress = 0;
		limit = src_offer_safe(m);
		/*
		 * Offers run ahead of the pages.  Pages come first: an offer
		 * is hashed when fewer than SRC_OFFER_EAGER are unanswered,
		 * or when the pages cannot go anyway (all sent up to what
		 * the answers cover, or the output buffer is full: hashing
		 * then overlaps the link's drain).  The HAVE for an offer
		 * comes back behind the pages queued before it, so the
		 * offers must cover more than the link holds.
		 */
		if (m->offering && m->ocursor < src_vend(m) &&
		    m->batches - m->batches_answered < (src_pass1_early(m) ?
		    SRC_OFFER_PASS0 : SRC_OFFER_INFLIGHT) &&
		    (m->batches - m->batches_answered < SRC_OFFER_EAGER ||
		    (m->cursor >= limit && !src_pass1_early(m)) ||
		    src_outq_max(m) >= SRC_OUT_HIGH)) {
			if ((rc = src_offer_batch(m)) != 0) {
				src_fail(m, "hashing pages for the offer: %s",
				    strerror(-rc));
				return;
			}
			progress = 1;
		}
		if (m->offering && m->ocursor >= src_vend(m) &&
		    m->batches_answered == m->batches)
			m->offering = 0;
		if (src_outq_max(m) < SRC_OUT_HIGH && m->cursor < limit) {
			if ((rc = src_iter_batch(m, limit)) != 0) {
				src_fail(m, "sending pages: %s", strerror(-rc));
				return;
			}
			progress = 1;
		}
		if (!m->paused && m->since_sync >= SRC_SYNC_PAGES &&
		    (rc = src_dirty_sync(m)) != 0) {
			src_fail(m, "cannot read the dirty bitmap: %s",
			    strerror(-rc));
			return;
		}
		if (!progress) {
			if (m->offering && m->cursor >= limit &&
			    src_outq_max(m) < SRC_OUT_HIGH && !m->waiting) {
				m->waiting = 1;
				clock_gettime(CLOCK_MONOTONIC, &m->t_wait);
			}
			break;
		}
		/* Let the loop write what is queued and hear the peer: a slow
		 * hash (a big guest, an emulated CPU) must not starve I/O. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ts_ms(&t0, &now) > SRC_SLICE_MS) {
			src_kick(m);
			return;
		}
	}
	if (m->cursor >= src_vend(m) && !m->offering) {
		/* Everything queued: wait until it has left the buffer. */
		m->iter_flushing = 1;
		if (m->paused) {
			/* Nothing to wait for while paused. */
			src_iter_done(m);
			return;
		}
		src_set_drain_mark(m, 0);
		if (src_outq_max(m) == 0)
			src_kick(m);
	}
}

static void
src_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mig_src *m = arg;

	if (mig_src_terminal(m) || m->link == NULL)
		return;
	switch (m->state) {
	case MS_ITERATING:
	case MS_STOPCOPY:
		src_pump_iter(m);
		if (!mig_src_terminal(m) && m->state != MS_FINAL &&
		    !m->iter_flushing)
			src_set_drain_mark(m, SRC_OUT_LOW);
		break;
	default:
		break;
	}
}

static void
src_on_drain(struct link *l, void *arg)
{
	struct mig_src *m = arg;

	src_pump_cb(-1, 0, m);
}

/* The destination could not fill these pages: send their contents. */
static void
src_on_need(struct mig_src *m, const struct proto_pfn_list *nl)
{
	uint64_t pfns[PROTO_PAGE_BATCH_MAX];
	void *pages[PROTO_PAGE_BATCH_MAX];
	const void *ptrs[PROTO_PAGE_BATCH_MAX];
	struct hv_map *map;
	uint32_t i, j, n, k;
	int rc;

	for (i = 0; i < nl->count; i += n) {
		n = nl->count - i < PROTO_PAGE_BATCH_MAX ?
		    nl->count - i : PROTO_PAGE_BATCH_MAX;
		for (j = 0; j < n; j++)
			pfns[j] = proto_pfn_at(nl->pfns, i + j);
		if ((rc = m->env->ops->map(m->dom, pfns, n, 0, pages,
		    &map)) != 0) {
			src_fail(m, "NEED: cannot map pages: %s",
			    strerror(-rc));
			return;
		}
		for (j = k = 0; j < n; j++) {
			if (pages[j] == NULL)
				continue;
			pfns[k] = pfns[j];
			ptrs[k++] = pages[j];
		}
		rc = src_send_data(m, pfns, ptrs, k);
		m->env->ops->unmap(m->dom, map);
		if (rc != 0) {
			src_fail(m, "NEED: %s", strerror(-rc));
			return;
		}
		m->st.pages_need += k;
	}
}

static void
src_on_ready(struct mig_src *m, const struct proto_end *e)
{
	uint8_t buf[64];
	char a[65], b[65];

	if (m->o.advise) {
		src_finish(m, MS_COMPLETED);
		return;
	}
	if (e->flags & PROTO_END_VERIFY) {
		memcpy(m->sha_dst, e->memory_sha256, 32);
		m->have_sha_dst = 1;
	}
	if (m->o.verify) {
		if (!m->have_sha_dst) {
			src_fail(m, "verify: the destination sent no digest");
			return;
		}
		if (memcmp(m->dg.sha256, m->sha_dst, 32) != 0) {
			ph_hex(m->dg.sha256, a);
			ph_hex(m->sha_dst, b);
			src_fail(m, "verify: memory differs: source %s, "
			    "destination %s", a, b);
			return;
		}
	}
	log_debug("migration %u: %s: READY", m->id, m->domain);
	/* Journaled before GO can leave: after a crash we must not resume a
	 * guest that may already run on the destination. */
	if (journal_write(m, "go-sent") != 0) {
		src_fail(m, "cannot journal the handover; not sending GO");
		return;
	}
	if (src_send(m, buf, proto_enc_go(buf, sizeof(buf))) != 0) {
		src_fail(m, "cannot send GO");
		return;
	}
	/* From here on a lost link is ambiguous (I5). */
	m->go_sent = 1;
	m->state = MS_HANDOVER;
	link_set_phase(m->link, PH_HANDOVER);
}

static void
src_on_running(struct mig_src *m, const struct proto_running *r)
{
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &now);
	m->st.downtime_ms = ts_ms(&m->t_pause, &now);
	src_handover_learn(m);
	log_debug("migration %u: %s: RUNNING", m->id, m->domain);
	m->st.cpu_dest_s = (double)r->cpu_dest_us / 1e6;
	m->st.refs_failed_dest = r->refs_failed;
	src_sample_wire(m);
	/* The guest runs on the destination: now the source copy goes. */
	rc = m->env->ops->destroy(m->dom);
	m->dom = NULL;
	m->paused = 0;
	m->logdirty = 0;
	if (rc != 0)
		log_err("migration %u: %s: the guest runs on %s but its "
		    "source copy could not be destroyed: %s", m->id,
		    m->domain, m->dest, strerror(-rc));
	src_finish(m, MS_COMPLETED);
}

static void
src_on_record(struct link *l, const struct proto_rec *r, void *arg)
{
	struct mig_src *m = arg;

	switch (r->type) {
	case REC_HELLO:
		src_on_hello(m, &r->u.hello);
		break;
	case REC_ERROR:
		src_fail(m, "destination refused: %s", r->u.error.msg);
		break;
	case REC_DOMAIN_ACK:
		if (m->state != MS_INFO) {
			src_fail(m, "unexpected DOMAIN_ACK");
			break;
		}
		src_on_domain_ack(m, &r->u.domain_ack);
		break;
	case REC_FILTER:
		src_on_filter(m, &r->u.filter);
		break;
	case REC_HAVE:
		src_on_have(m, &r->u.have);
		break;
	case REC_NEED:
		src_on_need(m, &r->u.pfn_list);
		break;
	case REC_READY:
		src_on_ready(m, &r->u.end);
		break;
	case REC_RUNNING:
		src_on_running(m, &r->u.running);
		break;
	default:
		src_fail(m, "unexpected %s record", proto_type_name(r->type));
		break;
	}
}

/* ---- life cycle ---- */

/* 16 hex digits at s (big-endian) into *out.  0 or -1 on a bad digit. */
static int
hex64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int i, c;

	for (i = 0; i < 16; i++) {
		c = s[i];
		if (c >= '0' && c <= '9')
			c -= '0';
		else if (c >= 'a' && c <= 'f')
			c -= 'a' - 10;
		else
			return -1;
		v = v << 4 | (uint64_t)c;
	}
	*out = v;
	return 0;
}

/*
 * Ask this host's destd, which owns the host's index, which pages of the
 * domain are shared (count >= 2): the candidates of the "shared" policy.
 */
static int
src_query_shared(struct mig_src *m, uint64_t *bm, char *err, size_t errlen)
{
	struct json_object *req, *rep = NULL, *v;
	const char *hex;
	size_t len, i, words;
	int rc;

	if (m->env->index_socket == NULL) {
		snprintf(err, errlen, "--dedup shared and --order unique-first "
		    "need the host index: start sourced with --index SOCKET "
		    "(the local destd's control socket)");
		return -ENOENT;
	}
	req = json_object_new_object();
	json_object_object_add(req, "cmd", json_object_new_string("index-shared"));
	json_object_object_add(req, "domid", json_object_new_int64(m->info.domid));
	json_object_object_add(req, "pages", json_object_new_int64((int64_t)m->pages));
	rc = ctl_call(m->env->index_socket, req, 10000, &rep);
	json_object_put(req);
	if (rc != 0) {
		snprintf(err, errlen, "host index at %s: %s",
		    m->env->index_socket, strerror(-rc));
		return rc;
	}
	if (!json_object_object_get_ex(rep, "bitmap", &v) ||
	    (hex = json_object_get_string(v)) == NULL) {
		snprintf(err, errlen, "host index: %s",
		    json_object_object_get_ex(rep, "error", &v) ?
		    json_object_get_string(v) : "bad reply");
		json_object_put(rep);
		return -EBADMSG;
	}
	words = bm_words(m->pages);
	len = strlen(hex);
	if (len != words * 16) {
		snprintf(err, errlen, "host index: bitmap of %zu hex digits, "
		    "expected %zu", len, words * 16);
		json_object_put(rep);
		return -EBADMSG;
	}
	for (i = 0; i < words; i++)
		if (hex64(hex + i * 16, &bm[i]) != 0) {
			snprintf(err, errlen, "host index: bad hex in bitmap");
			json_object_put(rep);
			return -EBADMSG;
		}
	json_object_put(rep);
	return 0;
}

/*
 * Fetch the host index's fingerprint and digest prefix of the guest's
 * pages held once on this host (destd's index-keys, SRC_KEYS_CHUNK pfns,
 * destd's maximum, a request) for keyed offers (src_offer_prefix).  The
 * keys come as raw octets after the reply's line (16 a page: 2 MiB for
 * a 512 MiB guest; the hex JSON form, twice the size and parsed by
 * json-c, took 40-50 ms, which iteration 0 waited for).  This runs on a
 * thread of its own while the connection, TLS and the destination's
 * domain are set up, and src_keys_join() waits for it before the first
 * offer.  It touches only kfp, kpre and keys_*.  Without the keys (no
 * index, the guest not indexed yet, an error) every offered page is
 * hashed: never a reason to fail the migration.
 */
#define SRC_KEYS_CHUNK	131072

static void *
src_keys_main(void *arg)
{
	struct mig_src *m = arg;
	struct json_object *req, *rep = NULL, *v;
	struct timespec t0, t1;
	uint64_t first, cnt, i, le;
	const uint8_t *p;
	void *data = NULL;
	size_t len;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (first = 0; first < m->pages; first += cnt) {
		cnt = m->pages - first < SRC_KEYS_CHUNK ? m->pages - first :
		    SRC_KEYS_CHUNK;
		req = json_object_new_object();
		json_object_object_add(req, "cmd",
		    json_object_new_string("index-keys"));
		json_object_object_add(req, "domid",
		    json_object_new_int64(m->info.domid));
		json_object_object_add(req, "first",
		    json_object_new_int64((int64_t)first));
		json_object_object_add(req, "count",
		    json_object_new_int64((int64_t)cnt));
		json_object_object_add(req, "binary",
		    json_object_new_boolean(1));
		rc = ctl_call_data(m->env->index_socket, req, 10000,
		    (size_t)cnt * 16, &rep, &data, &len);
		json_object_put(req);
		if (rc != 0) {
			snprintf(m->keys_why, sizeof(m->keys_why), "%s",
			    strerror(-rc));
			return NULL;
		}
		if (json_object_object_get_ex(rep, "indexed", &v) &&
		    !json_object_get_boolean(v)) {
			snprintf(m->keys_why, sizeof(m->keys_why),
			    "the guest is not indexed yet");
			goto out;
		}
		if (len != cnt * 16) {
			snprintf(m->keys_why, sizeof(m->keys_why),
			    "bad reply: %zu octets of keys for %llu pages "
			    "(an older destd?)", len,
			    (unsigned long long)cnt);
			goto out;
		}
		for (i = 0, p = data; i < cnt; i++, p += 16) {
			memcpy(&le, p, 8);
			m->kfp[first + i] = le64toh(le);
			memcpy(m->kpre[first + i], p + 8, 8);
		}
		json_object_put(rep);
		rep = NULL;
		free(data);
		data = NULL;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	m->keys_ms = ts_ms(&t0, &t1);
	m->keys_ok = 1;
out:
	json_object_put(rep);
	free(data);
	return NULL;
}

static void
src_keys_start(struct mig_src *m)
{
	int rc;

	if ((m->kfp = malloc(m->pages * sizeof(*m->kfp))) == NULL ||
	    (m->kpre = malloc(m->pages * 8)) == NULL ||
	    (m->keyed = bm_alloc(m->pages)) == NULL) {
		snprintf(m->keys_why, sizeof(m->keys_why), "out of memory");
		return;
	}
	if ((rc = pthread_create(&m->keys_thread, NULL, src_keys_main,
	    m)) != 0) {
		log_warn("migration %u: %s: no thread for the host index keys "
		    "(%s): fetching them now", m->id, m->domain,
		    strerror(rc));
		src_keys_main(m);
		return;
	}
	m->keys_running = 1;
}

/*
 * Wait for src_keys_main (a no-op once done); without keys, free the
 * arrays (no keyed offer).
 */
static void
src_keys_join(struct mig_src *m)
{
	if (m->keys_running) {
		pthread_join(m->keys_thread, NULL);
		m->keys_running = 0;
		if (m->keys_ok)
			log_info("migration %u: %s: host index keys in %.1f ms",
			    m->id, m->domain, m->keys_ms);
	}
	if (m->kpre == NULL || m->keys_ok)
		return;
	log_info("migration %u: %s: host index keys unavailable (%s): every "
	    "offered page is hashed", m->id, m->domain, m->keys_why);
	free(m->kfp);
	free(m->kpre);
	free(m->keyed);
	m->kfp = m->keyed = NULL;
	m->kpre = NULL;
}

/*
 * Iteration 0's order (src_vnext).  Unique-first needs to know which
 * pages are shared on this host: the candidates of --dedup shared, else
 * the host index.  Without an index the default falls back to pfn order;
 * an explicit --order unique-first fails.
 */
static int
src_alloc_order(struct mig_src *m, char *err, size_t errlen)
{
	int rc;

	if (m->o.order == MIG_ORDER_PFN || m->o.advise)
		goto pfn;
	if ((m->order = bm_alloc(m->pages)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (m->o.dedup == PROTO_DEDUP_SHARED) {
		memcpy(m->order, m->cand, bm_words(m->pages) * 8);
	} else if (m->o.order == MIG_ORDER_DEFAULT &&
	    m->env->index_socket == NULL) {
		log_info("migration %u: %s: no host index (--index): "
		    "iteration 0 goes in pfn order", m->id, m->domain);
		goto pfn;
	} else if ((rc = src_query_shared(m, m->order, err, errlen)) != 0) {
		if (m->o.order == MIG_ORDER_UNIQUE_FIRST)
			return rc;
		log_warn("migration %u: %s: %s: iteration 0 goes in pfn "
		    "order", m->id, m->domain, err);
		err[0] = '\0';
		goto pfn;
	}
	m->o.order = MIG_ORDER_UNIQUE_FIRST;
	m->st.pages_first = m->pages - bm_count(m->order, m->pages);
	if (m->st.pages_first == m->pages) {
		/* Nothing shared here: one pass, which is pfn order. */
		free(m->order);
		m->order = NULL;
	}
	return 0;
pfn:
	free(m->order);
	m->order = NULL;
	m->o.order = MIG_ORDER_PFN;
	return 0;
}

static int
src_alloc(struct mig_src *m, char *err, size_t errlen)
{
	uint64_t words = bm_words(m->pages);
	int rc;

	if ((m->todo = bm_alloc(m->pages)) == NULL ||
	    (m->holes = bm_alloc(m->pages)) == NULL ||
	    (m->next = bm_alloc(m->pages)) == NULL ||
	    (m->tmp = bm_alloc(m->pages)) == NULL ||
	    (m->seen = bm_alloc(m->pages)) == NULL ||
	    (m->seen_prev = bm_alloc(m->pages)) == NULL ||
	    (m->hot = bm_alloc(m->pages)) == NULL)
		goto nomem;
	if (m->o.dedup == PROTO_DEDUP_NONE) {
		m->o.order = MIG_ORDER_PFN;
		return 0;
	}
	if ((m->known = dmap_new((size_t)m->pages)) == NULL ||
	    (m->cand = bm_alloc(m->pages)) == NULL ||
	    (m->hashed = bm_alloc(m->pages)) == NULL ||
	    (m->have = bm_alloc(m->pages)) == NULL ||
	    (m->zero = bm_alloc(m->pages)) == NULL ||
	    (m->digests = malloc((size_t)m->pages * 32)) == NULL)
		goto nomem;
	ygate_init(&m->yg);
	if (m->o.dedup == PROTO_DEDUP_ALL) {
		memset(m->cand, 0xff, words * 8);
		if (m->pages % 64)
			m->cand[words - 1] = (1ull << (m->pages % 64)) - 1;
	} else {
		if ((rc = src_query_shared(m, m->cand, err, errlen)) != 0)
			return rc;
		log_info("migration %u: %s: %llu pages shared on this host "
		    "are offered", m->id, m->domain,
		    (unsigned long long)bm_count(m->cand, m->pages));
	}
	if ((rc = src_alloc_order(m, err, errlen)) != 0)
		return rc;
	/* With --dedup shared every candidate is shared here: none is
	 * keyed. */
	if (m->o.dedup == PROTO_DEDUP_ALL && m->env->index_socket != NULL)
		src_keys_start(m);
	return 0;
nomem:
	snprintf(err, errlen, "out of memory for a %llu-page domain",
	    (unsigned long long)m->pages);
	return -ENOMEM;
}

int
mig_src_start(struct src_env *env, uint32_t id, const char *domain,
    const char *dest, const struct mig_opts *o, mig_done_cb done, void *arg,
    struct mig_src **out, char *err, size_t errlen)
{
	struct mig_src *m;
	int rc;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->id = id;
	m->env = env;
	m->o = *o;
	m->done = done;
	m->done_arg = arg;
	m->est_data_ms = -1;	/* no stop decision yet */
	m->state = MS_CONNECTING;
	snprintf(m->domain, sizeof(m->domain), "%s", domain);
	snprintf(m->dest, sizeof(m->dest), "%s", dest);
	clock_gettime(CLOCK_MONOTONIC, &m->t_start);
	m->cpu_start = thread_cpu_s();

	m->nstreams = 1;
	if (m->o.streams < 1)
		m->o.streams = 1;
	if (m->o.streams > PROTO_STREAMS_MAX) {
		snprintf(err, errlen, "streams: 1 to %u", PROTO_STREAMS_MAX);
		rc = -EINVAL;
		goto fail;
	}
	if (m->o.advise)
		m->o.streams = 1;	/* hashes only: one connection */
	if ((rc = net_parse_addr(dest, 8002, &m->addr)) != 0) {
		snprintf(err, errlen, "bad destination '%s': %s", dest,
		    rc == -EINVAL ? "expected HOST:PORT" : "cannot resolve");
		goto fail;
	}
	if ((rc = env->ops->dom_open(env->hv, domain, &m->dom)) != 0) {
		snprintf(err, errlen, rc == -ENOENT ? "no domain '%s'" :
		    rc == -EOPNOTSUPP ? "domain '%s' cannot be migrated by "
		    "this backend (PV guests need shadow paging)" :
		    "cannot open domain '%s'", domain);
		goto fail;
	}
	if ((rc = env->ops->dom_info(m->dom, &m->info)) != 0) {
		snprintf(err, errlen, "cannot read domain '%s': %s", domain,
		    strerror(-rc));
		goto fail;
	}
	if (m->o.advise) {
		/* Nothing but hashes goes, and the guest is not touched. */
		m->o.dedup = PROTO_DEDUP_ALL;
		m->o.bandwidth = 0;
		m->o.auto_converge = 0;
	}
	pace_bucket_init(&m->bucket, m->o.bandwidth, mono_ns());
	if ((m->info.flags & HV_DOM_PAUSED) && !m->o.advise) {
		snprintf(err, errlen, "domain '%s' is paused; unpause it or "
		    "migrate it cold", domain);
		rc = -EBUSY;
		goto fail;
	}
	m->pages = m->info.pages;
	m->st.pages_total = m->pages;
	if (m->o.zero_pages == MIG_ZERO_DEFAULT)
		m->o.zero_pages = m->o.dedup == PROTO_DEDUP_NONE ?
		    MIG_ZERO_SEND : MIG_ZERO_ELIDE;
	if (m->o.advise)
		m->o.compress = PROTO_COMPRESS_NONE;
	if ((rc = src_alloc(m, err, errlen)) != 0)
		goto fail;
	if (m->o.compress != PROTO_COMPRESS_NONE &&
	    ((m->pc = pcomp_new((uint32_t)m->o.compress)) == NULL ||
	    (m->zin = malloc((size_t)SRC_BATCH * PROTO_PAGE_SIZE)) == NULL ||
	    (m->zout = malloc((size_t)SRC_BATCH * PROTO_PAGE_SIZE)) == NULL ||
	    (m->zrec = malloc(SRC_ZREC_CAP)) == NULL)) {
		snprintf(err, errlen, "cannot set up %s compression: %s",
		    pcomp_name((uint32_t)m->o.compress), errno == EINVAL ?
		    "unknown method" : "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	m->ev_pump = event_new(env->base, -1, 0, src_pump_cb, m);
	if (m->ev_pump == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}

	if ((rc = src_connect(m, &src_link_cbs, m, &m->link, err,
	    errlen)) != 0)
		goto fail;
	log_info("migration %u: %s -> %s started (dedup %s, compress %s, "
	    "zero pages %s, %s order%s%s%s, bandwidth %llu bytes/s, "
	    "%u stream%s)", id, domain, dest,
	    dedup_name(m->o.dedup), pcomp_name((uint32_t)m->o.compress),
	    m->o.zero_pages == MIG_ZERO_ELIDE ? "elided" : "sent",
	    m->o.order == MIG_ORDER_UNIQUE_FIRST ? "unique-first" : "pfn",
	    o->verify ? ", verify" : "", o->paused ? ", paused" : "",
	    o->auto_converge ? ", auto-converge" : "",
	    (unsigned long long)m->bucket.rate, m->o.streams,
	    m->o.streams == 1 ? "" : "s");
	*out = m;
	return 0;
fail:
	m->state = MS_FAILED;
	mig_src_free(m);
	return rc;
}

/* A terminal job made from a journal entry. */
static struct mig_src *
src_recovered(struct src_env *env, uint32_t id, const char *domain,
    const char *dest, enum mig_state st, const char *error)
{
	struct mig_src *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->id = id;
	m->env = env;
	m->state = st;
	snprintf(m->domain, sizeof(m->domain), "%s", domain);
	snprintf(m->dest, sizeof(m->dest), "%s", dest);
	snprintf(m->error, sizeof(m->error), "%s", error);
	return m;
}

/*
 * A journal entry that says a throttle was left on: take it off (the
 * guest keeps running here, or stays paused and should run at full speed
 * if it is ever resumed).
 */
static void
recover_unthrottle(struct src_env *env, struct hv_dom *d,
    struct json_object *o, const char *domain)
{
	struct json_object *v;
	uint64_t saved = 0;
	int rc;

	if (!json_object_object_get_ex(o, "throttled", &v) ||
	    !json_object_get_boolean(v))
		return;
	if (json_object_object_get_ex(o, "throttle_saved", &v))
		saved = json_object_get_uint64(v);
	if ((rc = env->ops->throttle(d, 0, &saved)) != 0)
		log_err("recovery: %s: cannot remove the auto-converge "
		    "throttle a migration left: %s", domain, strerror(-rc));
	else
		log_notice("recovery: %s: removed the auto-converge throttle "
		    "a migration left", domain);
}

struct src_recover {
	struct src_env	*env;
	uint32_t	*next_id;
	void		(*add)(struct mig_src *m, void *arg);
	void		*arg;
	int		 count;
};

static void
src_recover_one(const char *file, struct json_object *o, void *arg)
{
	struct src_recover *rv = arg;
	struct src_env *env = rv->env;
	const char *domain, *dest, *state;
	struct hv_dom *d;
	struct mig_src *m = NULL;
	int rc, exists;

	if (ctl_get_str(o, "domain", &domain) != 1 ||
	    ctl_get_str(o, "destination", &dest) != 1 ||
	    ctl_get_str(o, "state", &state) != 1) {
		log_err("journal entry %s/%s.json is unreadable; left for the "
		    "operator", env->journal_dir, file);
		return;
	}
	exists = env->ops->dom_open(env->hv, domain, &d) == 0;
	if (exists)
		recover_unthrottle(env, d, o, domain);
	if (strcmp(state, "logdirty") == 0) {
		/* Died while the guest ran: only log-dirty to undo. */
		if (exists)
			(void)env->ops->logdirty_disable(d);
		m = src_recovered(env, (*rv->next_id)++, domain, dest,
		    MS_FAILED, "sourced restarted during the migration; the "
		    "guest kept running on this host");
		(void)journal_del(env->journal_dir, file);
	} else if (strcmp(state, "paused") == 0) {
		/* Died before GO: the destination never ran it. */
		if (exists) {
			(void)env->ops->logdirty_disable(d);
			rc = env->ops->unpause(d);
			if (rc != 0)
				log_err("recovery: %s: cannot resume the "
				    "guest: %s", domain, strerror(-rc));
			else
				log_notice("recovery: %s was paused by a "
				    "migration to %s that never handed over; "
				    "resumed here", domain, dest);
		}
		m = src_recovered(env, (*rv->next_id)++, domain, dest,
		    MS_FAILED, exists ? "sourced restarted during the "
		    "migration; the guest was resumed on this host" :
		    "sourced restarted during the migration; the domain is "
		    "gone from this host");
		(void)journal_del(env->journal_dir, file);
	} else if (exists) {
		/* GO may have reached the destination. */
		log_err("recovery: %s: sourced restarted after GO to %s; the "
		    "outcome is unknown and the source copy stays paused: "
		    "check the destination, then destroy one copy", domain,
		    dest);
		m = src_recovered(env, (*rv->next_id)++, domain, dest,
		    MS_AMBIGUOUS, "sourced restarted after GO: the handover's "
		    "outcome is unknown; the source copy is kept paused");
		/* The journal entry stays until the copy is gone. */
	} else {
		/* The operator settled it: the copy here is gone. */
		(void)journal_del(env->journal_dir, file);
	}
	if (exists)
		env->ops->dom_close(d);
	if (m != NULL) {
		rv->add(m, rv->arg);
		rv->count++;
	}
}

int
mig_src_recover(struct src_env *env, uint32_t *next_id,
    void (*add)(struct mig_src *m, void *arg), void *arg)
{
	struct src_recover rv = { env, next_id, add, arg, 0 };
	int rc;

	if (env->journal_dir == NULL)
		return 0;
	if ((rc = journal_each(env->journal_dir, src_recover_one, &rv)) < 0)
		return rc;
	return rv.count;
}

int
mig_src_set_bandwidth(struct mig_src *m, uint64_t rate)
{
	if (mig_src_terminal(m))
		return -EALREADY;
	if (m->o.advise)
		return 0;
	/* Charge what went at the old rate first. */
	pace_bucket_charge(&m->bucket, m->st.bytes_queued - m->charged,
	    mono_ns());
	m->charged = m->st.bytes_queued;
	pace_bucket_set_rate(&m->bucket, rate, mono_ns());
	m->o.bandwidth = rate;
	log_info("migration %u: %s: bandwidth cap %llu bytes/s%s", m->id,
	    m->domain, (unsigned long long)rate, rate ? "" : " (none)");
	/* A pump held back by the old cap re-checks the new one. */
	if (m->ev_pump != NULL)
		src_kick(m);
	return 0;
}

int
mig_src_cancel(struct mig_src *m)
{
	if (mig_src_terminal(m))
		return -EALREADY;
	if (m->go_sent)
		return -EBUSY;
	snprintf(m->error, sizeof(m->error), "cancelled by the operator");
	src_finish(m, MS_CANCELLED);
	return 0;
}

void
mig_src_free(struct mig_src *m)
{
	if (m == NULL)
		return;
	link_free(m->link);
	for (unsigned i = 1; i < PROTO_STREAMS_MAX; i++)
		link_free(m->ss[i].link);
	if (m->ev_ka != NULL)
		event_free(m->ev_ka);
	if (m->ev_pump != NULL)
		event_free(m->ev_pump);
	if (m->dom != NULL)
		m->env->ops->dom_close(m->dom);
	src_release(m);
	free(m->iters);
	free(m);
}

uint32_t
mig_src_id(const struct mig_src *m)
{
	return m->id;
}

enum mig_state
mig_src_state(const struct mig_src *m)
{
	return m->state;
}

int
mig_src_is_advise(const struct mig_src *m)
{
	return m->o.advise;
}

int
mig_src_terminal(const struct mig_src *m)
{
	return m->state >= MS_COMPLETED;
}

static void
json_add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

static void
json_add_double(struct json_object *o, const char *k, double v, int prec)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.*f", prec, v);
	json_object_object_add(o, k, json_object_new_double_s(v, buf));
}

/* [{"iteration":0,"pages":N,"bytes":N,"ms":F}, ...]: finished ones. */
static struct json_object *
src_iter_json(const struct mig_src *m)
{
	struct json_object *a = json_object_new_array(), *e;
	unsigned i;

	for (i = 0; i < m->st.iterations && m->iters != NULL; i++) {
		e = json_object_new_object();
		json_object_object_add(e, "iteration",
		    json_object_new_int64(i));
		json_add_u64(e, "pages", m->iters[i].pages);
		json_add_u64(e, "bytes", m->iters[i].bytes);
		json_add_double(e, "ms", m->iters[i].ms, 1);
		json_object_array_add(a, e);
	}
	return a;
}

/*
 * The job as JSON.  Field names are a documented interface
 * (docs/CONTROL.md); add fields, never rename.
 */
struct json_object *
mig_src_json(const struct mig_src *m)
{
	struct json_object *o = json_object_new_object();
	struct timespec now;
	double total = m->st.total_ms;
	char hex[65];

	if (!mig_src_terminal(m)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		total = ts_ms(&m->t_start, &now);
	}
	json_object_object_add(o, "id", json_object_new_int64(m->id));
	json_object_object_add(o, "status",
	    json_object_new_string(mig_state_name(m->state)));
	json_object_object_add(o, "domain", json_object_new_string(m->domain));
	json_object_object_add(o, "destination",
	    json_object_new_string(m->dest));
	json_object_object_add(o, "dedup",
	    json_object_new_string(dedup_name(m->o.dedup)));
	json_add_u64(o, "pages_total", m->st.pages_total);
	json_add_u64(o, "pages_data", m->st.pages_data);
	json_add_u64(o, "pages_ref", m->st.pages_ref);
	json_add_u64(o, "pages_zero", m->st.pages_zero);
	json_add_u64(o, "pages_need", m->st.pages_need);
	json_add_u64(o, "pages_offered", m->st.pages_offered);
	json_add_u64(o, "order_first_pages", m->st.pages_first);
	json_add_u64(o, "pages_keyed", m->st.pages_keyed);
	json_add_u64(o, "pages_filtered", m->st.pages_filtered);
	json_add_u64(o, "pages_unlooked", m->st.pages_unlooked);
	json_add_u64(o, "pages_have", m->st.pages_have);
	if (m->o.advise) {
		json_object_object_add(o, "advise", json_object_new_boolean(1));
		json_add_double(o, "sharing", m->st.pages_total ?
		    (double)m->st.pages_have / (double)m->st.pages_total : 0, 4);
	}
	json_add_u64(o, "pages_unconfirmed", m->st.pages_unconfirmed);
	json_add_u64(o, "dirty_pages", m->st.dirty_last);
	{
		uint64_t wire = m->st.bytes_wire, now_w;
		int ok = 0;

		/* While it runs, read the sockets' counters now. */
		if (!mig_src_terminal(m)) {
			now_w = src_wire_now(m, &ok);
			if (ok)
				wire = now_w;
		}
		json_add_u64(o, "bytes_wire", wire);
	}
	/* Granted once the destination answered; asked for until then. */
	json_object_object_add(o, "streams", json_object_new_int64(
	    m->nstreams > 1 || (m->state > MS_INFO && m->nstreams == 1) ?
	    m->nstreams : m->o.streams ? m->o.streams : 1));
	json_add_u64(o, "bytes_queued", m->st.bytes_queued);
	json_object_object_add(o, "compress", json_object_new_string(
	    pcomp_name((uint32_t)m->o.compress)));
	json_object_object_add(o, "zero_pages", json_object_new_string(
	    m->o.zero_pages == MIG_ZERO_ELIDE ? "elide" : "send"));
	json_object_object_add(o, "order", json_object_new_string(
	    m->o.order == MIG_ORDER_UNIQUE_FIRST ? "unique-first" : "pfn"));
	json_add_u64(o, "bytes_data_raw", m->st.bytes_data_raw);
	json_add_u64(o, "bytes_data", m->st.bytes_data);
	json_object_object_add(o, "iterations",
	    json_object_new_int64(m->st.iterations));
	json_object_object_add(o, "iteration_stats", src_iter_json(m));
	json_add_double(o, "total_ms", total, 1);
	json_add_double(o, "downtime_ms", m->st.downtime_ms, 1);
	json_add_double(o, "downtime_estimate_ms", m->st.downtime_est_ms, 1);
	json_add_double(o, "handover_estimate_ms", m->st.handover_est_ms, 1);
	json_add_u64(o, "handover_samples", m->st.handover_samples);
	json_add_double(o, "cpu_source_s", m->st.cpu_source_s, 3);
	json_add_double(o, "cpu_dest_s", m->st.cpu_dest_s, 3);
	json_add_u64(o, "refs_failed_dest", m->st.refs_failed_dest);
	json_add_double(o, "offer_wait_ms", m->st.offer_wait_ms, 1);
	json_add_u64(o, "bandwidth", m->o.bandwidth);
	json_object_object_add(o, "auto_converge",
	    json_object_new_boolean(m->o.auto_converge));
	json_object_object_add(o, "throttle_pct",
	    json_object_new_int64(m->st.throttle_max));
	if (m->o.verify) {
		if (m->have_sha_src) {
			struct json_object *a = json_object_new_array();

			ph_hex(m->dg.sha256, hex);
			json_object_object_add(o, "memory_sha256_source",
			    json_object_new_string(hex));
			json_add_u64(o, "memory_pages_verified", m->dg.pages);
			for (size_t i = 0; i < m->dg.noutside; i++)
				json_object_array_add(a, json_object_new_int64(
				    (int64_t)m->dg.outside[i]));
			json_object_object_add(o, "memory_pfns_unverified", a);
		}
		if (m->have_sha_dst) {
			ph_hex(m->sha_dst, hex);
			json_object_object_add(o, "memory_sha256_dest",
			    json_object_new_string(hex));
		}
	}
	if (m->error[0] != '\0')
		json_object_object_add(o, "error",
		    json_object_new_string(m->error));
	return o;
}
