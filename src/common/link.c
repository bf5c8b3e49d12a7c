/*
 * link.c - framing of a migration session over a bufferevent.
 * See link.h and docs/PROTOCOL.md.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "link.h"
#include "net.h"
#include "tls.h"

/* How much unread input we let pile up before we stop reading. */
#define LINK_READ_HIGH	(8u << 20)
/*
 * The most one write(2) of the link moves (libevent's default is 16 KiB).
 * Pages go out in records of up to 1 MiB: larger calls cut the syscalls,
 * and on a TLS link let OpenSSL write a run of records from one buffer.
 * Reads: link_pull().
 */
#define LINK_IO_MAX	(1u << 20)
/* Allocations up to this size come from the heap (link_heap_setup). */
#define LINK_HEAP_KEEP	(32 << 20)
/* Room taken in the input for each run of bytes link_pull moves. */
#define LINK_PULL	(256u << 10)
/*
 * The most pieces of the input one PAGE_DATA's pages may lie in to be
 * handed over in place (link_pages_in_place); more, and the record is
 * gathered.  A 1 MiB record over LINK_PULL-sized reads lies in about 5.
 */
#define LINK_SEG_MAX	64

struct link {
	struct bufferevent	*bev;
	const struct link_cbs	*cbs;
	void			*arg;
	enum proto_dir		 rx_dir;
	enum proto_phase	 phase;
	uint64_t		 pages;
	uint32_t		 compress;	/* PAGE_DATA method accepted */
	int			 got_hdr;	/* peer's stream header read */
	int			 up;
	int			 dead;
	int			 in_cb;		/* inside a callback */
	int			 free_pending;
	int			 closing;	/* link_close(): flushing */
	int			 paused;	/* link_pause(): no records */
	int			 pull_err;	/* link_pull(): after the records */
	char			 pull_why[300];
	struct event		*ev_hs;		/* handshake deadline */
	unsigned		 hs_timeout;
	size_t			 drain_mark;
	char			 peer[96];
	struct iovec		 seg[LINK_SEG_MAX];	/* PAGE_DATA's pieces */
};

static void	link_read_cb(struct bufferevent *bev, void *arg);
static void	link_write_cb(struct bufferevent *bev, void *arg);
static void	link_event_cb(struct bufferevent *bev, short what, void *arg);
static void	link_hs_cb(evutil_socket_t fd, short what, void *arg);
static int	link_cb_done(struct link *l);
static int	link_has_input(struct link *l);

/* Report a fatal error once and stop all I/O. */
static void
link_fail(struct link *l, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
link_fail(struct link *l, int err, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (l->dead)
		return;
	l->dead = 1;
	bufferevent_disable(l->bev, EV_READ);
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	l->cbs->on_error(l, err, why, l->arg);
}

static void
link_up(struct link *l)
{
	uint8_t hdr[PROTO_STREAM_HDR_LEN];

	if (l->up || l->dead)
		return;
	l->up = 1;
	if (l->ev_hs != NULL)
		event_del(l->ev_hs);
	proto_stream_hdr_encode(hdr);
	if (bufferevent_write(l->bev, hdr, sizeof(hdr)) != 0) {
		link_fail(l, -ENOMEM, "cannot queue the stream header");
		return;
	}
	bufferevent_enable(l->bev, l->paused ? EV_WRITE : EV_READ | EV_WRITE);
	l->cbs->on_up(l, l->arg);
	/* Input that arrived before we were up has not been looked at. */
	if (!l->dead && link_has_input(l))
		bufferevent_trigger(l->bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

struct link *
link_new(struct bufferevent *bev, enum proto_dir rx_dir, int connecting,
    const struct link_cbs *cbs, void *arg)
{
	struct link *l;
	int fd;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->bev = bev;
	l->cbs = cbs;
	l->arg = arg;
	l->rx_dir = rx_dir;
	l->phase = PH_HELLO;
	fd = bufferevent_getfd(bev);
	if (fd >= 0)
		net_peer_str(fd, l->peer, sizeof(l->peer));
	bufferevent_setcb(bev, link_read_cb, link_write_cb, link_event_cb, l);
	bufferevent_setwatermark(bev, EV_READ, 0, LINK_READ_HIGH);
	bufferevent_set_max_single_write(bev, LINK_IO_MAX);
	if (connecting) {
		/* Reading starts in link_up(): the peer's first records
		 * must not be handled before our stream header is out. */
		bufferevent_enable(bev, EV_WRITE);
		l->ev_hs = evtimer_new(bufferevent_get_base(bev), link_hs_cb,
		    l);
	} else {
		/* Defer on_up to the loop so the caller can finish setup. */
		bufferevent_enable(bev, EV_WRITE);
		bufferevent_trigger_event(bev, BEV_EVENT_CONNECTED,
		    BEV_TRIG_DEFER_CALLBACKS);
	}
	return l;
}

void
link_free(struct link *l)
{
	if (l == NULL)
		return;
	if (l->in_cb) {
		/* Freed from inside one of our callbacks: finish later. */
		l->dead = 1;
		l->free_pending = 1;
		return;
	}
	if (l->ev_hs != NULL)
		event_free(l->ev_hs);
	if (l->bev != NULL) {
		SSL *ssl = bufferevent_openssl_get_ssl(l->bev);

		if (ssl != NULL) {
			/* No close_notify dance on error paths. */
			SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
			SSL_shutdown(ssl);
		}
		bufferevent_free(l->bev);
	}
	free(l);
}

/*
 * Stop reading, let what is queued (an ERROR record, typically) reach the
 * peer within a few seconds, then free.  The owner must forget l.
 */
void
link_close(struct link *l)
{
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };

	if (l == NULL)
		return;
	l->dead = 1;
	l->closing = 1;
	if (l->in_cb == 0 &&
	    evbuffer_get_length(bufferevent_get_output(l->bev)) == 0) {
		link_free(l);
		return;
	}
	bufferevent_disable(l->bev, EV_READ);
	bufferevent_setwatermark(l->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(l->bev, NULL, &tv);
	bufferevent_enable(l->bev, EV_WRITE);
	if (l->in_cb == 0)
		return;
	/* Inside a callback: re-check once it returns. */
	bufferevent_trigger(l->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS |
	    BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * The TCP connect and TLS handshake must finish within seconds: the
 * bufferevent's own timeouts are not reliably applied while
 * bufferevent_openssl is handshaking.
 */
void
link_set_handshake_timeout(struct link *l, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };

	if (l->ev_hs == NULL || l->up || l->dead || seconds == 0)
		return;
	l->hs_timeout = seconds;
	evtimer_add(l->ev_hs, &tv);
}

static void
link_hs_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;

	if (l->up || l->dead || l->closing)
		return;
	l->in_cb++;
	link_fail(l, -ETIMEDOUT, "connection and TLS handshake not finished "
	    "within %u s", l->hs_timeout);
	link_cb_done(l);
}

void
link_set_cbs(struct link *l, const struct link_cbs *cbs, void *arg)
{
	l->cbs = cbs;
	l->arg = arg;
}

void
link_pause(struct link *l)
{
	if (l->paused || l->dead)
		return;
	l->paused = 1;
	bufferevent_disable(l->bev, EV_READ);
}

void
link_resume(struct link *l)
{
	if (!l->paused || l->dead)
		return;
	l->paused = 0;
	if (!l->up)
		return;		/* link_up() enables reading */
	bufferevent_enable(l->bev, EV_READ);
	/* Records buffered while paused: from the loop, not from here (the
	 * caller may be inside another link's callback). */
	if (link_has_input(l))
		bufferevent_trigger(l->bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
link_set_phase(struct link *l, enum proto_phase ph)
{
	l->phase = ph;
}

enum proto_phase
link_phase(const struct link *l)
{
	return l->phase;
}

void
link_set_pages(struct link *l, uint64_t pages)
{
	l->pages = pages;
}

void
link_set_compress(struct link *l, uint32_t method)
{
	l->compress = method;
}

void
link_set_read_timeout(struct link *l, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };

	bufferevent_set_timeouts(l->bev, seconds ? &tv : NULL, NULL);
}

int
link_send(struct link *l, const void *buf, size_t len)
{
	if (l->dead)
		return -EPIPE;
	if (bufferevent_write(l->bev, buf, len) != 0)
		return -ENOMEM;
	return 0;
}

void
link_send_error(struct link *l, int code, const char *msg)
{
	uint8_t buf[PROTO_REC_HDR_LEN + 8 + PROTO_ERRMSG_MAX + 8];
	int n;

	if (code < 0)
		code = -code;
	n = proto_enc_error(buf, sizeof(buf), (uint32_t)code, msg);
	if (n > 0)
		(void)bufferevent_write(l->bev, buf, (size_t)n);
}

size_t
link_outq(const struct link *l)
{
	return evbuffer_get_length(bufferevent_get_output(l->bev));
}

struct evbuffer *
link_output(struct link *l)
{
	return bufferevent_get_output(l->bev);
}

void
link_set_drain_mark(struct link *l, size_t bytes)
{
	l->drain_mark = bytes;
	bufferevent_setwatermark(l->bev, EV_WRITE, bytes, 0);
}

int
link_fd(const struct link *l)
{
	return bufferevent_getfd(l->bev);
}

void
link_peer_name(struct link *l, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(l->bev);

	if (ssl == NULL) {
		snprintf(buf, len, "%s", "");
		return;
	}
	tls_peer_name(ssl, buf, len);
}

const char *
link_peer_addr(const struct link *l)
{
	return l->peer;
}

static const char *
link_phase_name(enum proto_phase ph)
{
	static const char *const names[] = {
		[PH_HELLO] = "before HELLO",
		[PH_INFO] = "before DOMAIN_INFO/ACK",
		[PH_LIVE] = "while pages stream",
		[PH_FINAL] = "after END",
		[PH_READY] = "after READY",
		[PH_HANDOVER] = "after GO",
	};

	return ph < PH_COUNT ? names[ph] : "in an unknown phase";
}

/* After a callback: finish a link_free() that happened inside it. */
static int
link_cb_done(struct link *l)
{
	l->in_cb--;
	if (l->in_cb == 0 && l->free_pending) {
		l->free_pending = 0;
		link_free(l);
		return 1;
	}
	return l->dead;
}

/* The end of the stream or an error met by a pull: kept, to be reported
 * after the records read before it (link_read_cb). */
static void
link_pull_end(struct link *l, int err, const char *why)
{
	l->pull_err = err;
	snprintf(l->pull_why, sizeof(l->pull_why), "%s", why);
}

/*
 * A TLS link reads ahead (tls.c): what OpenSSL holds, decrypted, into the
 * input, as long as the input is under LINK_READ_HIGH.  libevent 2.1's
 * bufferevent_openssl takes two records at most per readiness of the
 * socket and then waits for the next one, which will not come if the rest
 * already sits in OpenSSL's buffer.
 */
static void
link_tls_pull(struct link *l, SSL *ssl)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);
	struct evbuffer_iovec v;
	size_t moved = 0, got;
	char why[256], msg[300];
	int r, e;

	while (!l->dead && l->pull_err == 0 && SSL_has_pending(ssl) &&
	    evbuffer_get_length(in) < LINK_READ_HIGH) {
		/* A record's room first: a stream of small records (a
		 * source's input) should not cost a large buffer each. */
		if (evbuffer_reserve_space(in, moved == 0 ?
		    SSL3_RT_MAX_PLAIN_LENGTH : LINK_PULL, &v, 1) != 1) {
			link_fail(l, -ENOMEM, "out of memory reading");
			break;
		}
		/* Whole records into one buffer, fewer buffers to pull up. */
		got = 0;
		e = SSL_ERROR_NONE;
		while (v.iov_len - got >= SSL3_RT_MAX_PLAIN_LENGTH) {
			ERR_clear_error();
			r = SSL_read(ssl, (uint8_t *)v.iov_base + got,
			    (int)(v.iov_len - got));
			if (r <= 0) {
				e = SSL_get_error(ssl, r);
				break;
			}
			got += (size_t)r;
			if (!SSL_has_pending(ssl))
				break;
		}
		v.iov_len = got;
		if (got > 0 && evbuffer_commit_space(in, &v, 1) != 0) {
			link_fail(l, -ENOMEM, "out of memory reading");
			break;
		}
		moved += got;
		if (e == SSL_ERROR_NONE)
			continue;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;		/* the socket's readiness goes on */
		/* The records before the end or the error go first. */
		if (e == SSL_ERROR_ZERO_RETURN ||
		    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
			link_pull_end(l, -ECONNRESET,
			    "peer closed the connection");
		} else {
			tls_err_string(why, sizeof(why));
			snprintf(msg, sizeof(msg), "TLS: %s",
			    why[0] ? why : "read failed");
			link_pull_end(l, -EPROTO, msg);
		}
		break;
	}
}

/*
 * A plain TCP link: libevent 2.1 reads at most 4 KiB per readiness of the
 * socket (EVBUFFER_MAX_READ), with an ioctl(2) and an epoll_wait(2) for
 * each.  Read what the socket holds in large reads instead, as long as the
 * input is under LINK_READ_HIGH.
 */
static void
link_sock_pull(struct link *l)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);
	struct evbuffer_iovec v;
	int fd = bufferevent_getfd(l->bev), avail;
	ssize_t n;

	/* bufferevent_socket keeps the input's end frozen but in its own
	 * reads; so do we. */
	evbuffer_unfreeze(in, 0);
	while (fd >= 0 && !l->dead && l->pull_err == 0 &&
	    evbuffer_get_length(in) < LINK_READ_HIGH) {
		/* Room for what the socket holds, within [4 KiB, LINK_PULL]. */
		if (ioctl(fd, FIONREAD, &avail) != 0 || avail < 4096)
			avail = 4096;
		if ((unsigned)avail > LINK_PULL)
			avail = LINK_PULL;
		if (evbuffer_reserve_space(in, avail, &v, 1) != 1) {
			link_fail(l, -ENOMEM, "out of memory reading");
			break;
		}
		n = recv(fd, v.iov_base, (size_t)avail, MSG_DONTWAIT);
		if (n > 0) {
			v.iov_len = (size_t)n;
			if (evbuffer_commit_space(in, &v, 1) != 0) {
				link_fail(l, -ENOMEM, "out of memory reading");
				break;
			}
			if (n < avail)
				break;		/* the socket is empty */
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR))
			break;
		if (n == 0)
			link_pull_end(l, -ECONNRESET,
			    "peer closed the connection");
		else
			link_pull_end(l, -errno, strerror(errno));
		break;
	}
	evbuffer_freeze(in, 0);
}

/* Everything the link holds for us, into the input. */
static void
link_pull(struct link *l)
{
	SSL *ssl = bufferevent_openssl_get_ssl(l->bev);

	if (ssl != NULL)
		link_tls_pull(l, ssl);
	else
		link_sock_pull(l);
}

/* Input for the records (in the input buffer or held by OpenSSL), or the
 * end that link_pull() found behind them. */
static int
link_has_input(struct link *l)
{
	SSL *ssl = bufferevent_openssl_get_ssl(l->bev);

	return evbuffer_get_length(bufferevent_get_input(l->bev)) > 0 ||
	    l->pull_err != 0 || (ssl != NULL && SSL_has_pending(ssl));
}

/*
 * An uncompressed PAGE_DATA record of len body bytes, whole in the input:
 * decode its head (flags, count, pfns) and hand its pages over where they
 * lie, in pieces (proto_page_data's seg), instead of gathering the record
 * into one buffer (evbuffer_pullup), a copy of every byte that arrives.
 * Returns 1 with *rec decoded, 0 when the record is to be gathered and
 * decoded whole (compressed, malformed counts, too many pieces), or
 * proto_decode's error.
 */
static int
link_pages_in_place(struct link *l, struct evbuffer *in, uint32_t len,
    const struct proto_limits *lim, struct proto_rec *rec)
{
	struct proto_page_data *pd = &rec->u.page_data;
	struct evbuffer_ptr pos;
	size_t head, left;
	uint8_t *p;
	int n, i, rc;

	if (len < 8 ||
	    (p = evbuffer_pullup(in, PROTO_REC_HDR_LEN + 8)) == NULL ||
	    (head = proto_page_data_head_len(p + PROTO_REC_HDR_LEN)) == 0 ||
	    head > len ||
	    (p = evbuffer_pullup(in, PROTO_REC_HDR_LEN + head)) == NULL)
		return 0;
	rc = proto_decode_page_data_head(p + PROTO_REC_HDR_LEN, head, len, lim,
	    rec);
	if (rc != 0)
		return rc;
	if (evbuffer_ptr_set(in, &pos, PROTO_REC_HDR_LEN + head,
	    EVBUFFER_PTR_SET) != 0)
		return 0;
	n = evbuffer_peek(in, pd->data_len, &pos, l->seg, LINK_SEG_MAX);
	if (n <= 0 || n > LINK_SEG_MAX)
		return 0;
	/* The last piece may run past the record. */
	for (i = 0, left = pd->data_len; i < n; i++) {
		if (l->seg[i].iov_len > left)
			l->seg[i].iov_len = left;
		left -= l->seg[i].iov_len;
	}
	if (left != 0)
		return 0;
	if (n == 1) {
		pd->data = l->seg[0].iov_base;
	} else {
		pd->seg = l->seg;
		pd->nseg = (unsigned)n;
	}
	return 1;
}

/*
 * Split the input into records.  Each record is checked for size (before
 * the HELLO exchange with the stricter pre-authentication limit), for
 * direction and phase, then decoded and validated before the owner sees
 * it.
 */
static void
link_records(struct link *l)
{
	struct evbuffer *in = bufferevent_get_input(l->bev);
	struct proto_limits lim;
	struct proto_rec rec;
	uint8_t hdr[PROTO_STREAM_HDR_LEN];
	uint32_t type, len, version;
	size_t total;
	uint8_t *p;
	int rc;

	while (!l->dead && !l->paused) {
		if (!l->got_hdr) {
			if (evbuffer_get_length(in) < PROTO_STREAM_HDR_LEN)
				break;
			evbuffer_remove(in, hdr, sizeof(hdr));
			rc = proto_stream_hdr_check(hdr, &version);
			if (rc == -EPROTONOSUPPORT) {
				/* The check leaves version unset on error. */
				version = (uint32_t)hdr[8] |
				    (uint32_t)hdr[9] << 8 |
				    (uint32_t)hdr[10] << 16 |
				    (uint32_t)hdr[11] << 24;
				link_fail(l, rc, "peer speaks stream version "
				    "%u, we speak %u", version, PROTO_VERSION);
				break;
			}
			if (rc != 0) {
				link_fail(l, rc, "not a sharemig stream (stream "
				    "header starts %02x%02x%02x%02x%02x%02x%02x"
				    "%02x)", hdr[0], hdr[1], hdr[2], hdr[3],
				    hdr[4], hdr[5], hdr[6], hdr[7]);
				break;
			}
			l->got_hdr = 1;
			continue;
		}
		lim.pages = l->pages;
		lim.compress = l->compress;
		lim.rec_max = l->phase == PH_HELLO ? PROTO_REC_MAX_PREAUTH :
		    PROTO_REC_MAX;
		if (evbuffer_get_length(in) < PROTO_REC_HDR_LEN)
			break;
		if ((p = evbuffer_pullup(in, PROTO_REC_HDR_LEN)) == NULL)
			break;
		/* Only the header is read; avail tells whether all is here. */
		rc = proto_frame_peek(p, evbuffer_get_length(in), lim.rec_max,
		    &type, &len, &total);
		if (rc == -EAGAIN)
			break;
		if (rc == -EMSGSIZE) {
			type = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
			len = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
			    (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
			link_fail(l, rc, "record %s of %u bytes exceeds the "
			    "limit of %u", proto_type_name(type), len,
			    lim.rec_max);
			break;
		}
		rc = type == REC_PAGE_DATA ?
		    link_pages_in_place(l, in, len, &lim, &rec) : 0;
		if (rc == 1) {
			rc = 0;
		} else if (rc == 0) {
			if ((p = evbuffer_pullup(in, (ssize_t)total)) == NULL) {
				link_fail(l, -ENOMEM,
				    "out of memory reading a record");
				break;
			}
			rc = proto_decode(type, p + PROTO_REC_HDR_LEN, len,
			    &lim, &rec);
		}
		if (rc == -ENOENT) {		/* unknown optional record */
			evbuffer_drain(in, total);
			continue;
		}
		if (rc != 0) {
			link_fail(l, rc, "invalid %s record (type %#x, %u "
			    "bytes): %s", proto_type_name(type), type, len,
			    strerror(-rc));
			break;
		}
		if (!proto_legal(type, l->rx_dir, l->phase)) {
			link_fail(l, -EPROTO, "record %s not allowed %s",
			    proto_type_name(type), link_phase_name(l->phase));
			break;
		}
		if (type == REC_KEEPALIVE) {
			evbuffer_drain(in, total);
			continue;
		}
		/* rec points into the pulled-up buffer: drain afterwards. */
		l->cbs->on_record(l, &rec, l->arg);
		if (l->free_pending)
			break;
		evbuffer_drain(in, total);
	}
}

static void
link_read_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int full;

	if (!l->up || l->paused)
		return;		/* link_up() / link_resume() look at it */
	l->in_cb++;
	/* Again only if the pull stopped at LINK_READ_HIGH: otherwise the
	 * socket (or OpenSSL) had no more, and its readiness calls us. */
	do {
		link_pull(l);
		full = evbuffer_get_length(in) >= LINK_READ_HIGH;
		link_records(l);
	} while (full && !l->dead && !l->paused);
	if (l->pull_err != 0 && !l->paused)
		link_fail(l, l->pull_err, "%s", l->pull_why);
	link_cb_done(l);
}

static void
link_write_cb(struct bufferevent *bev, void *arg)
{
	struct link *l = arg;

	if (l->closing) {
		if (l->in_cb == 0 && evbuffer_get_length(
		    bufferevent_get_output(bev)) == 0)
			link_free(l);
		return;
	}
	if (l->dead || l->cbs->on_drain == NULL)
		return;
	l->in_cb++;
	l->cbs->on_drain(l, l->arg);
	link_cb_done(l);
}

static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link *l = arg;
	char why[256];
	unsigned long e;

	if (l->closing) {
		if (l->in_cb == 0 && !(what & BEV_EVENT_CONNECTED))
			link_free(l);
		return;
	}
	l->in_cb++;
	if (what & BEV_EVENT_CONNECTED) {
		link_up(l);
	} else if (what & BEV_EVENT_TIMEOUT) {
		link_fail(l, -ETIMEDOUT, "peer silent too long (%s timeout)",
		    (what & BEV_EVENT_READING) ? "read" : "write");
	} else if (what & BEV_EVENT_EOF) {
		link_fail(l, -ECONNRESET, "peer closed the connection");
	} else if (what & BEV_EVENT_ERROR) {
		/* Out last comes the first error the handshake raised,
		 * the cause ("not the pinned one" before "certificate
		 * verify failed"); libevent adds SSL_get_error()'s code
		 * (no library) before them. */
		why[0] = '\0';
		while ((e = bufferevent_get_openssl_error(bev)) != 0)
			if (ERR_GET_LIB(e) != 0 || why[0] == '\0')
				ERR_error_string_n(e, why, sizeof(why));
		if (why[0] != '\0')
			link_fail(l, -EPROTO, "TLS: %s", why);
		else
			link_fail(l, -errno ? -errno : -EIO, "%s",
			    errno ? strerror(errno) : "connection error");
	}
	link_cb_done(l);
}

/*
 * A link's buffers of a MiB (a PAGE_DATA record going out, a run of
 * records coming in) are allocated and freed at every record.  glibc would
 * map the large ones with mmap(2) and unmap them on free, or trim the heap
 * under them, and the kernel then faults in and clears every page again
 * at the next record: a quarter of each daemon's time in a fast
 * migration.  Keep them in the heap.  Called once, by a daemon's main().
 */
void
link_heap_setup(void)
{
	(void)mallopt(M_MMAP_THRESHOLD, LINK_HEAP_KEEP);
	(void)mallopt(M_TRIM_THRESHOLD, 2 * LINK_HEAP_KEEP);
}
