/*
 * test_link.c - link.c: the session framing over a bufferevent.  One end
 * of a UNIX socketpair is wrapped in a plain bufferevent and a link that
 * receives S->D records (a destination); the test writes raw bytes into
 * the other end and drives the event loop until the callbacks have seen
 * what it expects, or a deadline passes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "link.h"
#include "proto.h"

#define MAX_RECS	16
#define WAIT_MS		3000	/* deadline for something expected */
#define QUIET_MS	150	/* how long "nothing more happens" is watched */

struct rx_case;

/* Bytes the test is about to write to the peer end. */
struct obuf {
	uint8_t	b[64 << 10];
	size_t	n;
};

struct fx {
	struct event_base	*base;
	struct link		*l;
	int			 peer;		/* the test's end */
	int			 ups;
	int			 nrec;
	uint32_t		 types[MAX_RECS];
	struct proto_hello	 hello;		/* last HELLO, copied */
	uint32_t		 zero_count;	/* last PAGE_ZERO's count */
	uint64_t		 zero_last;	/* and its last pfn */
	int			 ndrain;
	int			 nerr;
	int			 err;
	char			 why[512];
	/* What on_record does after recording. */
	int			 free_in_record;
	int			 close_in_record;
	int			 free_in_error;
	uint64_t		 live_after_hello;	/* pages, or 0 */
	/* PAGE_DATA: pages checked against page_byte(); pieces seen. */
	int			 pd_recs;
	int			 pd_bad;
	unsigned		 pd_max_seg;
	const struct rx_case	*rxc;		/* table row, or NULL */
	struct obuf		*o;		/* input being built */
};

static void
cb_up(struct link *l, void *arg)
{
	struct fx *fx = arg;

	(void)l;
	fx->ups++;
}

/* Byte j of page pfn in the PAGE_DATA records of test_page_data_pieces. */
static uint8_t
page_byte(uint64_t pfn, size_t j)
{
	return (uint8_t)(pfn * 131 + j * 7 + (j >> 8));
}

static void
check_page_data(struct fx *fx, const struct proto_page_data *pd)
{
	static uint8_t page[PROTO_PAGE_SIZE];
	struct proto_pages pp;
	uint64_t pfn;
	uint32_t i;
	size_t j;

	fx->pd_recs++;
	if (pd->nseg > fx->pd_max_seg)
		fx->pd_max_seg = pd->nseg;
	if ((pd->data == NULL) == (pd->seg == NULL))
		fx->pd_bad++;		/* exactly one form */
	proto_pages_init(&pp, pd->data, pd->seg, pd->nseg);
	for (i = 0; i < pd->count; i++) {
		proto_pages_copy(&pp, page);
		pfn = proto_pfn_at(pd->pfns, i);
		for (j = 0; j < PROTO_PAGE_SIZE; j++)
			if (page[j] != page_byte(pfn, j)) {
				fx->pd_bad++;
				break;
			}
	}
}

static void
cb_record(struct link *l, const struct proto_rec *r, void *arg)
{
	struct fx *fx = arg;

	if (fx->nrec < MAX_RECS)
		fx->types[fx->nrec] = r->type;
	fx->nrec++;
	if (r->type == REC_HELLO) {
		fx->hello = r->u.hello;
		if (fx->live_after_hello != 0) {
			/* As an owner does: the next record, maybe already
			 * in the same buffer, is judged in the new phase. */
			link_set_pages(l, fx->live_after_hello);
			link_set_phase(l, PH_LIVE);
		}
	}
	if (r->type == REC_PAGE_ZERO) {
		fx->zero_count = r->u.pfn_list.count;
		fx->zero_last = proto_pfn_at(r->u.pfn_list.pfns,
		    r->u.pfn_list.count - 1);
	}
	if (r->type == REC_PAGE_DATA)
		check_page_data(fx, &r->u.page_data);
	if (fx->free_in_record) {
		link_free(l);
		fx->l = NULL;
	} else if (fx->close_in_record) {
		link_send_error(l, -EPROTO, "closing from on_record");
		link_close(l);
		fx->l = NULL;
	}
}

static void
cb_drain(struct link *l, void *arg)
{
	struct fx *fx = arg;

	(void)l;
	fx->ndrain++;
}

static void
cb_error(struct link *l, int err, const char *why, void *arg)
{
	struct fx *fx = arg;

	fx->nerr++;
	fx->err = err;
	snprintf(fx->why, sizeof(fx->why), "%s", why);
	if (fx->free_in_error) {
		link_free(l);
		fx->l = NULL;
	}
}

static const struct link_cbs cbs = {
	.on_up = cb_up,
	.on_record = cb_record,
	.on_drain = cb_drain,
	.on_error = cb_error,
};

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Run the loop until pred(fx) holds or ms pass; returns pred's value. */
static int
run_until(struct fx *fx, int (*pred)(struct fx *), long ms)
{
	long end = now_ms() + ms;

	for (;;) {
		event_base_loop(fx->base, EVLOOP_NONBLOCK);
		if (pred != NULL && pred(fx))
			return 1;
		if (now_ms() >= end)
			return pred != NULL ? pred(fx) : 0;
		poll(NULL, 0, 1);
	}
}

static int
pred_up(struct fx *fx)
{
	return fx->ups > 0;
}

static int
pred_err(struct fx *fx)
{
	return fx->nerr > 0;
}

static int
pred_never(struct fx *fx)
{
	(void)fx;
	return 0;
}

static void
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	assert_true(fl >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static int
setup(void **state)
{
	struct fx *fx;
	struct bufferevent *bev;
	int sv[2];

	fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	fx->o = calloc(1, sizeof(*fx->o));
	assert_non_null(fx->o);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
	fx->peer = sv[1];
	fx->base = event_base_new();
	assert_non_null(fx->base);
	bev = bufferevent_socket_new(fx->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	fx->l = link_new(bev, PROTO_S2D, 0, &cbs, fx);
	assert_non_null(fx->l);
	assert_int_equal(link_phase(fx->l), PH_HELLO);
	assert_string_equal(link_peer_addr(fx->l), "unix");
	assert_int_equal(fx->ups, 0);	/* deferred to the loop */
	assert_true(run_until(fx, pred_up, WAIT_MS));
	assert_int_equal(fx->ups, 1);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	link_free(fx->l);
	/* Let deferred frees (link_close) run before the base goes. */
	run_until(fx, NULL, 20);
	close(fx->peer);
	event_base_free(fx->base);
	free(fx->o);
	free(fx);
	return 0;
}

/* Write all of buf to the peer end, running the loop when it is full. */
static void
peer_write(struct fx *fx, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	long end = now_ms() + WAIT_MS;
	ssize_t n;

	while (len > 0) {
		n = write(fx->peer, p, len);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			assert_true(now_ms() < end);
			run_until(fx, NULL, 1);
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
}

/*
 * Read from the peer end until EOF (returns the byte count) or until the
 * deadline (returns -1), running the loop meanwhile.
 */
static ssize_t
peer_read_to_eof(struct fx *fx, uint8_t *buf, size_t cap, long ms)
{
	long end = now_ms() + ms;
	size_t got = 0;
	ssize_t n;

	for (;;) {
		n = read(fx->peer, buf + got, cap - got);
		if (n == 0)
			return (ssize_t)got;
		if (n > 0) {
			got += (size_t)n;
			assert_true(got < cap);
			continue;
		}
		assert_int_equal(errno, EAGAIN);
		if (now_ms() >= end)
			return -1;
		run_until(fx, NULL, 1);
	}
}

/* Read what the peer end has now (after running the loop a little). */
static size_t
peer_read_avail(struct fx *fx, uint8_t *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	run_until(fx, NULL, 20);
	while (got < cap && (n = read(fx->peer, buf + got, cap - got)) > 0)
		got += (size_t)n;
	return got;
}

/* ---- building input ---- */

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static void
add_bytes(struct obuf *o, const void *p, size_t len)
{
	assert_true(o->n + len <= sizeof(o->b));
	memcpy(o->b + o->n, p, len);
	o->n += len;
}

static void
add_stream_hdr(struct obuf *o)
{
	proto_stream_hdr_encode(o->b + o->n);
	o->n += PROTO_STREAM_HDR_LEN;
}

/* A record header only, as a peer might send it. */
static void
add_rec_hdr(struct obuf *o, uint32_t type, uint32_t len)
{
	uint8_t h[8];

	put32(h, type);
	put32(h + 4, len);
	add_bytes(o, h, sizeof(h));
}

/* A record of any type with a zero body of len bytes, padded. */
static void
add_raw_rec(struct obuf *o, uint32_t type, uint32_t len)
{
	size_t tot = proto_rec_size(len);

	add_rec_hdr(o, type, len);
	assert_true(o->n + tot - 8 <= sizeof(o->b));
	memset(o->b + o->n, 0, tot - 8);
	o->n += tot - 8;
}

static void
add_hello(struct obuf *o)
{
	struct proto_hello h;
	int n;

	memset(&h, 0, sizeof(h));
	h.version_min = 1;
	h.version_max = 1;
	h.caps = PROTO_CAP_REF | PROTO_CAP_ZERO;
	memset(h.host_id, 0xa5, sizeof(h.host_id));
	snprintf(h.host_name, sizeof(h.host_name), "src-host");
	n = proto_enc_hello(o->b + o->n, sizeof(o->b) - o->n, &h);
	assert_true(n > 0);
	o->n += (size_t)n;
}

/* PAGE_ZERO (or NEED) with pfns first, first + 1, ... */
static void
add_pfn_list(struct obuf *o, uint32_t type, uint32_t count, uint64_t first)
{
	uint64_t pfns[PROTO_PFN_BATCH_MAX];
	uint32_t i;
	int n;

	assert_true(count <= PROTO_PFN_BATCH_MAX);
	for (i = 0; i < count; i++)
		pfns[i] = first + i;
	n = proto_enc_pfn_list(o->b + o->n, sizeof(o->b) - o->n, type, count,
	    pfns);
	assert_true(n > 0);
	o->n += (size_t)n;
}

static void
add_page_data(struct obuf *o, uint64_t pfn)
{
	int n;

	n = proto_enc_page_data_head(o->b + o->n, sizeof(o->b) - o->n, 1,
	    &pfn);
	assert_true(n > 0);
	o->n += (size_t)n;
	assert_true(o->n + PROTO_PAGE_SIZE <= sizeof(o->b));
	memset(o->b + o->n, 0x5a, PROTO_PAGE_SIZE);
	o->n += PROTO_PAGE_SIZE;
}

static void
add_have(struct obuf *o)
{
	uint8_t has[4] = { 1, 0, 1, 0 }, confirm[32];
	int n;

	memset(confirm, 0, sizeof(confirm));
	n = proto_enc_have(o->b + o->n, sizeof(o->b) - o->n, 1, 4, has,
	    confirm);
	assert_true(n > 0);
	o->n += (size_t)n;
}

static void
add_go(struct obuf *o)
{
	int n = proto_enc_go(o->b + o->n, sizeof(o->b) - o->n);

	assert_true(n > 0);
	o->n += (size_t)n;
}

static void
add_keepalive(struct obuf *o)
{
	int n = proto_enc_keepalive(o->b + o->n, sizeof(o->b) - o->n);

	assert_true(n > 0);
	o->n += (size_t)n;
}

static void
add_error(struct obuf *o)
{
	int n = proto_enc_error(o->b + o->n, sizeof(o->b) - o->n, EIO, "oops");

	assert_true(n > 0);
	o->n += (size_t)n;
}

static void
add_iter_end(struct obuf *o)
{
	struct proto_iter_end ie = { .iteration = 0, .pages_sent = 3,
	    .dirty = 1 };
	int n = proto_enc_iter_end(o->b + o->n, sizeof(o->b) - o->n, &ie);

	assert_true(n > 0);
	o->n += (size_t)n;
}

/* ---- inputs of the table ---- */

static void
in_hello(struct obuf *o)
{
	add_stream_hdr(o);
	add_hello(o);
}

static void
in_bad_magic(struct obuf *o)
{
	add_stream_hdr(o);
	o->b[0] ^= 0xff;
	add_hello(o);
}

static void
in_bad_version(struct obuf *o)
{
	add_stream_hdr(o);
	put32(o->b + 8, 7);
	add_hello(o);
}

static void
in_bad_flags(struct obuf *o)
{
	add_stream_hdr(o);
	put32(o->b + 12, 1);
	add_hello(o);
}

/* PAGE_ZERO of 512 entries: body 8 + 4096 > PROTO_REC_MAX_PREAUTH. */
#define BIG_ZERO_COUNT	512u
#define BIG_ZERO_LEN	(8u + 8u * BIG_ZERO_COUNT)

static void
in_big_hdr_only(struct obuf *o)
{
	add_stream_hdr(o);
	add_rec_hdr(o, REC_PAGE_ZERO, BIG_ZERO_LEN);
}

static void
in_preauth_max(struct obuf *o)
{
	add_stream_hdr(o);
	add_raw_rec(o, 0x80000077u, PROTO_REC_MAX_PREAUTH);
	add_hello(o);
}

static void
in_big_zero(struct obuf *o)
{
	add_stream_hdr(o);
	add_pfn_list(o, REC_PAGE_ZERO, BIG_ZERO_COUNT, 100);
}

static void
in_over_rec_max(struct obuf *o)
{
	add_stream_hdr(o);
	add_rec_hdr(o, REC_PAGE_DATA, PROTO_REC_MAX + 1);
}

static void
in_have(struct obuf *o)
{
	add_stream_hdr(o);
	add_have(o);
}

static void
in_page_data(struct obuf *o)
{
	add_stream_hdr(o);
	add_page_data(o, 3);
}

static void
in_zero(struct obuf *o)
{
	add_stream_hdr(o);
	add_pfn_list(o, REC_PAGE_ZERO, 2, 3);
}

static void
in_go(struct obuf *o)
{
	add_stream_hdr(o);
	add_go(o);
}

static void
in_hello_twice(struct obuf *o)
{
	add_stream_hdr(o);
	add_hello(o);
	add_hello(o);	/* legal again: the owner did not move the phase */
}

/* The stream ends in the middle of a HELLO; EOF is added by the table. */
static void
in_truncated(struct obuf *o)
{
	add_stream_hdr(o);
	add_hello(o);
	o->n -= 20;
}

static void
in_truncated_hdr(struct obuf *o)
{
	add_stream_hdr(o);
	o->n -= 5;
}

static void
in_unknown_optional(struct obuf *o)
{
	add_stream_hdr(o);
	add_raw_rec(o, 0x80000077u, 13);
	add_raw_rec(o, 0x80000077u, 0);
	add_hello(o);
}

static void
in_keepalive(struct obuf *o)
{
	add_stream_hdr(o);
	add_keepalive(o);
	add_hello(o);
	add_keepalive(o);
}

static void
in_unknown_mandatory(struct obuf *o)
{
	add_stream_hdr(o);
	add_raw_rec(o, 99, 8);
	add_hello(o);
}

static void
in_zero_pfn_at_pages(struct obuf *o)
{
	add_stream_hdr(o);
	add_pfn_list(o, REC_PAGE_ZERO, 2, 1023);	/* 1023, 1024 */
}

static void
in_data_pfn_at_pages(struct obuf *o)
{
	add_stream_hdr(o);
	add_page_data(o, 1024);
}

static void
in_live_sequence(struct obuf *o)
{
	add_stream_hdr(o);
	add_keepalive(o);
	add_pfn_list(o, REC_PAGE_ZERO, 3, 1021);	/* last pfn 1023 */
	add_page_data(o, 0);
	add_iter_end(o);
}

/* An error, then records that would be legal: none may be delivered. */
static void
in_error_then_valid(struct obuf *o)
{
	add_stream_hdr(o);
	add_have(o);
	add_pfn_list(o, REC_PAGE_ZERO, 1, 5);
	add_iter_end(o);
}

static void
in_valid_then_error(struct obuf *o)
{
	add_stream_hdr(o);
	add_iter_end(o);
	add_go(o);
	add_iter_end(o);
}

static void
in_error_rec(struct obuf *o)
{
	add_stream_hdr(o);
	add_error(o);
}

/* A malformed HELLO: wrong body length. */
static void
in_bad_hello(struct obuf *o)
{
	add_stream_hdr(o);
	add_raw_rec(o, REC_HELLO, 16);
}

#define ANY_ERR		1	/* some negative errno, not a given one */

struct rx_case {
	const char	*name;
	void		(*input)(struct obuf *);
	enum proto_phase phase;
	uint64_t	 pages;
	int		 eof;		/* close the peer end after writing */
	int		 err;		/* 0, -errno, or ANY_ERR */
	const char	*why;		/* substring of the reason, or NULL */
	int		 nrec;
	uint32_t	 types[4];
};

static const struct rx_case rx_cases[] = {
	{ "hello", in_hello, PH_HELLO, 0, 0, 0, NULL,
	    1, { REC_HELLO } },
	{ "hello twice in one write", in_hello_twice, PH_HELLO, 0, 0, 0, NULL,
	    2, { REC_HELLO, REC_HELLO } },
	{ "bad magic", in_bad_magic, PH_HELLO, 0, 0, -EPROTO, "stream header",
	    0, { 0 } },
	{ "stream header flags", in_bad_flags, PH_HELLO, 0, 0, -EPROTO,
	    "stream header", 0, { 0 } },
	{ "stream version 7", in_bad_version, PH_HELLO, 0, 0,
	    -EPROTONOSUPPORT, "stream version 7,", 0, { 0 } },
	{ "over preauth limit, header only", in_big_hdr_only, PH_HELLO, 1024,
	    0, -EMSGSIZE, "PAGE_ZERO", 0, { 0 } },
	{ "preauth limit exactly", in_preauth_max, PH_HELLO, 0, 0, 0, NULL,
	    1, { REC_HELLO } },
	{ "over preauth limit in LIVE", in_big_zero, PH_LIVE, 1024, 0, 0, NULL,
	    1, { REC_PAGE_ZERO } },
	{ "over PROTO_REC_MAX in LIVE", in_over_rec_max, PH_LIVE, 1024, 0,
	    -EMSGSIZE, "PAGE_DATA", 0, { 0 } },
	{ "D2S HAVE in HELLO", in_have, PH_HELLO, 1024, 0, -EPROTO, "HAVE",
	    0, { 0 } },
	{ "D2S HAVE in LIVE", in_have, PH_LIVE, 1024, 0, -EPROTO, "HAVE",
	    0, { 0 } },
	{ "PAGE_DATA in HELLO", in_page_data, PH_HELLO, 1024, 0, ANY_ERR,
	    "PAGE_DATA", 0, { 0 } },
	{ "PAGE_DATA in LIVE", in_page_data, PH_LIVE, 1024, 0, 0, NULL,
	    1, { REC_PAGE_DATA } },
	{ "PAGE_ZERO in HELLO", in_zero, PH_HELLO, 1024, 0, -EPROTO,
	    "PAGE_ZERO", 0, { 0 } },
	{ "PAGE_ZERO in INFO", in_zero, PH_INFO, 1024, 0, -EPROTO,
	    "PAGE_ZERO", 0, { 0 } },
	{ "PAGE_ZERO in FINAL", in_zero, PH_FINAL, 1024, 0, -EPROTO,
	    "PAGE_ZERO", 0, { 0 } },
	{ "GO in LIVE", in_go, PH_LIVE, 1024, 0, -EPROTO, "GO", 0, { 0 } },
	{ "GO in READY", in_go, PH_READY, 1024, 0, 0, NULL, 1, { REC_GO } },
	{ "HELLO in LIVE", in_hello, PH_LIVE, 1024, 0, -EPROTO, "HELLO",
	    0, { 0 } },
	{ "ERROR in HELLO", in_error_rec, PH_HELLO, 0, 0, 0, NULL,
	    1, { REC_ERROR } },
	{ "ERROR in HANDOVER", in_error_rec, PH_HANDOVER, 1024, 0, 0, NULL,
	    1, { REC_ERROR } },
	{ "malformed HELLO", in_bad_hello, PH_HELLO, 0, 0, ANY_ERR, "HELLO",
	    0, { 0 } },
	{ "truncated record, EOF", in_truncated, PH_HELLO, 0, 1, ANY_ERR,
	    "peer closed", 0, { 0 } },
	{ "truncated stream header, EOF", in_truncated_hdr, PH_HELLO, 0, 1,
	    ANY_ERR, "peer closed", 0, { 0 } },
	{ "EOF after a whole record", in_hello, PH_HELLO, 0, 1, ANY_ERR,
	    "peer closed", 1, { REC_HELLO } },
	{ "unknown optional skipped", in_unknown_optional, PH_HELLO, 0, 0, 0,
	    NULL, 1, { REC_HELLO } },
	{ "KEEPALIVE not delivered", in_keepalive, PH_HELLO, 0, 0, 0, NULL,
	    1, { REC_HELLO } },
	{ "unknown mandatory", in_unknown_mandatory, PH_HELLO, 0, 0, ANY_ERR,
	    NULL, 0, { 0 } },
	{ "PAGE_ZERO pfn == pages", in_zero_pfn_at_pages, PH_LIVE, 1024, 0,
	    ANY_ERR, "PAGE_ZERO", 0, { 0 } },
	{ "PAGE_DATA pfn == pages", in_data_pfn_at_pages, PH_LIVE, 1024, 0,
	    ANY_ERR, "PAGE_DATA", 0, { 0 } },
	{ "PAGE_ZERO before pages known", in_zero, PH_LIVE, 0, 0, ANY_ERR,
	    "PAGE_ZERO", 0, { 0 } },
	{ "LIVE sequence", in_live_sequence, PH_LIVE, 1024, 0, 0, NULL,
	    3, { REC_PAGE_ZERO, REC_PAGE_DATA, REC_ITER_END } },
	{ "error, then valid records", in_error_then_valid, PH_LIVE, 1024, 0,
	    -EPROTO, "HAVE", 0, { 0 } },
	{ "valid, error, valid", in_valid_then_error, PH_LIVE, 1024, 0,
	    -EPROTO, "GO", 1, { REC_ITER_END } },
};

static int
pred_done(struct fx *fx)
{
	return fx->nerr > 0;
}

/* cmocka hands the row in as the initial state; the fixture keeps it. */
static int
rx_setup(void **state)
{
	const struct rx_case *c = *state;

	setup(state);
	((struct fx *)*state)->rxc = c;
	return 0;
}

/* One cmocka test per table row, so that one failure hides no other. */
static void
test_rx_case(void **state)
{
	struct fx *fx = *state;
	const struct rx_case *c = fx->rxc;
	struct obuf *o = fx->o;
	int i;

	link_set_phase(fx->l, c->phase);
	assert_int_equal(link_phase(fx->l), c->phase);
	link_set_pages(fx->l, c->pages);
	c->input(o);
	peer_write(fx, o->b, o->n);
	if (c->eof)
		shutdown(fx->peer, SHUT_WR);
	if (c->err != 0)
		run_until(fx, pred_done, WAIT_MS);
	/* Then watch a while longer: nothing more may happen. */
	run_until(fx, pred_never, QUIET_MS);

	if (c->err == 0) {
		if (fx->nerr != 0)
			fail_msg("%s: unexpected error %d: %s", c->name,
			    fx->err, fx->why);
	} else {
		if (fx->nerr != 1)
			fail_msg("%s: %d errors, expected 1", c->name,
			    fx->nerr);
		if (c->err == ANY_ERR)
			assert_true(fx->err < 0);
		else if (fx->err != c->err)
			fail_msg("%s: error %d (%s), expected %d", c->name,
			    fx->err, fx->why, c->err);
		if (c->why != NULL && strstr(fx->why, c->why) == NULL)
			fail_msg("%s: reason \"%s\" lacks \"%s\"", c->name,
			    fx->why, c->why);
	}
	if (fx->nrec != c->nrec)
		fail_msg("%s: %d records, expected %d", c->name, fx->nrec,
		    c->nrec);
	for (i = 0; i < c->nrec; i++)
		assert_int_equal(fx->types[i], c->types[i]);
	assert_int_equal(fx->ups, 1);
}

/* On up the link sends its own 24-byte stream header and nothing else. */
static void
test_sends_stream_header(void **state)
{
	struct fx *fx = *state;
	uint8_t buf[64];
	uint32_t v = 0;

	assert_int_equal(peer_read_avail(fx, buf, sizeof(buf)),
	    PROTO_STREAM_HDR_LEN);
	assert_int_equal(proto_stream_hdr_check(buf, &v), 0);
	assert_int_equal(v, PROTO_VERSION);
	assert_int_equal(link_outq(fx->l), 0);
}

/* HELLO's fields survive the trip; checked on a HELLO split bytewise. */
static void
test_split_bytewise(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;
	uint8_t id[16];
	size_t i;

	in_hello(o);
	for (i = 0; i < o->n; i++) {
		peer_write(fx, o->b + i, 1);
		run_until(fx, NULL, 1);
		/* Nothing before the last byte. */
		if (i + 1 < o->n)
			assert_int_equal(fx->nrec, 0);
	}
	run_until(fx, pred_never, QUIET_MS);
	assert_int_equal(fx->nerr, 0);
	assert_int_equal(fx->nrec, 1);
	assert_int_equal(fx->types[0], REC_HELLO);
	assert_int_equal(fx->hello.version_min, 1);
	assert_int_equal(fx->hello.version_max, 1);
	assert_int_equal(fx->hello.caps, PROTO_CAP_REF | PROTO_CAP_ZERO);
	memset(id, 0xa5, sizeof(id));
	assert_memory_equal(fx->hello.host_id, id, sizeof(id));
	assert_string_equal(fx->hello.host_name, "src-host");
}

/*
 * HELLO and a large record in pieces of growing size; on_record moves the
 * phase to LIVE on HELLO, so the large record is judged by the LIVE limit
 * even when its header came in the same read as the end of HELLO.
 */
static void
test_split_chunks(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;
	size_t off, step;

	add_stream_hdr(o);
	add_hello(o);
	add_pfn_list(o, REC_PAGE_ZERO, 4000, 10);
	fx->live_after_hello = 4010;
	for (off = 0, step = 1; off < o->n; off += step, step = step * 3 + 1) {
		if (step > o->n - off)
			step = o->n - off;
		peer_write(fx, o->b + off, step);
		run_until(fx, NULL, 2);
	}
	run_until(fx, pred_never, QUIET_MS);
	if (fx->nerr != 0)
		fail_msg("error %d: %s", fx->err, fx->why);
	assert_int_equal(fx->nrec, 2);
	assert_int_equal(fx->types[0], REC_HELLO);
	assert_int_equal(fx->types[1], REC_PAGE_ZERO);
	assert_int_equal(fx->zero_count, 4000);
	assert_int_equal(fx->zero_last, 4009);
}

/*
 * Full PAGE_DATA records (256 pages, 1 MiB each) written in uneven pieces
 * with the loop running between them, so a record lies in several of the
 * input's buffers: the link hands the pages over where they lie
 * (proto_page_data's seg) and every byte arrives in order.
 */
static void
test_page_data_pieces(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;
	uint64_t pfns[PROTO_PAGE_BATCH_MAX];
	size_t cap, n, off, step, j;
	uint8_t *big, *p;
	uint32_t i, r;
	int k;

	in_hello(o);
	fx->live_after_hello = 4 * PROTO_PAGE_BATCH_MAX;
	cap = o->n + 4 * (PROTO_REC_HDR_LEN + 8 + sizeof(pfns) +
	    PROTO_PAGE_BATCH_MAX * PROTO_PAGE_SIZE + 8);
	big = malloc(cap);
	assert_non_null(big);
	memcpy(big, o->b, o->n);
	n = o->n;
	for (r = 0; r < 4; r++) {
		for (i = 0; i < PROTO_PAGE_BATCH_MAX; i++)
			pfns[i] = (uint64_t)r * PROTO_PAGE_BATCH_MAX +
			    (i * 37) % PROTO_PAGE_BATCH_MAX;
		k = proto_enc_page_data_head(big + n, cap - n,
		    PROTO_PAGE_BATCH_MAX, pfns);
		assert_true(k > 0);
		n += (size_t)k;
		for (i = 0; i < PROTO_PAGE_BATCH_MAX; i++) {
			p = big + n + (size_t)i * PROTO_PAGE_SIZE;
			for (j = 0; j < PROTO_PAGE_SIZE; j++)
				p[j] = page_byte(pfns[i], j);
		}
		n += PROTO_PAGE_BATCH_MAX * PROTO_PAGE_SIZE;
	}
	for (off = 0, step = 999; off < n; off += step,
	    step = step * 5 % 100003 + 4093) {
		if (step > n - off)
			step = n - off;
		peer_write(fx, big + off, step);
		run_until(fx, NULL, 1);
	}
	free(big);
	run_until(fx, pred_never, QUIET_MS);
	if (fx->nerr != 0)
		fail_msg("error %d: %s", fx->err, fx->why);
	assert_int_equal(fx->nrec, 5);
	assert_int_equal(fx->pd_recs, 4);
	assert_int_equal(fx->pd_bad, 0);
	assert_true(fx->pd_max_seg > 1);
}

/* link_free() from inside on_record: no crash, nothing more delivered. */
static void
test_free_in_record(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;

	fx->free_in_record = 1;
	add_stream_hdr(o);
	add_hello(o);
	add_hello(o);
	add_hello(o);
	peer_write(fx, o->b, o->n);
	run_until(fx, pred_never, QUIET_MS);
	assert_null(fx->l);
	assert_int_equal(fx->nrec, 1);
	assert_int_equal(fx->nerr, 0);
	/* The socket is closed: the peer sees EOF after the header. */
	assert_int_equal(peer_read_to_eof(fx, o->b, sizeof(o->b), WAIT_MS),
	    PROTO_STREAM_HDR_LEN);
}

/* link_free() from inside on_error. */
static void
test_free_in_error(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;

	fx->free_in_error = 1;
	in_error_then_valid(o);
	link_set_pages(fx->l, 1024);
	link_set_phase(fx->l, PH_LIVE);
	peer_write(fx, o->b, o->n);
	run_until(fx, pred_never, QUIET_MS);
	assert_null(fx->l);
	assert_int_equal(fx->nerr, 1);
	assert_int_equal(fx->err, -EPROTO);
	assert_int_equal(fx->nrec, 0);
}

/*
 * After an error the link reports nothing more: not the peer's EOF, not
 * the write error of the ERROR record the owner then sends to a peer
 * that is gone.
 */
static void
test_one_error(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;
	int drains;

	in_have(o);
	peer_write(fx, o->b, o->n);
	run_until(fx, pred_err, WAIT_MS);
	drains = fx->ndrain;
	close(fx->peer);
	fx->peer = socket(AF_UNIX, SOCK_STREAM, 0);	/* for teardown */
	assert_int_equal(link_send(fx->l, "x", 1), -EPIPE);
	link_send_error(fx->l, -EPROTO, "bad record");
	run_until(fx, pred_never, QUIET_MS);
	assert_int_equal(fx->ndrain, drains);
	assert_int_equal(fx->nerr, 1);
	assert_int_equal(fx->err, -EPROTO);
	assert_int_equal(fx->nrec, 0);
}

/*
 * link_close() with queued output: everything queued, the ERROR record
 * last, reaches the peer before EOF.  The queue is larger than the
 * socket buffer so that the close really has to wait for it.
 */
static void
test_close_flushes(void **state)
{
	struct fx *fx = *state;
	size_t bulk = 4u << 20, cap = bulk + 4096, off;
	uint8_t *big = malloc(bulk), *in = malloc(cap);
	struct proto_rec rec;
	struct proto_limits lim = { .pages = 0, .rec_max = PROTO_REC_MAX };
	uint32_t type, len;
	size_t total;
	ssize_t n;

	assert_non_null(big);
	assert_non_null(in);
	/* Bulk made of KEEPALIVE records so the peer can parse it all. */
	for (off = 0; off < bulk; off += 8)
		assert_int_equal(proto_enc_keepalive(big + off, 8), 8);
	assert_int_equal(link_send(fx->l, big, bulk), 0);
	link_send_error(fx->l, -EPIPE, "going away");
	assert_true(link_outq(fx->l) > 0);
	link_close(fx->l);
	fx->l = NULL;

	n = peer_read_to_eof(fx, in, cap, WAIT_MS);
	assert_true(n > 0);
	assert_true((size_t)n > PROTO_STREAM_HDR_LEN + bulk);
	assert_int_equal(proto_stream_hdr_check(in, NULL), 0);
	assert_memory_equal(in + PROTO_STREAM_HDR_LEN, big, bulk);
	off = PROTO_STREAM_HDR_LEN + bulk;
	assert_int_equal(proto_frame_peek(in + off, (size_t)n - off,
	    PROTO_REC_MAX, &type, &len, &total), 0);
	assert_int_equal(type, REC_ERROR);
	assert_int_equal(off + total, (size_t)n);
	assert_int_equal(proto_decode(type, in + off + 8, len, &lim, &rec), 0);
	assert_int_equal(rec.u.error.code, EPIPE);
	assert_string_equal(rec.u.error.msg, "going away");
	assert_int_equal(fx->nerr, 0);
	free(big);
	free(in);
}

/* link_close() with nothing queued closes at once. */
static void
test_close_empty(void **state)
{
	struct fx *fx = *state;
	uint8_t buf[64];

	run_until(fx, NULL, 20);	/* stream header out */
	assert_int_equal(link_outq(fx->l), 0);
	link_close(fx->l);
	fx->l = NULL;
	assert_int_equal(peer_read_to_eof(fx, buf, sizeof(buf), WAIT_MS),
	    PROTO_STREAM_HDR_LEN);
}

/* link_close() from inside on_record: the ERROR queued there goes out. */
static void
test_close_in_record(void **state)
{
	struct fx *fx = *state;
	struct obuf *o = fx->o;
	struct proto_limits lim = { .pages = 0, .rec_max = PROTO_REC_MAX };
	struct proto_rec rec;
	uint32_t type, len;
	size_t total;
	ssize_t n;

	fx->close_in_record = 1;
	in_hello_twice(o);
	peer_write(fx, o->b, o->n);
	n = peer_read_to_eof(fx, o->b, sizeof(o->b), WAIT_MS);
	assert_true(n > (ssize_t)PROTO_STREAM_HDR_LEN);
	assert_int_equal(fx->nrec, 1);
	assert_int_equal(fx->nerr, 0);
	assert_int_equal(proto_frame_peek(o->b + PROTO_STREAM_HDR_LEN,
	    (size_t)n - PROTO_STREAM_HDR_LEN, PROTO_REC_MAX, &type, &len,
	    &total), 0);
	assert_int_equal(type, REC_ERROR);
	assert_int_equal(PROTO_STREAM_HDR_LEN + total, (size_t)n);
	assert_int_equal(proto_decode(type, o->b + PROTO_STREAM_HDR_LEN + 8,
	    len, &lim, &rec), 0);
	assert_int_equal(rec.u.error.code, EPROTO);
}

/* A silent peer ends the session after the read timeout. */
static void
test_read_timeout(void **state)
{
	struct fx *fx = *state;

	link_set_read_timeout(fx->l, 1);
	assert_true(run_until(fx, pred_err, WAIT_MS));
	assert_int_equal(fx->err, -ETIMEDOUT);
	assert_non_null(strstr(fx->why, "silent"));
	assert_int_equal(fx->nerr, 1);
}

/* on_drain fires once the output falls to the mark. */
static void
test_drain(void **state)
{
	struct fx *fx = *state;
	size_t bulk = 1u << 20, want = PROTO_STREAM_HDR_LEN + bulk, off;
	uint8_t *big = malloc(bulk), *in = malloc(want + 4096);
	long end;

	assert_non_null(big);
	assert_non_null(in);
	for (off = 0; off < bulk; off += 8)
		assert_int_equal(proto_enc_keepalive(big + off, 8), 8);
	link_set_drain_mark(fx->l, 4096);
	fx->ndrain = 0;
	assert_int_equal(link_send(fx->l, big, bulk), 0);
	assert_true(link_outq(fx->l) >= bulk);
	off = 0;
	end = now_ms() + WAIT_MS;
	while (off < want) {
		if (now_ms() >= end)
			fail_msg("only %zu of %zu bytes arrived", off, want);
		ssize_t n = read(fx->peer, in + off, want + 4096 - off);

		if (n > 0)
			off += (size_t)n;
		else
			run_until(fx, NULL, 1);
		assert_int_equal(fx->nerr, 0);
	}
	run_until(fx, NULL, 20);
	assert_int_equal(off, want);
	assert_int_equal(proto_stream_hdr_check(in, NULL), 0);
	assert_memory_equal(in + PROTO_STREAM_HDR_LEN, big, bulk);
	assert_int_equal(link_outq(fx->l), 0);
	assert_true(fx->ndrain >= 1);
	free(big);
	free(in);
}

/* link_send() after an error is refused. */
static void
test_send_after_error(void **state)
{
	struct fx *fx = *state;
	uint8_t b[32];

	assert_int_equal(proto_enc_keepalive(b, sizeof(b)), 8);
	assert_int_equal(link_send(fx->l, b, 8), 0);
	peer_write(fx, "garbage-garbage-garbage-", 24);
	assert_true(run_until(fx, pred_err, WAIT_MS));
	assert_int_equal(fx->err, -EPROTO);
	assert_int_equal(link_send(fx->l, b, 8), -EPIPE);
}

#define NRX	(sizeof(rx_cases) / sizeof(rx_cases[0]))

int
main(void)
{
	struct CMUnitTest rx[NRX];
	size_t i;
	int rc;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sends_stream_header,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_bytewise,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_chunks,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_data_pieces,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_record,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_error,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_error,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_flushes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_empty,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_record,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_timeout,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_after_error,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain,
		    setup, teardown),
	};

	/* As in the daemons: a write to a closed peer is an error, not a
	 * signal. */
	signal(SIGPIPE, SIG_IGN);
	memset(rx, 0, sizeof(rx));
	for (i = 0; i < NRX; i++) {
		rx[i].name = rx_cases[i].name;
		rx[i].test_func = test_rx_case;
		rx[i].setup_func = rx_setup;
		rx[i].teardown_func = teardown;
		rx[i].initial_state = (void *)&rx_cases[i];
	}
	rc = _cmocka_run_group_tests("link records", rx, NRX, NULL, NULL);
	rc += cmocka_run_group_tests_name("link", tests, NULL, NULL);
	return rc != 0;
}
