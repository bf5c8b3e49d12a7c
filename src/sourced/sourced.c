/*
 * sourced.c - the source daemon: command line, control socket, the table
 * of migration jobs.  The pre-copy engine itself is mig_src.c.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <json-c/json.h>
#include <openssl/ssl.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "cfg.h"
#include "ctl.h"
#include "hostid.h"
#include "hv.h"
#include "journal.h"
#include "log.h"
#include "prom.h"
#include "mig_src.h"
#include "pcomp.h"
#include "net.h"
#include "proto.h"
#include "sourced.h"
#include "tls.h"

#define SOURCED_KEEP_DONE	64	/* finished jobs kept for status */
#define SOURCED_MAX_JOBS	(SOURCED_KEEP_DONE + 64)

/* Outcomes of ended jobs, in the order of the metric's labels. */
enum outcome { OUT_COMPLETED, OUT_FAILED, OUT_CANCELLED, OUT_AMBIGUOUS,
	OUT_MAX };
static const char *const outcome_names[OUT_MAX] = {
	"completed", "failed", "cancelled", "ambiguous",
};

/* Per-page and per-byte counters a job reports (mig_src_json fields). */
enum src_counter { SC_DATA, SC_REF, SC_ZERO, SC_NEED, SC_WIRE, SC_QUEUED,
	SC_MAX };
static const char *const src_counter_fields[SC_MAX] = {
	"pages_data", "pages_ref", "pages_zero", "pages_need", "bytes_wire",
	"bytes_queued",
};

#define HISTO_MAX	16

/* A Prometheus histogram: per-bucket counts (not cumulative). */
struct histo {
	const double	*le;		/* upper bounds, ascending */
	size_t		 n;		/* +Inf is bucket n */
	uint64_t	 bucket[HISTO_MAX + 1];
	uint64_t	 count;
	double		 sum;
};

static const double duration_le[] = { 0.5, 1, 2, 5, 10, 30, 60, 120, 300,
	600, 1800 };
static const double downtime_le[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	0.5, 1, 2.5, 5, 10 };

struct waiter {
	struct ctl_req	*req;
	uint32_t	 id;
	struct waiter	*next;
};

/* An "advise" request: one dry-run job per candidate destination. */
#define ADVISE_MAX	16
struct advice {
	struct ctl_req		*req;
	char			 domain[64];
	size_t			 n, left;
	uint32_t		 ids[ADVISE_MAX];	/* 0 = could not start */
	struct json_object	*results[ADVISE_MAX];
	struct advice		*next;
};

struct sourced {
	/* Read-only after start-up. */
	struct src_env		 env;
	struct mig_opts		 defaults;
	struct hv_params	 hvp;

	/* Event-loop thread only. */
	struct event_base	*base;
	struct ctl_server	*ctl;
	struct event		*ev_sigint, *ev_sigterm;
	struct mig_src		*jobs[SOURCED_MAX_JOBS];
	size_t			 njobs;
	uint32_t		 next_id;
	struct waiter		*waiters;
	struct advice		*advices;
	struct prom_server	*http;		/* --metrics, or NULL */

	/* Event-loop thread only: totals of ended jobs, for STATUS and
	 * the metrics (jobs still running are added when read). */
	uint64_t		 outcomes[OUT_MAX];
	uint64_t		 ended[SC_MAX];
	struct histo		 duration;	/* total_ms, every ended job */
	struct histo		 downtime;	/* downtime_ms, completed */
};

/* Tell systemd (when it started us) what the daemon is doing. */
static void
notify_status(struct sourced *sd)
{
#ifdef HAVE_LIBSYSTEMD
	size_t i, live = 0;

	for (i = 0; i < sd->njobs; i++)
		live += !mig_src_terminal(sd->jobs[i]);
	if (live == 0)
		sd_notifyf(0, "STATUS=idle; %llu completed, %llu failed, "
		    "%llu cancelled, %llu ambiguous since start",
		    (unsigned long long)sd->outcomes[OUT_COMPLETED],
		    (unsigned long long)sd->outcomes[OUT_FAILED],
		    (unsigned long long)sd->outcomes[OUT_CANCELLED],
		    (unsigned long long)sd->outcomes[OUT_AMBIGUOUS]);
	else
		sd_notifyf(0, "STATUS=%zu migration%s in progress; %llu "
		    "completed, %llu failed since start", live,
		    live == 1 ? "" : "s",
		    (unsigned long long)sd->outcomes[OUT_COMPLETED],
		    (unsigned long long)sd->outcomes[OUT_FAILED]);
#endif
}

static void
histo_init(struct histo *h, const double *le, size_t n)
{
	assert(n <= HISTO_MAX);
	memset(h, 0, sizeof(*h));
	h->le = le;
	h->n = n;
}

static void
histo_add(struct histo *h, double v)
{
	size_t i;

	for (i = 0; i < h->n && v > h->le[i]; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum += v;
}

static uint64_t
json_u64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_uint64(v) : 0;
}

static double
json_double(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_double(v) : 0;
}

static struct mig_src *
job_find(struct sourced *sd, uint32_t id)
{
	size_t i;

	for (i = 0; i < sd->njobs; i++)
		if (mig_src_id(sd->jobs[i]) == id)
			return sd->jobs[i];
	return NULL;
}

/* Drop the oldest finished jobs beyond SOURCED_KEEP_DONE. */
static void
job_gc(struct sourced *sd)
{
	size_t i, done = 0;

	for (i = 0; i < sd->njobs; i++)
		done += mig_src_terminal(sd->jobs[i]);
	for (i = 0; i < sd->njobs && done > SOURCED_KEEP_DONE;) {
		if (!mig_src_terminal(sd->jobs[i])) {
			i++;
			continue;
		}
		mig_src_free(sd->jobs[i]);
		memmove(&sd->jobs[i], &sd->jobs[i + 1],
		    (sd->njobs - i - 1) * sizeof(sd->jobs[0]));
		sd->njobs--;
		done--;
	}
}

/* Answer every "wait" for m, which has ended. */
static void
answer_waiters(struct sourced *sd, struct mig_src *m)
{
	struct waiter **wp, *w;
	struct json_object *o;

	for (wp = &sd->waiters; (w = *wp) != NULL;) {
		if (w->id != mig_src_id(m)) {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(1));
		json_object_object_add(o, "migration", mig_src_json(m));
		ctl_reply(w->req, o);
		free(w);
	}
}

/* The engine's done callback: once per job, when it has ended. */
static void	advice_done(struct sourced *sd, struct mig_src *m);

static int
advice_cmp(const void *a, const void *b)
{
	struct json_object *x = *(struct json_object *const *)a;
	struct json_object *y = *(struct json_object *const *)b;
	struct json_object *v;
	double sx = -1, sy = -1;

	if (json_object_object_get_ex(x, "sharing", &v))
		sx = json_object_get_double(v);
	if (json_object_object_get_ex(y, "sharing", &v))
		sy = json_object_get_double(v);
	return sx < sy ? 1 : sx > sy ? -1 : 0;
}

/* Rank the candidates, most content held first, and answer. */
static void
advice_reply(struct advice *a)
{
	struct json_object *o = json_object_new_object(), *arr;
	size_t i;

	qsort(a->results, a->n, sizeof(a->results[0]), advice_cmp);
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "domain", json_object_new_string(a->domain));
	arr = json_object_new_array();
	for (i = 0; i < a->n; i++) {
		json_object_object_add(a->results[i], "rank",
		    json_object_new_int64((int64_t)i + 1));
		json_object_array_add(arr, a->results[i]);
		a->results[i] = NULL;
	}
	json_object_object_add(o, "candidates", arr);
	ctl_reply(a->req, o);
}

/* A dry-run job ended: record its result; answer when all have. */
static void
advice_done(struct sourced *sd, struct mig_src *m)
{
	struct advice **ap, *a;
	struct json_object *j, *r, *v;
	size_t i;

	for (ap = &sd->advices; (a = *ap) != NULL; ap = &a->next) {
		for (i = 0; i < a->n; i++)
			if (a->ids[i] == mig_src_id(m))
				break;
		if (i == a->n)
			continue;
		j = mig_src_json(m);
		r = json_object_new_object();
		static const char *const keep[] = { "destination", "status",
		    "pages_total", "pages_offered", "pages_have", "sharing",
		    "error" };
		for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++)
			if (json_object_object_get_ex(j, keep[k], &v))
				json_object_object_add(r, keep[k],
				    json_object_get(v));
		json_object_put(j);
		a->results[i] = r;
		if (--a->left == 0) {
			*ap = a->next;
			advice_reply(a);
			free(a);
		}
		return;
	}
}

static void job_done(struct mig_src *m, void *arg);

/*
 * advise DOMAIN HOST...: ask each candidate destination how much of the
 * guest's content its host already holds (an OFFER/HAVE dry run, see
 * docs/PROTOCOL.md "Advice sessions"), and rank them.  The reply comes
 * when every candidate has answered or failed.
 */
static void
cmd_advise(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *v, *d;
	struct mig_opts o = sd->defaults;
	struct advice *a;
	const char *domain = NULL, *dest;
	struct mig_src *m;
	char err[512];
	size_t i, n;

	if (ctl_get_str(req, "domain", &domain) != 1 ||
	    !json_object_object_get_ex(req, "destinations", &v) ||
	    !json_object_is_type(v, json_type_array) ||
	    (n = json_object_array_length(v)) == 0 || n > ADVISE_MAX) {
		ctl_reply_error(r, "advise needs \"domain\" and 1..%d "
		    "\"destinations\"", ADVISE_MAX);
		return;
	}
	if (sd->njobs + n > SOURCED_MAX_JOBS) {
		ctl_reply_error(r, "too many jobs");
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		ctl_reply_error(r, "out of memory");
		return;
	}
	a->req = r;
	snprintf(a->domain, sizeof(a->domain), "%s", domain);
	a->n = n;
	o.advise = 1;
	o.verify = 0;
	o.paused = 0;
	for (i = 0; i < n; i++) {
		d = json_object_array_get_idx(v, i);
		dest = json_object_is_type(d, json_type_string) ?
		    json_object_get_string(d) : "";
		if (mig_src_start(&sd->env, sd->next_id, domain, dest, &o,
		    job_done, sd, &m, err, sizeof(err)) != 0) {
			a->results[i] = json_object_new_object();
			json_object_object_add(a->results[i], "destination",
			    json_object_new_string(dest));
			json_object_object_add(a->results[i], "status",
			    json_object_new_string("failed"));
			json_object_object_add(a->results[i], "error",
			    json_object_new_string(err));
			continue;
		}
		a->ids[i] = sd->next_id++;
		a->left++;
		sd->jobs[sd->njobs++] = m;
	}
	if (a->left == 0) {
		advice_reply(a);
		free(a);
		return;
	}
	a->next = sd->advices;
	sd->advices = a;
}

static void
job_done(struct mig_src *m, void *arg)
{
	struct sourced *sd = arg;
	struct json_object *j;
	const char *st = "";
	struct json_object *v;
	size_t i;

	if (mig_src_is_advise(m)) {
		advice_done(sd, m);
		return;
	}
	j = mig_src_json(m);
	if (json_object_object_get_ex(j, "status", &v))
		st = json_object_get_string(v);
	for (i = 0; i < OUT_MAX; i++)
		if (strcmp(st, outcome_names[i]) == 0)
			break;
	if (i == OUT_MAX)
		i = OUT_FAILED;		/* not terminal: cannot happen */
	sd->outcomes[i]++;
	for (i = 0; i < SC_MAX; i++)
		sd->ended[i] += json_u64(j, src_counter_fields[i]);
	histo_add(&sd->duration, json_double(j, "total_ms") / 1000.0);
	if (strcmp(st, "completed") == 0)
		histo_add(&sd->downtime, json_double(j, "downtime_ms") /
		    1000.0);
	json_object_put(j);
	notify_status(sd);
	answer_waiters(sd, m);
}





static void
cmd_list(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct hv_dom_info *doms = NULL;
	struct json_object *o, *arr, *d;
	size_t n = 0, i;
	int rc;

	if ((rc = sd->env.ops->list(sd->env.hv, &doms, &n)) != 0) {
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
		json_object_object_add(d, "vcpus",
		    json_object_new_int64(doms[i].vcpus));
		json_object_object_add(d, "state", json_object_new_string(
		    (doms[i].flags & HV_DOM_PAUSED) ? "paused" :
		    (doms[i].flags & HV_DOM_RUNNING) ? "running" : "stopped"));
		json_object_array_add(arr, d);
	}
	json_object_object_add(o, "domains", arr);
	free(doms);
	ctl_reply(r, o);
}

/*
 * A request field that is one of two words: *out = 0 for w0, 1 for w1
 * (the MIG_ZERO_* and MIG_ORDER_* values), untouched when absent.
 * Returns 1, 0 (absent) or -1 (not a string, or another word).
 */
_Static_assert(MIG_ZERO_SEND == 0 && MIG_ZERO_ELIDE == 1 &&
    MIG_ORDER_PFN == 0 && MIG_ORDER_UNIQUE_FIRST == 1,
    "get_either's 0/1 are these values");
static int
get_either(struct json_object *req, const char *key, const char *w0,
    const char *w1, int *out)
{
	const char *word;
	int rc;

	if ((rc = ctl_get_str(req, key, &word)) != 1)
		return rc < 0 ? -1 : 0;
	if (strcmp(word, w0) != 0 && strcmp(word, w1) != 0)
		return -1;
	*out = strcmp(word, w0) == 0 ? 0 : 1;
	return 1;
}

static void
cmd_migrate(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct mig_opts o = sd->defaults;
	const char *domain = NULL, *dest = NULL, *dedup = NULL, *word = NULL;
	struct mig_src *m;
	struct json_object *rep;
	int64_t v;
	char err[512];
	int rc;

	if (ctl_get_str(req, "domain", &domain) != 1 ||
	    ctl_get_str(req, "destination", &dest) != 1) {
		ctl_reply_error(r, "migrate needs \"domain\" and "
		    "\"destination\" strings");
		return;
	}
	if ((rc = ctl_get_str(req, "dedup", &dedup)) < 0 ||
	    (rc == 1 && (o.dedup = cfg_parse_dedup(dedup)) < 0)) {
		ctl_reply_error(r, "dedup must be none, shared or all");
		return;
	}
	if ((rc = ctl_get_str(req, "compress", &word)) < 0 ||
	    (rc == 1 && (o.compress = pcomp_parse(word)) < 0)) {
		ctl_reply_error(r, "compress must be none, zstd or lz4");
		return;
	}
	if (get_either(req, "zero_pages", "send", "elide",
	    &o.zero_pages) < 0) {
		ctl_reply_error(r, "zero_pages must be elide or send");
		return;
	}
	if (get_either(req, "order", "pfn", "unique-first", &o.order) < 0) {
		ctl_reply_error(r, "order must be pfn or unique-first");
		return;
	}
	if (ctl_get_bool(req, "paused", &o.paused) < 0 ||
	    ctl_get_bool(req, "verify", &o.verify) < 0 ||
	    ctl_get_bool(req, "auto_converge", &o.auto_converge) < 0) {
		ctl_reply_error(r, "paused, verify and auto_converge must be "
		    "booleans");
		return;
	}
	if ((rc = ctl_get_int(req, "bandwidth", &v)) < 0 ||
	    (rc == 1 && v < 0)) {
		ctl_reply_error(r, "bandwidth must be an integer >= 0 (bytes "
		    "per second, 0 = no cap)");
		return;
	} else if (rc == 1)
		o.bandwidth = (uint64_t)v;
	if ((rc = ctl_get_int(req, "downtime_ms", &v)) < 0 ||
	    (rc == 1 && (v < 1 || v > 600000))) {
		ctl_reply_error(r, "downtime_ms must be 1..600000");
		return;
	} else if (rc == 1)
		o.downtime_ms = (unsigned)v;
	if ((rc = ctl_get_int(req, "streams", &v)) < 0 ||
	    (rc == 1 && (v < 1 || v > PROTO_STREAMS_MAX))) {
		ctl_reply_error(r, "streams must be 1..%u", PROTO_STREAMS_MAX);
		return;
	} else if (rc == 1)
		o.streams = (unsigned)v;
	if ((rc = ctl_get_int(req, "max_iterations", &v)) < 0 ||
	    (rc == 1 && (v < 1 || v > 1000))) {
		ctl_reply_error(r, "max_iterations must be 1..1000");
		return;
	} else if (rc == 1)
		o.max_iters = (unsigned)v;
	if (sd->njobs >= SOURCED_MAX_JOBS) {
		ctl_reply_error(r, "too many migrations");
		return;
	}
	rc = mig_src_start(&sd->env, sd->next_id, domain, dest, &o, job_done,
	    sd, &m, err, sizeof(err));
	if (rc != 0) {
		log_warn("migration of %s to %s refused: %s", domain, dest,
		    err);
		ctl_reply_error(r, "%s", err);
		return;
	}
	sd->jobs[sd->njobs++] = m;
	rep = ctl_ok();
	json_object_object_add(rep, "id", json_object_new_int64(sd->next_id));
	sd->next_id++;
	ctl_reply(r, rep);
	job_gc(sd);
	notify_status(sd);
}

static void
cmd_status(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *o, *arr;
	struct mig_src *m;
	int64_t id;
	size_t i;
	int rc;

	if ((rc = ctl_get_int(req, "id", &id)) < 0) {
		ctl_reply_error(r, "id must be an integer");
		return;
	}
	o = ctl_ok();
	if (rc == 1) {
		if ((m = job_find(sd, (uint32_t)id)) == NULL) {
			json_object_put(o);
			ctl_reply_error(r, "no migration %lld", (long long)id);
			return;
		}
		json_object_object_add(o, "migration", mig_src_json(m));
	} else {
		arr = json_object_new_array();
		for (i = 0; i < sd->njobs; i++)
			json_object_array_add(arr, mig_src_json(sd->jobs[i]));
		json_object_object_add(o, "migrations", arr);
	}
	ctl_reply(r, o);
}

/* Reply when the job has finished (at once if it has). */
static void
cmd_wait(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct waiter *w;
	struct mig_src *m;
	int64_t id;

	if (ctl_get_int(req, "id", &id) != 1) {
		ctl_reply_error(r, "wait needs an integer id");
		return;
	}
	if ((m = job_find(sd, (uint32_t)id)) == NULL) {
		ctl_reply_error(r, "no migration %lld", (long long)id);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		ctl_reply_error(r, "out of memory");
		return;
	}
	w->req = r;
	w->id = (uint32_t)id;
	w->next = sd->waiters;
	sd->waiters = w;
	if (mig_src_terminal(m))
		answer_waiters(sd, m);
}

/* Change a running migration's bandwidth cap. */
static void
cmd_set_bandwidth(struct sourced *sd, struct ctl_req *r,
    struct json_object *req)
{
	struct mig_src *m;
	int64_t id, rate;

	if (ctl_get_int(req, "id", &id) != 1 ||
	    ctl_get_int(req, "bandwidth", &rate) != 1 || rate < 0) {
		ctl_reply_error(r, "set-bandwidth needs an integer id and an "
		    "integer bandwidth >= 0 (bytes per second, 0 = no cap)");
		return;
	}
	if ((m = job_find(sd, (uint32_t)id)) == NULL) {
		ctl_reply_error(r, "no migration %lld", (long long)id);
		return;
	}
	if (mig_src_set_bandwidth(m, (uint64_t)rate) != 0) {
		ctl_reply_error(r, "migration %lld has already ended",
		    (long long)id);
		return;
	}
	ctl_reply(r, ctl_ok());
}

static void
cmd_cancel(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct mig_src *m;
	int64_t id;
	int rc;

	if (ctl_get_int(req, "id", &id) != 1) {
		ctl_reply_error(r, "cancel needs an integer id");
		return;
	}
	if ((m = job_find(sd, (uint32_t)id)) == NULL) {
		ctl_reply_error(r, "no migration %lld", (long long)id);
		return;
	}
	if ((rc = mig_src_cancel(m)) != 0) {
		ctl_reply_error(r, rc == -EBUSY ? "migration %lld is past the "
		    "point of no return (GO sent)" : "migration %lld has "
		    "already ended", (long long)id);
		return;
	}
	ctl_reply(r, ctl_ok());
}

static const struct {
	const char	*name;
	void		(*fn)(struct sourced *, struct ctl_req *,
			    struct json_object *);
} sourced_cmds[] = {
	{ "list",	cmd_list },
	{ "migrate",	cmd_migrate },
	{ "status",	cmd_status },
	{ "wait",	cmd_wait },
	{ "cancel",	cmd_cancel },
	{ "set-bandwidth", cmd_set_bandwidth },
	{ "advise",	cmd_advise },
};

static void
sourced_ctl(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct sourced *sd = arg;
	const char *cmd = NULL;
	size_t i;

	if (ctl_get_str(req, "cmd", &cmd) != 1) {
		ctl_reply_error(r, "request without a \"cmd\" string");
		return;
	}
	for (i = 0; i < sizeof(sourced_cmds) / sizeof(sourced_cmds[0]); i++)
		if (strcmp(sourced_cmds[i].name, cmd) == 0) {
			sourced_cmds[i].fn(sd, r, req);
			return;
		}
	ctl_reply_error(r, "unknown command '%s'", cmd);
}

/* ---- Prometheus text endpoint (--metrics ADDR:PORT) ---- */


static void
prom_histo(struct evbuffer *b, const char *name, const char *help,
    const struct histo *h)
{
	uint64_t cum = 0;
	size_t i;

	prom_head(b, name, "histogram", help);
	for (i = 0; i < h->n; i++) {
		cum += h->bucket[i];
		evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name,
		    h->le[i], (unsigned long long)cum);
	}
	cum += h->bucket[h->n];
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name,
	    (unsigned long long)cum);
	evbuffer_add_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum,
	    name, (unsigned long long)h->count);
}

/* The exposition (text format 0.0.4).  Counters are the totals of ended
 * jobs plus the current figures of running ones, so they never go back. */
static void
sourced_metrics(struct evbuffer *b, void *arg)
{
	struct sourced *sd = arg;

	static const char *const kinds[] = { "data", "ref", "zero", "need" };
	uint64_t tot[SC_MAX];
	struct json_object *j;
	size_t i, k, live = 0;

	memcpy(tot, sd->ended, sizeof(tot));
	for (i = 0; i < sd->njobs; i++) {
		if (mig_src_terminal(sd->jobs[i]))
			continue;
		live++;
		j = mig_src_json(sd->jobs[i]);
		for (k = 0; k < SC_MAX; k++)
			tot[k] += json_u64(j, src_counter_fields[k]);
		json_object_put(j);
	}
	prom_head(b, "sharemig_build_info", "gauge",
	    "Version of the running daemon (always 1).");
	evbuffer_add_printf(b, "sharemig_build_info{daemon=\"sourced\","
	    "version=\"%s\"} 1\n", SHAREMIG_VERSION);
	prom_head(b, "sharemig_source_migrations_in_progress", "gauge",
	    "Outgoing migrations not yet ended.");
	evbuffer_add_printf(b, "sharemig_source_migrations_in_progress %zu\n",
	    live);
	prom_head(b, "sharemig_source_migrations_total", "counter",
	    "Outgoing migrations that ended, by outcome (failed and "
	    "cancelled: the guest runs on the source; ambiguous: the source "
	    "copy is kept paused).");
	for (i = 0; i < OUT_MAX; i++)
		evbuffer_add_printf(b, "sharemig_source_migrations_total"
		    "{outcome=\"%s\"} %llu\n", outcome_names[i],
		    (unsigned long long)sd->outcomes[i]);
	prom_head(b, "sharemig_source_pages_total", "counter",
	    "Guest pages transferred, by kind: data (sent in full), ref "
	    "(filled from the destination's own memory), zero (sent as ZERO), "
	    "need (resent after a failed fill; also counted in data).");
	for (k = 0; k < 4; k++)
		evbuffer_add_printf(b, "sharemig_source_pages_total"
		    "{kind=\"%s\"} %llu\n", kinds[k],
		    (unsigned long long)tot[SC_DATA + k]);
	prom_head(b, "sharemig_source_memory_bytes_total", "counter",
	    "Guest memory transferred, by kind (pages x 4096): data, ref, "
	    "zero.");
	for (k = 0; k < 3; k++)
		evbuffer_add_printf(b, "sharemig_source_memory_bytes_total"
		    "{kind=\"%s\"} %llu\n", kinds[k],
		    (unsigned long long)(tot[SC_DATA + k] * PROTO_PAGE_SIZE));
	prom_head(b, "sharemig_source_wire_bytes_total", "counter",
	    "Bytes on the migration connections in both directions, TLS "
	    "included (bytes_wire).");
	evbuffer_add_printf(b, "sharemig_source_wire_bytes_total %llu\n",
	    (unsigned long long)tot[SC_WIRE]);
	prom_head(b, "sharemig_source_queued_bytes_total", "counter",
	    "Bytes of sharemig records queued, before TLS (bytes_queued).");
	evbuffer_add_printf(b, "sharemig_source_queued_bytes_total %llu\n",
	    (unsigned long long)tot[SC_QUEUED]);
	prom_histo(b, "sharemig_source_migration_duration_seconds",
	    "Time from the request to the end, every ended migration.",
	    &sd->duration);
	prom_histo(b, "sharemig_source_migration_downtime_seconds",
	    "Time the guest was paused (pause to RUNNING), completed "
	    "migrations.", &sd->downtime);
}





static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sourced *sd = arg;

	log_notice("signal %d: shutting down", (int)sig);
	event_base_loopbreak(sd->base);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sharemig-sourced --backend sim|xen --state-dir DIR "
	    "--control SOCKET\n"
	    "           [--tls-cert F --tls-key F (--tls-ca F | --tls-pin "
	    "sha256:HEX) | --insecure]\n"
	    "           [--index SOCKET] [--config FILE] [--check-config]\n"
	    "           [--downtime-ms N] [--max-iterations N] "
	    "[--timeout S]\n"
	    "           [--metrics ADDR:PORT] [--simhv PATH] "
	    "[--host-name NAME] [--verbose]\n"
	    "       %s --version\n", "sharemig-sourced");
}

/* A job settled from the journal of a previous run: visible in status. */
static void
recovered_job(struct mig_src *m, void *arg)
{
	struct sourced *sd = arg;

	if (sd->njobs >= SOURCED_MAX_JOBS) {
		mig_src_free(m);
		return;
	}
	sd->jobs[sd->njobs++] = m;
}

int
sourced_main(int argc, char **argv)
{
	enum { O_BACKEND = 256, O_STATE, O_CONTROL, O_CERT, O_KEY, O_CA,
	    O_PIN, O_INSECURE, O_INDEX, O_CONFIG, O_CHECK, O_DOWNTIME, O_ITERS,
	    O_TIMEOUT, O_SIMHV, O_HOSTNAME, O_VERBOSE, O_HELP, O_METRICS,
	    O_VERSION };
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_KEY },
		{ "tls-ca", required_argument, NULL, O_CA },
		{ "tls-pin", required_argument, NULL, O_PIN },
		{ "insecure", no_argument, NULL, O_INSECURE },
		{ "index", required_argument, NULL, O_INDEX },
		{ "config", required_argument, NULL, O_CONFIG },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "downtime-ms", required_argument, NULL, O_DOWNTIME },
		{ "max-iterations", required_argument, NULL, O_ITERS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "simhv", required_argument, NULL, O_SIMHV },
		{ "host-name", required_argument, NULL, O_HOSTNAME },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct sourced sd;
	struct cfg cfg;
	struct tls_files tf;
	const char *config = NULL, *index = NULL, *simhv = NULL;
	const char *hostname = NULL, *metrics = NULL;
	char *journal = NULL;
	char err[512], pin[TLS_PIN_STRLEN + 1];
	int c, check = 0, insecure_flag = 0, verbose = 0, rc;
	char *end;
	long v;

	memset(&sd, 0, sizeof(sd));
	log_init("sharemig-sourced", LOG_LVL_INFO);
	cfg_defaults(&cfg);
	/* First pass: the config file, so flags can override it. */
	if ((rc = cfg_load_args(&cfg, argc, argv, &check, err,
	    sizeof(err))) != 0) {
		if (check) {
			/* err is "path:line: reason" or "path: reason". */
			fprintf(stderr, "%s: %s\n", "sharemig-sourced", err);
			cfg_free(&cfg);
			return 1;
		}
		fatal("configuration: %s", err);
	}
#define SETSTR(field) do { free(cfg.field); cfg.field = strdup(optarg); } \
	while (0)
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_BACKEND: SETSTR(backend); break;
		case O_STATE: SETSTR(state_dir); break;
		case O_CONTROL: SETSTR(sourced_control); break;
		case O_CERT: SETSTR(tls_cert); break;
		case O_KEY: SETSTR(tls_key); break;
		case O_CA: SETSTR(tls_ca); break;
		case O_PIN: SETSTR(tls_pin); break;
		case O_INSECURE: insecure_flag = 1; break;
		case O_INDEX: index = optarg; break;
		case O_CONFIG: break;
		case O_CHECK: check = 1; break;
		case O_DOWNTIME:
		case O_ITERS:
		case O_TIMEOUT:
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > 600000) {
				fprintf(stderr, "sharemig-sourced: bad value "
				    "'%s'\n", optarg);
				return 2;
			}
			if (c == O_DOWNTIME)
				cfg.downtime_ms = (unsigned)v;
			else if (c == O_ITERS)
				cfg.max_iters = (unsigned)v;
			else
				sd.env.timeout_s = (unsigned)v;
			break;
		case O_SIMHV: simhv = optarg; break;
		case O_HOSTNAME: hostname = optarg; break;
		case O_VERBOSE: verbose = 1; break;
		case O_METRICS: metrics = optarg; break;
		case O_HELP: usage(stdout); return 0;
		case O_VERSION:
			printf("sharemig-sourced %s\n", SHAREMIG_VERSION);
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
	if ((sd.env.ops = hv_find(cfg.backend)) == NULL)
		fatal("unknown or unbuilt backend '%s' (have: sim%s)",
		    cfg.backend, hv_find("xen") ? ", xen" : "");
	if (metrics != NULL && !prom_addr_valid(metrics))
		fatal("--metrics '%s': expected ADDR:PORT", metrics);
	if (check) {
		if (!cfg.insecure) {
			tf.cert = cfg.tls_cert;
			tf.key = cfg.tls_key;
			tf.ca = cfg.tls_ca;
			tf.pin = cfg.tls_pin;
			if ((sd.env.tls = tls_ctx_client(&tf, err,
			    sizeof(err))) == NULL) {
				fprintf(stderr, "sharemig-sourced: TLS: %s\n",
				    err);
				cfg_free(&cfg);
				return 1;
			}
			SSL_CTX_free(sd.env.tls);
		}
		printf("configuration OK (%s)\n", config != NULL ? config :
		    access(CFG_DEFAULT_PATH, R_OK) == 0 ? CFG_DEFAULT_PATH :
		    "no file, defaults");
		cfg_free(&cfg);
		return 0;
	}
	if (sd.env.timeout_s == 0)
		sd.env.timeout_s = 30;
	sd.defaults.dedup = cfg_parse_dedup(cfg.dedup);
	if (sd.defaults.dedup < 0)
		sd.defaults.dedup = PROTO_DEDUP_ALL;
	sd.defaults.compress = pcomp_parse(cfg.compress);
	if (sd.defaults.compress < 0)
		sd.defaults.compress = PROTO_COMPRESS_NONE;
	sd.defaults.zero_pages = MIG_ZERO_DEFAULT;
	sd.defaults.order = MIG_ORDER_DEFAULT;
	sd.defaults.downtime_ms = cfg.downtime_ms;
	sd.defaults.max_iters = cfg.max_iters;
	sd.defaults.max_bytes_factor = 3.0;
	sd.defaults.bandwidth = cfg.bandwidth;
	sd.defaults.auto_converge = cfg.auto_converge;
	sd.defaults.streams = cfg.streams;

	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0)
		fatal("libevent without pthreads support");
	if ((sd.base = event_base_new()) == NULL)
		fatal("cannot create the event loop");
	sd.hvp.state_dir = cfg.state_dir;
	sd.hvp.simhv_path = simhv;
	/* The state directory itself may not exist yet (the xen backend
	 * keeps nothing else there); as systemd's StateDirectory= would. */
	if (mkdir(cfg.state_dir, 0700) != 0 && errno != EEXIST)
		fatal("cannot create the state directory %s: %s",
		    cfg.state_dir, strerror(errno));
	if ((rc = sd.env.ops->open(&sd.hvp, &sd.env.hv)) != 0)
		fatal("cannot open the %s backend (state dir %s): %s",
		    cfg.backend, cfg.state_dir, strerror(-rc));
	sd.env.base = sd.base;
	sd.env.index_socket = index;
	hostid_get(cfg.state_dir, sd.env.host_id, sd.env.host_name,
	    sizeof(sd.env.host_name), hostname);
	if (cfg.insecure) {
		log_warn("--insecure: migration streams are neither "
		    "encrypted nor authenticated");
	} else {
		tf.cert = cfg.tls_cert;
		tf.key = cfg.tls_key;
		tf.ca = cfg.tls_ca;
		tf.pin = cfg.tls_pin;
		if ((sd.env.tls = tls_ctx_client(&tf, err, sizeof(err))) == NULL)
			fatal("TLS: %s (or run with --insecure)", err);
		if (tls_ctx_own_pin(sd.env.tls, pin, sizeof(pin)) == 0)
			log_notice("TLS: this host's pin (for the peers' "
			    "--tls-pin) is %s", pin);
	}
	rc = ctl_server_new(sd.base, cfg.sourced_control, -1, sourced_ctl, &sd,
	    &sd.ctl);
	if (rc != 0)
		fatal("control socket %s: %s", cfg.sourced_control,
		    strerror(-rc));
	sd.ev_sigint = evsignal_new(sd.base, SIGINT, on_signal, &sd);
	sd.ev_sigterm = evsignal_new(sd.base, SIGTERM, on_signal, &sd);
	event_add(sd.ev_sigint, NULL);
	event_add(sd.ev_sigterm, NULL);
	sd.next_id = 1;
	/* The in-flight journal: settle what a previous run left. */
	if (asprintf(&journal, "%s/sourced-journal", cfg.state_dir) == -1)
		fatal("out of memory");
	if ((rc = journal_init(journal)) != 0)
		fatal("cannot create the journal directory %s: %s", journal,
		    strerror(-rc));
	sd.env.journal_dir = journal;
	if ((rc = mig_src_recover(&sd.env, &sd.next_id, recovered_job,
	    &sd)) < 0)
		log_err("journal %s: %s", journal, strerror(-rc));
	else if (rc > 0)
		log_notice("journal: %d migration(s) of a previous run settled",
		    rc);
	histo_init(&sd.duration, duration_le,
	    sizeof(duration_le) / sizeof(duration_le[0]));
	histo_init(&sd.downtime, downtime_le,
	    sizeof(downtime_le) / sizeof(downtime_le[0]));
	if (metrics != NULL) {
		if ((rc = prom_server_start(sd.base, metrics, sourced_metrics, &sd,
		    &sd.http)) != 0)
			fatal("--metrics %s: %s", metrics, rc == -EINVAL ?
			    "expected ADDR:PORT" : strerror(-rc));
		log_notice("metrics on http://%s/metrics", metrics);
	}
	log_notice("ready: backend %s, state dir %s, control %s%s",
	    sd.env.ops->name, cfg.state_dir, cfg.sourced_control,
	    cfg.insecure ? ", insecure" :
	    cfg.tls_pin != NULL ? ", TLS 1.3, pinned peer" : ", TLS 1.3");
#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, "READY=1");
#endif
	notify_status(&sd);
	event_base_dispatch(sd.base);

#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	/* Jobs still running end as failures: their guests keep running. */
	while (sd.njobs > 0) {
		struct mig_src *m = sd.jobs[--sd.njobs];

		if (!mig_src_terminal(m))
			(void)mig_src_cancel(m);
		mig_src_free(m);
	}
	while (sd.waiters != NULL) {
		struct waiter *w = sd.waiters;

		sd.waiters = w->next;
		ctl_reply_error(w->req, "daemon shutting down");
		free(w);
	}
	ctl_server_free(sd.ctl);
	prom_server_free(sd.http);
	event_free(sd.ev_sigint);
	event_free(sd.ev_sigterm);
	sd.env.ops->close(sd.env.hv);
	if (sd.env.tls != NULL)
		SSL_CTX_free(sd.env.tls);
	event_base_free(sd.base);
	cfg_free(&cfg);
	free(journal);
	return 0;
}
