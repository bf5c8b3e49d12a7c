/*
 * destd.c - the destination daemon: the migration listener, the control
 * socket, and the host's scanner and shared-page index.
 *
 * One scanner and one index per host: destd owns them.  sourced on the
 * same host asks destd over this control socket ("index-shared") when it
 * needs to know which of a guest's pages are shared on the host (the
 * "shared" dedup policy).  The migration path reads the index directly.
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <json-c/json.h>
#include <openssl/ssl.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "bitmap.h"
#include "cfg.h"
#include "ctl.h"
#include "destd.h"
#include "hfilt.h"
#include "hostid.h"
#include "hv.h"
#include "journal.h"
#include "log.h"
#include "prom.h"
#include "mig_dst.h"
#include "net.h"
#include "pcomp.h"
#include "pidx.h"
#include "proto.h"
#include "scan.h"
#include "tls.h"

#define DESTD_MAX_SESSIONS	16
#define DESTD_KEEP_DONE		32
#define DESTD_MAX_PREAUTH_PER_ADDR 4	/* unauthenticated connections per address */

/* Per-session counters (mig_dst_json fields). */
enum dst_counter { DC_DATA, DC_REF, DC_ZERO, DC_HAD, DC_REFS_FAILED,
	DC_STALE, DC_MAX };
static const char *const dst_counter_fields[DC_MAX] = {
	"pages_data", "pages_ref", "pages_zero", "pages_had", "refs_failed",
	"fills_stale",
};

struct scan_waiter {
	struct ctl_req		*req;
	uint64_t		 target;	/* pass count to reach */
	struct timespec		 deadline;
	struct scan_waiter	*next;
};

struct destd {
	/* Read-only after start-up. */
	struct dst_env		 env;
	struct hv_params	 hvp;
	SSL_CTX			*tls;		/* NULL with --insecure */

	/* Event-loop thread only. */
	struct event_base	*base;
	struct evconnlistener	*listener;
	struct ctl_server	*ctl;
	struct scan		*scan;
	struct event		*ev_sigint, *ev_sigterm, *ev_tick;
	struct mig_dst		*sess[DESTD_MAX_SESSIONS + DESTD_KEEP_DONE];
	size_t			 nsess;
	uint32_t		 next_id;
	struct scan_waiter	*scan_waiters;
	struct prom_server	*http;		/* --metrics, or NULL */
	const char		*listen;	/* for STATUS */

	/* Event-loop thread only: totals of ended sessions. */
	uint64_t		 completed, failed;
	uint64_t		 ended[DC_MAX];
};

/* Tell systemd (when it started us) what the daemon is doing. */
static void
notify_status(struct destd *dd, size_t live)
{
#ifdef HAVE_LIBSYSTEMD
	if (live == 0)
		sd_notifyf(0, "STATUS=idle, listening on %s; %llu completed, "
		    "%llu failed since start", dd->listen,
		    (unsigned long long)dd->completed,
		    (unsigned long long)dd->failed);
	else
		sd_notifyf(0, "STATUS=%zu incoming migration%s in progress; "
		    "%llu completed, %llu failed since start", live,
		    live == 1 ? "" : "s", (unsigned long long)dd->completed,
		    (unsigned long long)dd->failed);
#endif
}

static uint64_t
json_u64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_uint64(v) : 0;
}

static size_t
sessions_live(struct destd *dd)
{
	size_t i, n = 0;

	for (i = 0; i < dd->nsess; i++)
		n += !mig_dst_terminal(dd->sess[i]);
	return n;
}

/* Free session i and close the gap in the table. */
static void
session_drop(struct destd *dd, size_t i)
{
	mig_dst_free(dd->sess[i]);
	memmove(&dd->sess[i], &dd->sess[i + 1],
	    (dd->nsess - i - 1) * sizeof(dd->sess[0]));
	dd->nsess--;
}

/*
 * Forget the connections that joined another session as its data
 * streams, and the oldest finished sessions so the table has room.
 */
static void
sessions_gc(struct destd *dd, size_t keep)
{
	size_t i, done;

	for (i = 0; i < dd->nsess;)
		if (mig_dst_joined(dd->sess[i]))
			session_drop(dd, i);
		else
			i++;
	done = dd->nsess - sessions_live(dd);
	for (i = 0; i < dd->nsess && done > keep;) {
		if (!mig_dst_terminal(dd->sess[i])) {
			i++;
			continue;
		}
		session_drop(dd, i);
		done--;
	}
}

/* The session's done callback: once, when it has ended.  It is kept
 * for "status" and collected by sessions_gc(). */
static void
session_done(struct mig_dst *s, void *arg)
{
	struct destd *dd = arg;
	struct json_object *j, *v;
	size_t i;

	if (mig_dst_joined(s))
		return;		/* a data stream of another session */
	j = mig_dst_json(s);
	if (json_object_object_get_ex(j, "status", &v) &&
	    strcmp(json_object_get_string(v), "completed") == 0)
		dd->completed++;
	else
		dd->failed++;
	for (i = 0; i < DC_MAX; i++)
		dd->ended[i] += json_u64(j, dst_counter_fields[i]);
	json_object_put(j);
	notify_status(dd, sessions_live(dd));
}

/* JOIN: the live session waiting for streams with this token. */
static struct mig_dst *
find_token(void *arg, const uint8_t *token)
{
	struct destd *dd = arg;
	size_t i;

	for (i = 0; i < dd->nsess; i++)
		if (mig_dst_has_token(dd->sess[i], token))
			return dd->sess[i];
	return NULL;
}

/* A session settled from the journal of a previous run: in status. */
static void
recovered_session(struct mig_dst *s, void *arg)
{
	struct destd *dd = arg;

	if (dd->nsess >= DESTD_KEEP_DONE) {
		mig_dst_free(s);
		return;
	}
	dd->sess[dd->nsess++] = s;
}

static void
on_accept(struct evconnlistener *lst, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct destd *dd = arg;
	struct bufferevent *bev;
	struct mig_dst *s;
	char peer[96];
	SSL *ssl;

	net_peer_str(fd, peer, sizeof(peer));
	sessions_gc(dd, DESTD_KEEP_DONE - 1);
	if (sessions_live(dd) >= DESTD_MAX_SESSIONS ||
	    dd->nsess >= DESTD_MAX_SESSIONS + DESTD_KEEP_DONE) {
		log_warn("connection from %s refused: %d migrations in "
		    "progress", peer, DESTD_MAX_SESSIONS);
		close(fd);
		return;
	}
	/* Before authentication a peer address gets few connections. */
	{
		char ip[64];
		size_t i, n = 0;

		net_peer_ip(fd, ip, sizeof(ip));
		for (i = 0; i < dd->nsess; i++)
			n += mig_dst_preauth_from(dd->sess[i], ip);
		if (n >= DESTD_MAX_PREAUTH_PER_ADDR) {
			log_warn("connection from %s refused: %zu connections "
			    "from that address are still unauthenticated", peer,
			    n);
			close(fd);
			return;
		}
	}
	(void)net_link_opts(fd, 10, 5, 3, dd->env.timeout_s * 1000);
	if (dd->tls != NULL) {
		if ((ssl = SSL_new(dd->tls)) == NULL) {
			log_err("connection from %s: out of memory", peer);
			close(fd);
			return;
		}
		bev = bufferevent_openssl_socket_new(dd->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(dd->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		log_err("connection from %s: out of memory", peer);
		close(fd);
		return;
	}
	s = mig_dst_new(&dd->env, dd->next_id, bev, dd->tls != NULL,
	    session_done, dd);
	if (s == NULL) {
		log_err("connection from %s: out of memory", peer);
		bufferevent_free(bev);
		return;
	}
	dd->next_id++;
	dd->sess[dd->nsess++] = s;
	notify_status(dd, sessions_live(dd));
}

static void
on_accept_error(struct evconnlistener *lst, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	log_warn("accept: %s", evutil_socket_error_to_string(e));
}

/* ---- control commands ---- */



static void
cmd_list(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	struct hv_dom_info *doms = NULL;
	struct json_object *o, *arr, *d;
	size_t n = 0, i;
	int rc;

	if ((rc = dd->env.ops->list(dd->env.hv, &doms, &n)) != 0) {
		ctl_reply_error(r, "cannot list domains: %s", strerror(-rc));
		return;
	}
	o = ctl_ok();
	arr = json_object_new_array();
	for (i = 0; i < n; i++) {
		d = json_object_new_object();
		json_object_object_add(d, "name",
		    json_object_new_string(doms[i].name));
		json_object_object_add(d, "domid",
		    json_object_new_int64(doms[i].domid));
		json_object_object_add(d, "pages",
		    json_object_new_uint64(doms[i].pages));
		json_object_array_add(arr, d);
	}
	json_object_object_add(o, "domains", arr);
	free(doms);
	ctl_reply(r, o);
}

static void
cmd_status(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *o = ctl_ok(), *arr = json_object_new_array();
	size_t i;

	for (i = 0; i < dd->nsess; i++)
		if (!mig_dst_joined(dd->sess[i]))
			json_object_array_add(arr, mig_dst_json(dd->sess[i]));
	json_object_object_add(o, "sessions", arr);
	ctl_reply(r, o);
}

/*
 * Which pages of a local domain are shared on this host: a bitmap as
 * lowercase hex, 16 digits per 64-bit word (word 0 first; bit p of a word
 * is pfn 64*w + p).  Used by sourced for the "shared" policy.
 */
static void
cmd_index_shared(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *o;
	int64_t domid, pages;
	uint64_t *bm;
	size_t words, i;
	char *hex;
	int rc;

	if (ctl_get_int(req, "domid", &domid) != 1 ||
	    ctl_get_int(req, "pages", &pages) != 1 || domid < 0 ||
	    pages <= 0 || (uint64_t)pages > dd->env.max_pages) {
		ctl_reply_error(r, "index-shared needs integer domid and "
		    "pages");
		return;
	}
	words = bm_words((uint64_t)pages);
	if ((bm = bm_alloc((uint64_t)pages)) == NULL ||
	    (hex = malloc(words * 16 + 1)) == NULL) {
		free(bm);
		ctl_reply_error(r, "out of memory");
		return;
	}
	rc = pidx_dom_shared(dd->env.index, (uint32_t)domid, bm,
	    (uint64_t)pages);
	if (rc != 0 && rc != -ENOENT) {
		free(bm);
		free(hex);
		ctl_reply_error(r, "index: %s", strerror(-rc));
		return;
	}
	for (i = 0; i < words; i++)
		snprintf(hex + i * 16, 17, "%016llx",
		    (unsigned long long)bm[i]);
	hex[words * 16] = '\0';
	o = ctl_ok();
	json_object_object_add(o, "indexed", json_object_new_boolean(rc == 0));
	json_object_object_add(o, "bitmap", json_object_new_string(hex));
	free(bm);
	free(hex);
	ctl_reply(r, o);
}

/*
 * For pfns [first, first + count) of a local domain, the pages whose
 * content is held once on this host (pidx_dom_keys): the XXH3
 * fingerprint (0 = any other page) and the first 8 bytes of the SHA-256
 * taken with it.  sourced checks a page's XXH3 against the fingerprint
 * and, if equal, offers that prefix without hashing the page.  With
 * "binary": true the reply carries them as raw octets after its line
 * (ctl_reply_data), 16 a pfn: the fingerprint little-endian, then the
 * prefix; else as "keys", 32 lowercase hex digits a pfn (fingerprint,
 * then prefix).  At most DESTD_KEYS_MAX pfns per request, so a reply
 * stays under CTL_REPLY_MAX either way.
 */
#define DESTD_KEYS_MAX	131072

static void
cmd_index_keys(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	static const char hx[] = "0123456789abcdef";
	struct json_object *o;
	int64_t domid, first, count;
	uint8_t (*pre)[8], *raw = NULL, *p;
	uint64_t *fps, le;
	char *hex = NULL, *h;
	size_t i;
	int rc, j, binary = 0;

	if (ctl_get_int(req, "domid", &domid) != 1 ||
	    ctl_get_int(req, "first", &first) != 1 ||
	    ctl_get_int(req, "count", &count) != 1 || domid < 0 ||
	    domid > UINT32_MAX || first < 0 || count <= 0 ||
	    count > DESTD_KEYS_MAX ||
	    ctl_get_bool(req, "binary", &binary) < 0) {
		ctl_reply_error(r, "index-keys needs integer domid, first "
		    "and count (1 to %d), and a boolean binary if any",
		    DESTD_KEYS_MAX);
		return;
	}
	fps = malloc((size_t)count * sizeof(*fps));
	pre = malloc((size_t)count * 8);
	if (binary)
		raw = malloc((size_t)count * 16);
	else
		hex = malloc((size_t)count * 32 + 1);
	if (fps == NULL || pre == NULL || (raw == NULL && hex == NULL)) {
		ctl_reply_error(r, "out of memory");
		goto out;
	}
	rc = pidx_dom_keys(dd->env.index, (uint32_t)domid, (uint64_t)first,
	    (size_t)count, fps, pre);
	o = ctl_ok();
	json_object_object_add(o, "indexed", json_object_new_boolean(rc == 0));
	if (binary) {
		for (i = 0, p = raw; i < (size_t)count; i++, p += 16) {
			le = htole64(fps[i]);
			memcpy(p, &le, 8);
			memcpy(p + 8, pre[i], 8);
		}
		ctl_reply_data(r, o, raw, (size_t)count * 16);
		goto out;
	}
	for (i = 0, h = hex; i < (size_t)count; i++) {
		for (j = 60; j >= 0; j -= 4)
			*h++ = hx[(fps[i] >> j) & 15];
		for (j = 0; j < 8; j++) {
			*h++ = hx[pre[i][j] >> 4];
			*h++ = hx[pre[i][j] & 15];
		}
	}
	*h = '\0';
	json_object_object_add(o, "keys", json_object_new_string(hex));
	ctl_reply(r, o);
out:
	free(fps);
	free(pre);
	free(raw);
	free(hex);
}

static struct json_object *
stats_json(const struct pidx_stats *st)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "pages", json_object_new_uint64(st->pages));
	json_object_object_add(o, "zero_pages",
	    json_object_new_uint64(st->zero_pages));
	json_object_object_add(o, "unique_digests",
	    json_object_new_uint64(st->unique_digests));
	json_object_object_add(o, "shared_pages",
	    json_object_new_uint64(st->shared_pages));
	json_object_object_add(o, "bytes", json_object_new_uint64(st->bytes));
	return o;
}

static void
cmd_index(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *o = ctl_ok(), *arr = json_object_new_array(), *d;
	struct hv_dom_info *doms = NULL;
	struct hfilt_snap *sn;
	struct pidx_stats st;
	struct scan_stats ss;
	size_t n = 0, i;

	if (dd->env.ops->list(dd->env.hv, &doms, &n) == 0) {
		for (i = 0; i < n; i++) {
			if (pidx_stats(dd->env.index, doms[i].domid, &st) != 0)
				continue;
			d = stats_json(&st);
			json_object_object_add(d, "name",
			    json_object_new_string(doms[i].name));
			json_object_object_add(d, "domid",
			    json_object_new_int64(doms[i].domid));
			json_object_array_add(arr, d);
		}
		free(doms);
	}
	json_object_object_add(o, "domains", arr);
	if (pidx_stats(dd->env.index, UINT32_MAX, &st) == 0)
		json_object_object_add(o, "host", stats_json(&st));
	scan_get_stats(dd->scan, &ss);
	d = json_object_new_object();
	json_object_object_add(d, "passes", json_object_new_uint64(ss.passes));
	json_object_object_add(d, "pages_scanned",
	    json_object_new_uint64(ss.pages_scanned));
	json_object_object_add(d, "pages_hashed",
	    json_object_new_uint64(ss.pages_hashed));
	json_object_object_add(d, "cpu_s", json_object_new_double(ss.cpu_s));
	json_object_object_add(o, "scanner", d);
	if ((sn = hfilt_get(dd->env.filter)) != NULL) {
		d = json_object_new_object();
		json_object_object_add(d, "contents",
		    json_object_new_uint64(sn->contents));
		json_object_object_add(d, "bytes",
		    json_object_new_uint64(sn->f.nbits / 8));
		json_object_object_add(d, "probes",
		    json_object_new_int(sn->f.k));
		json_object_object_add(d, "build_ms",
		    json_object_new_double(sn->build_ms));
		json_object_object_add(d, "age_ms",
		    json_object_new_double(hfilt_age_ms(sn)));
		json_object_object_add(o, "filter", d);
		hfilt_put(sn);
	}
	ctl_reply(r, o);
}

static int
ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	    (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Answer scan-wait requests whose pass arrived or whose time is up. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct destd *dd = arg;
	struct scan_waiter **wp, *w;
	struct scan_stats ss;
	struct timespec now;
	struct json_object *o;

	scan_get_stats(dd->scan, &ss);
	clock_gettime(CLOCK_MONOTONIC, &now);
	for (wp = &dd->scan_waiters; (w = *wp) != NULL;) {
		if (ss.passes >= w->target) {
			o = ctl_ok();
			json_object_object_add(o, "passes",
			    json_object_new_uint64(ss.passes));
			ctl_reply(w->req, o);
		} else if (ts_before(&w->deadline, &now)) {
			ctl_reply_error(w->req, "timed out waiting for the "
			    "scanner");
		} else {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		free(w);
	}
}

/* Wait until the scanner has completed `passes` more full passes. */
static void
cmd_scan_wait(struct destd *dd, struct ctl_req *r, struct json_object *req)
{
	struct scan_waiter *w;
	struct scan_stats ss;
	int64_t passes = 1, timeout = 60000;

	if (ctl_get_int(req, "passes", &passes) < 0 ||
	    ctl_get_int(req, "timeout_ms", &timeout) < 0 || passes < 1 ||
	    passes > 1000 || timeout < 0) {
		ctl_reply_error(r, "scan-wait: passes 1..1000, timeout_ms >= 0");
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		ctl_reply_error(r, "out of memory");
		return;
	}
	scan_get_stats(dd->scan, &ss);
	/* The pass in progress may have started before the caller's
	 * change: count only passes that start after now. */
	w->target = ss.passes + (uint64_t)passes + (ss.busy ? 1 : 0);
	w->req = r;
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += timeout / 1000;
	w->deadline.tv_nsec += (timeout % 1000) * 1000000;
	if (w->deadline.tv_nsec >= 1000000000) {
		w->deadline.tv_sec++;
		w->deadline.tv_nsec -= 1000000000;
	}
	w->next = dd->scan_waiters;
	dd->scan_waiters = w;
	scan_kick(dd->scan);
}

static const struct {
	const char	*name;
	void		(*fn)(struct destd *, struct ctl_req *,
			    struct json_object *);
} destd_cmds[] = {
	{ "list",		cmd_list },
	{ "status",		cmd_status },
	{ "index",		cmd_index },
	{ "index-shared",	cmd_index_shared },
	{ "index-keys",		cmd_index_keys },
	{ "scan-wait",		cmd_scan_wait },
};

static void
destd_ctl(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct destd *dd = arg;
	struct json_object *v;
	const char *cmd;
	size_t i;

	if (!json_object_object_get_ex(req, "cmd", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		ctl_reply_error(r, "request without a \"cmd\" string");
		return;
	}
	cmd = json_object_get_string(v);
	for (i = 0; i < sizeof(destd_cmds) / sizeof(destd_cmds[0]); i++)
		if (strcmp(destd_cmds[i].name, cmd) == 0) {
			destd_cmds[i].fn(dd, r, req);
			return;
		}
	ctl_reply_error(r, "unknown command '%s'", cmd);
}

/* ---- Prometheus text endpoint (--metrics ADDR:PORT) ---- */



/* The exposition (text format 0.0.4).  Session counters are the totals
 * of ended sessions plus the figures of running ones. */
static void
destd_metrics(struct evbuffer *b, void *arg)
{
	struct destd *dd = arg;

	static const char *const kinds[] = { "data", "ref", "zero", "had" };
	uint64_t tot[DC_MAX];
	struct json_object *j;
	struct hfilt_snap *sn;
	struct pidx_stats st;
	struct scan_stats ss;
	size_t i, k, live = 0;

	memcpy(tot, dd->ended, sizeof(tot));
	for (i = 0; i < dd->nsess; i++) {
		if (mig_dst_terminal(dd->sess[i]))
			continue;
		live++;
		j = mig_dst_json(dd->sess[i]);
		for (k = 0; k < DC_MAX; k++)
			tot[k] += json_u64(j, dst_counter_fields[k]);
		json_object_put(j);
	}
	prom_head(b, "sharemig_build_info", "gauge",
	    "Version of the running daemon (always 1).");
	evbuffer_add_printf(b, "sharemig_build_info{daemon=\"destd\","
	    "version=\"%s\"} 1\n", SHAREMIG_VERSION);
	prom_u64(b, "sharemig_dest_sessions_in_progress", "gauge",
	    "Incoming migrations not yet ended.", live);
	prom_head(b, "sharemig_dest_sessions_total", "counter",
	    "Incoming migrations that ended, by outcome.");
	evbuffer_add_printf(b, "sharemig_dest_sessions_total{outcome=\""
	    "completed\"} %llu\n", (unsigned long long)dd->completed);
	evbuffer_add_printf(b, "sharemig_dest_sessions_total{outcome=\""
	    "failed\"} %llu\n", (unsigned long long)dd->failed);
	prom_head(b, "sharemig_dest_pages_total", "counter",
	    "Guest pages received, by kind: data (in full), ref (PAGE_REF "
	    "records filled from this host's memory), zero, had (filled "
	    "from this host's memory after the hash negotiation).");
	for (k = 0; k < 4; k++)
		evbuffer_add_printf(b, "sharemig_dest_pages_total"
		    "{kind=\"%s\"} %llu\n", kinds[k],
		    (unsigned long long)tot[DC_DATA + k]);
	prom_u64(b, "sharemig_dest_refs_failed_total", "counter",
	    "REF pages no local copy could fill (asked from the source).",
	    tot[DC_REFS_FAILED]);
	prom_u64(b, "sharemig_dest_fills_stale_total", "counter",
	    "Local copies rejected because their SHA-256 did not match "
	    "(stale index entries).", tot[DC_STALE]);

	if (pidx_stats(dd->env.index, UINT32_MAX, &st) == 0) {
		prom_u64(b, "sharemig_index_pages", "gauge",
		    "Pages in the host's shared-page index, zero pages "
		    "included.", st.pages);
		prom_u64(b, "sharemig_index_zero_pages", "gauge",
		    "Indexed pages that are all zero.", st.zero_pages);
		prom_u64(b, "sharemig_index_shared_pages", "gauge",
		    "Indexed pages whose content is at two or more locations "
		    "on the host.", st.shared_pages);
		prom_u64(b, "sharemig_index_unique_digests", "gauge",
		    "Distinct non-zero contents in the index.",
		    st.unique_digests);
		prom_u64(b, "sharemig_index_memory_bytes", "gauge",
		    "Memory the index uses.", st.bytes);
		prom_head(b, "sharemig_index_sharing_ratio", "gauge",
		    "shared_pages / pages (0 when the index is empty).");
		evbuffer_add_printf(b, "sharemig_index_sharing_ratio %.6f\n",
		    st.pages ? (double)st.shared_pages / (double)st.pages : 0.0);
	}
	scan_get_stats(dd->scan, &ss);
	prom_u64(b, "sharemig_scanner_passes_total", "counter",
	    "Completed full passes of the scanner over the host's domains.",
	    ss.passes);
	prom_u64(b, "sharemig_scanner_pages_scanned_total", "counter",
	    "Pages fingerprinted (XXH3) by the scanner.", ss.pages_scanned);
	prom_u64(b, "sharemig_scanner_pages_hashed_total", "counter",
	    "Pages hashed with SHA-256 by the scanner (fingerprint "
	    "changed).", ss.pages_hashed);
	prom_head(b, "sharemig_scanner_cpu_seconds_total", "counter",
	    "CPU time of the scanner thread.");
	evbuffer_add_printf(b, "sharemig_scanner_cpu_seconds_total %.6f\n",
	    ss.cpu_s);
	prom_u64(b, "sharemig_scanner_domains", "gauge",
	    "Domains in the scanner's last pass.", ss.domains);
	prom_u64(b, "sharemig_scanner_busy", "gauge",
	    "1 while a pass is under way.", (uint64_t)(ss.busy != 0));
	if ((sn = hfilt_get(dd->env.filter)) != NULL) {
		prom_u64(b, "sharemig_filter_contents", "gauge",
		    "Contents in the FILTER incoming migrations get (rebuilt "
		    "at the end of each scanner pass).", sn->contents);
		prom_u64(b, "sharemig_filter_bytes", "gauge",
		    "Size of that filter (0: the index is too large for one).",
		    sn->f.nbits / 8);
		prom_head(b, "sharemig_filter_age_seconds", "gauge",
		    "Time since that filter was built.");
		evbuffer_add_printf(b, "sharemig_filter_age_seconds %.3f\n",
		    hfilt_age_ms(sn) / 1e3);
		hfilt_put(sn);
	}
}





static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct destd *dd = arg;

	log_notice("signal %d: shutting down", (int)sig);
	event_base_loopbreak(dd->base);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sharemig-destd --backend sim|xen --state-dir DIR "
	    "--listen ADDR:PORT --control SOCKET\n"
	    "           [--tls-cert F --tls-key F (--tls-ca F | --tls-pin "
	    "sha256:HEX) | --insecure]\n"
	    "           [--config FILE] [--check-config] [--scan-cpu F]\n"
	    "           [--scan-interval-ms N] [--max-pages N] [--timeout S]\n"
	    "           [--metrics ADDR:PORT] [--simhv PATH] "
	    "[--host-name NAME] [--verbose]\n"
	    "           [--compress-accept none|zstd,lz4] [--max-streams N]\n"
	    "       %s --version\n", "sharemig-destd");
}

/*
 * The scanner finished a pass: rebuild the host's filter for incoming
 * migrations (hfilt.h), on the scanner thread.  Without memory the
 * previous one stays: a staler filter only costs dedup.
 */
static void
destd_pass_done(struct pidx *ix, void *arg)
{
	struct hfilt_snap *sn;

	if (hfilt_build(ix, PROTO_FILTER_BITS_MAX, &sn) == 0)
		hfilt_set(arg, sn);
	else
		log_warn("scanner: no memory to rebuild the filter for "
		    "incoming migrations: the previous one stays");
}

int
destd_main(int argc, char **argv)
{
	enum { O_BACKEND = 256, O_STATE, O_LISTEN, O_CONTROL, O_CERT, O_KEY,
	    O_CA, O_PIN, O_INSECURE, O_CONFIG, O_CHECK, O_SCANCPU, O_SCANINT,
	    O_MAXPAGES, O_TIMEOUT, O_SIMHV, O_HOSTNAME, O_VERBOSE, O_HELP,
	    O_METRICS, O_VERSION, O_COMPACCEPT, O_MAXSTREAMS };
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_KEY },
		{ "tls-ca", required_argument, NULL, O_CA },
		{ "tls-pin", required_argument, NULL, O_PIN },
		{ "insecure", no_argument, NULL, O_INSECURE },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "scan-cpu", required_argument, NULL, O_SCANCPU },
		{ "scan-interval-ms", required_argument, NULL, O_SCANINT },
		{ "max-pages", required_argument, NULL, O_MAXPAGES },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "simhv", required_argument, NULL, O_SIMHV },
		{ "host-name", required_argument, NULL, O_HOSTNAME },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "version", no_argument, NULL, O_VERSION },
		{ "compress-accept", required_argument, NULL, O_COMPACCEPT },
		{ "max-streams", required_argument, NULL, O_MAXSTREAMS },
		{ NULL, 0, NULL, 0 },
	};
	struct destd dd;
	struct cfg cfg;
	struct tls_files tf;
	struct net_addr addr;
	struct scan_params sp;
	struct timeval tick = { 0, 50000 };
	const char *config = NULL, *simhv = NULL, *hostname = NULL;
	const char *metrics = NULL;
	char err[512], pin[TLS_PIN_STRLEN + 1], *end, *journal = NULL;
	int c, check = 0, insecure_flag = 0, verbose = 0, rc, fd;
	double d;

	memset(&dd, 0, sizeof(dd));
	log_init("sharemig-destd", LOG_LVL_INFO);
	cfg_defaults(&cfg);
	/* First pass: the config file, so flags can override it. */
	if ((rc = cfg_load_args(&cfg, argc, argv, &check, err,
	    sizeof(err))) != 0) {
		if (check) {
			/* err is "path:line: reason" or "path: reason". */
			fprintf(stderr, "%s: %s\n", "sharemig-destd", err);
			cfg_free(&cfg);
			return 1;
		}
		fatal("configuration: %s", err);
	}
	dd.env.max_pages = 16ull << 20;		/* 64 GiB */
	dd.env.compress_caps = PROTO_CAP_ZSTD | PROTO_CAP_LZ4;
	dd.env.timeout_s = 30;
	dd.env.max_streams = cfg.max_streams;
	dd.env.find_token = find_token;
	dd.env.find_arg = &dd;
#define SETSTR(field) do { free(cfg.field); cfg.field = strdup(optarg); } \
	while (0)
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_BACKEND: SETSTR(backend); break;
		case O_STATE: SETSTR(state_dir); break;
		case O_LISTEN: SETSTR(listen); break;
		case O_CONTROL: SETSTR(destd_control); break;
		case O_CERT: SETSTR(tls_cert); break;
		case O_KEY: SETSTR(tls_key); break;
		case O_CA: SETSTR(tls_ca); break;
		case O_PIN: SETSTR(tls_pin); break;
		case O_INSECURE: insecure_flag = 1; break;
		case O_CONFIG: break;
		case O_CHECK: check = 1; break;
		case O_SCANCPU:
			d = strtod(optarg, &end);
			if (*end || !(d > 0 && d <= 1)) {
				fprintf(stderr, "sharemig-destd: --scan-cpu "
				    "must be in (0, 1]\n");
				return 2;
			}
			cfg.scan_cpu = d;
			break;
		case O_SCANINT:
		case O_MAXPAGES:
		case O_TIMEOUT:
			errno = 0;
			d = (double)strtoull(optarg, &end, 10);
			if (errno || *end || *optarg == '\0' || d < 1) {
				fprintf(stderr, "sharemig-destd: bad value "
				    "'%s'\n", optarg);
				return 2;
			}
			if (c == O_SCANINT)
				cfg.scan_interval_ms = (unsigned)d;
			else if (c == O_MAXPAGES)
				dd.env.max_pages = (uint64_t)d;
			else
				dd.env.timeout_s = (unsigned)d;
			break;
		case O_COMPACCEPT:
			if (pcomp_parse_caps(optarg,
			    &dd.env.compress_caps) != 0) {
				fprintf(stderr, "sharemig-destd: "
				    "--compress-accept: '%s' is not none or a "
				    "list of zstd, lz4\n", optarg);
				return 2;
			}
			break;
		case O_MAXSTREAMS:
			errno = 0;
			d = (double)strtoull(optarg, &end, 10);
			if (errno || *end || *optarg < '0' || *optarg > '9' ||
			    d < 1 || d > PROTO_STREAMS_MAX) {
				fprintf(stderr, "sharemig-destd: --max-streams "
				    "'%s' is not an integer in [1, %u]\n",
				    optarg, PROTO_STREAMS_MAX);
				return 2;
			}
			dd.env.max_streams = (unsigned)d;
			break;
		case O_SIMHV: simhv = optarg; break;
		case O_HOSTNAME: hostname = optarg; break;
		case O_VERBOSE: verbose = 1; break;
		case O_METRICS: metrics = optarg; break;
		case O_HELP: usage(stdout); return 0;
		case O_VERSION:
			printf("sharemig-destd %s\n", SHAREMIG_VERSION);
			return 0;
		default: usage(stderr); return 2;
		}
	}
#undef SETSTR
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (insecure_flag)
		cfg.insecure = 1;
	if (verbose)
		log_set_level(LOG_LVL_DEBUG);
	if ((dd.env.ops = hv_find(cfg.backend)) == NULL)
		fatal("unknown or unbuilt backend '%s'", cfg.backend);
	if ((rc = net_parse_addr(cfg.listen, 8002, &addr)) != 0)
		fatal("bad --listen address '%s'", cfg.listen);
	if (metrics != NULL && !prom_addr_valid(metrics))
		fatal("--metrics '%s': expected ADDR:PORT", metrics);
	if (check) {
		if (!cfg.insecure) {
			tf.cert = cfg.tls_cert;
			tf.key = cfg.tls_key;
			tf.ca = cfg.tls_ca;
			tf.pin = cfg.tls_pin;
			if ((dd.tls = tls_ctx_server(&tf, err,
			    sizeof(err))) == NULL) {
				fprintf(stderr, "sharemig-destd: TLS: %s\n",
				    err);
				cfg_free(&cfg);
				return 1;
			}
			SSL_CTX_free(dd.tls);
		}
		printf("configuration OK (%s)\n", config != NULL ? config :
		    access(CFG_DEFAULT_PATH, R_OK) == 0 ? CFG_DEFAULT_PATH :
		    "no file, defaults");
		cfg_free(&cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0)
		fatal("libevent without pthreads support");
	if ((dd.base = event_base_new()) == NULL)
		fatal("cannot create the event loop");
	dd.hvp.state_dir = cfg.state_dir;
	dd.hvp.simhv_path = simhv;
	dd.env.hvp = &dd.hvp;
	if ((rc = dd.env.ops->open(&dd.hvp, &dd.env.hv)) != 0)
		fatal("cannot open the %s backend (state dir %s): %s",
		    cfg.backend, cfg.state_dir, strerror(-rc));
	hostid_get(cfg.state_dir, dd.env.host_id, dd.env.host_name,
	    sizeof(dd.env.host_name), hostname);
	if (cfg.insecure) {
		log_warn("--insecure: migration streams are neither "
		    "encrypted nor authenticated; anyone who can reach %s "
		    "can send a guest", cfg.listen);
	} else {
		tf.cert = cfg.tls_cert;
		tf.key = cfg.tls_key;
		tf.ca = cfg.tls_ca;
		tf.pin = cfg.tls_pin;
		if ((dd.tls = tls_ctx_server(&tf, err, sizeof(err))) == NULL)
			fatal("TLS: %s (or run with --insecure)", err);
		if (tls_ctx_own_pin(dd.tls, pin, sizeof(pin)) == 0)
			log_notice("TLS: this host's pin (for the peers' "
			    "--tls-pin) is %s", pin);
	}
	/* Half-built guests of a destd that died before GO: their sources
	 * kept running (I5); nothing else will ever finish them. */
	{
		char **names = NULL;
		size_t n = 0, i;

		/* What an earlier run left: its journal's records become
		 * ended sessions in "status", then the half-built domains
		 * are destroyed. */
		if (asprintf(&journal, "%s/destd-journal", cfg.state_dir) == -1)
			fatal("out of memory");
		if ((rc = journal_init(journal)) != 0)
			fatal("cannot create the journal directory %s: %s",
			    journal, strerror(-rc));
		dd.env.journal_dir = journal;
		dd.next_id = 1;
		if ((rc = mig_dst_recover(&dd.env, &dd.next_id,
		    recovered_session, &dd)) < 0)
			log_err("journal %s: %s", journal, strerror(-rc));
		else if (rc > 0)
			log_notice("journal: %d migration(s) of a previous run "
			    "settled", rc);
		rc = dd.env.ops->reap_incoming(dd.env.hv, &names, &n);
		for (i = 0; i < n; i++) {
			log_notice("destroyed %s, a half-built incoming domain "
			    "left by an earlier run", names[i]);
			free(names[i]);
		}
		free(names);
		if (rc != 0)
			log_warn("cleaning up half-built incoming domains: %s",
			    strerror(-rc));
	}
	if ((dd.env.index = pidx_new()) == NULL ||
	    (dd.env.filter = hfilt_new()) == NULL)
		fatal("out of memory");
	memset(&sp, 0, sizeof(sp));
	sp.ops = dd.env.ops;
	sp.hvp = dd.hvp;
	sp.cpu_budget = cfg.scan_cpu;
	sp.interval_ms = cfg.scan_interval_ms;
	sp.batch_pages = 256;
	sp.pass_done = destd_pass_done;
	sp.pass_arg = dd.env.filter;
	if ((rc = scan_start(dd.env.index, &sp, &dd.scan)) != 0)
		fatal("cannot start the scanner: %s", strerror(-rc));

	if ((fd = net_listen_tcp(&addr, 64)) < 0)
		fatal("cannot listen on %s: %s", cfg.listen, strerror(-fd));
	dd.listener = evconnlistener_new(dd.base, on_accept, &dd,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (dd.listener == NULL)
		fatal("cannot listen on %s", cfg.listen);
	evconnlistener_set_error_cb(dd.listener, on_accept_error);
	rc = ctl_server_new(dd.base, cfg.destd_control, -1, destd_ctl, &dd,
	    &dd.ctl);
	if (rc != 0)
		fatal("control socket %s: %s", cfg.destd_control,
		    strerror(-rc));
	dd.ev_sigint = evsignal_new(dd.base, SIGINT, on_signal, &dd);
	dd.ev_sigterm = evsignal_new(dd.base, SIGTERM, on_signal, &dd);
	dd.ev_tick = event_new(dd.base, -1, EV_PERSIST, on_tick, &dd);
	event_add(dd.ev_sigint, NULL);
	event_add(dd.ev_sigterm, NULL);
	event_add(dd.ev_tick, &tick);
	dd.listen = cfg.listen;
	if (metrics != NULL) {
		if ((rc = prom_server_start(dd.base, metrics, destd_metrics, &dd,
		    &dd.http)) != 0)
			fatal("--metrics %s: %s", metrics, rc == -EINVAL ?
			    "expected ADDR:PORT" : strerror(-rc));
		log_notice("metrics on http://%s/metrics", metrics);
	}
	log_notice("ready: backend %s, state dir %s, listening on %s, "
	    "control %s%s", dd.env.ops->name, cfg.state_dir, cfg.listen,
	    cfg.destd_control, cfg.insecure ? ", insecure" :
	    cfg.tls_pin != NULL ? ", TLS 1.3, pinned peer" : ", TLS 1.3");
#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, "READY=1");
#endif
	notify_status(&dd, 0);
	event_base_dispatch(dd.base);

#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	evconnlistener_free(dd.listener);
	/* Unfinished incoming domains are destroyed (mig_dst_free). */
	while (dd.nsess > 0)
		mig_dst_free(dd.sess[--dd.nsess]);
	while (dd.scan_waiters != NULL) {
		struct scan_waiter *w = dd.scan_waiters;

		dd.scan_waiters = w->next;
		ctl_reply_error(w->req, "daemon shutting down");
		free(w);
	}
	ctl_server_free(dd.ctl);
	prom_server_free(dd.http);
	scan_stop(dd.scan);
	hfilt_free(dd.env.filter);
	pidx_free(dd.env.index);
	event_free(dd.ev_sigint);
	event_free(dd.ev_sigterm);
	event_free(dd.ev_tick);
	dd.env.ops->close(dd.env.hv);
	if (dd.tls != NULL)
		SSL_CTX_free(dd.tls);
	event_base_free(dd.base);
	cfg_free(&cfg);
	free(journal);
	return 0;
}
