/*
 * ctl_oracle.c - what the two control-socket fuzz targets share: the
 * request handler (a stand-in for the daemons' command tables) and the
 * oracle that checks the server's replies against docs/CONTROL.md.
 * fuzz_ctl.c feeds src/common/ctl.c over an in-process bufferevent
 * pair, fuzz_ctl_sock.c over a real UNIX socket; see ctl_oracle.h.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "ctl.h"
#include "ctl_oracle.h"

int oracle_ndeferred;

struct deferred {
	struct ctl_req	*r;
	struct event	*ev;
	char		*what;
};

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deferred *d = arg;
	struct json_object *o = ctl_ok();

	json_object_object_add(o, "deferred", json_object_new_string(d->what));
	ctl_reply(d->r, o);
	event_free(d->ev);
	free(d->what);
	free(d);
	oracle_ndeferred--;
}

/* Reply later, from the loop.  Falls back to an error reply now. */
static void
defer(struct event_base *base, struct ctl_req *r, const char *what,
    int ms)
{
	struct timeval tv = { 0, ms * 1000 };
	struct deferred *d;

	if ((d = calloc(1, sizeof(*d))) == NULL ||
	    (d->what = strdup(what)) == NULL ||
	    (d->ev = evtimer_new(base, deferred_cb, d)) == NULL) {
		if (d != NULL)
			free(d->what);
		free(d);
		ctl_reply_error(r, "out of memory");
		return;
	}
	d->r = r;
	oracle_ndeferred++;
	evtimer_add(d->ev, &tv);
}

/* As cfg_parse_dedup() (cfg.c, not linked here: no libinih needed). */
static int
dedup_ok(const char *s)
{
	return strcmp(s, "none") == 0 || strcmp(s, "shared") == 0 ||
	    strcmp(s, "all") == 0;
}

/* The typed fields go through ctl.h's getters, as in the daemons. */
static void
cmd_migrate(struct ctl_req *r, struct json_object *req)
{
	struct json_object *o;
	const char *dom, *dst, *dedup;
	int64_t n;
	int b, rc;

	if (ctl_get_str(req, "domain", &dom) != 1 ||
	    ctl_get_str(req, "destination", &dst) != 1) {
		ctl_reply_error(r, "migrate needs \"domain\" and "
		    "\"destination\" strings");
		return;
	}
	if ((rc = ctl_get_str(req, "dedup", &dedup)) < 0 ||
	    (rc == 1 && !dedup_ok(dedup))) {
		ctl_reply_error(r, "dedup must be none, shared or all");
		return;
	}
	if (ctl_get_bool(req, "paused", &b) < 0 ||
	    ctl_get_bool(req, "verify", &b) < 0) {
		ctl_reply_error(r, "paused and verify must be booleans");
		return;
	}
	if ((rc = ctl_get_int(req, "downtime_ms", &n)) < 0 ||
	    (rc == 1 && (n < 1 || n > 600000))) {
		ctl_reply_error(r, "downtime_ms must be 1..600000");
		return;
	}
	if ((rc = ctl_get_int(req, "max_iterations", &n)) < 0 ||
	    (rc == 1 && (n < 1 || n > 1000))) {
		ctl_reply_error(r, "max_iterations must be 1..1000");
		return;
	}
	/* The real daemon fails here for an unknown domain, with the name
	 * in the message: a hostile string goes back through the JSON
	 * serialiser. */
	if (strcmp(dom, "web1") != 0) {
		ctl_reply_error(r, "no domain '%s' to migrate to %s", dom, dst);
		return;
	}
	o = ctl_ok();
	json_object_object_add(o, "id", json_object_new_int64(1));
	ctl_reply(r, o);
}

static void
cmd_id(struct event_base *base, struct ctl_req *r, struct json_object *req,
    const char *cmd, int required)
{
	struct json_object *o;
	int64_t id;
	int rc;

	if ((rc = ctl_get_int(req, "id", &id)) < 0 || (required && rc != 1)) {
		ctl_reply_error(r, "%s needs an integer id", cmd);
		return;
	}
	if (rc == 1 && id != 1) {
		ctl_reply_error(r, "no migration %lld", (long long)id);
		return;
	}
	if (strcmp(cmd, "wait") == 0) {
		defer(base, r, cmd, 0);
		return;
	}
	o = ctl_ok();
	if (strcmp(cmd, "status") == 0)
		json_object_object_add(o, "migrations",
		    json_object_new_array());
	ctl_reply(r, o);
}

static void
cmd_scan_wait(struct event_base *base, struct ctl_req *r,
    struct json_object *req)
{
	int64_t passes = 1, timeout = 60000;

	if (ctl_get_int(req, "passes", &passes) < 0 ||
	    ctl_get_int(req, "timeout_ms", &timeout) < 0 ||
	    passes < 1 || passes > 1000 || timeout < 0) {
		ctl_reply_error(r, "scan-wait: passes 1..1000, timeout_ms >= 0");
		return;
	}
	defer(base, r, "scan-wait", 0);
}

void
oracle_handler(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct json_object *o;
	const char *cmd;

	CHECK(json_object_is_type(req, json_type_object));
	CHECK(ctl_req_uid(r) == (unsigned)geteuid());
	if (ctl_get_str(req, "cmd", &cmd) != 1) {
		ctl_reply_error(r, "request without a \"cmd\" string");
		return;
	}
	if (strcmp(cmd, "list") == 0) {
		o = ctl_ok();
		json_object_object_add(o, "domains", json_object_new_array());
		ctl_reply(r, o);
	} else if (strcmp(cmd, "migrate") == 0)
		cmd_migrate(r, req);
	else if (strcmp(cmd, "status") == 0)
		cmd_id(arg, r, req, cmd, 0);
	else if (strcmp(cmd, "wait") == 0 || strcmp(cmd, "cancel") == 0)
		cmd_id(arg, r, req, cmd, 1);
	else if (strcmp(cmd, "scan-wait") == 0)
		cmd_scan_wait(arg, r, req);
	else if (strcmp(cmd, "echo") == 0) {
		o = ctl_ok();
		json_object_object_add(o, "request", json_object_get(req));
		ctl_reply(r, o);
	} else if (strcmp(cmd, "defer") == 0)
		defer(arg, r, "defer", 0);	/* the client may be gone by then */
	else
		ctl_reply_error(r, "unknown command '%s'", cmd);
}

/* Seconds on CLOCK_MONOTONIC. */
time_t
oracle_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/*
 * What docs/CONTROL.md promises for the byte stream s: the number of
 * replies before the server closes.
 */
size_t
oracle_expected_replies(const uint8_t *s, size_t n)
{
	size_t i = 0, len, count = 0;
	const uint8_t *nl;

	while (i < n) {
		nl = memchr(s + i, '\n', n - i);
		if (nl == NULL)		/* unterminated or overlong tail */
			return count + 1;
		len = (size_t)(nl - (s + i));
		if (len > CTL_LINE_MAX)
			return count + 1;	/* "request too long", closed */
		if (!(len == 0 || (len == 1 && s[i] == '\r')))
			count++;
		i += len + 1;
	}
	return count;
}

/* One reply line: a JSON object with "ok", and "error" when not ok. */
static void
check_reply(const char *line, size_t n)
{
	static struct json_tokener *tok;	/* reused: allocations are
						   most of an execution */
	struct json_object *o, *ok, *err;

	CHECK(strlen(line) == n);	/* no NUL inside a reply */
	if (tok == NULL)
		CHECK((tok = json_tokener_new()) != NULL);
	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, line, (int)n);
	CHECK(o != NULL && json_tokener_get_error(tok) == json_tokener_success);
	CHECK(json_tokener_get_parse_end(tok) == n);
	CHECK(json_object_is_type(o, json_type_object));
	CHECK(json_object_object_get_ex(o, "ok", &ok) &&
	    json_object_is_type(ok, json_type_boolean));
	if (!json_object_get_boolean(ok))
		CHECK(json_object_object_get_ex(o, "error", &err) &&
		    json_object_is_type(err, json_type_string));
	json_object_put(o);
}

/*
 * Check every reply line in out[0..olen) (out has room for a NUL at
 * out[olen]; the lines are cut in place).  Returns how many there are.
 */
size_t
oracle_check_replies(char *out, size_t olen)
{
	char *p, *nl;
	size_t nrep = 0;

	if (out == NULL)
		return 0;
	out[olen] = '\0';
	for (p = out; p < out + olen; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(out + olen - p));
		CHECK(nl != NULL);	/* replies end with a newline */
		*nl = '\0';
		check_reply(p, (size_t)(nl - p));
		nrep++;
	}
	return nrep;
}

int
oracle_decode(const uint8_t **data, size_t *size, size_t *chunk,
    size_t *want)
{
	int gone;

	if (*size == 0)
		return -1;
	gone = (*data)[0] == 0xff;
	*chunk = (*data)[0] == 0 || gone ? SIZE_MAX :
	    1 + (size_t)(*data)[0] * 17;
	(*data)++;
	(*size)--;
	*want = oracle_expected_replies(*data, *size);
	return gone;
}
