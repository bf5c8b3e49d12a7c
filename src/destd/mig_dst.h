/*
 * mig_dst.h - one incoming migration on the destination.
 *
 * A session is created for each accepted connection.  It builds an empty
 * paused domain of the announced shape, answers hash offers from the
 * host's index, writes DATA/ZERO pages, fills REF pages by copying local
 * pages and verifying their SHA-256 (I4), asks the source for what it
 * could not fill (NEED), loads the context, and on END answers READY; on
 * GO it commits and unpauses the domain and answers RUNNING.  Any failure
 * before GO destroys the half-built domain.  Event-loop thread only.
 */
#ifndef SHAREMIG_MIG_DST_H
#define SHAREMIG_MIG_DST_H

#include <stdint.h>

#include "hv.h"
#include "pidx.h"

struct bufferevent;
struct hfilt;
struct json_object;
struct mig_dst;

/* Daemon-wide state a session uses; read-only after start-up. */
struct dst_env {
	const struct hv_ops	*ops;
	struct hv		*hv;		/* event-loop thread's instance */
	struct pidx		*index;		/* shared with the scanner */
	struct hfilt		*filter;	/* the index's FILTER, rebuilt
						 * by the scanner (hfilt.h);
						 * NULL without an index */
	const struct hv_params	*hvp;		/* to open the fill workers'
						 * instances */
	uint8_t			 host_id[16];
	char			 host_name[64];
	unsigned		 timeout_s;
	uint64_t		 max_pages;	/* largest domain accepted */
	const char		*journal_dir;	/* in-flight records, or NULL */
	uint64_t		 compress_caps;	/* PROTO_CAP_ZSTD/LZ4 accepted */
	unsigned		 max_streams;	/* streams granted a session, at
						 * most (1..PROTO_STREAMS_MAX) */
	/* The live session whose token this is (a JOIN names it), or
	 * NULL; mig_dst_has_token() is the test. */
	struct mig_dst		*(*find_token)(void *arg, const uint8_t *token);
	void			*find_arg;
};

enum dst_state {
	DS_HANDSHAKE, DS_HELLO, DS_INFO, DS_LIVE, DS_FINAL, DS_READY,
	DS_DONE, DS_FAILED,
	DS_AMBIGUOUS,	/* from the journal: GO seen, RUNNING maybe not sent */
	DS_JOINED,	/* the connection became a data stream of another
			 * session (JOIN): nothing left here */
};

typedef void (*dst_done_cb)(struct mig_dst *s, void *arg);

/* Take over an accepted bufferevent (TLS accepting or plain). */
struct mig_dst *mig_dst_new(struct dst_env *env, uint32_t id,
	    struct bufferevent *bev, int connecting, dst_done_cb done,
	    void *arg);
void	mig_dst_free(struct mig_dst *s);	/* accepts NULL */
int	mig_dst_terminal(const struct mig_dst *s);
/* The connection was handed to another session by JOIN: not a session
 * of its own (left out of status and counters). */
int	mig_dst_joined(const struct mig_dst *s);
/* A live session waiting for data streams with this token (16 bytes,
 * compared in constant time)? */
int	mig_dst_has_token(const struct mig_dst *s, const uint8_t *token);
/* Not authenticated yet (TCP accepted, TLS/HELLO not done) and from the
 * peer address ip (numeric, no port)? */
int	mig_dst_preauth_from(const struct mig_dst *s, const char *ip);
struct json_object *mig_dst_json(const struct mig_dst *s);
/*
 * Settle what an earlier run left in env->journal_dir, before the
 * half-built incoming domains are reaped: each record becomes an ended
 * session (ids from *next_id) handed to add() for "status".  Returns the
 * number of records settled or -errno.
 */
int	mig_dst_recover(struct dst_env *env, uint32_t *next_id,
	    void (*add)(struct mig_dst *s, void *arg), void *arg);

#endif
