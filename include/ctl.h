/*
 * ctl.h - the daemons' UNIX control socket: newline-delimited JSON
 * requests and replies (json-c), one reply per request, in order.
 *
 * Server side runs on a libevent base (event-loop thread only).  The
 * socket file is mode 0600 (or 0660 with a group); every connection's
 * peer credentials are checked (uid 0 or the daemon's uid, or the
 * configured gid); at most CTL_MAXCONN connections; a request line is at
 * most CTL_LINE_MAX bytes.  A handler may reply at once or later
 * (ctl_reply() on the saved struct ctl_req), e.g. when a job finishes.
 * libevent writes with write(2): the process must ignore SIGPIPE.
 * The protocol is described in docs/CONTROL.md.
 */
#ifndef SHAREMIG_CTL_H
#define SHAREMIG_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct event_base;
struct bufferevent;

#define CTL_MAXCONN	32
#define CTL_LINE_MAX	(64u << 10)
#define CTL_REPLY_MAX	(16u << 20)

struct ctl_server;
struct ctl_req;		/* one request awaiting its reply */

/*
 * Handler for one request.  req is the parsed object (borrowed: the
 * handler must json_object_get() what it keeps).  The handler must call
 * ctl_reply() exactly once for r, now or later; r stays valid until then
 * even if the client goes away (the reply is then dropped).
 */
typedef void (*ctl_handler)(struct ctl_req *r, struct json_object *req,
    void *arg);

/*
 * Listen on path (replacing a stale socket), mode 0600, or 0660 with
 * group gid when gid >= 0.  0 or -errno (*out untouched).
 */
int	ctl_server_new(struct event_base *base, const char *path, long gid,
	    ctl_handler h, void *arg, struct ctl_server **out);
/*
 * A server without a socket: its connections come only from
 * ctl_server_attach() (an in-process client, e.g. fuzz/fuzz_ctl.c on a
 * bufferevent pair).  0 or -errno (*out untouched).
 */
int	ctl_server_new_unbound(struct event_base *base, ctl_handler h,
	    void *arg, struct ctl_server **out);
/*
 * Serve one connection on bev, whose peer (already checked by the
 * caller) has uid: the server owns bev from then on and frees it when
 * the connection ends.  0, or -EMFILE at CTL_MAXCONN connections or
 * -ENOMEM; on failure bev is untouched and still the caller's.
 * The accept path of ctl_server_new() uses this after its credential
 * check, so both paths run the same per-connection code.
 */
int	ctl_server_attach(struct ctl_server *s, struct bufferevent *bev,
	    unsigned uid);
void	ctl_server_free(struct ctl_server *s);	/* accepts NULL; unlinks */
/*
 * Send the reply (takes ownership of obj) and release r.  Event-loop
 * thread only.  The connection's next request is then handled.
 */
void	ctl_reply(struct ctl_req *r, struct json_object *obj);
/*
 * ctl_reply() followed by len raw octets of data (copied): the reply
 * object gets "data_bytes": len, and the octets follow its newline.  For
 * bulk binary answers (destd's index-keys) that JSON would inflate; a
 * client reads them with ctl_call_data().  len 0 is ctl_reply().
 */
void	ctl_reply_data(struct ctl_req *r, struct json_object *obj,
	    const void *data, size_t len);
/* Convenience: {"ok":false,"error":msg} */
void	ctl_reply_error(struct ctl_req *r, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/*
 * Request field accessors: 1 and *out if key is present with the right
 * type, 0 if absent, -EINVAL if present with another type.
 */
int	ctl_get_str(struct json_object *req, const char *key, const char **out);
int	ctl_get_int(struct json_object *req, const char *key, int64_t *out);
int	ctl_get_bool(struct json_object *req, const char *key, int *out);
/* A new {"ok":true} reply object to add fields to. */
struct json_object *ctl_ok(void);

/* Peer uid of the request's connection. */
unsigned ctl_req_uid(const struct ctl_req *r);

/*
 * Client: connect to path, send req (not consumed), wait for one reply
 * line up to timeout_ms (-1 = forever), parse it into *out.  0, -errno
 * (-ETIMEDOUT, -ECONNREFUSED, -ENOENT, -EBADMSG for an unparsable reply).
 */
int	ctl_call(const char *path, struct json_object *req, int timeout_ms,
	    struct json_object **out);
/*
 * ctl_call(), and the reply's raw octets (ctl_reply_data) into *data
 * (malloc'd; NULL and *len 0 for a reply without "data_bytes"): at most
 * max, else -EMSGSIZE; -EBADMSG for a "data_bytes" that is not a
 * non-negative integer; -ECONNRESET if the connection ends before them.
 */
int	ctl_call_data(const char *path, struct json_object *req,
	    int timeout_ms, size_t max, struct json_object **out, void **data,
	    size_t *len);

#endif
