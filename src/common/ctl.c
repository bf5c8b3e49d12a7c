/*
 * ctl.c - the daemons' UNIX control socket: newline-delimited JSON over
 * libevent bufferevents.  See ctl.h and docs/CONTROL.md.
 *
 * Threads: everything here except ctl_call() and ctl_call_data() runs
 * on the event-loop thread that owns the base, including ctl_reply().
 *
 * Each connection answers its requests in order: while one request
 * (c->pending) waits for its reply, later lines stay in the input buffer
 * (reading pauses once it holds CTL_LINE_MAX + 1 bytes).  A request
 * outlives its connection: when the client goes away the request is only
 * detached (r->c = NULL) and ctl_reply() frees it.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "ctl.h"
#include "net.h"

struct ctl_conn;

struct ctl_req {
	struct ctl_conn		*c;	/* NULL once the client is gone */
	unsigned		 uid;
};

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn)	 entry;
	struct ctl_server	*s;
	struct bufferevent	*bev;
	struct event		*kick;	/* resumes processing after a reply */
	struct ctl_req		*pending;
	unsigned		 uid;
	int			 in_process;	/* inside conn_process() */
	int			 eof;		/* client shut down its side */
	int			 closing;	/* close once output is flushed */
};

struct ctl_server {
	struct event_base	*base;
	struct evconnlistener	*lev;
	char			*path;
	long			 gid;
	uid_t			 euid;
	ctl_handler		 h;
	void			*arg;
	int			 nconn;
	TAILQ_HEAD(, ctl_conn)	 conns;
};

static void	conn_process(struct ctl_conn *);

static void
conn_free(struct ctl_conn *c)
{
	if (c == NULL)
		return;
	if (c->pending != NULL)
		c->pending->c = NULL;
	TAILQ_REMOVE(&c->s->conns, c, entry);
	c->s->nconn--;
	if (c->kick != NULL)
		event_free(c->kick);
	bufferevent_free(c->bev);
	free(c);
}

/* Queue one serialised object and a newline.  0 or -ENOMEM. */
static int
conn_write_obj(struct ctl_conn *c, struct json_object *obj)
{
	const char *s;

	s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if (s == NULL)
		return -ENOMEM;
	if (bufferevent_write(c->bev, s, strlen(s)) < 0 ||
	    bufferevent_write(c->bev, "\n", 1) < 0)
		return -ENOMEM;
	return 0;
}

static struct json_object *
error_obj(const char *msg)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return o;
}

static void
conn_write_error(struct ctl_conn *c, const char *msg)
{
	struct json_object *o = error_obj(msg);

	if (o != NULL)
		conn_write_obj(c, o);
	json_object_put(o);
}

/*
 * Close c once everything queued has been sent: now if the output is
 * already empty (and no handler is running on c), else from the write
 * callback or at the end of conn_process().
 */
static void
conn_close_soon(struct ctl_conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (!c->in_process &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

/*
 * Parse one request line: a JSON object and nothing else but
 * whitespace.  NULL with *why set on error.
 */
static struct json_object *
parse_line(const char *line, size_t n, const char **why)
{
	struct json_tokener *tok;
	struct json_object *o = NULL;
	size_t end;

	if (strlen(line) != n) {
		*why = "invalid JSON: NUL byte in request";
		return NULL;
	}
	if ((tok = json_tokener_new()) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	/* Include the terminating NUL so that a bare number ends too. */
	o = json_tokener_parse_ex(tok, line, (int)n + 1);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		*why = "invalid JSON";
		goto fail;
	}
	for (end = json_tokener_get_parse_end(tok); end < n; end++)
		if (line[end] != ' ' && line[end] != '\t' && line[end] != '\r') {
			*why = "invalid JSON: trailing data";
			goto fail;
		}
	if (!json_object_is_type(o, json_type_object)) {
		*why = "request is not a JSON object";
		goto fail;
	}
	json_tokener_free(tok);
	return o;
fail:
	json_object_put(o);
	json_tokener_free(tok);
	return NULL;
}

/*
 * Handle the complete lines in c's input, one at a time, until one is
 * left waiting for its reply.  May free c (then returns nothing more).
 */
static void
conn_process(struct ctl_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct json_object *o;
	struct ctl_req *r;
	const char *why;
	char *line;
	size_t n;

	if (c->in_process)
		return;
	while (c->pending == NULL && !c->closing) {
		line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
		if (line == NULL) {
			if (evbuffer_get_length(in) > CTL_LINE_MAX ||
			    (c->eof && evbuffer_get_length(in) > 0)) {
				conn_write_error(c, c->eof ?
				    "request not terminated by a newline" :
				    "request too long");
				conn_close_soon(c);
				return;
			}
			break;
		}
		if (n > CTL_LINE_MAX) {
			free(line);
			conn_write_error(c, "request too long");
			conn_close_soon(c);
			return;
		}
		if (n == 0 || (n == 1 && line[0] == '\r')) {
			free(line);
			continue;	/* empty lines are ignored */
		}
		o = parse_line(line, n, &why);
		free(line);
		if (o == NULL) {
			conn_write_error(c, why);
			continue;
		}
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			json_object_put(o);
			conn_write_error(c, "out of memory");
			continue;
		}
		r->c = c;
		r->uid = c->uid;
		c->pending = r;
		c->in_process = 1;
		c->s->h(r, o, c->s->arg);
		c->in_process = 0;
		json_object_put(o);
	}
	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			conn_free(c);
	} else if (c->eof && c->pending == NULL)
		conn_close_soon(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	conn_process(arg);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	if (c->closing)
		conn_free(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		conn_free(c);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* Half-closed: answer what was sent, then close. */
		c->eof = 1;
		conn_process(c);
	}
}

static void
conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_process(arg);
}

/*
 * Refuse a connection with one error line, written straight to the new
 * socket (it fits in an empty socket buffer), and close it.
 */
static void
refuse(int fd, const char *msg)
{
	struct json_object *o = error_obj(msg);
	const char *s;
	char buf[256];
	int n;

	if (o != NULL) {
		s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		n = snprintf(buf, sizeof(buf), "%s\n", s);
		if (n > 0 && (size_t)n < sizeof(buf))
			(void)send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	json_object_put(o);
	close(fd);
}

int
ctl_server_attach(struct ctl_server *s, struct bufferevent *bev, unsigned uid)
{
	struct ctl_conn *c;

	if (s->nconn >= CTL_MAXCONN)
		return -EMFILE;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	if ((c->kick = event_new(s->base, -1, 0, conn_kick_cb, c)) == NULL) {
		free(c);
		return -ENOMEM;
	}
	c->s = s;
	c->uid = uid;
	c->bev = bev;
	TAILQ_INSERT_TAIL(&s->conns, c, entry);
	s->nconn++;
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(bev, EV_READ, 0, CTL_LINE_MAX + 1);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	return 0;
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctl_server *s = arg;
	struct bufferevent *bev;
	uint32_t uid, gid;
	int32_t pid;
	int r;

	if (net_peer_cred(fd, &uid, &gid, &pid) < 0 ||
	    !(uid == 0 || uid == s->euid ||
	    (s->gid >= 0 && gid == (uint32_t)s->gid))) {
		refuse(fd, "permission denied");
		return;
	}
	bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		refuse(fd, "out of memory");
		return;
	}
	if ((r = ctl_server_attach(s, bev, uid)) < 0) {
		bufferevent_setfd(bev, -1);	/* fd stays open for refuse() */
		bufferevent_free(bev);
		refuse(fd, r == -EMFILE ? "too many connections" :
		    "out of memory");
	}
}

/* A server with no socket yet.  0 or -ENOMEM (*out untouched). */
static int
server_alloc(struct event_base *base, long gid, ctl_handler h, void *arg,
    struct ctl_server **out)
{
	struct ctl_server *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	TAILQ_INIT(&s->conns);
	s->base = base;
	s->gid = gid;
	s->euid = geteuid();
	s->h = h;
	s->arg = arg;
	*out = s;
	return 0;
}

int
ctl_server_new_unbound(struct event_base *base, ctl_handler h, void *arg,
    struct ctl_server **out)
{
	if (base == NULL || h == NULL)
		return -EINVAL;
	return server_alloc(base, -1, h, arg, out);
}

int
ctl_server_new(struct event_base *base, const char *path, long gid,
    ctl_handler h, void *arg, struct ctl_server **out)
{
	struct ctl_server *s;
	int fd = -1, r;

	if (base == NULL || path == NULL || h == NULL)
		return -EINVAL;
	if ((r = server_alloc(base, gid, h, arg, &s)) < 0)
		return r;
	if ((s->path = strdup(path)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	if ((fd = net_listen_unix(path, 0600)) < 0) {
		r = fd;
		fd = -1;
		goto fail;
	}
	/* Group first, then the group bits: never readable by another group. */
	if (gid >= 0 && (chown(path, (uid_t)-1, (gid_t)gid) < 0 ||
	    chmod(path, 0660) < 0)) {
		r = -errno;
		goto fail_unlink;
	}
	s->lev = evconnlistener_new(base, accept_cb, s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (s->lev == NULL) {
		r = -ENOMEM;
		goto fail_unlink;
	}
	*out = s;
	return 0;
fail_unlink:
	unlink(path);
fail:
	if (fd >= 0)
		close(fd);
	free(s->path);
	free(s);
	return r;
}

void
ctl_server_free(struct ctl_server *s)
{
	struct ctl_conn *c;

	if (s == NULL)
		return;
	while ((c = TAILQ_FIRST(&s->conns)) != NULL)
		conn_free(c);
	if (s->lev != NULL)
		evconnlistener_free(s->lev);
	if (s->path != NULL)
		unlink(s->path);
	free(s->path);
	free(s);
}

void
ctl_reply(struct ctl_req *r, struct json_object *obj)
{
	ctl_reply_data(r, obj, NULL, 0);
}

void
ctl_reply_data(struct ctl_req *r, struct json_object *obj, const void *data,
    size_t len)
{
	struct ctl_conn *c;

	if (r == NULL) {
		json_object_put(obj);
		return;
	}
	c = r->c;
	if (c != NULL) {
		if (obj != NULL && len > 0)
			json_object_object_add(obj, "data_bytes",
			    json_object_new_uint64(len));
		if (obj == NULL)
			conn_write_error(c, "no reply");
		else if (conn_write_obj(c, obj) < 0 || (len > 0 &&
		    bufferevent_write(c->bev, data, len) < 0)) {
			/* Cannot answer: the client would wait forever. */
			c->pending = NULL;
			free(r);
			json_object_put(obj);
			conn_close_soon(c);
			return;
		}
		c->pending = NULL;
		/* Later lines wait in the buffer: resume from the loop. */
		if (!c->in_process)
			event_active(c->kick, EV_TIMEOUT, 0);
	}
	free(r);
	json_object_put(obj);
}

void
ctl_reply_error(struct ctl_req *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl_reply(r, error_obj(msg));
}

unsigned
ctl_req_uid(const struct ctl_req *r)
{
	return r->uid;
}

/* Milliseconds left until deadline (CLOCK_MONOTONIC ms); -1 = forever. */
static int
ms_left(int64_t deadline)
{
	struct timespec ts;
	int64_t now;

	if (deadline < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now >= deadline)
		return 0;
	return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* Wait for ev on fd until deadline.  0, -ETIMEDOUT or -errno. */
static int
wait_until(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int n, t;

	for (;;) {
		t = ms_left(deadline);
		if (t == 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, t);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * Send all of buf.  A peer that closed its side (EPIPE, ECONNRESET) is
 * not an error here: it may have left an error line to read.
 */
static int
send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	ssize_t n;
	int r;

	while (len > 0) {
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			return 0;
		if (errno != EAGAIN)
			return -errno;
		if ((r = wait_until(fd, POLLOUT, deadline)) < 0)
			return r;
	}
	return 0;
}

/*
 * Receive up to len octets by deadline: how many (at least 1), or
 * -ECONNRESET when the peer closed first, -ETIMEDOUT or -errno.
 */
static ssize_t
recv_some(int fd, void *buf, size_t len, int64_t deadline)
{
	ssize_t n;
	int r;

	for (;;) {
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if ((r = wait_until(fd, POLLIN, deadline)) < 0)
			return r;
	}
}

/*
 * Read up to and excluding the first newline into *out (malloc'd,
 * NUL-terminated there); *extra and *nextra are the octets read after
 * the newline (within *out, not terminated).
 */
static int
recv_line(int fd, int64_t deadline, char **out, const char **extra,
    size_t *nextra)
{
	char *buf = NULL, *nl, *nb;
	size_t len = 0, cap = 0;
	ssize_t n;
	int r;

	for (;;) {
		if (cap - len < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			if (cap > CTL_REPLY_MAX + 4096)
				cap = CTL_REPLY_MAX + 4096;
			if ((nb = realloc(buf, cap)) == NULL) {
				r = -ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		if ((n = recv_some(fd, buf + len, cap - len - 1, deadline)) <
		    0) {
			r = (int)n;
			goto fail;
		}
		nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl != NULL) {
			*nl = '\0';
			if ((size_t)(nl - buf) > CTL_REPLY_MAX) {
				r = -EMSGSIZE;
				goto fail;
			}
			*out = buf;
			*extra = nl + 1;
			*nextra = len - (size_t)(nl + 1 - buf);
			return 0;
		}
		if (len > CTL_REPLY_MAX) {
			r = -EMSGSIZE;
			goto fail;
		}
	}
fail:
	free(buf);
	return r;
}

/*
 * The reply's raw octets (its "data_bytes"), have of them already read:
 * at most max, else -EMSGSIZE; a reply without data_bytes has none.
 */
static int
recv_data(int fd, int64_t deadline, struct json_object *rep, size_t max,
    const char *have, size_t nhave, void **data, size_t *len)
{
	struct json_object *v;
	uint8_t *buf;
	size_t want, got;
	ssize_t n;
	int r;

	*data = NULL;
	*len = 0;
	if (!json_object_object_get_ex(rep, "data_bytes", &v))
		return 0;
	if (!json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return -EBADMSG;
	want = (size_t)json_object_get_uint64(v);
	if (want > max)
		return -EMSGSIZE;
	if (want == 0)
		return 0;
	if ((buf = malloc(want)) == NULL)
		return -ENOMEM;
	got = nhave < want ? nhave : want;
	memcpy(buf, have, got);
	while (got < want) {
		if ((n = recv_some(fd, buf + got, want - got, deadline)) < 0) {
			r = (int)n;
			goto fail;
		}
		got += (size_t)n;
	}
	*data = buf;
	*len = want;
	return 0;
fail:
	free(buf);
	return r;
}

int
ctl_call(const char *path, struct json_object *req, int timeout_ms,
    struct json_object **out)
{
	void *data;
	size_t len;
	int r;

	r = ctl_call_data(path, req, timeout_ms, CTL_REPLY_MAX, out, &data,
	    &len);
	free(data);	/* not asked for: dropped */
	return r;
}

int
ctl_call_data(const char *path, struct json_object *req, int timeout_ms,
    size_t max, struct json_object **out, void **data, size_t *len)
{
	struct json_object *o;
	struct timespec ts;
	const char *s, *extra = NULL;
	char *line = NULL, *msg = NULL;
	int64_t deadline = -1;
	size_t n, nextra = 0;
	int fd, r;

	*data = NULL;
	*len = 0;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
		    timeout_ms;
	}
	s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (s == NULL)
		return -ENOMEM;
	n = strlen(s);
	if (n > CTL_LINE_MAX)
		return -EMSGSIZE;
	if ((msg = malloc(n + 1)) == NULL)
		return -ENOMEM;
	memcpy(msg, s, n);
	msg[n] = '\n';

	if ((fd = net_connect_unix(path)) < 0) {
		r = fd;
		goto out;
	}
	if ((r = send_all(fd, msg, n + 1, deadline)) < 0 ||
	    (r = recv_line(fd, deadline, &line, &extra, &nextra)) < 0)
		goto out;
	o = json_tokener_parse(line);
	if (o == NULL) {
		r = -EBADMSG;
		goto out;
	}
	if ((r = recv_data(fd, deadline, o, max, extra, nextra, data,
	    len)) < 0) {
		json_object_put(o);
		goto out;
	}
	*out = o;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(line);
	free(msg);
	return r;
}

int
ctl_get_str(struct json_object *req, const char *key, const char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EINVAL;
	*out = json_object_get_string(v);
	return 1;
}

int
ctl_get_int(struct json_object *req, const char *key, int64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	*out = json_object_get_int64(v);
	return 1;
}

int
ctl_get_bool(struct json_object *req, const char *key, int *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(req, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -EINVAL;
	*out = json_object_get_boolean(v);
	return 1;
}

struct json_object *
ctl_ok(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}
