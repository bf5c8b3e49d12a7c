/*
 * mig_dst.c - the receiving side of a migration.  See mig_dst.h and
 * docs/PROTOCOL.md.  The handlers below appear in the order a session
 * meets them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#include "bitmap.h"
#include "ctl.h"
#include "journal.h"
#include "link.h"
#include "log.h"
#include "net.h"
#include "mig_dst.h"
#include "filler.h"
#include "pagehash.h"
#include "pcomp.h"
#include "hfilt.h"
#include "pfilt.h"
#include "pidx.h"
#include "proto.h"

/* OFFERs at the fill worker, at most; one more makes the event loop wait
 * for the worker (a drained queue: the link stalls while it waits).
 * sharemig's source keeps up to 16 OFFERs unanswered (SRC_OFFER_INFLIGHT):
 * with 4 here the micro benchmark at 82.8% shared took 1.30 s, with 16
 * 1.00 s.  A job holds about 25 bytes per entry (100 KiB at most). */
#define DST_FILL_QUEUE	16

/* One connection of a session: [0] is the main one (its link is
 * mig_dst.link), [1..streams-1] the data streams that JOINed. */
struct dst_stream {
	struct mig_dst	*s;
	struct link	*link;		/* data streams only */
	unsigned	 idx;
	int		 arrived;	/* at the current barrier, paused */
};

struct mig_dst {
	/* Read-only after creation. */
	uint32_t		 id;
	struct dst_env		*env;
	dst_done_cb		 done;
	void			*done_arg;

	/* Event-loop thread only. */
	enum dst_state		 state;
	char			 error[512];
	struct link		*link;
	struct event		*ev_ka;		/* keepalive timer */
	char			 peer[256];
	char			 peer_ip[64];	/* numeric, no port */
	char			 domain[HV_NAME_MAX];
	struct hv_dom		*dom;		/* the incoming domain */
	uint64_t		 pages;
	uint32_t		 flags;		/* PROTO_DI_* */
	uint32_t		 dedup;
	uint64_t		*unresolved;	/* REF fill failed, NEED sent */
	uint64_t		*recvd;		/* pfns the stream carried */
	uint64_t		 n_unresolved;
	struct fill_ctx		 fc;		/* PAGE_REF fills (this thread);
						 * fc.stale also counts the
						 * worker's rejected copies */
	struct filler		*filler;	/* OFFER fills (worker thread) */
	uint64_t		*pending;	/* pfns of OFFERs at the worker */
	struct event_base	*base;
	int			 end_seen;
	uint64_t		 unverified[PROTO_END_UNVERIFIED_MAX];
	uint32_t		 nunverified;	/* END's list, for --verify */
	int			 committed;
	int			 journaled;	/* a journal record exists */
	int			 advise;	/* dry run: OFFER/HAVE only */
	uint32_t		 compress;	/* PAGE_DATA method (0: raw) */
	struct pcomp		*pc;		/* its decompressor */
	uint8_t			*zbuf;		/* one record's pages */
	char			 cn[128];	/* peer certificate name */
	uint64_t		 peer_caps;	/* the source's HELLO */

	/*
	 * Several streams (docs/PROTOCOL.md "Several streams").  Each
	 * connection stops at ITER_END(epoch) (main: also END) until all
	 * have: records of different iterations are applied in the order
	 * the source sent them.
	 */
	unsigned		 streams;	/* granted; 1 = main only */
	uint8_t			 token[PROTO_TOKEN_LEN];
	struct dst_stream	 ds[PROTO_STREAMS_MAX];
	unsigned		 njoined;	/* data streams attached */
	uint32_t		 epoch;		/* barriers passed */
	unsigned		 narrived;
	int			 end_pending;	/* END waits for the barrier */
	struct proto_end	 end_rec;
	struct event		*ev_barrier;	/* a stalled barrier's deadline */
	uint64_t		 progress, progress_seen;	/* records */

	/* Statistics. */
	uint64_t		 pages_data, pages_zero, pages_ref;
	/*
	 * Set only when the backend created the domain zeroed
	 * (HV_DOM_ZEROED): the pages this session has mapped writable.  A
	 * ZERO record for a page not in it is counted and not written, so
	 * the page stays unallocated, as QEMU's RAM loader leaves an
	 * already-zero page alone.
	 */
	uint64_t		*touched;
	uint64_t		 zero_skipped;
	uint64_t		 bytes_data;	/* PAGE_DATA payload as received */
	uint64_t		 refs_filled, refs_failed;
	uint64_t		 offered, had;
	double			 cpu_start;
	double			 fill_cpu_s;	/* the fill worker's */
	struct timespec		 t_start;
};

static void	dst_fill_stop(struct mig_dst *s);
static void	dst_offer_done(struct fill_job *j, void *arg);
static void	dst_fill_wait(struct mig_dst *s, uint64_t pfn);
static void	dst_on_up(struct link *l, void *arg);
static void	dst_on_record(struct link *l, const struct proto_rec *r,
		    void *arg);
static void	dst_on_error(struct link *l, int err, const char *why,
		    void *arg);

static void	dst_on_stream_up(struct link *l, void *arg);
static void	dst_on_stream_record(struct link *l,
		    const struct proto_rec *r, void *arg);
static void	dst_on_stream_error(struct link *l, int err, const char *why,
		    void *arg);

static const struct link_cbs dst_link_cbs = {
	.on_up = dst_on_up,
	.on_record = dst_on_record,
	.on_drain = NULL,
	.on_error = dst_on_error,
};

/* A data stream's link, once JOIN handed it to its session. */
static const struct link_cbs dst_stream_cbs = {
	.on_up = dst_on_stream_up,
	.on_record = dst_on_stream_record,
	.on_drain = NULL,
	.on_error = dst_on_stream_error,
};

static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *
dst_name(const struct mig_dst *s)
{
	return s->domain[0] ? s->domain : "(no domain yet)";
}

/* ---- the in-flight journal ----
 *
 * A session writes JOURNAL/DOMAIN.json {"session","domain","peer",
 * "state"} once it has created the incoming domain ("building") and
 * before it commits on GO ("go").  The record goes when the session ends
 * with the domain settled: running (or paused on request) here after
 * RUNNING was sent, or destroyed before GO.  A destd that restarts reads
 * it back (mig_dst_recover) before it reaps half-built domains.
 */
static void
dst_journal(struct mig_dst *s, const char *state)
{
	struct json_object *o;
	int rc;

	if (s->env->journal_dir == NULL || s->advise)
		return;
	o = json_object_new_object();
	json_object_object_add(o, "session", json_object_new_int64(s->id));
	json_object_object_add(o, "domain", json_object_new_string(s->domain));
	json_object_object_add(o, "peer", json_object_new_string(s->peer));
	json_object_object_add(o, "state", json_object_new_string(state));
	/* Best effort: the guest's safety rests on the source's journal;
	 * this one only lets a restarted destd report what it left. */
	if ((rc = journal_put(s->env->journal_dir, s->domain, o)) != 0)
		log_warn("session %u: %s: cannot write the journal in %s: %s",
		    s->id, s->domain, s->env->journal_dir, strerror(-rc));
	json_object_put(o);
}

/*
 * End the session.  Before GO the half-built domain is destroyed (the
 * guest still runs on the source).  After GO we committed and started
 * the guest: it stays.
 */
static void
dst_finish(struct mig_dst *s, enum dst_state st)
{
	unsigned i;
	int rc;

	if (mig_dst_terminal(s))
		return;
	if (s->ev_ka != NULL)
		event_del(s->ev_ka);
	if (s->ev_barrier != NULL)
		event_del(s->ev_barrier);
	dst_fill_stop(s);
	if (st == DS_FAILED && s->dom != NULL && !s->committed) {
		rc = s->env->ops->destroy(s->dom);
		s->dom = NULL;
		if (rc != 0)
			log_err("session %u from %s: %s: cannot destroy the "
			    "half-built domain: %s", s->id, s->peer,
			    dst_name(s), strerror(-rc));
	}
	/* A finished session keeps only its counters: a handle left open
	 * would pin the guest's memory after it is destroyed. */
	if (s->dom != NULL && st == DS_DONE) {
		s->env->ops->dom_close(s->dom);
		s->dom = NULL;
	}
	fill_ctx_close(&s->fc);
	if (s->env->journal_dir != NULL && !s->advise && s->domain[0] &&
	    (st == DS_DONE || !s->committed) && s->journaled)
		(void)journal_del(s->env->journal_dir, s->domain);
	if (st == DS_FAILED) {
		log_err("session %u from %s: %s: migration failed: %s", s->id,
		    s->peer, dst_name(s), s->error);
		if (s->link != NULL)
			link_send_error(s->link, EIO, s->error);
	}
	if (s->link != NULL) {
		link_close(s->link);
		s->link = NULL;
	}
	/* Every data stream goes with the session. */
	for (i = 1; i < PROTO_STREAMS_MAX; i++) {
		if (s->ds[i].link == NULL)
			continue;
		if (st == DS_FAILED)
			link_send_error(s->ds[i].link, EIO, s->error);
		link_close(s->ds[i].link);
		s->ds[i].link = NULL;
	}
	s->state = st;
	if (s->done != NULL)
		s->done(s, s->done_arg);
}

static void
dst_fail(struct mig_dst *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
dst_fail(struct mig_dst *s, const char *fmt, ...)
{
	va_list ap;

	if (mig_dst_terminal(s))
		return;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	dst_finish(s, DS_FAILED);
}

static int
dst_send(struct mig_dst *s, const void *buf, int n)
{
	if (n < 0)
		return n;
	return link_send(s->link, buf, (size_t)n);
}

static void
dst_on_error(struct link *l, int err, const char *why, void *arg)
{
	struct mig_dst *s = arg;

	if (s->state == DS_HANDSHAKE)
		dst_fail(s, "connection refused during the handshake: %s", why);
	else
		dst_fail(s, "%s", why);
}

static void
dst_on_up(struct link *l, void *arg)
{
	struct mig_dst *s = arg;
	struct proto_hello h;
	uint8_t buf[256];
	char cn[128];

	link_peer_name(l, cn, sizeof(cn));
	snprintf(s->cn, sizeof(s->cn), "%s", cn);
	snprintf(s->peer, sizeof(s->peer), "%s%s%s%s", link_peer_addr(l),
	    cn[0] ? " (" : "", cn, cn[0] ? ")" : "");
	log_info("session %u: connection from %s%s", s->id, s->peer,
	    cn[0] ? "" : " (insecure, no TLS)");
	memset(&h, 0, sizeof(h));
	h.version_min = PROTO_VERSION;
	h.version_max = PROTO_VERSION;
	h.caps = PROTO_CAP_REF | PROTO_CAP_ZERO | PROTO_CAP_VERIFY |
	    s->env->compress_caps |
	    (s->env->max_streams > 1 ? PROTO_CAP_STREAMS : 0) |
	    (s->env->index != NULL ? PROTO_CAP_FILTER : 0);
	memcpy(h.host_id, s->env->host_id, sizeof(h.host_id));
	snprintf(h.host_name, sizeof(h.host_name), "%s", s->env->host_name);
	if (dst_send(s, buf, proto_enc_hello(buf, sizeof(buf), &h)) != 0) {
		dst_fail(s, "cannot send HELLO");
		return;
	}
	s->state = DS_HELLO;
}

static void
dst_on_hello(struct mig_dst *s, const struct proto_hello *h)
{
	if (h->version_min > PROTO_VERSION || h->version_max < PROTO_VERSION) {
		dst_fail(s, "source speaks protocol %u..%u, we speak %u",
		    h->version_min, h->version_max, PROTO_VERSION);
		return;
	}
	s->peer_caps = h->caps;
	s->state = DS_INFO;
	link_set_phase(s->link, PH_INFO);
}

static void	dst_barrier_cb(evutil_socket_t fd, short what, void *arg);

/*
 * Grant at most env->max_streams of the streams asked for; with two or
 * more, draw the session's token (the data streams' JOIN names it).
 */
static int
dst_grant_streams(struct mig_dst *s, uint32_t asked)
{
	unsigned i;

	s->streams = asked < s->env->max_streams ? asked : s->env->max_streams;
	if (s->streams < 1)
		s->streams = 1;
	for (i = 0; i < PROTO_STREAMS_MAX; i++) {
		s->ds[i].s = s;
		s->ds[i].idx = i;
	}
	if (s->streams == 1)
		return 0;
	if (getrandom(s->token, sizeof(s->token), 0) !=
	    (ssize_t)sizeof(s->token))
		return -errno ? -errno : -EIO;
	return s->ev_barrier != NULL ? 0 : -ENOMEM;
}

/*
 * The source asked for FILTER (docs/PROTOCOL.md "FILTER"): a Bloom filter
 * of the prefixes of every content this host's index holds, so that it
 * need not read and offer the pages we certainly do not have.  The
 * scanner rebuilds it at the end of each pass (hfilt.h); before its first
 * pass ends, this session builds one (walking the index on the event
 * loop).  Sent before DOMAIN_ACK, in records of PROTO_FILTER_CHUNK_MAX
 * bytes; nbits 0 when there is no index or it is too large for
 * PROTO_FILTER_BITS_MAX.  0, or -1 after dst_fail().
 */
static int
dst_send_filter(struct mig_dst *s, uint32_t dedup)
{
	struct proto_filter fr;
	struct hfilt_snap *sn = NULL;
	const char *whence = "the last scan pass";
	uint8_t *buf = NULL, *chunk = NULL;
	uint64_t nbits = 0, off;
	size_t cap, len, most;
	int rc = -1;

	if (!(s->peer_caps & PROTO_CAP_FILTER) || dedup != PROTO_DEDUP_ALL)
		return 0;
	memset(&fr, 0, sizeof(fr));
	if (s->env->index != NULL && s->env->filter != NULL &&
	    (sn = hfilt_get(s->env->filter)) == NULL) {
		whence = "built now: no scan pass has ended yet";
		if (hfilt_build(s->env->index, PROTO_FILTER_BITS_MAX,
		    &sn) != 0) {
			dst_fail(s, "out of memory for the filter");
			return -1;
		}
	}
	if (sn != NULL)
		nbits = sn->f.nbits;
	/* The largest record: the whole filter, or a chunk of it. */
	most = nbits / 8 < PROTO_FILTER_CHUNK_MAX ? (size_t)(nbits / 8) :
	    PROTO_FILTER_CHUNK_MAX;
	cap = proto_rec_size(24 + most);
	if ((buf = malloc(cap)) == NULL ||
	    (nbits > 0 && (chunk = malloc(most)) == NULL)) {
		dst_fail(s, "out of memory for the filter");
		goto out;
	}
	if (nbits == 0) {
		if (dst_send(s, buf, proto_enc_filter(buf, cap, &fr)) != 0) {
			dst_fail(s, "cannot send FILTER");
			goto out;
		}
		log_info("session %u: %s: no filter for the source (%s)",
		    s->id, s->domain, sn == NULL ? "no index" :
		    "index too large");
		rc = 0;
		goto out;
	}
	fr.nbits = nbits;
	fr.k = sn->f.k;
	fr.bits = chunk;
	for (off = 0; off < nbits / 8; off += len) {
		len = nbits / 8 - off < most ? (size_t)(nbits / 8 - off) :
		    most;
		(void)pfilt_get(&sn->f, off, chunk, len);
		fr.offset = off;
		fr.bits_len = (uint32_t)len;
		if (dst_send(s, buf, proto_enc_filter(buf, cap, &fr)) != 0) {
			dst_fail(s, "cannot send FILTER");
			goto out;
		}
	}
	log_info("session %u: %s: filter of %llu contents for the source "
	    "(%s, %.0f ms ago, built in %.1f ms): %llu KiB, %u probes, %.0f%% "
	    "of bits set", s->id, s->domain,
	    (unsigned long long)sn->contents, whence,
	    hfilt_age_ms(sn), sn->build_ms,
	    (unsigned long long)(nbits / 8192), sn->f.k,
	    100.0 * pfilt_fill(&sn->f));
	rc = 0;
out:
	hfilt_put(sn);
	free(chunk);
	free(buf);
	return rc;
}

/* Build the empty, paused domain the pages will go into. */
static void
dst_on_domain_info(struct mig_dst *s, const struct proto_domain_info *di)
{
	struct proto_domain_ack ack;
	struct hv_dom_info shape, inf;
	uint8_t buf[64];
	int rc;

	snprintf(s->domain, sizeof(s->domain), "%s", di->name);
	if (di->pages == 0 || di->pages > s->env->max_pages) {
		dst_fail(s, "domain of %llu pages refused (limit %llu)",
		    (unsigned long long)di->pages,
		    (unsigned long long)s->env->max_pages);
		return;
	}
	if (di->dedup > PROTO_DEDUP_ALL) {
		dst_fail(s, "unknown dedup mode %u", di->dedup);
		return;
	}
	if (di->compress != PROTO_COMPRESS_NONE && !(di->flags &
	    PROTO_DI_ADVISE) && !(s->env->compress_caps &
	    pcomp_cap(di->compress))) {
		if (pcomp_name(di->compress) != NULL)
			dst_fail(s, "%s compression is not accepted here "
			    "(--compress-accept)", pcomp_name(di->compress));
		else
			dst_fail(s, "unknown compression method %u",
			    di->compress);
		return;
	}
	if (di->compress != PROTO_COMPRESS_NONE && !(di->flags &
	    PROTO_DI_ADVISE)) {
		if ((s->pc = pcomp_new(di->compress)) == NULL ||
		    (s->zbuf = malloc((size_t)PROTO_PAGE_BATCH_MAX *
		    PROTO_PAGE_SIZE)) == NULL) {
			dst_fail(s, "out of memory");
			return;
		}
		s->compress = di->compress;
	}
	if (di->flags & PROTO_DI_ADVISE) {
		/* Placement advice: no domain, only answers from the index. */
		s->advise = 1;
		s->pages = di->pages;
		s->flags = di->flags;
		if (dst_send_filter(s, di->dedup) != 0)
			return;
		if (dst_send(s, buf, proto_enc_domain_ack(buf, sizeof(buf),
		    0)) != 0) {
			dst_fail(s, "cannot send DOMAIN_ACK");
			return;
		}
		s->state = DS_LIVE;
		link_set_phase(s->link, PH_LIVE);
		link_set_pages(s->link, s->pages);
		log_info("session %u from %s: advice for %s, %llu pages", s->id,
		    s->peer, s->domain, (unsigned long long)s->pages);
		return;
	}
	memset(&shape, 0, sizeof(shape));
	shape.pages = di->pages;
	shape.vcpus = di->vcpus;
	memcpy(shape.uuid, di->uuid, sizeof(shape.uuid));
	snprintf(shape.name, sizeof(shape.name), "%s", di->name);
	rc = s->env->ops->create(s->env->hv, &shape, di->config,
	    di->config_len, &s->dom);
	if (rc != 0) {
		dst_fail(s, rc == -EEXIST ? "a domain named '%s' already "
		    "exists here" : "cannot create domain '%s': %s", di->name,
		    strerror(-rc));
		return;
	}
	if ((s->unresolved = bm_alloc(di->pages)) == NULL ||
	    (s->recvd = bm_alloc(di->pages)) == NULL ||
	    (s->pending = bm_alloc(di->pages)) == NULL) {
		dst_fail(s, "out of memory");
		return;
	}
	/* Without the bitmap (no memory) every ZERO page is written. */
	if (s->env->ops->dom_info(s->dom, &inf) == 0 &&
	    (inf.flags & HV_DOM_ZEROED))
		s->touched = bm_alloc(di->pages);
	s->pages = di->pages;
	s->flags = di->flags;
	s->dedup = di->dedup;
	/* OFFERs come with dedup: start their worker now, off the path. */
	if (s->dedup != PROTO_DEDUP_NONE && (rc = filler_new(s->env->ops,
	    s->env->hvp, s->env->index, s->base, dst_offer_done, s,
	    &s->filler)) != 0)
		log_warn("session %u: %s: no fill worker (%s): OFFERs are "
		    "filled on the event loop", s->id, s->domain,
		    strerror(-rc));
	dst_journal(s, "building");
	s->journaled = 1;
	if ((rc = dst_grant_streams(s, di->streams)) != 0) {
		dst_fail(s, "cannot set up %u streams: %s", di->streams,
		    strerror(-rc));
		return;
	}
	if (dst_send_filter(s, di->dedup) != 0)
		return;
	ack.domid = 0;
	ack.streams = s->streams;
	memcpy(ack.token, s->token, sizeof(ack.token));
	if (dst_send(s, buf, proto_enc_domain_ack_streams(buf, sizeof(buf),
	    &ack)) != 0) {
		dst_fail(s, "cannot send DOMAIN_ACK");
		return;
	}
	s->state = DS_LIVE;
	link_set_phase(s->link, PH_LIVE);
	link_set_pages(s->link, s->pages);
	link_set_compress(s->link, s->compress);
	log_info("session %u from %s: receiving %s, %llu pages%s%s, %u "
	    "stream%s (%u asked)", s->id, s->peer, s->domain,
	    (unsigned long long)s->pages,
	    s->compress ? ", compressed with " : "",
	    s->compress ? pcomp_name(s->compress) : "", s->streams,
	    s->streams == 1 ? "" : "s", di->streams);
}

static void
dst_resolved(struct mig_dst *s, uint64_t pfn)
{
	bm_set(s->recvd, pfn);
	if (bm_test(s->unresolved, pfn)) {
		bm_clear(s->unresolved, pfn);
		s->n_unresolved--;
	}
}

/*
 * Map a run of the incoming domain's pages writable.  Every write to the
 * domain goes through here (on the event loop; the fill worker writes
 * only pages mapped here), so the pages mapped are the ones that may no
 * longer be zero (touched).
 */
static int
dst_map(struct mig_dst *s, const uint64_t *pfns, uint32_t n, void **pages,
    struct hv_map **map)
{
	uint32_t i;

	if (s->touched != NULL)
		for (i = 0; i < n; i++)
			bm_set(s->touched, pfns[i]);
	return s->env->ops->map(s->dom, pfns, n, 1, pages, map);
}

static void
dst_on_page_data(struct mig_dst *s, const struct proto_page_data *pd)
{
	uint64_t pfns[PROTO_PAGE_BATCH_MAX];
	void *pages[PROTO_PAGE_BATCH_MAX];
	struct proto_pages pp;
	struct hv_map *map;
	uint32_t i;
	int rc;

	if (pd->flags == 0) {
		/* As the link holds them: in place, maybe in pieces. */
		proto_pages_init(&pp, pd->data, pd->seg, pd->nseg);
	} else {
		/* The decoder allowed only the negotiated method. */
		if (pcomp_decompress(s->pc, pd->data, pd->data_len, s->zbuf,
		    (size_t)pd->count * PROTO_PAGE_SIZE) != 0) {
			dst_fail(s, "PAGE_DATA: %u bytes of %s data do not "
			    "decompress to exactly %u pages", pd->data_len,
			    pcomp_name(pd->flags), pd->count);
			return;
		}
		proto_pages_init(&pp, s->zbuf, NULL, 0);
	}
	s->bytes_data += pd->data_len;
	for (i = 0; i < pd->count; i++) {
		pfns[i] = proto_pfn_at(pd->pfns, i);
		dst_fill_wait(s, pfns[i]);
	}
	if (mig_dst_terminal(s))
		return;
	if ((rc = dst_map(s, pfns, pd->count, pages, &map)) != 0) {
		dst_fail(s, "cannot map pages of %s: %s", s->domain,
		    strerror(-rc));
		return;
	}
	for (i = 0; i < pd->count; i++) {
		if (pages[i] == NULL) {
			s->env->ops->unmap(s->dom, map);
			dst_fail(s, "page %llu of %s cannot be mapped",
			    (unsigned long long)pfns[i], s->domain);
			return;
		}
		proto_pages_copy(&pp, pages[i]);
		dst_resolved(s, pfns[i]);
	}
	s->env->ops->unmap(s->dom, map);
	s->pages_data += pd->count;
}

static void
dst_on_page_zero(struct mig_dst *s, const struct proto_pfn_list *zl)
{
	uint64_t pfns[HV_MAP_BATCH_MAX];
	void *pages[HV_MAP_BATCH_MAX];
	struct hv_map *map;
	uint32_t i, j, k, n;
	uint64_t pfn;
	int rc;

	for (i = 0; i < zl->count && filler_busy(s->filler) > 0; i++)
		dst_fill_wait(s, proto_pfn_at(zl->pfns, i));
	if (mig_dst_terminal(s))
		return;
	for (i = 0; i < zl->count; i += k) {
		/* Up to a map batch of pages that may not read as zero. */
		for (k = n = 0; i + k < zl->count && n < HV_MAP_BATCH_MAX;
		    k++) {
			pfn = proto_pfn_at(zl->pfns, i + k);
			if (s->touched != NULL && !bm_test(s->touched, pfn)) {
				dst_resolved(s, pfn);	/* still zero */
				s->zero_skipped++;
				continue;
			}
			pfns[n++] = pfn;
		}
		if (n == 0)
			continue;
		if ((rc = dst_map(s, pfns, n, pages, &map)) != 0) {
			dst_fail(s, "cannot map pages of %s: %s", s->domain,
			    strerror(-rc));
			return;
		}
		for (j = 0; j < n; j++) {
			if (pages[j] != NULL)
				memset(pages[j], 0, PROTO_PAGE_SIZE);
			dst_resolved(s, pfns[j]);
		}
		s->env->ops->unmap(s->dom, map);
	}
	s->pages_zero += zl->count;
}

static void
dst_offer_unmap(struct mig_dst *s, struct fill_job *j)
{
	unsigned k;

	for (k = 0; k < j->nmaps; k++)
		s->env->ops->unmap(s->dom, j->maps[k]);
	j->nmaps = 0;
}

/*
 * The fill worker is done with an OFFER: its fills are in place (the
 * worker verified each copy, I4).  Answer HAVE, in the order of the
 * OFFERs.
 */
static void
dst_offer_done(struct fill_job *j, void *arg)
{
	struct mig_dst *s = arg;
	uint8_t *buf;
	uint32_t i;
	size_t cap;

	dst_offer_unmap(s, j);
	for (i = 0; i < j->count && !s->advise; i++) {
		bm_clear(s->pending, j->pfns[i]);
		if (j->has[i])
			bm_set(s->recvd, j->pfns[i]);
	}
	s->had += j->nhad;
	s->refs_filled += j->nhad;
	s->fc.stale += j->stale;
	s->fill_cpu_s += j->cpu_s;
	cap = proto_rec_size(40 + (j->count + 7) / 8);
	if ((buf = malloc(cap)) == NULL) {
		fill_job_free(j);
		dst_fail(s, "out of memory");
		return;
	}
	if (dst_send(s, buf, proto_enc_have(buf, cap, j->batch, j->count,
	    j->has, j->confirm)) != 0)
		dst_fail(s, "cannot send HAVE");
	free(buf);
	fill_job_free(j);
}

/* Stop the fill worker; unmap what it still held.  Before the incoming
 * domain goes. */
static void
dst_fill_stop(struct mig_dst *s)
{
	struct fill_job *j, *next;

	for (j = filler_stop(s->filler); j != NULL; j = next) {
		next = j->next;
		dst_offer_unmap(s, j);
		fill_job_free(j);
	}
}

/*
 * A record is about to write pfn (or copy from it): if an OFFER at the
 * worker covers it, let the worker finish first, so that the later
 * record wins (docs/PROTOCOL.md: a later record supersedes a fill).
 * sharemig's source never does this (it waits for HAVE), so this is a
 * guard, not a path.
 */
static void
dst_fill_wait(struct mig_dst *s, uint64_t pfn)
{
	if (filler_busy(s->filler) > 0 && pfn < s->pages &&
	    bm_test(s->pending, pfn))
		filler_drain(s->filler);
}

/*
 * OFFER: for each entry, find local content with that digest prefix,
 * copy it into the incoming domain at the offered pfn and check the copy
 * against the full digest (I4).  HAVE says which entries were filled and
 * confirms them with SHA-256 over their full digests; the source accepts
 * the batch's fills only if that matches its own digests (I3).  Lookups
 * never wait for the scanner.  The fills run on the session's worker
 * (filler.h), which hands the OFFER back for its HAVE.
 */
static void
dst_on_offer(struct mig_dst *s, const struct proto_offer *o)
{
	uint8_t cand[1][PIDX_KEY_LEN];
	struct fill_job *j;
	uint32_t i, n;
	int rc;

	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->pfns = malloc(o->count * sizeof(*j->pfns))) == NULL ||
	    (j->prefix = malloc(o->count * sizeof(*j->prefix))) == NULL ||
	    (j->pages = calloc(o->count, sizeof(*j->pages))) == NULL ||
	    (j->has = calloc(o->count, 1)) == NULL) {
		fill_job_free(j);
		dst_fail(s, "out of memory");
		return;
	}
	j->batch = o->batch;
	j->count = o->count;
	proto_offer_pfns(o, j->pfns);
	for (i = 0; i < o->count; i++)
		memcpy(j->prefix[i], proto_offer_prefix_at(o, i), 8);
	s->offered += o->count;
	if (s->advise) {
		/* Advice: does the index hold this prefix?  Nothing filled. */
		for (i = 0; i < o->count; i++) {
			j->has[i] = pidx_find_prefix(s->env->index,
			    j->prefix[i], cand, 1) > 0;
			j->nhad += j->has[i];
		}
		s->had += j->nhad;
		j->nhad = 0;	/* dst_offer_done: none filled */
		dst_offer_done(j, s);
		return;
	}
	if (filler_busy(s->filler) >= DST_FILL_QUEUE) {
		filler_drain(s->filler);
		if (mig_dst_terminal(s)) {
			fill_job_free(j);
			return;
		}
	}
	for (i = 0; i < o->count; i += n) {
		n = o->count - i < HV_MAP_BATCH_MAX ? o->count - i :
		    HV_MAP_BATCH_MAX;
		if ((rc = dst_map(s, j->pfns + i, n, j->pages + i,
		    &j->maps[j->nmaps])) != 0) {
			dst_offer_unmap(s, j);
			fill_job_free(j);
			dst_fail(s, "cannot map pages of %s: %s", s->domain,
			    strerror(-rc));
			return;
		}
		j->nmaps++;
	}
	for (i = 0; i < o->count; i++)
		bm_set(s->pending, j->pfns[i]);
	if (s->filler == NULL) {
		fill_job_run(&s->fc, j);
		dst_offer_done(j, s);
		return;
	}
	filler_submit(s->filler, j);
}

static void
dst_send_need(struct mig_dst *s, const uint64_t *pfns, uint32_t n)
{
	uint8_t *buf;
	size_t cap;

	if (n == 0)
		return;
	cap = proto_rec_size(8 + (size_t)n * 8);
	if ((buf = malloc(cap)) == NULL) {
		dst_fail(s, "out of memory");
		return;
	}
	if (dst_send(s, buf, proto_enc_pfn_list(buf, cap, REC_NEED, n,
	    pfns)) != 0)
		dst_fail(s, "cannot send NEED");
	free(buf);
}

static void
dst_on_page_ref(struct mig_dst *s, const struct proto_page_ref *r)
{
	uint64_t pfns[HV_MAP_BATCH_MAX], need[HV_MAP_BATCH_MAX], hint;
	void *pages[HV_MAP_BATCH_MAX];
	uint8_t got[32];
	struct hv_map *map;
	uint32_t i, j, n, nn;
	int rc;

	for (i = 0; i < r->count && filler_busy(s->filler) > 0; i++) {
		dst_fill_wait(s, proto_ref_pfn_at(r, i));
		dst_fill_wait(s, proto_ref_hint_at(r, i));
	}
	if (mig_dst_terminal(s))
		return;
	for (i = 0; i < r->count; i += n) {
		n = r->count - i < HV_MAP_BATCH_MAX ? r->count - i :
		    HV_MAP_BATCH_MAX;
		for (j = 0; j < n; j++)
			pfns[j] = proto_ref_pfn_at(r, i + j);
		if ((rc = dst_map(s, pfns, n, pages, &map)) != 0) {
			dst_fail(s, "cannot map pages of %s: %s", s->domain,
			    strerror(-rc));
			return;
		}
		for (j = nn = 0; j < n; j++) {
			hint = proto_ref_hint_at(r, i + j);
			if (hint >= s->pages)
				hint = PROTO_PFN_NONE;
			if (pages[j] != NULL && fill_page(&s->fc, s->dom,
			    hint, proto_ref_digest_at(r, i + j), 32,
			    pages[j], got) == 0) {
				dst_resolved(s, pfns[j]);
				s->refs_filled++;
				continue;
			}
			s->refs_failed++;
			if (!bm_test(s->unresolved, pfns[j])) {
				bm_set(s->unresolved, pfns[j]);
				s->n_unresolved++;
			}
			need[nn++] = pfns[j];
		}
		s->env->ops->unmap(s->dom, map);
		dst_send_need(s, need, nn);
		if (mig_dst_terminal(s))
			return;
	}
	s->pages_ref += r->count;
}

static void
dst_on_context(struct mig_dst *s, const struct proto_context *c)
{
	int rc;

	if ((rc = s->env->ops->context_set(s->dom, c->blob, c->len)) != 0)
		dst_fail(s, "cannot load the vCPU context of %s: %s",
		    s->domain, strerror(-rc));
}

/* Every page is resolved: answer READY (with our digest for --verify). */
static void
dst_try_ready(struct mig_dst *s)
{
	struct proto_end e;
	uint8_t buf[64];
	int rc;

	if (!s->end_seen || s->n_unresolved > 0 || s->state != DS_FINAL)
		return;
	memset(&e, 0, sizeof(e));
	if (s->flags & PROTO_DI_VERIFY) {
		struct hv_digest dg;
		char pfx[HV_NAME_MAX + 32];

		snprintf(pfx, sizeof(pfx), "session %u: %s", s->id, s->domain);
		/* Without the pages the source could not vouch for. */
		if ((rc = hv_digest(s->env->ops, s->dom, s->recvd,
		    s->pages, 1, s->unverified, s->nunverified, &dg,
		    hv_digest_log_seg, pfx)) != 0) {
			dst_fail(s, "verify: %s", strerror(-rc));
			return;
		}
		hv_digest_log(pfx, &dg);
		memcpy(e.memory_sha256, dg.sha256, 32);
		e.flags = PROTO_END_VERIFY;
	}
	if (dst_send(s, buf, proto_enc_end(buf, sizeof(buf), REC_READY,
	    &e)) != 0) {
		dst_fail(s, "cannot send READY");
		return;
	}
	s->state = DS_READY;
	link_set_phase(s->link, PH_READY);
}

static void
dst_on_end(struct mig_dst *s, const struct proto_end *e)
{
	log_debug("session %u: %s: END", s->id, s->domain);
	/* Every OFFER's fills are in and answered before READY. */
	filler_drain(s->filler);
	if (mig_dst_terminal(s))
		return;
	if (s->advise) {
		struct proto_end r;
		uint8_t buf[64];

		memset(&r, 0, sizeof(r));
		(void)dst_send(s, buf, proto_enc_end(buf, sizeof(buf),
		    REC_READY, &r));
		log_info("session %u from %s: advice for %s: %llu of %llu "
		    "offered pages held here", s->id, s->peer, s->domain,
		    (unsigned long long)s->had,
		    (unsigned long long)s->offered);
		dst_finish(s, DS_DONE);
		return;
	}
	s->end_seen = 1;
	if (e->flags & PROTO_END_UNVERIFIED) {
		s->nunverified = e->nunverified;
		memcpy(s->unverified, e->unverified,
		    e->nunverified * sizeof(e->unverified[0]));
	}
	s->state = DS_FINAL;
	link_set_phase(s->link, PH_FINAL);
	if (s->n_unresolved > 0)
		log_info("session %u from %s: %s: waiting for %llu pages "
		    "whose local copies went stale", s->id, s->peer,
		    s->domain, (unsigned long long)s->n_unresolved);
	dst_try_ready(s);
}

/*
 * GO: the source gave up its copy.  Make the domain a normal one, start
 * it (unless asked to keep it paused) and say RUNNING.
 */
static void
dst_on_go(struct mig_dst *s)
{
	struct proto_running r;
	uint8_t buf[64];
	int rc;

	log_debug("session %u: %s: GO", s->id, s->domain);
	dst_journal(s, "go");
	if ((rc = s->env->ops->commit(s->dom)) != 0) {
		dst_fail(s, "cannot commit %s: %s", s->domain, strerror(-rc));
		return;
	}
	s->committed = 1;
	if (!(s->flags & PROTO_DI_PAUSED) &&
	    (rc = s->env->ops->unpause(s->dom)) != 0) {
		/* The source is paused and waits for RUNNING: not sending it
		 * makes the outcome "ambiguous" there, which is the truth. */
		log_err("session %u from %s: %s: committed but cannot be "
		    "started: %s", s->id, s->peer, s->domain, strerror(-rc));
		snprintf(s->error, sizeof(s->error), "cannot start: %s",
		    strerror(-rc));
		s->state = DS_FAILED;
		link_close(s->link);
		s->link = NULL;
		if (s->done != NULL)
			s->done(s, s->done_arg);
		return;
	}
	log_debug("session %u: %s: started", s->id, s->domain);
	memset(&r, 0, sizeof(r));
	/* The event loop's CPU time and the fill worker's. */
	r.cpu_dest_us = (uint64_t)((thread_cpu_s() - s->cpu_start +
	    s->fill_cpu_s) * 1e6);
	r.refs_filled = s->refs_filled;
	r.refs_failed = s->fc.stale;
	(void)dst_send(s, buf, proto_enc_running(buf, sizeof(buf), &r));
	log_notice("session %u from %s: %s is %s here: %llu pages filled "
	    "locally, %llu data, %llu zero; %llu stale local copies "
	    "rejected, %llu pages asked again", s->id, s->peer, s->domain,
	    (s->flags & PROTO_DI_PAUSED) ? "paused" : "running",
	    (unsigned long long)s->refs_filled,
	    (unsigned long long)s->pages_data,
	    (unsigned long long)s->pages_zero,
	    (unsigned long long)s->fc.stale,
	    (unsigned long long)s->refs_failed);
	dst_finish(s, DS_DONE);
}

/* ---- several streams ---- */

static struct link *
dst_link_of(struct mig_dst *s, unsigned i)
{
	return i == 0 ? s->link : s->ds[i].link;
}

/*
 * Connection i reached the barrier of the current iteration (ITER_END,
 * or END on the main connection): it stops until every connection has.
 * Then all go on together, and a waiting END is handled: nothing of a
 * later iteration is applied before everything of an earlier one.
 */
static void
dst_arrive(struct mig_dst *s, unsigned i)
{
	struct timeval tv = { .tv_sec = s->env->timeout_s, .tv_usec = 0 };

	s->ds[i].arrived = 1;
	s->narrived++;
	link_pause(dst_link_of(s, i));
	if (s->narrived < s->streams) {
		if (!evtimer_pending(s->ev_barrier, NULL)) {
			s->progress_seen = s->progress;
			evtimer_add(s->ev_barrier, &tv);
		}
		return;
	}
	evtimer_del(s->ev_barrier);
	log_debug("session %u: %s: barrier %u passed on %u streams", s->id,
	    s->domain, s->epoch, s->streams);
	s->epoch++;
	s->narrived = 0;
	for (i = 0; i < s->streams; i++) {
		s->ds[i].arrived = 0;
		link_resume(dst_link_of(s, i));
	}
	if (s->end_pending) {
		s->end_pending = 0;
		dst_on_end(s, &s->end_rec);
	}
}

/* A barrier is waited for only while records keep coming. */
static void
dst_barrier_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mig_dst *s = arg;
	struct timeval tv = { .tv_sec = s->env->timeout_s, .tv_usec = 0 };
	char missing[64] = "";
	size_t off = 0;
	unsigned i;

	if (mig_dst_terminal(s))
		return;
	if (s->progress != s->progress_seen) {
		s->progress_seen = s->progress;
		evtimer_add(s->ev_barrier, &tv);
		return;
	}
	for (i = 0; i < s->streams && off < sizeof(missing) - 4; i++)
		if (!s->ds[i].arrived)
			off += (size_t)snprintf(missing + off,
			    sizeof(missing) - off, "%s%u", off ? "," : "", i);
	dst_fail(s, "iteration %u: stream %s sent nothing for %u s (%u of "
	    "%u streams joined)", s->epoch, missing, s->env->timeout_s,
	    s->njoined + 1, s->streams);
}

/* While pages stream, PAGE_DATA of a pfn comes on that pfn's stream. */
static int
dst_pinned(struct mig_dst *s, const struct proto_page_data *pd, unsigned i)
{
	uint32_t k;

	if (s->streams == 1 || s->state != DS_LIVE)
		return 1;
	for (k = 0; k < pd->count; k++)
		if (proto_stream_of(proto_pfn_at(pd->pfns, k), s->streams) !=
		    i) {
			dst_fail(s, "PAGE_DATA for pfn %llu on stream %u, its "
			    "stream is %u", (unsigned long long)
			    proto_pfn_at(pd->pfns, k), i,
			    proto_stream_of(proto_pfn_at(pd->pfns, k),
			    s->streams));
			return 0;
		}
	return 1;
}

/* ITER_END on connection i: the barrier of iteration s->epoch. */
static void
dst_on_iter_end(struct mig_dst *s, unsigned i, const struct proto_iter_end *ie)
{
	if (i == 0)
		log_debug("session %u: %s: iteration %u ended, %llu dirty",
		    s->id, s->domain, ie->iteration,
		    (unsigned long long)ie->dirty);
	if (s->streams == 1)
		return;
	if (s->state != DS_LIVE || ie->iteration != s->epoch) {
		dst_fail(s, "stream %u: ITER_END of iteration %u, expected %u",
		    i, ie->iteration, s->epoch);
		return;
	}
	dst_arrive(s, i);
}

/*
 * JOIN on a connection of its own (this session s has no domain): hand
 * the connection to the session whose token it names, as its data
 * stream j->index.  Refused (ERROR, this connection closed, the named
 * session untouched): an unknown token, a session not waiting for
 * streams, an index out of range or taken, another certificate.
 */
static void
dst_on_join(struct mig_dst *s, const struct proto_join *j)
{
	struct mig_dst *o = NULL;
	struct link *l = s->link;
	struct dst_stream *d;

	if (s->env->find_token != NULL)
		o = s->env->find_token(s->env->find_arg, j->token);
	if (o == NULL || o == s) {
		dst_fail(s, "JOIN refused: no session waits for streams with "
		    "this token");
		return;
	}
	if (o->njoined + 1 >= o->streams || j->index >= o->streams ||
	    o->ds[j->index].link != NULL) {
		dst_fail(s, "JOIN refused: session %u has %u streams, stream "
		    "%u is %s", o->id, o->streams, j->index,
		    j->index >= o->streams ? "not one of them" :
		    "already attached");
		return;
	}
	if (strcmp(o->cn, s->cn) != 0) {
		dst_fail(s, "JOIN refused: certificate '%s' is not session "
		    "%u's ('%s')", s->cn, o->id, o->cn);
		return;
	}
	d = &o->ds[j->index];
	d->link = l;
	o->njoined++;
	s->link = NULL;
	link_set_cbs(l, &dst_stream_cbs, d);
	link_set_phase(l, PH_LIVE);
	link_set_pages(l, o->pages);
	link_set_compress(l, o->compress);
	link_set_read_timeout(l, o->env->timeout_s);
	log_info("session %u from %s: %s: stream %u of %u joined (%s)", o->id,
	    o->peer, o->domain, j->index, o->streams, s->peer);
	/* Nothing is left of this session but its place in the table. */
	if (s->ev_ka != NULL)
		event_del(s->ev_ka);
	s->state = DS_JOINED;
	if (s->done != NULL)
		s->done(s, s->done_arg);
}

static void
dst_on_stream_up(struct link *l, void *arg)
{
	/* A data stream is up before it joins. */
}

static void
dst_on_stream_error(struct link *l, int err, const char *why, void *arg)
{
	struct dst_stream *d = arg;
	struct mig_dst *s = d->s;

	/* Past the last barrier a data stream has nothing left to say. */
	if (s->state != DS_LIVE && !mig_dst_terminal(s)) {
		log_debug("session %u: %s: stream %u closed after END: %s",
		    s->id, s->domain, d->idx, why);
		link_free(l);
		d->link = NULL;
		return;
	}
	dst_fail(s, "stream %u: %s", d->idx, why);
}

/* Data stream records: PAGE_DATA of its pfns, ITER_END barriers. */
static void
dst_on_stream_record(struct link *l, const struct proto_rec *r, void *arg)
{
	struct dst_stream *d = arg;
	struct mig_dst *s = d->s;

	s->progress++;
	switch (r->type) {
	case REC_ERROR:
		dst_fail(s, "source aborted (stream %u): %s", d->idx,
		    r->u.error.msg);
		break;
	case REC_PAGE_DATA:
		if (s->state != DS_LIVE) {
			dst_fail(s, "stream %u: PAGE_DATA after END", d->idx);
			break;
		}
		if (dst_pinned(s, &r->u.page_data, d->idx))
			dst_on_page_data(s, &r->u.page_data);
		break;
	case REC_ITER_END:
		dst_on_iter_end(s, d->idx, &r->u.iter_end);
		break;
	default:
		dst_fail(s, "unexpected %s record on stream %u",
		    proto_type_name(r->type), d->idx);
		break;
	}
}

static void
dst_on_record(struct link *l, const struct proto_rec *r, void *arg)
{
	struct mig_dst *s = arg;

	s->progress++;
	if (s->advise && (r->type == REC_PAGE_DATA ||
	    r->type == REC_PAGE_ZERO || r->type == REC_PAGE_REF ||
	    r->type == REC_CONTEXT || r->type == REC_GO)) {
		dst_fail(s, "%s record in an advice session",
		    proto_type_name(r->type));
		return;
	}
	switch (r->type) {
	case REC_HELLO:
		dst_on_hello(s, &r->u.hello);
		break;
	case REC_ERROR:
		dst_fail(s, "source aborted: %s", r->u.error.msg);
		break;
	case REC_DOMAIN_INFO:
		dst_on_domain_info(s, &r->u.domain_info);
		break;
	case REC_OFFER:
		dst_on_offer(s, &r->u.offer);
		break;
	case REC_PAGE_DATA:
		if (!dst_pinned(s, &r->u.page_data, 0))
			break;
		dst_on_page_data(s, &r->u.page_data);
		if (s->state == DS_FINAL)
			dst_try_ready(s);
		break;
	case REC_PAGE_ZERO:
		dst_on_page_zero(s, &r->u.pfn_list);
		break;
	case REC_PAGE_REF:
		dst_on_page_ref(s, &r->u.page_ref);
		break;
	case REC_ITER_END:
		dst_on_iter_end(s, 0, &r->u.iter_end);
		break;
	case REC_CONTEXT:
		dst_on_context(s, &r->u.context);
		break;
	case REC_END:
		if (s->streams > 1) {
			/* The last barrier: END waits for every stream. */
			s->end_rec = r->u.end;
			s->end_pending = 1;
			dst_arrive(s, 0);
			break;
		}
		dst_on_end(s, &r->u.end);
		break;
	case REC_JOIN:
		dst_on_join(s, &r->u.join);
		break;
	case REC_GO:
		dst_on_go(s);
		break;
	default:
		dst_fail(s, "unexpected %s record", proto_type_name(r->type));
		break;
	}
}

/*
 * While pages stream the source hears from us only when we answer an
 * OFFER or ask for a page; a KEEPALIVE every timeout/3 seconds lets it
 * tell a silent peer from a busy one.
 */
static void
dst_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct mig_dst *s = arg;
	uint8_t buf[16];

	unsigned i;
	int n;

	if (s->link == NULL || mig_dst_terminal(s) ||
	    (s->state != DS_LIVE && s->state != DS_FINAL))
		return;
	n = proto_enc_keepalive(buf, sizeof(buf));
	(void)dst_send(s, buf, n);
	/* The data streams hear nothing else from us. */
	for (i = 1; i < PROTO_STREAMS_MAX; i++)
		if (s->ds[i].link != NULL && n > 0)
			(void)link_send(s->ds[i].link, buf, (size_t)n);
}

struct mig_dst *
mig_dst_new(struct dst_env *env, uint32_t id, struct bufferevent *bev,
    int connecting, dst_done_cb done, void *arg)
{
	struct mig_dst *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->id = id;
	s->env = env;
	s->done = done;
	s->done_arg = arg;
	s->state = DS_HANDSHAKE;
	s->base = bufferevent_get_base(bev);
	fill_ctx_init(&s->fc, env->ops, env->hv, env->index);
	s->cpu_start = thread_cpu_s();
	clock_gettime(CLOCK_MONOTONIC, &s->t_start);
	snprintf(s->peer, sizeof(s->peer), "?");
	if ((s->link = link_new(bev, PROTO_S2D, connecting, &dst_link_cbs,
	    s)) == NULL) {
		free(s);
		return NULL;
	}
	snprintf(s->peer, sizeof(s->peer), "%s", link_peer_addr(s->link));
	net_peer_ip(bufferevent_getfd(bev), s->peer_ip, sizeof(s->peer_ip));
	link_set_read_timeout(s->link, env->timeout_s);
	/* Stricter before authentication: 10 s at most to finish TLS. */
	link_set_handshake_timeout(s->link, env->timeout_s < 10 ?
	    env->timeout_s : 10);
	s->streams = 1;
	s->ev_barrier = evtimer_new(bufferevent_get_base(bev), dst_barrier_cb,
	    s);
	s->ev_ka = event_new(bufferevent_get_base(bev), -1, EV_PERSIST,
	    dst_keepalive, s);
	if (s->ev_ka != NULL) {
		struct timeval tv = { .tv_sec = env->timeout_s / 3 ?
		    env->timeout_s / 3 : 1, .tv_usec = 0 };

		event_add(s->ev_ka, &tv);
	}
	return s;
}

void
mig_dst_free(struct mig_dst *s)
{
	unsigned i;

	if (s == NULL)
		return;
	if (s->ev_ka != NULL)
		event_free(s->ev_ka);
	if (s->ev_barrier != NULL)
		event_free(s->ev_barrier);
	dst_fill_stop(s);
	filler_free(s->filler);
	free(s->pending);
	if (s->link != NULL)
		link_free(s->link);
	for (i = 1; i < PROTO_STREAMS_MAX; i++)
		link_free(s->ds[i].link);
	if (s->dom != NULL) {
		if (!s->committed && !mig_dst_terminal(s)) {
			(void)s->env->ops->destroy(s->dom);
			if (s->journaled)
				(void)journal_del(s->env->journal_dir,
				    s->domain);
		} else
			s->env->ops->dom_close(s->dom);
	}
	fill_ctx_close(&s->fc);
	free(s->unresolved);
	free(s->recvd);
	free(s->touched);
	pcomp_free(s->pc);
	free(s->zbuf);
	free(s);
}

int
mig_dst_preauth_from(const struct mig_dst *s, const char *ip)
{
	return (s->state == DS_HANDSHAKE || s->state == DS_HELLO) &&
	    strcmp(s->peer_ip, ip) == 0;
}

int
mig_dst_terminal(const struct mig_dst *s)
{
	return s->state == DS_DONE || s->state == DS_FAILED ||
	    s->state == DS_AMBIGUOUS || s->state == DS_JOINED;
}

int
mig_dst_joined(const struct mig_dst *s)
{
	return s->state == DS_JOINED;
}

int
mig_dst_has_token(const struct mig_dst *s, const uint8_t *token)
{
	return s->state == DS_LIVE && s->streams > 1 &&
	    CRYPTO_memcmp(s->token, token, PROTO_TOKEN_LEN) == 0;
}

struct json_object *
mig_dst_json(const struct mig_dst *s)
{
	static const char *const names[] = {
		[DS_HANDSHAKE] = "handshake", [DS_HELLO] = "hello",
		[DS_INFO] = "domain-info", [DS_LIVE] = "receiving",
		[DS_FINAL] = "final", [DS_READY] = "ready",
		[DS_DONE] = "completed", [DS_FAILED] = "failed",
		[DS_AMBIGUOUS] = "ambiguous", [DS_JOINED] = "joined",
	};
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_int64(s->id));
	json_object_object_add(o, "status",
	    json_object_new_string(names[s->state]));
	json_object_object_add(o, "peer", json_object_new_string(s->peer));
	json_object_object_add(o, "domain", json_object_new_string(s->domain));
	json_object_object_add(o, "pages_total", json_object_new_uint64(s->pages));
	json_object_object_add(o, "pages_data", json_object_new_uint64(s->pages_data));
	/* Pages filled from local memory: OFFER fills and PAGE_REF. */
	json_object_object_add(o, "pages_ref", json_object_new_uint64(
	    s->pages_ref + (s->advise ? 0 : s->had)));
	json_object_object_add(o, "pages_zero", json_object_new_uint64(s->pages_zero));
	/* ZERO pages left unwritten: the new domain still held zeros. */
	json_object_object_add(o, "pages_zero_skipped",
	    json_object_new_uint64(s->zero_skipped));
	json_object_object_add(o, "refs_failed", json_object_new_uint64(s->refs_failed));
	json_object_object_add(o, "fills_stale", json_object_new_uint64(
	    s->fc.stale));
	json_object_object_add(o, "pages_offered", json_object_new_uint64(s->offered));
	json_object_object_add(o, "pages_had", json_object_new_uint64(s->had));
	json_object_object_add(o, "compress", json_object_new_string(
	    pcomp_name(s->compress)));
	json_object_object_add(o, "bytes_data", json_object_new_uint64(
	    s->bytes_data));
	json_object_object_add(o, "streams", json_object_new_int64(
	    s->streams ? s->streams : 1));
	if (s->error[0])
		json_object_object_add(o, "error",
		    json_object_new_string(s->error));
	return o;
}

/* ---- recovery from the journal ---- */

struct dst_recover {
	struct dst_env	*env;
	uint32_t	*next_id;
	void		(*add)(struct mig_dst *s, void *arg);
	void		*arg;
	int		 count;
};

static void
dst_recover_one(const char *file, struct json_object *o, void *arg)
{
	struct dst_recover *rv = arg;
	struct dst_env *env = rv->env;
	const char *domain, *peer, *state;
	struct hv_dom_info info;
	enum dst_state st = DS_FAILED;
	struct hv_dom *d;
	struct mig_dst *s;
	char why[512];
	int exists;

	if (ctl_get_str(o, "domain", &domain) != 1 ||
	    ctl_get_str(o, "peer", &peer) != 1 ||
	    ctl_get_str(o, "state", &state) != 1) {
		log_err("journal entry %s/%s.json is unreadable; left for the "
		    "operator", env->journal_dir, file);
		return;
	}
	/* The committed domain, by name (an incoming one is not found). */
	exists = env->ops->dom_open(env->hv, domain, &d) == 0;
	memset(&info, 0, sizeof(info));
	if (exists) {
		(void)env->ops->dom_info(d, &info);
		env->ops->dom_close(d);
	}
	if (strcmp(state, "building") == 0) {
		snprintf(why, sizeof(why), "destd restarted during the "
		    "migration from %s; the half-built domain is destroyed "
		    "here and the guest kept running on the source", peer);
		(void)journal_del(env->journal_dir, file);
	} else if (strcmp(state, "go") == 0 && !exists) {
		snprintf(why, sizeof(why), "destd restarted after GO from %s, "
		    "before the domain was committed: it is destroyed here; "
		    "the source's paused copy is the guest (resume it "
		    "there)", peer);
		(void)journal_del(env->journal_dir, file);
	} else if (exists) {
		st = DS_AMBIGUOUS;
		snprintf(why, sizeof(why), "destd restarted after GO from %s, "
		    "before RUNNING reached the source: %s is here (%s) and "
		    "the source may still hold its paused copy; check both "
		    "hosts, then keep one copy", peer, domain,
		    (info.flags & HV_DOM_RUNNING) ? "running" : "paused");
		log_err("recovery: %s", why);
		/* Reported on every restart until one copy is gone. */
		if (strcmp(state, "ambiguous") != 0) {
			json_object_object_add(o, "state",
			    json_object_new_string("ambiguous"));
			(void)journal_put(env->journal_dir, file, o);
		}
	} else {
		/* Ambiguous before, and the operator removed the copy here. */
		(void)journal_del(env->journal_dir, file);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return;
	s->id = (*rv->next_id)++;
	s->env = env;
	s->state = st;
	snprintf(s->domain, sizeof(s->domain), "%s", domain);
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	snprintf(s->error, sizeof(s->error), "%s", why);
	if (st == DS_FAILED)
		log_notice("recovery: %s: %s", domain, why);
	rv->add(s, rv->arg);
	rv->count++;
}

int
mig_dst_recover(struct dst_env *env, uint32_t *next_id,
    void (*add)(struct mig_dst *s, void *arg), void *arg)
{
	struct dst_recover rv = { env, next_id, add, arg, 0 };
	int rc;

	if (env->journal_dir == NULL)
		return 0;
	if ((rc = journal_each(env->journal_dir, dst_recover_one, &rv)) < 0)
		return rc;
	return rv.count;
}
