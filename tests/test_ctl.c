/*
 * test_ctl.c - ctl.c: the control socket server on a libevent base run
 * by a second thread, with ctl_call() and raw clients on the main thread.
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <json-c/json.h>

#include "ctl.h"
#include "net.h"

#define TEST_GID_ROOT	4242

struct fixture {
	char			 dir[64];
	char			 path[128];	/* gid -1 */
	char			 gpath[128];	/* with a group */
	long			 gid;
	struct event_base	*base;
	struct ctl_server	*s, *gs;
	pthread_t		 thr;
};

struct deferred {
	struct ctl_req	*r;
	struct event	*ev;
	int		 ms;
};

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deferred *d = arg;
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "deferred", json_object_new_int(d->ms));
	ctl_reply(d->r, o);
	event_free(d->ev);
	free(d);
}

/*
 * Test commands: {"cmd":"echo"} replies with the request and the uid,
 * {"cmd":"defer","ms":N} replies after N ms, {"cmd":"data","n":N}
 * replies with N raw octets (octet i = i * 7 + 3 mod 256),
 * {"cmd":"error"} fails.
 */
static void
handler(struct ctl_req *r, struct json_object *req, void *arg)
{
	struct fixture *f = arg;
	struct json_object *cmd, *o, *ms;
	const char *c;

	if (!json_object_object_get_ex(req, "cmd", &cmd)) {
		ctl_reply_error(r, "no cmd");
		return;
	}
	c = json_object_get_string(cmd);
	if (strcmp(c, "echo") == 0) {
		o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(1));
		json_object_object_add(o, "req", json_object_get(req));
		json_object_object_add(o, "uid",
		    json_object_new_int((int)ctl_req_uid(r)));
		ctl_reply(r, o);
	} else if (strcmp(c, "defer") == 0) {
		struct deferred *d = calloc(1, sizeof(*d));
		struct timeval tv;

		json_object_object_get_ex(req, "ms", &ms);
		d->r = r;
		d->ms = json_object_get_int(ms);
		d->ev = evtimer_new(f->base, deferred_cb, d);
		tv.tv_sec = d->ms / 1000;
		tv.tv_usec = (d->ms % 1000) * 1000;
		evtimer_add(d->ev, &tv);
	} else if (strcmp(c, "data") == 0) {
		uint8_t *buf;
		size_t i, n;

		json_object_object_get_ex(req, "n", &ms);
		n = (size_t)json_object_get_int64(ms);
		buf = malloc(n ? n : 1);
		for (i = 0; i < n; i++)
			buf[i] = (uint8_t)(i * 7 + 3);
		o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(1));
		ctl_reply_data(r, o, buf, n);
		free(buf);
	} else
		ctl_reply_error(r, "unknown command '%s'", c);
}

static void *
loop_thread(void *arg)
{
	struct fixture *f = arg;

	event_base_loop(f->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/test_ctl.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	snprintf(f->gpath, sizeof(f->gpath), "%s/gctl.sock", f->dir);
	f->gid = geteuid() == 0 ? TEST_GID_ROOT : (long)getegid();
	f->base = event_base_new();
	assert_non_null(f->base);
	assert_int_equal(ctl_server_new(f->base, f->path, -1, handler, f,
	    &f->s), 0);
	assert_int_equal(ctl_server_new(f->base, f->gpath, f->gid, handler, f,
	    &f->gs), 0);
	assert_int_equal(pthread_create(&f->thr, NULL, loop_thread, f), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	event_base_loopbreak(f->base);
	pthread_join(f->thr, NULL);
	ctl_server_free(f->s);
	ctl_server_free(f->gs);
	event_base_free(f->base);
	/* ctl_server_free() unlinks the sockets. */
	assert_int_equal(rmdir(f->dir), 0);
	free(f);
	return 0;
}

static struct json_object *
call(const char *path, const char *req, int timeout_ms, int *ret)
{
	struct json_object *q = json_tokener_parse(req), *o = NULL;

	assert_non_null(q);
	*ret = ctl_call(path, q, timeout_ms, &o);
	json_object_put(q);
	return o;
}

static int
get_bool(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_boolean(v);
}

static const char *
get_str(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_string(v);
}

static int
get_int(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_int(v);
}

static void
raw_send(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		assert_true(w > 0);
		s += w;
		n -= (size_t)w;
	}
}

/*
 * Read one line from a raw connection (5 s limit).  Returns the parsed
 * object, or NULL at EOF / connection reset.
 */
static struct json_object *
raw_line(int fd)
{
	static char buf[CTL_LINE_MAX * 2];
	struct json_object *o;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	char *nl;
	ssize_t n;

	for (;;) {
		assert_int_equal(poll(&p, 1, 5000), 1);
		/* One byte at a time: never read past the line. */
		n = recv(fd, buf + len, 1, 0);
		if (n <= 0)
			return NULL;
		len += (size_t)n;
		assert_true(len < sizeof(buf));
		if ((nl = memchr(buf, '\n', len)) != NULL)
			break;
	}
	*nl = '\0';
	o = json_tokener_parse(buf);
	assert_non_null(o);
	return o;
}

static int
raw_connect(const char *path)
{
	int fd = net_connect_unix(path);

	assert_true(fd >= 0);
	return fd;
}

static void
test_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct json_object *o, *req;
	int r;

	o = call(f->path, "{\"cmd\":\"echo\",\"x\":[1,2,\"three\"]}", 5000, &r);
	assert_int_equal(r, 0);
	assert_true(get_bool(o, "ok"));
	assert_int_equal(get_int(o, "uid"), (int)geteuid());
	assert_true(json_object_object_get_ex(o, "req", &req));
	assert_string_equal(json_object_to_json_string_ext(req,
	    JSON_C_TO_STRING_PLAIN), "{\"cmd\":\"echo\",\"x\":[1,2,\"three\"]}");
	json_object_put(o);

	o = call(f->path, "{\"cmd\":\"nope\"}", 5000, &r);
	assert_int_equal(r, 0);
	assert_false(get_bool(o, "ok"));
	assert_string_equal(get_str(o, "error"), "unknown command 'nope'");
	json_object_put(o);

	/* The grouped socket serves the owner as well. */
	o = call(f->gpath, "{\"cmd\":\"echo\"}", 5000, &r);
	assert_int_equal(r, 0);
	assert_true(get_bool(o, "ok"));
	json_object_put(o);
}

/* ctl_reply_data() / ctl_call_data(): raw octets after the line. */
static void
test_data(void **state)
{
	struct fixture *f = *state;
	static const size_t sizes[] = { 0, 1, 4095, 3u << 20 };
	struct json_object *q, *o = NULL;
	char req[64];
	uint8_t *d;
	void *data;
	size_t i, k, len;

	for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		snprintf(req, sizeof(req), "{\"cmd\":\"data\",\"n\":%zu}",
		    sizes[k]);
		q = json_tokener_parse(req);
		assert_int_equal(ctl_call_data(f->path, q, 5000, 4u << 20, &o,
		    &data, &len), 0);
		assert_true(get_bool(o, "ok"));
		assert_int_equal(len, sizes[k]);
		if (sizes[k] == 0) {
			assert_null(data);
			assert_false(json_object_object_get_ex(o, "data_bytes",
			    NULL));
		} else {
			assert_int_equal(get_int(o, "data_bytes"),
			    (int)sizes[k]);
			for (i = 0, d = data; i < len; i++)
				if (d[i] != (uint8_t)(i * 7 + 3))
					fail_msg("octet %zu of %zu", i, len);
		}
		free(data);
		json_object_put(o);
		/* A plain call reads the line and drops the octets. */
		assert_int_equal(ctl_call(f->path, q, 5000, &o), 0);
		assert_true(get_bool(o, "ok"));
		json_object_put(o);
		json_object_put(q);
	}

	/* More than the caller accepts: refused, nothing returned. */
	q = json_tokener_parse("{\"cmd\":\"data\",\"n\":100}");
	o = NULL;
	assert_int_equal(ctl_call_data(f->path, q, 5000, 99, &o, &data, &len),
	    -EMSGSIZE);
	assert_null(o);
	assert_null(data);
	assert_int_equal(len, 0);
	json_object_put(q);
}

/* A one-shot fake server: reads a line, writes reply, closes. */
struct fake {
	int		 lfd;
	const char	*reply;
};

static void *
fake_thread(void *arg)
{
	struct fake *fk = arg;
	char buf[256];
	int fd = accept(fk->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	(void)recv(fd, buf, sizeof(buf), 0);
	(void)send(fd, fk->reply, strlen(fk->reply), MSG_NOSIGNAL);
	close(fd);
	return NULL;
}

static int
fake_call(const char *dir, const char *reply, void **data, size_t *len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct json_object *q = json_tokener_parse("{\"cmd\":\"x\"}"), *o = NULL;
	struct fake fk = { .reply = reply };
	pthread_t t;
	int r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", dir);
	fk.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fk.lfd >= 0);
	assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fk.lfd, 1), 0);
	assert_int_equal(pthread_create(&t, NULL, fake_thread, &fk), 0);
	r = ctl_call_data(sa.sun_path, q, 5000, 1000, &o, data, len);
	pthread_join(t, NULL);
	close(fk.lfd);
	unlink(sa.sun_path);
	json_object_put(q);
	if (r == 0)
		json_object_put(o);
	else
		assert_null(o);
	return r;
}

/* A server whose raw octets are short or badly announced. */
static void
test_data_bad(void **state)
{
	struct fixture *f = *state;
	void *data;
	size_t len;

	assert_int_equal(fake_call(f->dir, "{\"ok\":true,\"data_bytes\":10}"
	    "\nabc", &data, &len), -ECONNRESET);
	assert_null(data);
	assert_int_equal(fake_call(f->dir, "{\"ok\":true,\"data_bytes\":-1}"
	    "\n", &data, &len), -EBADMSG);
	assert_int_equal(fake_call(f->dir, "{\"ok\":true,\"data_bytes\":"
	    "\"3\"}\nabc", &data, &len), -EBADMSG);
	/* Octets after the announced ones are ignored. */
	assert_int_equal(fake_call(f->dir, "{\"ok\":true,\"data_bytes\":3}"
	    "\nabcdef", &data, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(data, "abc", 3);
	free(data);
}

static void
test_client_errors(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sun;
	char p[100];
	int r, s;

	/* Timeout while the server is still working on it. */
	assert_null(call(f->path, "{\"cmd\":\"defer\",\"ms\":300}", 100, &r));
	assert_int_equal(r, -ETIMEDOUT);
	usleep(400000);		/* let that connection go */
	snprintf(p, sizeof(p), "%s/none.sock", f->dir);
	assert_null(call(p, "{\"cmd\":\"echo\"}", 1000, &r));
	assert_int_equal(r, -ENOENT);

	/* A socket file nobody listens on. */
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p);
	assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(s);
	assert_null(call(p, "{\"cmd\":\"echo\"}", 1000, &r));
	assert_int_equal(r, -ECONNREFUSED);
	unlink(p);
}

static void
test_deferred(void **state)
{
	struct fixture *f = *state;
	struct json_object *o;
	int r, fd;

	o = call(f->path, "{\"cmd\":\"defer\",\"ms\":100}", 5000, &r);
	assert_int_equal(r, 0);
	assert_true(get_bool(o, "ok"));
	assert_int_equal(get_int(o, "deferred"), 100);
	json_object_put(o);

	/* The client leaves while its reply is pending: the reply is dropped. */
	fd = raw_connect(f->path);
	raw_send(fd, "{\"cmd\":\"defer\",\"ms\":100}\n", 25);
	usleep(20000);
	close(fd);
	usleep(250000);
	o = call(f->path, "{\"cmd\":\"echo\"}", 5000, &r);
	assert_int_equal(r, 0);
	assert_true(get_bool(o, "ok"));
	json_object_put(o);
}

static void
test_ordering(void **state)
{
	struct fixture *f = *state;
	const char *two = "{\"cmd\":\"defer\",\"ms\":150}\n"
	    "{\"cmd\":\"echo\",\"n\":2}\n";
	struct json_object *o;
	int fd;

	fd = raw_connect(f->path);
	raw_send(fd, two, strlen(two));
	o = raw_line(fd);
	assert_non_null(o);
	assert_int_equal(get_int(o, "deferred"), 150);
	json_object_put(o);
	o = raw_line(fd);
	assert_non_null(o);
	assert_true(get_bool(o, "ok"));
	assert_true(json_object_object_get_ex(o, "req", NULL));
	json_object_put(o);

	/* Half-close after the requests: both still answered, then EOF. */
	raw_send(fd, two, strlen(two));
	shutdown(fd, SHUT_WR);
	o = raw_line(fd);
	assert_int_equal(get_int(o, "deferred"), 150);
	json_object_put(o);
	o = raw_line(fd);
	assert_true(get_bool(o, "ok"));
	json_object_put(o);
	assert_null(raw_line(fd));
	close(fd);
}

static void
test_line_limit(void **state)
{
	struct fixture *f = *state;
	const char *head = "{\"cmd\":\"echo\",\"pad\":\"";
	struct json_object *o;
	char *buf;
	size_t hl = strlen(head), n;
	int fd;

	buf = malloc(CTL_LINE_MAX + 64);
	assert_non_null(buf);

	/* Exactly CTL_LINE_MAX bytes before the newline: accepted. */
	memcpy(buf, head, hl);
	memset(buf + hl, 'a', CTL_LINE_MAX - hl - 2);
	memcpy(buf + CTL_LINE_MAX - 2, "\"}\n", 3);
	fd = raw_connect(f->path);
	raw_send(fd, buf, CTL_LINE_MAX + 1);
	o = raw_line(fd);
	assert_non_null(o);
	assert_true(get_bool(o, "ok"));
	json_object_put(o);

	/* One byte more: refused and closed. */
	memcpy(buf, head, hl);
	memset(buf + hl, 'a', CTL_LINE_MAX - hl - 1);
	memcpy(buf + CTL_LINE_MAX - 1, "\"}\n", 3);
	raw_send(fd, buf, CTL_LINE_MAX + 2);
	o = raw_line(fd);
	assert_non_null(o);
	assert_false(get_bool(o, "ok"));
	assert_string_equal(get_str(o, "error"), "request too long");
	json_object_put(o);
	assert_null(raw_line(fd));
	close(fd);

	/* No newline at all. */
	n = CTL_LINE_MAX + 10;
	memset(buf, 'x', n);
	fd = raw_connect(f->path);
	raw_send(fd, buf, n);
	o = raw_line(fd);
	assert_non_null(o);
	assert_string_equal(get_str(o, "error"), "request too long");
	json_object_put(o);
	assert_null(raw_line(fd));
	close(fd);
	free(buf);
}

static void
test_bad_json(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char	*line;
		const char	*error;
	} bad[] = {
		{ "hello\n",		"invalid JSON" },
		{ "{\"a\":\n",		"invalid JSON" },
		{ "[1,2]\n",		"request is not a JSON object" },
		{ "42\n",		"request is not a JSON object" },
		{ "\"s\"\n",		"request is not a JSON object" },
		{ "{} {}\n",		"invalid JSON: trailing data" },
	};
	struct json_object *o;
	size_t i;
	int fd;

	fd = raw_connect(f->path);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_send(fd, bad[i].line, strlen(bad[i].line));
		o = raw_line(fd);
		assert_non_null(o);
		assert_false(get_bool(o, "ok"));
		assert_string_equal(get_str(o, "error"), bad[i].error);
		json_object_put(o);
	}
	/* Empty lines are skipped; the connection still works. */
	{
		const char *l = "\n\r\n{\"cmd\":\"echo\"} \r\n";

		raw_send(fd, l, strlen(l));
	}
	o = raw_line(fd);
	assert_non_null(o);
	assert_true(get_bool(o, "ok"));
	json_object_put(o);
	close(fd);
}

static void
test_conn_cap(void **state)
{
	struct fixture *f = *state;
	struct json_object *o;
	int fds[CTL_MAXCONN], i, fd, r;

	for (i = 0; i < CTL_MAXCONN; i++) {
		fds[i] = raw_connect(f->path);
		/* A roundtrip makes sure the server counted it. */
		raw_send(fds[i], "{\"cmd\":\"echo\"}\n", 15);
		o = raw_line(fds[i]);
		assert_non_null(o);
		assert_true(get_bool(o, "ok"));
		json_object_put(o);
	}
	fd = raw_connect(f->path);
	o = raw_line(fd);
	assert_non_null(o);
	assert_string_equal(get_str(o, "error"), "too many connections");
	json_object_put(o);
	assert_null(raw_line(fd));
	close(fd);

	/* ctl_call() gets the refusal as an ordinary reply. */
	o = call(f->path, "{\"cmd\":\"echo\"}", 5000, &r);
	assert_int_equal(r, 0);
	assert_false(get_bool(o, "ok"));
	json_object_put(o);

	close(fds[0]);
	for (i = 0; i < 100; i++) {
		o = call(f->path, "{\"cmd\":\"echo\"}", 5000, &r);
		assert_int_equal(r, 0);
		if (get_bool(o, "ok"))
			break;
		json_object_put(o);
		o = NULL;
		usleep(10000);
	}
	assert_non_null(o);
	json_object_put(o);
	for (i = 1; i < CTL_MAXCONN; i++)
		close(fds[i]);
}

static void
test_socket_files(void **state)
{
	struct fixture *f = *state;
	struct event_base *b2;
	struct ctl_server *s2 = NULL;
	struct sockaddr_un sun;
	struct stat st;
	char p[100];
	int s;

	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(lstat(f->gpath, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal((long)st.st_gid, f->gid);

	/* A live daemon's socket is never taken over. */
	b2 = event_base_new();
	assert_int_equal(ctl_server_new(b2, f->path, -1, handler, f, &s2),
	    -EADDRINUSE);
	assert_null(s2);

	/* A stale one is. */
	snprintf(p, sizeof(p), "%s/stale.sock", f->dir);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", p);
	assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(s);
	assert_int_equal(ctl_server_new(b2, p, -1, handler, f, &s2), 0);
	assert_non_null(s2);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	ctl_server_free(s2);
	assert_int_equal(lstat(p, &st), -1);	/* unlinked */
	event_base_free(b2);
}

/* In a child with uid/gid changed: connect, return 0 if allowed. */
static int
child_try(const char *path, gid_t gid, uid_t uid, const char *want_error)
{
	struct json_object *o, *q;
	pid_t pid;
	int st, r;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(gid) < 0 ||
		    setuid(uid) < 0)
			_exit(10);
		q = json_tokener_parse("{\"cmd\":\"echo\"}");
		r = ctl_call(path, q, 5000, &o);
		if (r < 0)
			_exit(11);
		if (want_error == NULL)
			_exit(json_object_get_boolean(
			    json_object_object_get(o, "ok")) ? 0 : 12);
		_exit(strcmp(json_object_get_string(
		    json_object_object_get(o, "error")), want_error) == 0 ?
		    0 : 13);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void
test_credentials(void **state)
{
	struct fixture *f = *state;

	if (geteuid() != 0)
		skip();		/* needs another uid */
	/* Let the file mode through so the credential check is reached. */
	assert_int_equal(chmod(f->dir, 0711), 0);
	assert_int_equal(chmod(f->path, 0666), 0);
	assert_int_equal(chmod(f->gpath, 0666), 0);
	assert_int_equal(child_try(f->path, 65534, 65534,
	    "permission denied"), 0);
	assert_int_equal(child_try(f->gpath, 65534, 65534,
	    "permission denied"), 0);
	assert_int_equal(child_try(f->gpath, (gid_t)f->gid, 65534, NULL), 0);
	assert_int_equal(chmod(f->path, 0600), 0);
	assert_int_equal(chmod(f->gpath, 0660), 0);
}

/* Request field accessors: present, absent, wrong type. */
static void
test_accessors(void **state)
{
	struct json_object *req = json_tokener_parse(
	    "{\"s\":\"x\",\"i\":42,\"b\":true,\"f\":1.5}");
	const char *sv = "unset";
	int64_t iv = -1;
	int bv = -1;

	(void)state;
	assert_non_null(req);
	assert_int_equal(ctl_get_str(req, "s", &sv), 1);
	assert_string_equal(sv, "x");
	assert_int_equal(ctl_get_int(req, "i", &iv), 1);
	assert_int_equal(iv, 42);
	assert_int_equal(ctl_get_bool(req, "b", &bv), 1);
	assert_int_equal(bv, 1);
	/* Absent: 0, out untouched. */
	iv = 7;
	assert_int_equal(ctl_get_int(req, "nope", &iv), 0);
	assert_int_equal(iv, 7);
	/* Wrong types: -EINVAL. */
	assert_int_equal(ctl_get_str(req, "i", &sv), -EINVAL);
	assert_int_equal(ctl_get_int(req, "s", &iv), -EINVAL);
	assert_int_equal(ctl_get_int(req, "f", &iv), -EINVAL);
	assert_int_equal(ctl_get_bool(req, "i", &bv), -EINVAL);
	json_object_put(req);
	req = ctl_ok();
	assert_string_equal(json_object_to_json_string_ext(req,
	    JSON_C_TO_STRING_PLAIN), "{\"ok\":true}");
	json_object_put(req);
}

/* Run base until cond holds, at most 1000 turns. */
#define LOOP_UNTIL(base, cond) do {					\
	int turns_;							\
	for (turns_ = 0; turns_ < 1000 && !(cond); turns_++)		\
		event_base_loop((base), EVLOOP_ONCE | EVLOOP_NONBLOCK);	\
	assert_true(cond);						\
} while (0)

/*
 * The in-process seam (ctl_server_new_unbound(), ctl_server_attach()):
 * a bufferevent pair gets the same per-connection code as a socket:
 * replies in order, the peer uid given at attach, close after the
 * client's EOF, the CTL_MAXCONN cap with the bufferevent left to the
 * caller.
 */
static void
test_attach(void **state)
{
	struct fixture fx = { 0 };
	struct bufferevent *pair[2], *cli[CTL_MAXCONN];
	struct ctl_server *s = NULL;
	struct evbuffer *in;
	const char *want = "{\"ok\":true,\"req\":{\"cmd\":\"echo\"},"
	    "\"uid\":4321}\n{\"ok\":false,\"error\":\"invalid JSON\"}\n";
	char buf[256];
	size_t n;
	int i;

	(void)state;
	assert_non_null(fx.base = event_base_new());
	assert_int_equal(ctl_server_new_unbound(NULL, handler, &fx, &s),
	    -EINVAL);
	assert_null(s);
	assert_int_equal(ctl_server_new_unbound(fx.base, handler, &fx, &s), 0);

	for (i = 0; i < CTL_MAXCONN; i++) {
		assert_int_equal(bufferevent_pair_new(fx.base, 0, pair), 0);
		assert_int_equal(ctl_server_attach(s, pair[0], 4321), 0);
		cli[i] = pair[1];
		assert_int_equal(bufferevent_enable(cli[i], EV_READ | EV_WRITE),
		    0);
	}
	/* One too many: refused, and the caller still owns its end. */
	assert_int_equal(bufferevent_pair_new(fx.base, 0, pair), 0);
	assert_int_equal(ctl_server_attach(s, pair[0], 4321), -EMFILE);
	bufferevent_free(pair[0]);
	bufferevent_free(pair[1]);

	/* Two requests, then EOF: two replies in order, then closed. */
	bufferevent_write(cli[0], "{\"cmd\":\"echo\"}\n{x\n", 18);
	LOOP_UNTIL(fx.base, evbuffer_get_length(bufferevent_get_output(
	    cli[0])) == 0);
	bufferevent_flush(cli[0], EV_WRITE, BEV_FINISHED);
	LOOP_UNTIL(fx.base, bufferevent_pair_get_partner(cli[0]) == NULL);
	in = bufferevent_get_input(cli[0]);
	n = evbuffer_get_length(in);
	assert_true(n < sizeof(buf));
	assert_int_equal(evbuffer_remove(in, buf, n), (int)n);
	buf[n] = '\0';
	assert_string_equal(buf, want);
	bufferevent_free(cli[0]);

	/* A slot is free again. */
	assert_int_equal(bufferevent_pair_new(fx.base, 0, pair), 0);
	assert_int_equal(ctl_server_attach(s, pair[0], 0), 0);
	bufferevent_free(pair[1]);

	/* The server frees what is still attached; the clients are ours. */
	ctl_server_free(s);
	for (i = 1; i < CTL_MAXCONN; i++)
		bufferevent_free(cli[i]);
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
	event_base_free(fx.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_data_bad),
		cmocka_unit_test(test_client_errors),
		cmocka_unit_test(test_deferred),
		cmocka_unit_test(test_ordering),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_conn_cap),
		cmocka_unit_test(test_socket_files),
		cmocka_unit_test(test_credentials),
		cmocka_unit_test(test_attach),
	};

	/* As in the daemons: libevent writes with write(2). */
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	return cmocka_run_group_tests(tests, setup, teardown);
}
