/*
 * sourced.c - the source daemon: command line, control socket, the table
 * of migration jobs.  The pre-copy engine itself is mig_src.c.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
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
#include "log.h"
#include "mig_src.h"
#include "proto.h"
#include "sourced.h"
#include "tls.h"

#define SOURCED_KEEP_DONE	64	/* finished jobs kept for status */
#define SOURCED_MAX_JOBS	(SOURCED_KEEP_DONE + 64)

struct waiter {
	struct ctl_req	*req;
	uint32_t	 id;
	struct waiter	*next;
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
};

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

static void
job_done(struct mig_src *m, void *arg)
{
	struct sourced *sd = arg;
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

static int
json_get_str(struct json_object *o, const char *k, const char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	*out = json_object_get_string(v);
	return 1;
}

static int
json_get_int(struct json_object *o, const char *k, int64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	*out = json_object_get_int64(v);
	return 1;
}

static int
json_get_bool(struct json_object *o, const char *k, int *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -EINVAL;
	*out = json_object_get_boolean(v);
	return 1;
}

static struct json_object *
reply_ok(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
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
	o = reply_ok();
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

static void
cmd_migrate(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct mig_opts o = sd->defaults;
	const char *domain = NULL, *dest = NULL, *dedup = NULL;
	struct mig_src *m;
	struct json_object *rep;
	int64_t v;
	char err[512];
	int rc;

	if (json_get_str(req, "domain", &domain) != 1 ||
	    json_get_str(req, "destination", &dest) != 1) {
		ctl_reply_error(r, "migrate needs \"domain\" and "
		    "\"destination\" strings");
		return;
	}
	if ((rc = json_get_str(req, "dedup", &dedup)) < 0 ||
	    (rc == 1 && (o.dedup = cfg_parse_dedup(dedup)) < 0)) {
		ctl_reply_error(r, "dedup must be none, shared or all");
		return;
	}
	if (json_get_bool(req, "paused", &o.paused) < 0 ||
	    json_get_bool(req, "verify", &o.verify) < 0) {
		ctl_reply_error(r, "paused and verify must be booleans");
		return;
	}
	if ((rc = json_get_int(req, "downtime_ms", &v)) < 0 ||
	    (rc == 1 && (v < 1 || v > 600000))) {
		ctl_reply_error(r, "downtime_ms must be 1..600000");
		return;
	} else if (rc == 1)
		o.downtime_ms = (unsigned)v;
	if ((rc = json_get_int(req, "max_iterations", &v)) < 0 ||
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
		log_err("migration of %s to %s refused: %s", domain, dest, err);
		ctl_reply_error(r, "%s", err);
		return;
	}
	sd->jobs[sd->njobs++] = m;
	rep = reply_ok();
	json_object_object_add(rep, "id", json_object_new_int64(sd->next_id));
	sd->next_id++;
	ctl_reply(r, rep);
	job_gc(sd);
}

static void
cmd_status(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct json_object *o, *arr;
	struct mig_src *m;
	int64_t id;
	size_t i;
	int rc;

	if ((rc = json_get_int(req, "id", &id)) < 0) {
		ctl_reply_error(r, "id must be an integer");
		return;
	}
	o = reply_ok();
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

	if (json_get_int(req, "id", &id) != 1) {
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
		job_done(m, sd);
}

static void
cmd_cancel(struct sourced *sd, struct ctl_req *r, struct json_object *req)
{
	struct mig_src *m;
	int64_t id;
	int rc;

	if (json_get_int(req, "id", &id) != 1) {
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
	ctl_reply(r, reply_ok());
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
};

static void
sourced_ctl(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct sourced *sd = arg;
	const char *cmd = NULL;
	size_t i;

	if (json_get_str(req, "cmd", &cmd) != 1) {
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
	    "           [--tls-cert F --tls-key F --tls-ca F | --insecure]\n"
	    "           [--index SOCKET] [--config FILE] [--check-config]\n"
	    "           [--downtime-ms N] [--max-iterations N] "
	    "[--timeout S]\n"
	    "           [--simhv PATH] [--host-name NAME] [--verbose]\n");
}

int
sourced_main(int argc, char **argv)
{
	enum { O_BACKEND = 256, O_STATE, O_CONTROL, O_CERT, O_KEY, O_CA,
	    O_INSECURE, O_INDEX, O_CONFIG, O_CHECK, O_DOWNTIME, O_ITERS,
	    O_TIMEOUT, O_SIMHV, O_HOSTNAME, O_VERBOSE, O_HELP };
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, O_BACKEND },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_KEY },
		{ "tls-ca", required_argument, NULL, O_CA },
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
		{ NULL, 0, NULL, 0 },
	};
	struct sourced sd;
	struct cfg cfg;
	struct tls_files tf;
	const char *config = NULL, *index = NULL, *simhv = NULL;
	const char *hostname = NULL;
	char err[512];
	int c, check = 0, insecure_flag = 0, verbose = 0, rc;
	char *end;
	long v;

	memset(&sd, 0, sizeof(sd));
	log_init("sharemig-sourced", LOG_LVL_INFO);
	cfg_defaults(&cfg);
	/* First pass: the config file, so flags can override it. */
	for (c = 1; c < argc; c++)
		if (strcmp(argv[c], "--config") == 0 && c + 1 < argc)
			config = argv[c + 1];
	if (config != NULL || access(CFG_DEFAULT_PATH, R_OK) == 0) {
		rc = cfg_load(&cfg, config ? config : CFG_DEFAULT_PATH, err,
		    sizeof(err));
		if (rc != 0)
			fatal("%s", rc == -ENOENT ? "config file not found" :
			    err);
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
		case O_HELP: usage(stdout); return 0;
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
	if (check) {
		printf("configuration OK\n");
		cfg_free(&cfg);
		return 0;
	}
	if (sd.env.timeout_s == 0)
		sd.env.timeout_s = 30;
	sd.defaults.dedup = cfg_parse_dedup(cfg.dedup);
	if (sd.defaults.dedup < 0)
		sd.defaults.dedup = PROTO_DEDUP_ALL;
	sd.defaults.downtime_ms = cfg.downtime_ms;
	sd.defaults.max_iters = cfg.max_iters;
	sd.defaults.max_bytes_factor = 3.0;

	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0)
		fatal("libevent without pthreads support");
	if ((sd.base = event_base_new()) == NULL)
		fatal("cannot create the event loop");
	sd.hvp.state_dir = cfg.state_dir;
	sd.hvp.simhv_path = simhv;
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
		if ((sd.env.tls = tls_ctx_client(&tf, err, sizeof(err))) == NULL)
			fatal("TLS: %s (or run with --insecure)", err);
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
	log_notice("ready: backend %s, state dir %s, control %s%s",
	    sd.env.ops->name, cfg.state_dir, cfg.sourced_control,
	    cfg.insecure ? ", insecure" : ", TLS 1.3");
#ifdef HAVE_LIBSYSTEMD
	sd_notify(0, "READY=1\nSTATUS=waiting for migrations");
#endif
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
	event_free(sd.ev_sigint);
	event_free(sd.ev_sigterm);
	sd.env.ops->close(sd.env.hv);
	if (sd.env.tls != NULL)
		SSL_CTX_free(sd.env.tls);
	event_base_free(sd.base);
	cfg_free(&cfg);
	return 0;
}
