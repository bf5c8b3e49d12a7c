/*
 * fuzz_ctl.c - libFuzzer target for the control-socket server
 * (src/common/ctl.c): framing, JSON parsing, the reply path, deferred
 * replies and the half-close/close rules of docs/CONTROL.md.
 *
 * One ctl server listens on a UNIX socket in /dev/shm (made once per
 * process, on this thread's event base).  For each input a client
 * connects, writes the input as its bytes (in chunks whose sizes come
 * from the input, so framing across reads is exercised), shuts down its
 * sending side and reads until the server closes.  The event loop runs
 * in between, on this thread.
 *
 * The handler validates requests the way the daemons' command tables do
 * (src/sourced/sourced.c, src/destd/destd.c): a "cmd" string, then typed
 * fields per command, errors through ctl_reply_error().  Two commands
 * reply later: "wait" from a zero timer, "defer" after the client may be
 * gone (the reply is then dropped, no leak).  "echo" replies with the
 * request object itself, so the serialiser sees every parsed value.
 *
 * Oracle, any failure aborts:
 *   - every reply line is a JSON object with a boolean "ok", and an
 *     "error" string when ok is false;
 *   - the number of replies is exactly what docs/CONTROL.md promises for
 *     this byte stream (one per non-empty line up to the first line over
 *     CTL_LINE_MAX, one for an overlong or unterminated tail);
 *   - the server closes the connection after the input's EOF (bounded
 *     number of loop turns);
 *   - nothing is leaked (LeakSanitizer) and no deferred request is left.
 *
 * Input layout: byte 0 selects the chunk size of the client's writes
 * (0 = all at once, 0xff = all at once and the client closes without
 * reading a reply: pending and deferred replies are then dropped, else
 * 1 + b*17 bytes); the rest is the byte stream.
 *
 * Built with clang -fsanitize=fuzzer (fuzz/meson.build), or without
 * libFuzzer together with replay_main.c to replay a corpus.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)	do { if (!(x)) abort(); } while (0)
#define HANG_S		20	/* seconds before "the server hangs" */

struct deferred {
	struct ctl_req	*r;
	struct event	*ev;
	char		*what;
};

static struct event_base	*base;
static struct ctl_server	*srv;
static char			 dir[64], sock[128];
static int			 ndeferred;	/* not yet replied */

static void
cleanup(void)
{
	ctl_server_free(srv);	/* unlinks the socket */
	rmdir(dir);
}

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deferred *d = arg;
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "deferred", json_object_new_string(d->what));
	ctl_reply(d->r, o);
	event_free(d->ev);
	free(d->what);
	free(d);
	ndeferred--;
}

/* Reply later, from the loop.  Falls back to an error reply now. */
static void
defer(struct ctl_req *r, const char *what, int ms)
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
	ndeferred++;
	evtimer_add(d->ev, &tv);
}

/* The daemons' typed getters: 1 present, 0 absent, -EINVAL wrong type. */
static int
get_typed(struct json_object *o, const char *k, json_type t,
    struct json_object **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return 0;
	if (!json_object_is_type(v, t))
		return -EINVAL;
	*out = v;
	return 1;
}

/* As cfg_parse_dedup() (cfg.c, not linked here: no libinih needed). */
static int
dedup_ok(const char *s)
{
	return strcmp(s, "none") == 0 || strcmp(s, "shared") == 0 ||
	    strcmp(s, "all") == 0;
}

static struct json_object *
ok_obj(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

static void
cmd_migrate(struct ctl_req *r, struct json_object *req)
{
	struct json_object *dom, *dst, *v, *o;
	int64_t n;
	int rc;

	if (get_typed(req, "domain", json_type_string, &dom) != 1 ||
	    get_typed(req, "destination", json_type_string, &dst) != 1) {
		ctl_reply_error(r, "migrate needs \"domain\" and "
		    "\"destination\" strings");
		return;
	}
	if ((rc = get_typed(req, "dedup", json_type_string, &v)) < 0 ||
	    (rc == 1 && !dedup_ok(json_object_get_string(v)))) {
		ctl_reply_error(r, "dedup must be none, shared or all");
		return;
	}
	if (get_typed(req, "paused", json_type_boolean, &v) < 0 ||
	    get_typed(req, "verify", json_type_boolean, &v) < 0) {
		ctl_reply_error(r, "paused and verify must be booleans");
		return;
	}
	if ((rc = get_typed(req, "downtime_ms", json_type_int, &v)) < 0 ||
	    (rc == 1 && ((n = json_object_get_int64(v)) < 1 || n > 600000))) {
		ctl_reply_error(r, "downtime_ms must be 1..600000");
		return;
	}
	if ((rc = get_typed(req, "max_iterations", json_type_int, &v)) < 0 ||
	    (rc == 1 && ((n = json_object_get_int64(v)) < 1 || n > 1000))) {
		ctl_reply_error(r, "max_iterations must be 1..1000");
		return;
	}
	/* The real daemon fails here for an unknown domain, with the name
	 * in the message: a hostile string goes back through the JSON
	 * serialiser. */
	if (strcmp(json_object_get_string(dom), "web1") != 0) {
		ctl_reply_error(r, "no domain '%s' to migrate to %s",
		    json_object_get_string(dom), json_object_get_string(dst));
		return;
	}
	o = ok_obj();
	json_object_object_add(o, "id", json_object_new_int64(1));
	ctl_reply(r, o);
}

static void
cmd_id(struct ctl_req *r, struct json_object *req, const char *cmd,
    int required)
{
	struct json_object *v, *o;
	int rc;

	if ((rc = get_typed(req, "id", json_type_int, &v)) < 0 ||
	    (required && rc != 1)) {
		ctl_reply_error(r, "%s needs an integer id", cmd);
		return;
	}
	if (rc == 1 && json_object_get_int64(v) != 1) {
		ctl_reply_error(r, "no migration %lld",
		    (long long)json_object_get_int64(v));
		return;
	}
	if (strcmp(cmd, "wait") == 0) {
		defer(r, cmd, 0);
		return;
	}
	o = ok_obj();
	if (strcmp(cmd, "status") == 0)
		json_object_object_add(o, "migrations",
		    json_object_new_array());
	ctl_reply(r, o);
}

static void
cmd_scan_wait(struct ctl_req *r, struct json_object *req)
{
	struct json_object *v;
	int64_t passes = 1, timeout = 60000;

	if (get_typed(req, "passes", json_type_int, &v) < 0 ||
	    get_typed(req, "timeout_ms", json_type_int, &v) < 0) {
		ctl_reply_error(r, "scan-wait: passes 1..1000, timeout_ms >= 0");
		return;
	}
	if (get_typed(req, "passes", json_type_int, &v) == 1)
		passes = json_object_get_int64(v);
	if (get_typed(req, "timeout_ms", json_type_int, &v) == 1)
		timeout = json_object_get_int64(v);
	if (passes < 1 || passes > 1000 || timeout < 0) {
		ctl_reply_error(r, "scan-wait: passes 1..1000, timeout_ms >= 0");
		return;
	}
	defer(r, "scan-wait", 0);
}

static void
handler(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct json_object *v;
	const char *cmd;

	CHECK(json_object_is_type(req, json_type_object));
	CHECK(ctl_req_uid(r) == (unsigned)geteuid());
	if (get_typed(req, "cmd", json_type_string, &v) != 1) {
		ctl_reply_error(r, "request without a \"cmd\" string");
		return;
	}
	cmd = json_object_get_string(v);
	if (strcmp(cmd, "list") == 0) {
		v = ok_obj();
		json_object_object_add(v, "domains", json_object_new_array());
		ctl_reply(r, v);
	} else if (strcmp(cmd, "migrate") == 0)
		cmd_migrate(r, req);
	else if (strcmp(cmd, "status") == 0)
		cmd_id(r, req, cmd, 0);
	else if (strcmp(cmd, "wait") == 0 || strcmp(cmd, "cancel") == 0)
		cmd_id(r, req, cmd, 1);
	else if (strcmp(cmd, "scan-wait") == 0)
		cmd_scan_wait(r, req);
	else if (strcmp(cmd, "echo") == 0) {
		v = ok_obj();
		json_object_object_add(v, "request", json_object_get(req));
		ctl_reply(r, v);
	} else if (strcmp(cmd, "defer") == 0)
		defer(r, "defer", 0);	/* the client may be gone by then */
	else
		ctl_reply_error(r, "unknown command '%s'", cmd);
}

static void
setup(void)
{
	const char *d = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	signal(SIGPIPE, SIG_IGN);	/* ctl.h: the process must */
	CHECK((base = event_base_new()) != NULL);
	snprintf(dir, sizeof(dir), "%s/fuzz_ctl.XXXXXX", d);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	CHECK(ctl_server_new(base, sock, -1, handler, NULL, &srv) == 0);
	atexit(cleanup);
}

static time_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/*
 * What docs/CONTROL.md promises for the byte stream s: the number of
 * replies before the server closes.
 */
static size_t
expected_replies(const uint8_t *s, size_t n)
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
	struct json_tokener *tok;
	struct json_object *o, *ok, *err;

	CHECK(strlen(line) == n);	/* no NUL inside a reply */
	CHECK((tok = json_tokener_new()) != NULL);
	o = json_tokener_parse_ex(tok, line, (int)n);
	CHECK(o != NULL && json_tokener_get_error(tok) == json_tokener_success);
	CHECK(json_tokener_get_parse_end(tok) == n);
	CHECK(json_object_is_type(o, json_type_object));
	CHECK(json_object_object_get_ex(o, "ok", &ok) &&
	    json_object_is_type(ok, json_type_boolean));
	if (!json_object_get_boolean(ok))
		CHECK(json_object_object_get_ex(o, "error", &err) &&
		    json_object_is_type(err, json_type_string));
	json_tokener_free(tok);
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa;
	char *out = NULL, *p, *nl;
	size_t chunk, off = 0, olen = 0, ocap = 0, nrep = 0, want;
	ssize_t k;
	time_t t0 = now_s();
	int fd, eof = 0, shut = 0, gone;

	if (base == NULL)
		setup();
	if (size == 0)
		return 0;
	gone = data[0] == 0xff;
	chunk = data[0] == 0 || gone ? SIZE_MAX : 1 + (size_t)data[0] * 17;
	data++;
	size--;
	want = expected_replies(data, size);

	CHECK((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	CHECK(strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

	while (!eof) {
		if (now_s() - t0 > HANG_S) {
			fprintf(stderr, "fuzz_ctl: server hangs: sent %zu of "
			    "%zu bytes, shut %d, %zu reply bytes, %d deferred\n",
			    off, size, shut, olen, ndeferred);
			abort();
		}
		while (off < size) {
			size_t m = size - off < chunk ? size - off : chunk;

			k = send(fd, data + off, m, MSG_NOSIGNAL);
			if (k <= 0)
				break;	/* full, or the server closed */
			off += (size_t)k;
			if (chunk != SIZE_MAX)
				break;	/* one chunk per loop turn */
		}
		if (off == size && !shut) {
			(void)shutdown(fd, SHUT_WR);
			shut = 1;
		}
		if (gone && (shut || off > 0)) {
			/* The server saw (part of) it: go away now. */
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
			break;
		}
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		for (;;) {
			if (ocap - olen < 65536) {
				ocap = ocap ? ocap * 2 : 131072;
				CHECK((out = realloc(out, ocap)) != NULL);
			}
			k = recv(fd, out + olen, ocap - olen - 1, 0);
			if (k == 0) {
				eof = 1;
				break;
			}
			if (k < 0) {
				/* A reset after "request too long" loses
				 * nothing we count on: stop reading. */
				if (errno == ECONNRESET || errno == EPIPE)
					eof = 1;
				break;
			}
			olen += (size_t)k;
		}
	}
	close(fd);
	/* Let deferred replies for a gone client run: dropped, not leaked. */
	while (ndeferred > 0) {
		CHECK(now_s() - t0 <= HANG_S);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

	/* Every reply is one well-formed line; count them. */
	if (out != NULL) {
		out[olen] = '\0';
		for (p = out; p < out + olen; p = nl + 1) {
			nl = memchr(p, '\n', (size_t)(out + olen - p));
			CHECK(nl != NULL);	/* replies end with a newline */
			*nl = '\0';
			check_reply(p, (size_t)(nl - p));
			nrep++;
		}
	}
	if (!gone)
		CHECK(nrep == want);
	free(out);
	return 0;
}
