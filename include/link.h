/*
 * link.h - one migration session's byte stream: a bufferevent (TLS via
 * bufferevent_openssl, or plain TCP with --insecure) plus the framing of
 * docs/PROTOCOL.md.  It sends and checks the stream header, splits the
 * input into records, enforces the size limit (stricter before HELLO),
 * the record's direction and the phase table (proto_legal), decodes with
 * the one validating decoder, and hands each valid record to the owner.
 *
 * Event-loop thread only.  No logging: every failure is reported once
 * through on_error with a readable reason, after which the link is dead
 * (no more callbacks) and only link_free() may be called.
 */
#ifndef SHAREMIG_LINK_H
#define SHAREMIG_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct bufferevent;
struct evbuffer;
struct link;

struct link_cbs {
	/* Stream established (TCP connected / TLS handshake done). */
	void	(*on_up)(struct link *l, void *arg);
	/* One decoded, legal record, valid until on_record returns (it
	 * points into the input; an uncompressed PAGE_DATA's pages may lie
	 * in pieces: proto_pages_*()).  May call link_free() (then return). */
	void	(*on_record)(struct link *l, const struct proto_rec *r,
		    void *arg);
	/* Output buffer fell to the low watermark.  May be NULL. */
	void	(*on_drain)(struct link *l, void *arg);
	/* Fatal: err is a negative errno, why a one-line reason. */
	void	(*on_error)(struct link *l, int err, const char *why,
		    void *arg);
};

/* malloc settings for the links' large buffers; once, from main(). */
void	link_heap_setup(void);

/*
 * Take over bev (freed with the link).  rx_dir is the direction of the
 * records this side receives (PROTO_D2S on the source).  connecting: the
 * bufferevent is still connecting/handshaking (on_up comes with
 * BEV_EVENT_CONNECTED); otherwise on_up is called from the loop soon.
 */
struct link *link_new(struct bufferevent *bev, enum proto_dir rx_dir,
	    int connecting, const struct link_cbs *cbs, void *arg);
void	link_free(struct link *l);	/* accepts NULL */
/* Flush what is queued (at most 5 s), then free; the owner forgets l. */
void	link_close(struct link *l);	/* accepts NULL */

/* A phase change must be made inside on_record (the next record may be
 * in the same read), or before the peer can send in the new phase. */
void	link_set_phase(struct link *l, enum proto_phase ph);
enum proto_phase link_phase(const struct link *l);
/* Page count of the domain (pfn checks); 0 until DOMAIN_INFO. */
void	link_set_pages(struct link *l, uint64_t pages);
/* The PAGE_DATA compression method negotiated (enum proto_compress);
 * compressed records of any other method are rejected.  0 until set. */
void	link_set_compress(struct link *l, uint32_t method);
/* Deadline for the connection to come up (TCP connect, TLS handshake). */
void	link_set_handshake_timeout(struct link *l, unsigned seconds);
/* Seconds of input silence that end the session (0 = none). */
void	link_set_read_timeout(struct link *l, unsigned seconds);

/*
 * Hand the link to another owner: later callbacks (the rest of the
 * current read too) go to cbs/arg.  May be called inside on_record.
 */
void	link_set_cbs(struct link *l, const struct link_cbs *cbs, void *arg);
/*
 * Stop handing records to the owner: the record being handled (when
 * called inside on_record) is the last until link_resume(); reading
 * stops, so the peer's sending stalls on TCP flow control (no read
 * timeout while paused).  link_resume() hands over what is buffered from
 * the loop, then reads again.
 */
void	link_pause(struct link *l);
void	link_resume(struct link *l);

/* Queue bytes (one or more whole encoded records).  0 or -errno. */
int	link_send(struct link *l, const void *buf, size_t len);
/* Queue an ERROR record (best effort; errors ignored). */
void	link_send_error(struct link *l, int code, const char *msg);
/* Bytes waiting in the output buffer. */
size_t	link_outq(const struct link *l);
/* The output evbuffer, for callers that append page data directly. */
struct evbuffer *link_output(struct link *l);
/* Set the low watermark for on_drain (bytes). */
void	link_set_drain_mark(struct link *l, size_t bytes);

/* The socket, for net_tcp_bytes() and logs; -1 if none. */
int	link_fd(const struct link *l);
/* Peer certificate CN when TLS ("" otherwise). */
void	link_peer_name(struct link *l, char *buf, size_t len);
/* "127.0.0.1:45678" */
const char *link_peer_addr(const struct link *l);

#endif
