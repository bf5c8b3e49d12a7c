/*
 * migratectl - the operator's CLI over sourced's (or destd's) control
 * socket.  Commands come from one table (commands[] below): the usage
 * text, the default socket and the "changes state" mark all come from it.
 *
 * Output: a human form by default; with --json exactly one line of JSON
 * on stdout, on success and on failure, every object carrying
 * "schema": MIGRATECTL_SCHEMA (docs/CONTROL.md, "migratectl --json").
 * Every failure prints exactly one line "migratectl: ..." on stderr.
 *
 * Exit codes: 0 success; 1 the migration failed or was cancelled (the
 * guest still runs on the source); 2 usage error; 3 ambiguous (handover
 * outcome unknown: the source copy is kept paused); 4 the daemon could
 * not be reached or refused the request.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cfg.h"
#include "ctl.h"

#define EXIT_MIG_FAILED	1
#define EXIT_USAGE	2
#define EXIT_AMBIGUOUS	3
#define EXIT_DAEMON	4

/* Version of the --json output; raised only when a field changes
 * meaning or goes away (fields are added without raising it). */
#define MIGRATECTL_SCHEMA	1

#define SOURCED_CONTROL	"/run/sharemig/sourced.sock"
#define DESTD_CONTROL	"/run/sharemig/destd.sock"

#define CALL_TIMEOUT_MS	30000	/* requests that answer at once */
#define INDEX_TIMEOUT_MS 300000	/* per-domain index totals walk the index */
#define POLL_MS		200	/* progress line refresh */

struct command;

struct ctx {
	const char		*control;	/* the socket in use */
	int			 json;
	int			 tty;		/* stdout is a terminal */
	const struct command	*cmd;
	int			 line_shown;	/* a progress line is drawn */
};

enum daemon { D_SOURCED, D_DESTD };

struct command {
	const char	*name;
	int		(*fn)(struct ctx *, int, char **);
	enum daemon	 daemon;	/* whose socket is the default */
	int		 privileged;	/* changes state */
	const char	*args;
	const char	*help;
};

static int	cmd_list(struct ctx *, int, char **);
static int	cmd_migrate(struct ctx *, int, char **);
static int	cmd_status(struct ctx *, int, char **);
static int	cmd_wait(struct ctx *, int, char **);
static int	cmd_cancel(struct ctx *, int, char **);
static int	cmd_set_bandwidth(struct ctx *, int, char **);
static int	cmd_index(struct ctx *, int, char **);
static int	cmd_index_sync(struct ctx *, int, char **);
static int	cmd_advise(struct ctx *, int, char **);

static const struct command commands[] = {
	{ "list", cmd_list, D_SOURCED, 0, "",
	    "domains on this host" },
	{ "migrate", cmd_migrate, D_SOURCED, 1,
	    "DOMAIN HOST:PORT [--dedup none|shared|all] [--paused] [--verify] "
	    "[--wait] [--downtime-ms N] [--max-iterations N] "
	    "[--bandwidth RATE] [--auto-converge] "
	    "[--compress none|zstd|lz4] [--zero-pages elide|send] "
	    "[--streams N] [--order pfn|unique-first]",
	    "start a migration (--wait: until it ends)" },
	{ "status", cmd_status, D_SOURCED, 0, "[ID]",
	    "one migration, or all" },
	{ "wait", cmd_wait, D_SOURCED, 0, "ID",
	    "wait for a migration to end" },
	{ "cancel", cmd_cancel, D_SOURCED, 1, "ID",
	    "cancel (before the handover)" },
	{ "set-bandwidth", cmd_set_bandwidth, D_SOURCED, 1, "ID RATE",
	    "change a running migration's bandwidth cap (0 = none)" },
	{ "advise", cmd_advise, D_SOURCED, 0, "DOMAIN HOST:PORT...",
	    "rank destinations by how much of the guest they already hold" },
	{ "index", cmd_index, D_DESTD, 0, "",
	    "the host's shared-page index (destd socket)" },
	{ "index-sync", cmd_index_sync, D_DESTD, 0, "",
	    "wait for a fresh index pass (destd socket)" },
};
static const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

static const char *prog = "migratectl";

static void
usage(FILE *f)
{
	size_t k;
	char syn[256];

	fprintf(f, "usage: migratectl [--control SOCKET] [--json] COMMAND "
	    "[ARGS]\n");
	fprintf(f, "commands:\n");
	for (k = 0; k < ncommands; k++) {
		snprintf(syn, sizeof(syn), "%s%s%s", commands[k].name,
		    *commands[k].args ? " " : "", commands[k].args);
		if (strlen(syn) > 30)
			fprintf(f, "  %s\n  %-30s %s\n", syn, "",
			    commands[k].help);
		else
			fprintf(f, "  %-30s %s\n", syn, commands[k].help);
	}
	fprintf(f,
	    "options:\n"
	    "  --control SOCKET   the daemon's control socket (default %s,\n"
	    "                     %s for index commands; or $SHAREMIG_CONTROL)\n"
	    "  --json             one line of JSON on stdout (schema %d)\n"
	    "  --help, --version\n"
	    "options may also follow the command.\n"
	    "exit: 0 ok, 1 migration failed (guest runs on the source), "
	    "2 usage,\n"
	    "      3 ambiguous (source copy kept paused), 4 daemon "
	    "unreachable or refused\n",
	    SOURCED_CONTROL, DESTD_CONTROL, MIGRATECTL_SCHEMA);
}

static void
print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
}

/* Print o (an object, or an array of objects) with the schema version. */
static void
emit(struct json_object *o)
{
	size_t i;

	if (json_object_is_type(o, json_type_array)) {
		for (i = 0; i < json_object_array_length(o); i++)
			json_object_object_add(json_object_array_get_idx(o, i),
			    "schema", json_object_new_int(MIGRATECTL_SCHEMA));
	} else {
		json_object_object_add(o, "schema",
		    json_object_new_int(MIGRATECTL_SCHEMA));
	}
	print_json(o);
}

/*
 * The one error path: "migratectl: MSG" on stderr and, with --json,
 * {"ok":false,"error":MSG,"exit_code":code,"schema":N} on stdout.
 * Returns code.
 */
static int	fail(struct ctx *c, int code, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

static int
fail(struct ctx *c, int code, const char *fmt, ...)
{
	struct json_object *o;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c != NULL && c->line_shown) {
		printf("\r\033[K");
		c->line_shown = 0;
	}
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", prog, msg);
	if (c != NULL && c->json) {
		o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(0));
		json_object_object_add(o, "error", json_object_new_string(msg));
		json_object_object_add(o, "exit_code",
		    json_object_new_int(code));
		emit(o);
		json_object_put(o);
	}
	return code;
}

/* A usage error of the current command: one line, exit 2. */
static int	usage_err(struct ctx *c, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

static int
usage_err(struct ctx *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->cmd != NULL && strlen(c->cmd->args) < 40)
		return fail(c, EXIT_USAGE, "%s: %s (usage: migratectl %s%s%s)",
		    c->cmd->name, msg, c->cmd->name, *c->cmd->args ? " " : "",
		    c->cmd->args);
	if (c->cmd != NULL)
		return fail(c, EXIT_USAGE, "%s: %s (see migratectl --help)",
		    c->cmd->name, msg);
	return fail(c, EXIT_USAGE, "%s (see migratectl --help)", msg);
}

static const char *
daemon_name(const struct ctx *c)
{
	return c->cmd != NULL && c->cmd->daemon == D_DESTD ?
	    "sharemig-destd" : "sharemig-sourced";
}

/*
 * Send req (consumed) and wait up to timeout_ms (-1: forever); on
 * success *rep is an {"ok":true,...} object and 0 is returned, else the
 * error has been reported and the exit code is returned.
 */
static int
call(struct ctx *c, struct json_object *req, int timeout_ms,
    struct json_object **rep)
{
	struct json_object *v;
	char msg[1024];
	int rc;

	rc = ctl_call(c->control, req, timeout_ms, rep);
	json_object_put(req);
	switch (rc) {
	case 0:
		break;
	case -ENOENT:
		return fail(c, EXIT_DAEMON, "cannot reach %s: no socket at "
		    "%s (is %s running?)", daemon_name(c), c->control,
		    daemon_name(c));
	case -ECONNREFUSED:
		return fail(c, EXIT_DAEMON, "cannot reach %s at %s: "
		    "connection refused (is it running?)", daemon_name(c),
		    c->control);
	case -EACCES:
	case -EPERM:
		return fail(c, EXIT_DAEMON, "cannot reach %s at %s: "
		    "permission denied (run as root or in the control group)",
		    daemon_name(c), c->control);
	case -ETIMEDOUT:
		return fail(c, EXIT_DAEMON, "no answer from %s at %s within "
		    "%d s", daemon_name(c), c->control, timeout_ms / 1000);
	case -EBADMSG:
		return fail(c, EXIT_DAEMON, "unreadable reply from %s at %s",
		    daemon_name(c), c->control);
	default:
		return fail(c, EXIT_DAEMON, "cannot talk to %s at %s: %s",
		    daemon_name(c), c->control, strerror(-rc));
	}
	if (!json_object_is_type(*rep, json_type_object)) {
		json_object_put(*rep);
		return fail(c, EXIT_DAEMON, "unreadable reply from %s at %s",
		    daemon_name(c), c->control);
	}
	if (!json_object_object_get_ex(*rep, "ok", &v) ||
	    !json_object_get_boolean(v)) {
		snprintf(msg, sizeof(msg), "%s",
		    json_object_object_get_ex(*rep, "error", &v) ?
		    json_object_get_string(v) : "request failed");
		json_object_put(*rep);
		return fail(c, EXIT_DAEMON, "%s: %s", c->cmd->name, msg);
	}
	return 0;
}

static struct json_object *
request(const char *cmd)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "cmd", json_object_new_string(cmd));
	return o;
}

static const char *
jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_string(v) : "";
}

static double
jnum(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_double(v) : 0;
}

static uint64_t
ju64(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_uint64(v) : 0;
}

/* A non-negative decimal integer, all of s.  0 or -EINVAL. */
static int
parse_uint(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* RATE: bytes per second, binary K/M/G suffixes (cfg_parse_rate). */
static int
parse_rate(struct ctx *c, const char *what, const char *s, int64_t *out)
{
	uint64_t v;

	if (cfg_parse_rate(s, &v) != 0 || v > INT64_MAX)
		return usage_err(c, "%s: '%s' is not a rate in bytes per second "
		    "(an integer, optionally with K, M or G: 8M = 8 MiB/s)",
		    what, s);
	*out = (int64_t)v;
	return 0;
}

static int
parse_id(struct ctx *c, const char *s, int64_t *id)
{
	if (parse_uint(s, id) != 0 || *id > UINT32_MAX)
		return usage_err(c, "'%s' is not a migration id", s);
	return 0;
}

static int
mig_terminal(struct json_object *m)
{
	const char *st = jstr(m, "status");

	return strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
	    strcmp(st, "cancelled") == 0 || strcmp(st, "ambiguous") == 0;
}

static int
mig_exit_code(struct json_object *m)
{
	const char *st = jstr(m, "status");

	if (strcmp(st, "completed") == 0)
		return 0;
	if (strcmp(st, "ambiguous") == 0)
		return EXIT_AMBIGUOUS;
	return EXIT_MIG_FAILED;
}

/* Is s one of the NULL-terminated words? */
static int
one_of(const char *s, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strcmp(s, *words) == 0)
			return 1;
	return 0;
}

static void
print_mig(struct json_object *m)
{
	const char *err = jstr(m, "error");

	printf("migration %s: %s %s -> %s: %s\n", jstr(m, "id"),
	    jstr(m, "domain"), jstr(m, "dedup"), jstr(m, "destination"),
	    jstr(m, "status"));
	printf("  pages %s (data %s, ref %s, zero %s), %s bytes on the wire, "
	    "%s iterations\n", jstr(m, "pages_total"), jstr(m, "pages_data"),
	    jstr(m, "pages_ref"), jstr(m, "pages_zero"),
	    jstr(m, "bytes_wire"), jstr(m, "iterations"));
	if (strcmp(jstr(m, "compress"), "none") != 0 && *jstr(m, "compress"))
		printf("  %s: %s page bytes sent as %s\n", jstr(m, "compress"),
		    jstr(m, "bytes_data_raw"), jstr(m, "bytes_data"));
	if (ju64(m, "streams") > 1)
		printf("  %s TCP streams\n", jstr(m, "streams"));
	printf("  total %s ms, downtime %s ms, cpu source %s s, dest %s s\n",
	    jstr(m, "total_ms"), jstr(m, "downtime_ms"),
	    jstr(m, "cpu_source_s"), jstr(m, "cpu_dest_s"));
	if (ju64(m, "bandwidth") != 0 ||
	    strcmp(jstr(m, "auto_converge"), "true") == 0)
		printf("  bandwidth cap %s bytes/s, auto-converge %s, "
		    "throttle up to %s%%\n", jstr(m, "bandwidth"),
		    strcmp(jstr(m, "auto_converge"), "true") == 0 ? "on" :
		    "off", jstr(m, "throttle_pct"));
	if (*err)
		printf("  error: %s\n", err);
}

/* destd's incoming sessions. */
static void
print_session(struct json_object *s)
{
	const char *err = jstr(s, "error");

	printf("session %s: %s from %s: %s\n", jstr(s, "id"),
	    jstr(s, "domain"), jstr(s, "peer"), jstr(s, "status"));
	printf("  pages %s (data %s, ref %s, zero %s), refs failed %s\n",
	    jstr(s, "pages_total"), jstr(s, "pages_data"),
	    jstr(s, "pages_ref"), jstr(s, "pages_zero"),
	    jstr(s, "refs_failed"));
	if (*err)
		printf("  error: %s\n", err);
}

static int
cmd_list(struct ctx *c, int argc, char **argv)
{
	struct json_object *rep, *doms, *d;
	size_t i;
	int rc;

	if (argc != 1)
		return usage_err(c, "unexpected argument '%s'", argv[1]);
	if ((rc = call(c, request("list"), CALL_TIMEOUT_MS, &rep)) != 0)
		return rc;
	if (c->json) {
		emit(rep);
	} else if (json_object_object_get_ex(rep, "domains", &doms)) {
		printf("%-24s %6s %10s %s\n", "NAME", "DOMID", "PAGES",
		    "STATE");
		for (i = 0; i < json_object_array_length(doms); i++) {
			d = json_object_array_get_idx(doms, i);
			printf("%-24s %6s %10s %s\n", jstr(d, "name"),
			    jstr(d, "domid"), jstr(d, "pages"),
			    jstr(d, "state"));
		}
	}
	json_object_put(rep);
	return 0;
}

/* ---- waiting, with a progress line on a terminal ---- */

struct progress {
	int		 have;		/* a previous sample exists */
	int		 rated;		/* the rates hold an estimate */
	double		 ms;		/* total_ms of the previous sample */
	uint64_t	 sent, bytes;
	double		 page_rate;	/* pages/s, smoothed */
	double		 byte_rate;	/* bytes/s, smoothed */
};

static unsigned
term_cols(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col;
	return 80;
}

static void
fmt_eta(char *buf, size_t len, double s)
{
	if (!isfinite(s) || s < 0 || s > 359999)
		snprintf(buf, len, "--:--");
	else if (s >= 3600)
		snprintf(buf, len, "%d:%02d:%02d", (int)s / 3600,
		    ((int)s / 60) % 60, (int)s % 60);
	else
		snprintf(buf, len, "%d:%02d", (int)s / 60, (int)s % 60);
}

/*
 * One progress line from a migration object:
 *   "migration 3 web1: iterating, iter 2, 45.2%, 12.3 MB/s,
 *    dirty 120, ETA 0:03"
 * Percent is pages sent / (pages sent + pages still to send), where
 * still to send is what iteration 0 has not reached plus the pages dirty
 * at the end of the last iteration.  Rates come from the difference
 * between samples (by the daemon's clock, total_ms), smoothed.
 */
static void
progress_line(struct progress *p, struct json_object *m, char *line,
    size_t len)
{
	uint64_t total = ju64(m, "pages_total"), dirty = ju64(m, "dirty_pages");
	uint64_t sent = ju64(m, "pages_data") + ju64(m, "pages_ref") +
	    ju64(m, "pages_zero");
	uint64_t bytes = ju64(m, "bytes_queued"), left;
	double ms = jnum(m, "total_ms"), dt, pct, eta, inst_pages, inst_bytes;
	unsigned iters = (unsigned)ju64(m, "iterations");
	char etas[16];

	left = (sent < total ? total - sent : 0) + dirty;
	if (p->have && ms > p->ms) {
		/* The rates over the last interval, averaged with the
		 * previous estimate once there is one. */
		dt = (ms - p->ms) / 1000.0;
		inst_pages = (double)(sent >= p->sent ? sent - p->sent : 0) / dt;
		inst_bytes = (double)(bytes >= p->bytes ? bytes - p->bytes : 0) /
		    dt;
		p->page_rate = p->rated ? 0.5 * p->page_rate +
		    0.5 * inst_pages : inst_pages;
		p->byte_rate = p->rated ? 0.5 * p->byte_rate +
		    0.5 * inst_bytes : inst_bytes;
		p->rated = 1;
	}
	p->have = 1;
	p->ms = ms;
	p->sent = sent;
	p->bytes = bytes;
	pct = sent + left > 0 ? 100.0 * (double)sent / (double)(sent + left) :
	    0;
	eta = p->page_rate > 0 ? (double)left / p->page_rate : NAN;
	fmt_eta(etas, sizeof(etas), eta);
	snprintf(line, len, "migration %s %s: %s, iter %u, %.1f%%, "
	    "%.1f MB/s, dirty %llu, ETA %s", jstr(m, "id"), jstr(m, "domain"),
	    jstr(m, "status"), iters + 1, pct, p->byte_rate / 1e6,
	    (unsigned long long)dirty, etas);
}

static void
progress_show(struct ctx *c, const char *line)
{
	unsigned cols = term_cols();

	printf("\r%.*s\033[K", (int)(cols - 1), line);
	fflush(stdout);
	c->line_shown = 1;
}

static void
progress_clear(struct ctx *c)
{
	if (c->line_shown) {
		printf("\r\033[K");
		fflush(stdout);
		c->line_shown = 0;
	}
}

/* Print the finished migration m and return its exit code. */
static int
finish(struct ctx *c, struct json_object *m)
{
	if (c->json)
		emit(m);
	else
		print_mig(m);
	return mig_exit_code(m);
}

/* On a terminal: poll "status" every POLL_MS and redraw the line. */
static int
wait_progress(struct ctx *c, int64_t id)
{
	struct timespec ts = { 0, POLL_MS * 1000000L };
	struct progress p;
	struct json_object *req, *rep, *m;
	char line[512];
	int rc;

	memset(&p, 0, sizeof(p));
	for (;;) {
		req = request("status");
		json_object_object_add(req, "id", json_object_new_int64(id));
		/* On failure call() clears the line and reports. */
		if ((rc = call(c, req, CALL_TIMEOUT_MS, &rep)) != 0)
			return rc;
		if (!json_object_object_get_ex(rep, "migration", &m)) {
			json_object_put(rep);
			return fail(c, EXIT_DAEMON, "%s: bad reply from the "
			    "daemon", c->cmd->name);
		}
		if (mig_terminal(m)) {
			progress_clear(c);
			rc = finish(c, m);
			json_object_put(rep);
			return rc;
		}
		progress_line(&p, m, line, sizeof(line));
		progress_show(c, line);
		json_object_put(rep);
		nanosleep(&ts, NULL);
	}
}

static int
wait_for(struct ctx *c, int64_t id)
{
	struct json_object *req, *rep, *m;
	int rc;

	if (c->tty && !c->json)
		return wait_progress(c, id);
	req = request("wait");
	json_object_object_add(req, "id", json_object_new_int64(id));
	if ((rc = call(c, req, -1, &rep)) != 0)
		return rc;
	if (!json_object_object_get_ex(rep, "migration", &m)) {
		json_object_put(rep);
		return fail(c, EXIT_DAEMON, "%s: bad reply from the daemon",
		    c->cmd->name);
	}
	rc = finish(c, m);
	json_object_put(rep);
	return rc;
}

/* "--name VALUE" or "--name=VALUE": 1 with *val set, 0 not this option,
 * -1 the value is missing. */
static int
opt_value(int argc, char **argv, int *i, const char *name,
    const char **val)
{
	size_t len = strlen(name);

	if (strncmp(argv[*i], name, len) != 0)
		return 0;
	if (argv[*i][len] == '=') {
		*val = argv[*i] + len + 1;
		return 1;
	}
	if (argv[*i][len] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

/* migrate DOMAIN HOST:PORT [options]; options may come anywhere. */
static int
cmd_migrate(struct ctx *c, int argc, char **argv)
{
	static const struct {
		const char	*opt, *key;
		int64_t		 min, max;
	} nums[] = {
		{ "--downtime-ms", "downtime_ms", 1, 600000 },
		{ "--max-iterations", "max_iterations", 1, 1000 },
		{ "--streams", "streams", 1, 8 },
	};
	static const char *const dedups[] = { "none", "shared", "all", NULL };
	static const char *const comps[] = { "none", "zstd", "lz4", NULL };
	static const char *const zeros[] = { "elide", "send", NULL };
	static const char *const orders[] = { "pfn", "unique-first", NULL };
	static const struct {
		const char		*opt, *key, *say;
		const char *const	*choices;
	} words[] = {
		{ "--dedup", "dedup", "none, shared or all", dedups },
		{ "--compress", "compress", "none, zstd or lz4", comps },
		{ "--zero-pages", "zero_pages", "elide or send", zeros },
		{ "--order", "order", "pfn or unique-first", orders },
	};
	struct json_object *req = request("migrate"), *rep, *v;
	const char *ops[2], *val = NULL;
	int i, k = 0, wait = 0, rc, r;
	size_t j;
	int64_t n, id;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--paused") == 0 ||
		    strcmp(argv[i], "--verify") == 0) {
			json_object_object_add(req, argv[i] + 2,
			    json_object_new_boolean(1));
			continue;
		}
		if (strcmp(argv[i], "--auto-converge") == 0) {
			json_object_object_add(req, "auto_converge",
			    json_object_new_boolean(1));
			continue;
		}
		if ((r = opt_value(argc, argv, &i, "--bandwidth", &val)) != 0) {
			if (r < 0) {
				rc = usage_err(c, "--bandwidth needs a RATE");
				goto out;
			}
			if ((rc = parse_rate(c, "--bandwidth", val, &n)) != 0)
				goto out;
			json_object_object_add(req, "bandwidth",
			    json_object_new_int64(n));
			continue;
		}
		if (strcmp(argv[i], "--wait") == 0) {
			wait = 1;
			continue;
		}
		for (j = 0; j < sizeof(words) / sizeof(words[0]); j++)
			if ((r = opt_value(argc, argv, &i, words[j].opt,
			    &val)) != 0)
				break;
		if (j < sizeof(words) / sizeof(words[0])) {
			if (r < 0 || !one_of(val, words[j].choices)) {
				rc = usage_err(c, "%s must be %s", words[j].opt,
				    words[j].say);
				goto out;
			}
			json_object_object_add(req, words[j].key,
			    json_object_new_string(val));
			continue;
		}
		for (j = 0; j < sizeof(nums) / sizeof(nums[0]); j++)
			if ((r = opt_value(argc, argv, &i, nums[j].opt,
			    &val)) != 0)
				break;
		if (j < sizeof(nums) / sizeof(nums[0])) {
			if (r < 0 || parse_uint(val, &n) != 0 ||
			    n < nums[j].min || n > nums[j].max) {
				rc = usage_err(c, "%s must be an integer in "
				    "%lld..%lld", nums[j].opt,
				    (long long)nums[j].min,
				    (long long)nums[j].max);
				goto out;
			}
			json_object_object_add(req, nums[j].key,
			    json_object_new_int64(n));
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			rc = usage_err(c, "unknown option '%s'", argv[i]);
			goto out;
		}
		if (k == 2) {
			rc = usage_err(c, "unexpected argument '%s'", argv[i]);
			goto out;
		}
		ops[k++] = argv[i];
	}
	if (k != 2) {
		rc = usage_err(c, k == 0 ? "missing DOMAIN and HOST:PORT" :
		    "missing HOST:PORT");
		goto out;
	}
	json_object_object_add(req, "domain", json_object_new_string(ops[0]));
	json_object_object_add(req, "destination",
	    json_object_new_string(ops[1]));
	/* Connecting to the destination may take the daemon's timeout. */
	rc = call(c, req, -1, &rep);
	req = NULL;
	if (rc != 0)
		goto out;
	if (!json_object_object_get_ex(rep, "id", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		json_object_put(rep);
		rc = fail(c, EXIT_DAEMON, "migrate: bad reply from the daemon");
		goto out;
	}
	id = json_object_get_int64(v);
	if (!wait) {
		if (c->json)
			emit(rep);
		else
			printf("migration %lld started\n", (long long)id);
		json_object_put(rep);
		rc = 0;
		goto out;
	}
	json_object_put(rep);
	rc = wait_for(c, id);
out:
	json_object_put(req);
	return rc;
}

static int
cmd_status(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep, *m, *arr;
	int64_t id;
	size_t i;
	int rc;

	if (argc > 2)
		return usage_err(c, "unexpected argument '%s'", argv[2]);
	if (argc == 2 && (rc = parse_id(c, argv[1], &id)) != 0)
		return rc;
	req = request("status");
	if (argc == 2)
		json_object_object_add(req, "id", json_object_new_int64(id));
	if ((rc = call(c, req, CALL_TIMEOUT_MS, &rep)) != 0)
		return rc;
	if (json_object_object_get_ex(rep, "migration", &m)) {
		if (c->json)
			emit(m);
		else
			print_mig(m);
	} else if (json_object_object_get_ex(rep, "migrations", &arr)) {
		if (c->json)
			emit(arr);
		else if (json_object_array_length(arr) == 0)
			printf("no migrations\n");
		else
			for (i = 0; i < json_object_array_length(arr); i++)
				print_mig(json_object_array_get_idx(arr, i));
	} else if (json_object_object_get_ex(rep, "sessions", &arr)) {
		/* destd's socket. */
		if (c->json)
			emit(rep);
		else if (json_object_array_length(arr) == 0)
			printf("no incoming migrations\n");
		else
			for (i = 0; i < json_object_array_length(arr); i++)
				print_session(json_object_array_get_idx(arr,
				    i));
	} else if (c->json) {
		emit(rep);
	}
	json_object_put(rep);
	return 0;
}

/* COMMAND ID: exactly one migration id. */
static int
one_id(struct ctx *c, int argc, char **argv, int64_t *id)
{
	if (argc < 2)
		return usage_err(c, "missing ID");
	if (argc > 2)
		return usage_err(c, "unexpected argument '%s'", argv[2]);
	return parse_id(c, argv[1], id);
}

static int
cmd_wait(struct ctx *c, int argc, char **argv)
{
	int64_t id;
	int rc;

	if ((rc = one_id(c, argc, argv, &id)) != 0)
		return rc;
	return wait_for(c, id);
}

static int
cmd_cancel(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep;
	int64_t id;
	int rc;

	if ((rc = one_id(c, argc, argv, &id)) != 0)
		return rc;
	req = request("cancel");
	json_object_object_add(req, "id", json_object_new_int64(id));
	if ((rc = call(c, req, CALL_TIMEOUT_MS, &rep)) != 0)
		return rc;
	if (c->json) {
		json_object_object_add(rep, "id", json_object_new_int64(id));
		emit(rep);
	} else {
		printf("migration %lld cancelled\n", (long long)id);
	}
	json_object_put(rep);
	return 0;
}

/* set-bandwidth ID RATE */
static int
cmd_set_bandwidth(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep;
	int64_t id = 0, rate = 0;
	int rc;

	if (argc < 3)
		return usage_err(c, argc < 2 ? "missing ID and RATE" :
		    "missing RATE");
	if (argc > 3)
		return usage_err(c, "unexpected argument '%s'", argv[3]);
	if ((rc = parse_id(c, argv[1], &id)) != 0 ||
	    (rc = parse_rate(c, "RATE", argv[2], &rate)) != 0)
		return rc;
	req = request("set-bandwidth");
	json_object_object_add(req, "id", json_object_new_int64(id));
	json_object_object_add(req, "bandwidth", json_object_new_int64(rate));
	if ((rc = call(c, req, CALL_TIMEOUT_MS, &rep)) != 0)
		return rc;
	if (c->json) {
		json_object_object_add(rep, "id", json_object_new_int64(id));
		json_object_object_add(rep, "bandwidth",
		    json_object_new_int64(rate));
		emit(rep);
	} else if (rate == 0) {
		printf("migration %lld: no bandwidth cap\n", (long long)id);
	} else {
		printf("migration %lld: bandwidth cap %lld bytes/s\n",
		    (long long)id, (long long)rate);
	}
	json_object_put(rep);
	return 0;
}

/*
 * advise DOMAIN HOST:PORT...: each candidate destination answers, from its
 * host index, how many of the guest's pages it already holds (a dry run of
 * the hash negotiation, nothing is moved); the best candidate comes first.
 */
static int
cmd_advise(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep, *arr, *d, *cands;
	size_t i;
	int k, rc;

	if (argc < 3)
		return usage_err(c, "advise needs a domain and at least one "
		    "destination");
	if (argc - 2 > 16)
		return usage_err(c, "at most 16 destinations");
	for (k = 1; k < argc; k++)
		if (argv[k][0] == '-')
			return usage_err(c, "unknown option '%s'", argv[k]);
	req = request("advise");
	json_object_object_add(req, "domain", json_object_new_string(argv[1]));
	arr = json_object_new_array();
	for (k = 2; k < argc; k++)
		json_object_array_add(arr, json_object_new_string(argv[k]));
	json_object_object_add(req, "destinations", arr);
	if ((rc = call(c, req, -1, &rep)) != 0)
		return rc;
	if (c->json) {
		emit(rep);
		json_object_put(rep);
		return 0;
	}
	printf("%-4s %-28s %10s %10s %8s\n", "RANK", "DESTINATION", "PAGES",
	    "HELD", "SHARING");
	if (json_object_object_get_ex(rep, "candidates", &cands)) {
		for (i = 0; i < json_object_array_length(cands); i++) {
			d = json_object_array_get_idx(cands, i);
			if (strcmp(jstr(d, "status"), "completed") != 0) {
				printf("%-4s %-28s %s\n", jstr(d, "rank"),
				    jstr(d, "destination"), jstr(d, "error"));
				continue;
			}
			printf("%-4s %-28s %10s %10s %7.1f%%\n", jstr(d, "rank"),
			    jstr(d, "destination"), jstr(d, "pages_total"),
			    jstr(d, "pages_have"), 100.0 * json_object_get_double(
			    json_object_object_get_ex(d, "sharing", &arr) ? arr :
			    NULL));
		}
	}
	json_object_put(rep);
	return 0;
}

/* Add "sharing_rate" (shared_pages / pages, 0 for no pages) to o. */
static double
add_rate(struct json_object *o)
{
	uint64_t pages = ju64(o, "pages");
	double r = pages ? (double)ju64(o, "shared_pages") / (double)pages : 0;

	/* Four decimals are plenty for a rate. */
	json_object_object_add(o, "sharing_rate",
	    json_object_new_double((double)(uint64_t)(r * 10000 + 0.5) /
	    10000));
	return r;
}

static void
index_row(const char *name, const char *domid, struct json_object *o,
    double rate)
{
	printf("%-24s %6s %10llu %10llu %10llu %7.1f%%\n", name, domid,
	    (unsigned long long)ju64(o, "pages"),
	    (unsigned long long)ju64(o, "zero_pages"),
	    (unsigned long long)ju64(o, "shared_pages"), rate * 100);
}

/* destd's index: a table per domain, host totals, the scanner, the
 * filter. */
static int
cmd_index(struct ctx *c, int argc, char **argv)
{
	struct json_object *rep, *doms, *d, *host, *scan, *filt;
	double r;
	size_t i;
	int rc;

	if (argc != 1)
		return usage_err(c, "unexpected argument '%s'", argv[1]);
	if ((rc = call(c, request("index"), INDEX_TIMEOUT_MS, &rep)) != 0)
		return rc;
	if (!c->json)
		printf("%-24s %6s %10s %10s %10s %8s\n", "DOMAIN", "DOMID",
		    "INDEXED", "ZERO", "SHARED", "SHARING");
	if (json_object_object_get_ex(rep, "domains", &doms) &&
	    json_object_is_type(doms, json_type_array)) {
		for (i = 0; i < json_object_array_length(doms); i++) {
			d = json_object_array_get_idx(doms, i);
			r = add_rate(d);
			if (!c->json)
				index_row(jstr(d, "name"), jstr(d, "domid"),
				    d, r);
		}
	}
	if (json_object_object_get_ex(rep, "host", &host)) {
		r = add_rate(host);
		if (!c->json) {
			index_row("(host)", "-", host, r);
			printf("index memory %.1f MiB, %llu distinct "
			    "contents\n", (double)ju64(host, "bytes") /
			    (1 << 20),
			    (unsigned long long)ju64(host, "unique_digests"));
		}
	}
	if (!c->json && json_object_object_get_ex(rep, "scanner", &scan))
		printf("scanner: %llu passes, %llu pages scanned, %llu "
		    "hashed, %.2f s CPU\n",
		    (unsigned long long)ju64(scan, "passes"),
		    (unsigned long long)ju64(scan, "pages_scanned"),
		    (unsigned long long)ju64(scan, "pages_hashed"),
		    jnum(scan, "cpu_s"));
	if (!c->json && json_object_object_get_ex(rep, "filter", &filt))
		printf("filter for incoming migrations: %llu contents, %llu "
		    "KiB, %d probes, built in %.1f ms, %.0f s ago\n",
		    (unsigned long long)ju64(filt, "contents"),
		    (unsigned long long)ju64(filt, "bytes") / 1024,
		    (int)ju64(filt, "probes"), jnum(filt, "build_ms"),
		    jnum(filt, "age_ms") / 1e3);
	if (c->json)
		emit(rep);
	json_object_put(rep);
	return 0;
}

/* Wait until destd's scanner has indexed the host as it is now. */
static int
cmd_index_sync(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep;
	int rc;

	if (argc != 1)
		return usage_err(c, "unexpected argument '%s'", argv[1]);
	req = request("scan-wait");
	json_object_object_add(req, "passes", json_object_new_int64(1));
	json_object_object_add(req, "timeout_ms",
	    json_object_new_int64(600000));
	if ((rc = call(c, req, -1, &rep)) != 0)
		return rc;
	if (c->json)
		emit(rep);
	else
		printf("index up to date\n");
	json_object_put(rep);
	return 0;
}


int
main(int argc, char **argv)
{
	struct ctx c = { .control = NULL, .json = 0 };
	const char *env = getenv("SHAREMIG_CONTROL");
	char **args;
	int i, n = 0, rc;
	size_t k;

	if ((args = calloc((size_t)argc + 1, sizeof(*args))) == NULL)
		return fail(NULL, EXIT_USAGE, "out of memory");
	/* Global options anywhere: --control S, --json, --help. */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--control") == 0) {
			if (i + 1 >= argc) {
				rc = fail(&c, EXIT_USAGE, "--control needs a "
				    "SOCKET (see migratectl --help)");
				goto out;
			}
			c.control = argv[++i];
		} else if (strncmp(argv[i], "--control=", 10) == 0) {
			c.control = argv[i] + 10;
		} else if (strcmp(argv[i], "--json") == 0) {
			c.json = 1;
		} else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			rc = 0;
			goto out;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("migratectl %s\n", SHAREMIG_VERSION);
			rc = 0;
			goto out;
		} else {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;
	c.tty = isatty(STDOUT_FILENO);
	if (c.control != NULL && *c.control == '\0') {
		rc = fail(&c, EXIT_USAGE, "--control needs a SOCKET (see "
		    "migratectl --help)");
		goto out;
	}
	if (n == 0) {
		rc = fail(&c, EXIT_USAGE, "no command given (see migratectl "
		    "--help)");
		goto out;
	}
	for (k = 0; k < ncommands; k++)
		if (strcmp(commands[k].name, args[0]) == 0)
			break;
	if (k == ncommands) {
		rc = fail(&c, EXIT_USAGE, "unknown command '%s' (see "
		    "migratectl --help)", args[0]);
		goto out;
	}
	c.cmd = &commands[k];
	if (c.control == NULL)
		c.control = env != NULL && *env != '\0' ? env :
		    c.cmd->daemon == D_DESTD ? DESTD_CONTROL : SOURCED_CONTROL;
	/* A command gets argv with argv[0] = its name. */
	rc = c.cmd->fn(&c, n, args);
out:
	free(args);
	return rc;
}
