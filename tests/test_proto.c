/*
 * test_proto.c - unit tests of the wire protocol module (src/common/proto.c).
 *
 * Table-driven: one valid record per type is built by its encoder; the
 * same table drives round trips, truncation, trailing bytes, size limits
 * and count mutations.  Golden byte checks pin the layouts of
 * docs/PROTOCOL.md so that a symmetric encoder/decoder mistake cannot
 * pass.
 *
 * "test_proto --write-corpus DIR" writes the libFuzzer seed corpus (one
 * valid input per record type, in fuzz/fuzz_proto.c's input format) and
 * exits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

#define BUFSZ		(PROTO_REC_MAX + 4096)
#define NPAGES		(1u << 20)	/* default lim.pages */

static uint8_t	buf[BUFSZ];
static uint8_t	buf2[BUFSZ];

static const struct proto_limits lim_preauth = { 0, PROTO_REC_MAX_PREAUTH,
    0 };
static const struct proto_limits lim_full = { NPAGES, PROTO_REC_MAX,
    PROTO_COMPRESS_NONE };

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void
set32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
set64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- fixtures: one valid record per type ---- */

static const uint64_t	fx_pfns[] = { 0, 1, 7, 4095, 1000 };
static const uint64_t	fx_hints[] = { PROTO_PFN_NONE, 0, 6, PROTO_PFN_NONE, 3 };
static const uint8_t	fx_has[] = { 1, 0, 1, 1, 0 };
#define FX_N		5u
static uint8_t		fx_digests[FX_N][32];
static uint8_t		fx_config[100];
static uint8_t		fx_ctx[77];
static uint8_t		fx_pages[2][PROTO_PAGE_SIZE];

/*
 * OFFER: a sparse window of 3 words, the middle one empty; the highest
 * set bit is pfn 4095, like the other fixtures' largest pfn.
 */
#define FX_OF_BASE	3904u			/* 4096 - 192 */
#define FX_OF_SPAN	192u
static const uint64_t	fx_of_pfns[FX_N] = { 3904, 3906, 3967, 4040, 4095 };
static const uint64_t	fx_of_bitmap[FX_OF_SPAN / 64] = {
	1ull << 0 | 1ull << 2 | 1ull << 63,
	0,
	1ull << 8 | 1ull << 63,
};
static uint8_t		fx_prefixes[FX_N][8];
static uint8_t		fx_confirm[32];

static void
fx_init(void)
{
	for (unsigned int i = 0; i < FX_N; i++)
		for (unsigned int j = 0; j < 32; j++)
			fx_digests[i][j] = (uint8_t)(i * 37 + j);
	for (unsigned int i = 0; i < FX_N; i++)
		memcpy(fx_prefixes[i], fx_digests[i], 8);
	for (unsigned int i = 0; i < 32; i++)
		fx_confirm[i] = (uint8_t)(i * 3 + 1);
	for (unsigned int i = 0; i < sizeof(fx_config); i++)
		fx_config[i] = (uint8_t)(i ^ 0x5a);
	for (unsigned int i = 0; i < sizeof(fx_ctx); i++)
		fx_ctx[i] = (uint8_t)(255 - i);
	for (unsigned int i = 0; i < PROTO_PAGE_SIZE; i++) {
		fx_pages[0][i] = (uint8_t)i;
		fx_pages[1][i] = (uint8_t)(i * 7 + 1);
	}
}

static const struct proto_hello fx_hello = {
	.version_min = 1, .version_max = 3, .caps = PROTO_CAP_REF |
	    PROTO_CAP_ZERO | 0x8000000000000000ull,
	.host_id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
	.host_name = "host-a.example.org",
};

static struct proto_domain_info
fx_di(void)
{
	struct proto_domain_info di = {
		.pages = NPAGES, .vcpus = 4,
		.flags = PROTO_DI_PAUSED | PROTO_DI_VERIFY,
		.dedup = PROTO_DEDUP_ALL,
		.uuid = { 0xde, 0xad, 0xbe, 0xef, 5, 6, 7, 8, 9, 10, 11, 12,
		    13, 14, 15, 0xff },
		.name = "guest-01.web_a",
		.config = fx_config, .config_len = sizeof(fx_config),
	};
	return di;
}

static const struct proto_iter_end fx_ie = { 7, 123456789012ull, 42 };
static const struct proto_running fx_run = { 1500000, 99, 3 };

static int
enc_hello(uint8_t *o, size_t cap)
{
	return proto_enc_hello(o, cap, &fx_hello);
}

static int
enc_error(uint8_t *o, size_t cap)
{
	return proto_enc_error(o, cap, EPROTO, "record PAGE_REF out of phase");
}

static int
enc_di(uint8_t *o, size_t cap)
{
	struct proto_domain_info di = fx_di();

	return proto_enc_domain_info(o, cap, &di);
}

static int
enc_ack(uint8_t *o, size_t cap)
{
	return proto_enc_domain_ack(o, cap, 0x12345678);
}

static const struct proto_domain_ack fx_ack_st = {
	.domid = 7, .streams = 4,
	.token = { 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xa9,
	    0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f },
};

/* DOMAIN_ACK granting 4 streams, with the session's token. */
static int
enc_ack_st(uint8_t *o, size_t cap)
{
	return proto_enc_domain_ack_streams(o, cap, &fx_ack_st);
}

/* DOMAIN_INFO asking for 6 streams. */
static int
enc_di_st(uint8_t *o, size_t cap)
{
	struct proto_domain_info di = fx_di();

	di.streams = 6;
	return proto_enc_domain_info(o, cap, &di);
}

static int
enc_join(uint8_t *o, size_t cap)
{
	struct proto_join j = { .index = 3 };

	memcpy(j.token, fx_ack_st.token, PROTO_TOKEN_LEN);
	return proto_enc_join(o, cap, &j);
}

/* FILTER: "no filter", and the last 8-octet chunk of a 1024-bit filter. */
#define FX_FI_NBITS	1024u
#define FX_FI_K		6u
#define FX_FI_OFFSET	(FX_FI_NBITS / 8 - 8)
static const uint8_t	fx_fbits[8] = { 0x81, 0x00, 0x42, 0xff, 0x10, 0x00,
    0x00, 0x80 };

static int
enc_filter_none(uint8_t *o, size_t cap)
{
	struct proto_filter f = { .nbits = 0 };

	return proto_enc_filter(o, cap, &f);
}

static int
enc_filter(uint8_t *o, size_t cap)
{
	struct proto_filter f = { .nbits = FX_FI_NBITS, .k = FX_FI_K,
	    .offset = FX_FI_OFFSET, .bits = fx_fbits,
	    .bits_len = sizeof(fx_fbits) };

	return proto_enc_filter(o, cap, &f);
}

static int
enc_offer(uint8_t *o, size_t cap)
{
	return proto_enc_offer(o, cap, 9, FX_OF_BASE, FX_OF_SPAN, fx_of_bitmap,
	    FX_N, (const uint8_t (*)[8])fx_prefixes);
}

static int
enc_have(uint8_t *o, size_t cap)
{
	return proto_enc_have(o, cap, 9, FX_N, fx_has, fx_confirm);
}

static int
enc_page_data(uint8_t *o, size_t cap)
{
	int n = proto_enc_page_data_head(o, cap, 2, fx_pfns + 2);

	if (n < 0)
		return n;
	if ((size_t)n + sizeof(fx_pages) > cap)
		return -EMSGSIZE;
	memcpy(o + n, fx_pages, sizeof(fx_pages));
	return n + (int)sizeof(fx_pages);
}

static int
enc_zero(uint8_t *o, size_t cap)
{
	return proto_enc_pfn_list(o, cap, REC_PAGE_ZERO, FX_N, fx_pfns);
}

static int
enc_need(uint8_t *o, size_t cap)
{
	return proto_enc_pfn_list(o, cap, REC_NEED, 3, fx_pfns + 1);
}

static int
enc_ref(uint8_t *o, size_t cap)
{
	return proto_enc_page_ref(o, cap, FX_N, fx_pfns, fx_hints,
	    (const uint8_t (*)[32])fx_digests);
}

static int
enc_iter_end(uint8_t *o, size_t cap)
{
	return proto_enc_iter_end(o, cap, &fx_ie);
}

static int
enc_context(uint8_t *o, size_t cap)
{
	return proto_enc_context(o, cap, fx_ctx, sizeof(fx_ctx));
}

static struct proto_end
fx_end(void)
{
	struct proto_end e = { .flags = PROTO_END_VERIFY };

	for (int i = 0; i < 32; i++)
		e.memory_sha256[i] = (uint8_t)(0xf0 ^ i);
	return e;
}

static int
enc_end(uint8_t *o, size_t cap)
{
	struct proto_end e = fx_end();

	return proto_enc_end(o, cap, REC_END, &e);
}

/* END naming the pfns left out of its digest. */
static const uint64_t fx_unverified[3] = { 0x10, 0xfeffc, 0xfefff };

static int
enc_end_uv(uint8_t *o, size_t cap)
{
	struct proto_end e = fx_end();

	e.flags |= PROTO_END_UNVERIFIED;
	e.nunverified = 3;
	memcpy(e.unverified, fx_unverified, sizeof(fx_unverified));
	return proto_enc_end(o, cap, REC_END, &e);
}

static int
enc_ready(uint8_t *o, size_t cap)
{
	struct proto_end e = fx_end();

	e.flags = 0;
	return proto_enc_end(o, cap, REC_READY, &e);
}

static int
enc_go(uint8_t *o, size_t cap)
{
	return proto_enc_go(o, cap);
}

static int
enc_running(uint8_t *o, size_t cap)
{
	return proto_enc_running(o, cap, &fx_run);
}

static int
enc_keepalive(uint8_t *o, size_t cap)
{
	return proto_enc_keepalive(o, cap);
}

/* ---- checks of the decoded fixtures ---- */

static void
chk_hello(const struct proto_rec *r)
{
	assert_int_equal(r->u.hello.version_min, 1);
	assert_int_equal(r->u.hello.version_max, 3);
	assert_true(r->u.hello.caps == fx_hello.caps);
	assert_memory_equal(r->u.hello.host_id, fx_hello.host_id, 16);
	assert_string_equal(r->u.hello.host_name, fx_hello.host_name);
}

static void
chk_error(const struct proto_rec *r)
{
	assert_int_equal(r->u.error.code, EPROTO);
	assert_string_equal(r->u.error.msg, "record PAGE_REF out of phase");
}

static void
chk_di(const struct proto_rec *r)
{
	struct proto_domain_info di = fx_di();
	const struct proto_domain_info *d = &r->u.domain_info;

	assert_true(d->pages == di.pages);
	assert_int_equal(d->vcpus, di.vcpus);
	assert_int_equal(d->flags, di.flags);
	assert_int_equal(d->dedup, di.dedup);
	assert_memory_equal(d->uuid, di.uuid, 16);
	assert_string_equal(d->name, di.name);
	assert_int_equal(d->config_len, di.config_len);
	assert_memory_equal(d->config, fx_config, sizeof(fx_config));
}

static void
chk_ack(const struct proto_rec *r)
{
	assert_int_equal(r->u.domain_ack.domid, 0x12345678);
	assert_int_equal(r->u.domain_ack.streams, 1);
}

static void
chk_ack_st(const struct proto_rec *r)
{
	assert_int_equal(r->u.domain_ack.domid, 7);
	assert_int_equal(r->u.domain_ack.streams, 4);
	assert_memory_equal(r->u.domain_ack.token, fx_ack_st.token,
	    PROTO_TOKEN_LEN);
}

static void
chk_di_st(const struct proto_rec *r)
{
	struct proto_rec c = *r;

	/* The decoder reports the flag it found; the rest is chk_di's. */
	assert_int_equal(r->u.domain_info.flags & PROTO_DI_STREAMS,
	    PROTO_DI_STREAMS);
	c.u.domain_info.flags &= ~PROTO_DI_STREAMS;
	chk_di(&c);
	assert_int_equal(r->u.domain_info.streams, 6);
}

static void
chk_join(const struct proto_rec *r)
{
	assert_int_equal(r->u.join.index, 3);
	assert_memory_equal(r->u.join.token, fx_ack_st.token, PROTO_TOKEN_LEN);
}

static void
chk_filter_none(const struct proto_rec *r)
{
	assert_true(r->u.filter.nbits == 0);
	assert_int_equal(r->u.filter.k, 0);
	assert_true(r->u.filter.offset == 0);
	assert_int_equal(r->u.filter.bits_len, 0);
}

static void
chk_filter(const struct proto_rec *r)
{
	assert_true(r->u.filter.nbits == FX_FI_NBITS);
	assert_int_equal(r->u.filter.k, FX_FI_K);
	assert_true(r->u.filter.offset == FX_FI_OFFSET);
	assert_int_equal(r->u.filter.bits_len, sizeof(fx_fbits));
	assert_memory_equal(r->u.filter.bits, fx_fbits, sizeof(fx_fbits));
}

static void
chk_offer(const struct proto_rec *r)
{
	uint64_t pfns[FX_N + 1];

	assert_int_equal(r->u.offer.batch, 9);
	assert_int_equal(r->u.offer.count, FX_N);
	assert_true(r->u.offer.base_pfn == FX_OF_BASE);
	assert_int_equal(r->u.offer.span, FX_OF_SPAN);
	pfns[FX_N] = 0xabcdef;
	proto_offer_pfns(&r->u.offer, pfns);
	assert_true(pfns[FX_N] == 0xabcdef);	/* writes count pfns only */
	for (uint32_t i = 0; i < FX_N; i++) {
		assert_true(pfns[i] == fx_of_pfns[i]);
		assert_memory_equal(proto_offer_prefix_at(&r->u.offer, i),
		    fx_digests[i], 8);
	}
}

static void
chk_have(const struct proto_rec *r)
{
	assert_int_equal(r->u.have.batch, 9);
	assert_int_equal(r->u.have.count, FX_N);
	assert_memory_equal(r->u.have.confirm, fx_confirm, 32);
	for (uint32_t i = 0; i < FX_N; i++)
		assert_int_equal(proto_have_bit(&r->u.have, i), fx_has[i]);
}

static void
chk_page_data(const struct proto_rec *r)
{
	assert_int_equal(r->u.page_data.count, 2);
	assert_int_equal(r->u.page_data.flags, 0);
	assert_true(proto_pfn_at(r->u.page_data.pfns, 0) == fx_pfns[2]);
	assert_true(proto_pfn_at(r->u.page_data.pfns, 1) == fx_pfns[3]);
	assert_memory_equal(r->u.page_data.data, fx_pages, sizeof(fx_pages));
}

static void
chk_zero(const struct proto_rec *r)
{
	assert_int_equal(r->u.pfn_list.count, FX_N);
	for (uint32_t i = 0; i < FX_N; i++)
		assert_true(proto_pfn_at(r->u.pfn_list.pfns, i) == fx_pfns[i]);
}

static void
chk_need(const struct proto_rec *r)
{
	assert_int_equal(r->u.pfn_list.count, 3);
	for (uint32_t i = 0; i < 3; i++)
		assert_true(proto_pfn_at(r->u.pfn_list.pfns, i) ==
		    fx_pfns[i + 1]);
}

static void
chk_ref(const struct proto_rec *r)
{
	assert_int_equal(r->u.page_ref.count, FX_N);
	for (uint32_t i = 0; i < FX_N; i++) {
		assert_true(proto_ref_pfn_at(&r->u.page_ref, i) == fx_pfns[i]);
		assert_true(proto_ref_hint_at(&r->u.page_ref, i) ==
		    fx_hints[i]);
		assert_memory_equal(proto_ref_digest_at(&r->u.page_ref, i),
		    fx_digests[i], 32);
	}
}

static void
chk_iter_end(const struct proto_rec *r)
{
	assert_int_equal(r->u.iter_end.iteration, fx_ie.iteration);
	assert_true(r->u.iter_end.pages_sent == fx_ie.pages_sent);
	assert_true(r->u.iter_end.dirty == fx_ie.dirty);
}

static void
chk_context(const struct proto_rec *r)
{
	assert_int_equal(r->u.context.len, sizeof(fx_ctx));
	assert_memory_equal(r->u.context.blob, fx_ctx, sizeof(fx_ctx));
}

static void
chk_end(const struct proto_rec *r)
{
	struct proto_end e = fx_end();

	assert_int_equal(r->u.end.flags, PROTO_END_VERIFY);
	assert_memory_equal(r->u.end.memory_sha256, e.memory_sha256, 32);
}

static void
chk_end_uv(const struct proto_rec *r)
{
	struct proto_end e = fx_end();

	assert_int_equal(r->u.end.flags,
	    PROTO_END_VERIFY | PROTO_END_UNVERIFIED);
	assert_memory_equal(r->u.end.memory_sha256, e.memory_sha256, 32);
	assert_int_equal(r->u.end.nunverified, 3);
	assert_memory_equal(r->u.end.unverified, fx_unverified,
	    sizeof(fx_unverified));
}

static void
chk_ready(const struct proto_rec *r)
{
	struct proto_end e = fx_end();

	assert_int_equal(r->u.end.flags, 0);
	assert_memory_equal(r->u.end.memory_sha256, e.memory_sha256, 32);
}

static void
chk_running(const struct proto_rec *r)
{
	assert_true(r->u.running.cpu_dest_us == fx_run.cpu_dest_us);
	assert_true(r->u.running.refs_filled == fx_run.refs_filled);
	assert_true(r->u.running.refs_failed == fx_run.refs_failed);
}

static void
chk_none(const struct proto_rec *r)
{
	(void)r;
}

/*
 * The record table.  count_off is the byte offset of the batch count in
 * the body (-1: no count); legal_phase/dir select one legal receiver
 * state (used for the seed corpus).
 */
struct rec_case {
	const char	*name;
	uint32_t	 type;
	int		(*enc)(uint8_t *, size_t);
	void		(*chk)(const struct proto_rec *);
	int		 count_off;
	uint32_t	 count_max;
	enum proto_dir	 dir;
	enum proto_phase phase;
};

static const struct rec_case cases[] = {
	{ "HELLO", REC_HELLO, enc_hello, chk_hello, -1, 0, PROTO_S2D, PH_HELLO },
	{ "ERROR", REC_ERROR, enc_error, chk_error, -1, 0, PROTO_D2S, PH_LIVE },
	{ "DOMAIN_INFO", REC_DOMAIN_INFO, enc_di, chk_di, -1, 0, PROTO_S2D,
	    PH_INFO },
	{ "DOMAIN_ACK", REC_DOMAIN_ACK, enc_ack, chk_ack, -1, 0, PROTO_D2S,
	    PH_INFO },
	{ "OFFER", REC_OFFER, enc_offer, chk_offer, 4, PROTO_PFN_BATCH_MAX,
	    PROTO_S2D, PH_LIVE },
	{ "HAVE", REC_HAVE, enc_have, chk_have, 4, PROTO_PFN_BATCH_MAX,
	    PROTO_D2S, PH_LIVE },
	{ "PAGE_DATA", REC_PAGE_DATA, enc_page_data, chk_page_data, 0,
	    PROTO_PAGE_BATCH_MAX, PROTO_S2D, PH_FINAL },
	{ "PAGE_ZERO", REC_PAGE_ZERO, enc_zero, chk_zero, 0,
	    PROTO_PFN_BATCH_MAX, PROTO_S2D, PH_LIVE },
	{ "PAGE_REF", REC_PAGE_REF, enc_ref, chk_ref, 0, PROTO_PFN_BATCH_MAX,
	    PROTO_S2D, PH_LIVE },
	{ "ITER_END", REC_ITER_END, enc_iter_end, chk_iter_end, -1, 0,
	    PROTO_S2D, PH_LIVE },
	{ "NEED", REC_NEED, enc_need, chk_need, 0, PROTO_PFN_BATCH_MAX,
	    PROTO_D2S, PH_FINAL },
	{ "CONTEXT", REC_CONTEXT, enc_context, chk_context, -1, 0, PROTO_S2D,
	    PH_LIVE },
	{ "END", REC_END, enc_end, chk_end, -1, 0, PROTO_S2D, PH_LIVE },
	{ "READY", REC_READY, enc_ready, chk_ready, -1, 0, PROTO_D2S,
	    PH_FINAL },
	{ "GO", REC_GO, enc_go, chk_none, -1, 0, PROTO_S2D, PH_READY },
	{ "RUNNING", REC_RUNNING, enc_running, chk_running, -1, 0, PROTO_D2S,
	    PH_HANDOVER },
	{ "KEEPALIVE", REC_KEEPALIVE, enc_keepalive, chk_none, -1, 0,
	    PROTO_D2S, PH_READY },
	/* Several streams (added last: the indices above are used). */
	{ "DOMAIN_ACK", REC_DOMAIN_ACK, enc_ack_st, chk_ack_st, -1, 0,
	    PROTO_D2S, PH_INFO },
	{ "DOMAIN_INFO", REC_DOMAIN_INFO, enc_di_st, chk_di_st, -1, 0,
	    PROTO_S2D, PH_INFO },
	{ "JOIN", REC_JOIN, enc_join, chk_join, -1, 0, PROTO_S2D, PH_INFO },
	/*
	 * FILTER (added last, likewise).  The chunk is the filter's last
	 * and one word long, so that every shorter or longer body breaks a
	 * rule, as the generic truncation and trailing tests expect.
	 */
	{ "FILTER", REC_FILTER, enc_filter_none, chk_filter_none, -1, 0,
	    PROTO_D2S, PH_INFO },
	{ "FILTER", REC_FILTER, enc_filter, chk_filter, -1, 0, PROTO_D2S,
	    PH_INFO },
};
#define NCASES	(sizeof(cases) / sizeof(cases[0]))

/* Encode case c into buf; returns the body length. */
static uint32_t
build(const struct rec_case *c)
{
	uint32_t	type, len;
	size_t		total;
	int		n;

	memset(buf, 0xee, 256);
	n = c->enc(buf, BUFSZ);
	assert_true(n > 0);
	assert_int_equal(proto_frame_peek(buf, (size_t)n, PROTO_REC_MAX,
	    &type, &len, &total), 0);
	assert_int_equal(type, c->type);
	assert_int_equal(total, (size_t)n);
	assert_int_equal(total % 8, 0);
	assert_int_equal(proto_rec_size(len), total);
	/* Padding is zero. */
	for (size_t i = 8 + len; i < total; i++)
		assert_int_equal(buf[i], 0);
	return len;
}

static int
dec(const struct rec_case *c, uint32_t len, const struct proto_limits *lim,
    struct proto_rec *r)
{
	return proto_decode(c->type, buf + PROTO_REC_HDR_LEN, len, lim, r);
}

/* ---- round trip ---- */

static void
test_roundtrip(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		struct proto_rec	 r;
		uint32_t		 len = build(c);

		print_message("round trip %s (%u bytes)\n", c->name, len);
		assert_int_equal(dec(c, len, &lim_full, &r), 0);
		assert_int_equal(r.type, c->type);
		assert_string_equal(proto_type_name(c->type), c->name);
		c->chk(&r);
	}
}

/* Every encoder refuses a buffer one byte too small, and writes nothing
 * past cap. */
static void
test_enc_cap(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		int			 n = c->enc(buf, BUFSZ);

		assert_true(n > 0);
		memset(buf2, 0xcc, BUFSZ);
		assert_int_equal(c->enc(buf2, (size_t)n - 1), -EMSGSIZE);
		assert_int_equal(c->enc(buf2, 0), -EMSGSIZE);
		assert_int_equal(buf2[n - 1], 0xcc);
	}
}

/* ---- hostile bodies ---- */

static void
test_truncated(void **state)
{
	struct proto_rec r;

	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		uint32_t		 len = build(c);

		for (uint32_t l = 0; l < len; l++) {
			int ret = dec(c, l, &lim_full, &r);

			if (ret != -EBADMSG)
				fail_msg("%s truncated to %u: %d", c->name, l,
				    ret);
		}
	}
}

static void
test_trailing(void **state)
{
	struct proto_rec r;

	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		uint32_t		 len = build(c);

		for (uint32_t k = 1; k <= 16; k++) {
			int ret;

			memset(buf + 8 + len, 0, k);
			ret = dec(c, len + k, &lim_full, &r);
			if (ret != -EBADMSG)
				fail_msg("%s + %u trailing: %d", c->name, k,
				    ret);
		}
	}
}

static void
test_oversized(void **state)
{
	struct proto_rec	r;
	struct proto_limits	lim;

	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		uint32_t		 len = build(c);

		if (len == 0)
			continue;
		lim = lim_full;
		lim.rec_max = len - 1;
		assert_int_equal(dec(c, len, &lim, &r), -EMSGSIZE);
		lim.rec_max = len;
		assert_int_equal(dec(c, len, &lim, &r), 0);
		/* No rec_max lifts the protocol's maximum. */
		lim.rec_max = UINT32_MAX;
		assert_int_equal(proto_decode(c->type, buf2,
		    PROTO_REC_MAX + 1, &lim, &r), -EMSGSIZE);
	}
	/* The pre-authentication limit: HELLO and ERROR fit, big ones not. */
	lim.pages = NPAGES;
	lim.rec_max = PROTO_REC_MAX_PREAUTH;
	assert_int_equal(dec(&cases[0], build(&cases[0]), &lim, &r), 0);
	assert_int_equal(dec(&cases[6], build(&cases[6]), &lim, &r),
	    -EMSGSIZE);
}

/* Batch counts: 0, over the maximum, one more and one less than the body
 * holds. */
static void
test_counts(void **state)
{
	struct proto_rec r;

	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		uint32_t		 len, count;
		uint8_t			*p;

		if (c->count_off < 0)
			continue;
		len = build(c);
		p = buf + 8 + c->count_off;
		count = le32(p);
		print_message("counts %s\n", c->name);
		set32(p, 0);
		assert_int_equal(dec(c, len, &lim_full, &r), -EBADMSG);
		set32(p, c->count_max + 1);
		assert_int_equal(dec(c, len, &lim_full, &r), -EMSGSIZE);
		set32(p, UINT32_MAX);
		assert_int_equal(dec(c, len, &lim_full, &r), -EMSGSIZE);
		set32(p, 0x80000001u);
		assert_int_equal(dec(c, len, &lim_full, &r), -EMSGSIZE);
		/* HAVE: 5 and 6 bits take the same byte; 13 take two. */
		set32(p, count + (c->type == REC_HAVE ? 8 : 1));
		assert_int_equal(dec(c, len, &lim_full, &r), -EBADMSG);
		if (c->type != REC_HAVE) {
			set32(p, count - 1);
			assert_int_equal(dec(c, len, &lim_full, &r), -EBADMSG);
		}
		set32(p, count);
		assert_int_equal(dec(c, len, &lim_full, &r), 0);
	}
}

/* Full batches decode; a full batch at the maximum plus one entry is
 * refused by the encoders. */
static void
test_full_batches(void **state)
{
	static uint64_t		pfns[PROTO_PFN_BATCH_MAX + 1];
	static uint8_t		digests[PROTO_PFN_BATCH_MAX + 1][32];
	static uint8_t		has[PROTO_PFN_BATCH_MAX + 1];
	static uint64_t		bitmap[PROTO_OFFER_SPAN_MAX / 64];
	static uint64_t		opfns[PROTO_PFN_BATCH_MAX];
	static uint8_t		prefixes[PROTO_PFN_BATCH_MAX + 1][8];
	struct proto_rec	r;
	uint32_t		type, len;
	size_t			total;
	int			n;

	for (uint32_t i = 0; i <= PROTO_PFN_BATCH_MAX; i++) {
		pfns[i] = NPAGES - 1 - i;
		has[i] = i & 1;
		digests[i][0] = (uint8_t)i;
		prefixes[i][0] = (uint8_t)i;
		prefixes[i][7] = (uint8_t)(i >> 8);
	}
	/* OFFER: the widest window, every 16th pfn, ending at the last
	 * page. */
	memset(bitmap, 0, sizeof(bitmap));
	for (uint32_t i = 0; i < PROTO_OFFER_SPAN_MAX; i += 16)
		bitmap[i / 64] |= 1ull << (i % 64 + 15);
	n = proto_enc_offer(buf, BUFSZ, 1, NPAGES - PROTO_OFFER_SPAN_MAX,
	    PROTO_OFFER_SPAN_MAX, bitmap, PROTO_PFN_BATCH_MAX,
	    (const uint8_t (*)[8])prefixes);
	assert_int_equal(n, 8 + 24 + PROTO_OFFER_SPAN_MAX / 8 +
	    PROTO_PFN_BATCH_MAX * 8);
	assert_int_equal(proto_frame_peek(buf, n, PROTO_REC_MAX, &type, &len,
	    &total), 0);
	assert_int_equal(proto_decode(type, buf + 8, len, &lim_full, &r), 0);
	proto_offer_pfns(&r.u.offer, opfns);
	for (uint32_t i = 0; i < PROTO_PFN_BATCH_MAX; i++)
		assert_true(opfns[i] == NPAGES - PROTO_OFFER_SPAN_MAX +
		    16 * i + 15);
	assert_true(opfns[PROTO_PFN_BATCH_MAX - 1] == NPAGES - 1);
	assert_int_equal(proto_offer_prefix_at(&r.u.offer,
	    PROTO_PFN_BATCH_MAX - 1)[0], (uint8_t)(PROTO_PFN_BATCH_MAX - 1));
	/* One more set bit: count and popcount disagree. */
	bitmap[0] |= 1;
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0,
	    PROTO_OFFER_SPAN_MAX, bitmap, PROTO_PFN_BATCH_MAX,
	    (const uint8_t (*)[8])prefixes), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0,
	    PROTO_OFFER_SPAN_MAX, bitmap, PROTO_PFN_BATCH_MAX + 1,
	    (const uint8_t (*)[8])prefixes), -EINVAL);
	/* A dense word: all 64 bits of a one-word window. */
	bitmap[0] = UINT64_MAX;
	n = proto_enc_offer(buf, BUFSZ, 2, 64, 64, bitmap, 64,
	    (const uint8_t (*)[8])prefixes);
	assert_int_equal(n, 8 + 24 + 8 + 64 * 8);
	assert_int_equal(proto_decode(REC_OFFER, buf + 8, n - 8, &lim_full,
	    &r), 0);
	proto_offer_pfns(&r.u.offer, opfns);
	for (uint32_t i = 0; i < 64; i++)
		assert_true(opfns[i] == 64 + i);

	n = proto_enc_have(buf, BUFSZ, 1, PROTO_PFN_BATCH_MAX, has,
	    fx_confirm);
	assert_int_equal(n, 8 + 40 + PROTO_PFN_BATCH_MAX / 8);
	assert_int_equal(proto_decode(REC_HAVE, buf + 8, n - 8, &lim_full, &r),
	    0);
	assert_int_equal(proto_have_bit(&r.u.have, PROTO_PFN_BATCH_MAX - 1),
	    1);

	n = proto_enc_page_ref(buf, BUFSZ, PROTO_PFN_BATCH_MAX, pfns, pfns,
	    (const uint8_t (*)[32])digests);
	assert_true(n > 0);
	assert_int_equal(proto_decode(REC_PAGE_REF, buf + 8, n - 8, &lim_full,
	    &r), 0);

	n = proto_enc_pfn_list(buf, BUFSZ, REC_NEED, PROTO_PFN_BATCH_MAX,
	    pfns);
	assert_true(n > 0);
	assert_int_equal(proto_decode(REC_NEED, buf + 8, n - 8, &lim_full, &r),
	    0);

	/* PAGE_DATA: 256 pages, 1 MiB + 2 KiB + 8. */
	n = proto_enc_page_data_head(buf, BUFSZ, PROTO_PAGE_BATCH_MAX, pfns);
	assert_int_equal(n, 8 + 8 + 8 * PROTO_PAGE_BATCH_MAX);
	memset(buf + n, 0x11, PROTO_PAGE_BATCH_MAX * PROTO_PAGE_SIZE);
	assert_int_equal(proto_frame_peek(buf, BUFSZ, PROTO_REC_MAX, &type,
	    &len, &total), 0);
	assert_int_equal(len, 8 + PROTO_PAGE_BATCH_MAX * (8 + 4096));
	assert_int_equal(total, 8 + len);
	assert_int_equal(proto_decode(type, buf + 8, len, &lim_full, &r), 0);
	assert_int_equal(r.u.page_data.data[0], 0x11);

	/* CONTEXT at its maximum. */
	memset(buf2, 0x22, PROTO_CONTEXT_MAX);
	n = proto_enc_context(buf, BUFSZ, buf2, PROTO_CONTEXT_MAX);
	assert_int_equal(n, 16 + PROTO_CONTEXT_MAX);
	assert_int_equal(proto_decode(REC_CONTEXT, buf + 8, n - 8, &lim_full,
	    &r), 0);
	assert_int_equal(proto_enc_context(buf, BUFSZ, buf2,
	    PROTO_CONTEXT_MAX + 1), -EINVAL);

	/* Encoders refuse counts 0 and max + 1. */
	memset(bitmap, 0, sizeof(bitmap));
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 64, bitmap, 0,
	    (const uint8_t (*)[8])prefixes), -EINVAL);
	assert_int_equal(proto_enc_have(buf, BUFSZ, 1, 0, has, fx_confirm),
	    -EINVAL);
	assert_int_equal(proto_enc_have(buf, BUFSZ, 1,
	    PROTO_PFN_BATCH_MAX + 1, has, fx_confirm), -EINVAL);
	assert_int_equal(proto_enc_page_ref(buf, BUFSZ,
	    PROTO_PFN_BATCH_MAX + 1, pfns, pfns,
	    (const uint8_t (*)[32])digests), -EINVAL);
	assert_int_equal(proto_enc_pfn_list(buf, BUFSZ, REC_PAGE_ZERO, 0,
	    pfns), -EINVAL);
	assert_int_equal(proto_enc_pfn_list(buf, BUFSZ, REC_PAGE_ZERO,
	    PROTO_PFN_BATCH_MAX + 1, pfns), -EINVAL);
	assert_int_equal(proto_enc_page_data_head(buf, BUFSZ, 0, pfns),
	    -EINVAL);
	assert_int_equal(proto_enc_page_data_head(buf, BUFSZ,
	    PROTO_PAGE_BATCH_MAX + 1, pfns), -EINVAL);
	/* pfn_list only for PAGE_ZERO and NEED. */
	assert_int_equal(proto_enc_pfn_list(buf, BUFSZ, REC_PAGE_DATA, 1,
	    pfns), -EINVAL);
	/* HAVE flags must be 0 or 1. */
	has[3] = 2;
	assert_int_equal(proto_enc_have(buf, BUFSZ, 1, 8, has, fx_confirm),
	    -EINVAL);
	has[3] = 1;
	assert_int_equal(proto_enc_have(buf, BUFSZ, 1, 8, has, NULL), -EINVAL);
	assert_int_equal(proto_enc_have(buf, BUFSZ, 1, 8, NULL, fx_confirm),
	    -EINVAL);
}

/* Put a 3-word fixture bitmap into the OFFER body at b. */
static void
offer_set_bitmap(uint8_t *b, uint64_t w0, uint64_t w1, uint64_t w2)
{
	set64(b + 24, w0);
	set64(b + 32, w1);
	set64(b + 40, w2);
}

/* OFFER: span, bitmap population, window and pfn range. */
static void
test_offer(void **state)
{
	struct proto_rec	r;
	struct proto_limits	lim = lim_full;
	uint64_t		bm[4], pfns[FX_N];
	uint32_t		len = build(&cases[4]);
	uint8_t			*b = buf + 8;
	const uint8_t		(*pre)[8] = (const uint8_t (*)[8])fx_prefixes;
	const uint64_t		w0 = fx_of_bitmap[0], w2 = fx_of_bitmap[2];

	assert_int_equal(cases[4].type, REC_OFFER);
	assert_int_equal(len, 24 + 24 + 40);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), 0);

	/* span: not a multiple of 64, 0, over the maximum; a valid span
	 * that disagrees with the body length. */
	static const struct {
		uint32_t	span;
		int		ret;
	} spans[] = {
		{ 191, -EBADMSG }, { 193, -EBADMSG }, { 1, -EBADMSG },
		{ 0, -EBADMSG }, { 128, -EBADMSG }, { 256, -EBADMSG },
		{ PROTO_OFFER_SPAN_MAX + 64, -EMSGSIZE },
		{ 0xffffffc0u, -EMSGSIZE }, { UINT32_MAX, -EBADMSG },
		{ FX_OF_SPAN, 0 },
	};
	for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++) {
		set32(b + 16, spans[i].span);
		assert_int_equal(dec(&cases[4], len, &lim_full, &r),
		    spans[i].ret);
	}

	/* Popcount above and below count; a moved bit is fine. */
	offer_set_bitmap(b, w0, 1ull << 5, w2);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, w0 & ~1ull, 0, w2);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, 0, 0, w2);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, UINT64_MAX, UINT64_MAX, UINT64_MAX);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, w0 & ~1ull, 1ull << 5, w2);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), 0);
	proto_offer_pfns(&r.u.offer, pfns);
	assert_true(pfns[0] == 3906 && pfns[1] == 3967 && pfns[2] == 3973);
	offer_set_bitmap(b, w0, 0, w2);

	/* Set bits at pfn >= pages; the window may reach past pages as
	 * long as no set bit does. */
	set64(b + 8, NPAGES - 192);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), 0);
	set64(b + 8, NPAGES - 191);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, w0, 1, 1ull << 8);		/* last: offset 136 */
	set64(b + 8, NPAGES - 137);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), 0);
	set64(b + 8, NPAGES - 136);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, w0, 0, w2);

	/* base_pfn + span must not wrap. */
	lim.pages = UINT64_MAX;
	set64(b + 8, UINT64_MAX - 192);
	assert_int_equal(dec(&cases[4], len, &lim, &r), 0);
	proto_offer_pfns(&r.u.offer, pfns);
	assert_true(pfns[4] == UINT64_MAX - 1);
	set64(b + 8, UINT64_MAX - 191);
	assert_int_equal(dec(&cases[4], len, &lim, &r), -EBADMSG);
	set64(b + 8, UINT64_MAX);
	assert_int_equal(dec(&cases[4], len, &lim, &r), -EBADMSG);
	set64(b + 8, UINT64_MAX - 63);
	offer_set_bitmap(b, 0, 0, 0);
	assert_int_equal(dec(&cases[4], len, &lim, &r), -EBADMSG);
	set64(b + 8, FX_OF_BASE);
	offer_set_bitmap(b, w0, 0, w2);

	/* Reserved is ignored. */
	set32(b + 20, UINT32_MAX);
	assert_int_equal(dec(&cases[4], len, &lim_full, &r), 0);

	/* Truncated: a prefix short, a byte short; trailing: one prefix
	 * or one byte more. */
	assert_int_equal(dec(&cases[4], len - 8, &lim_full, &r), -EBADMSG);
	assert_int_equal(dec(&cases[4], len - 1, &lim_full, &r), -EBADMSG);
	memset(b + len, 0, 8);
	assert_int_equal(dec(&cases[4], len + 8, &lim_full, &r), -EBADMSG);
	assert_int_equal(dec(&cases[4], len + 1, &lim_full, &r), -EBADMSG);
	/* count and body agree (count 6, one more prefix) but the bitmap
	 * has 5 bits. */
	set32(b + 4, FX_N + 1);
	assert_int_equal(dec(&cases[4], len + 8, &lim_full, &r), -EBADMSG);
	offer_set_bitmap(b, w0, 1ull << 40, w2);
	assert_int_equal(dec(&cases[4], len + 8, &lim_full, &r), 0);
	assert_int_equal(r.u.offer.count, FX_N + 1);

	/* Encoder arguments. */
	memcpy(bm, fx_of_bitmap, sizeof(fx_of_bitmap));
	bm[3] = 0;
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 192, bm, FX_N, pre),
	    8 + 88);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 256, bm, FX_N, pre),
	    8 + 96);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 0, bm, FX_N, pre),
	    -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 191, bm, FX_N, pre),
	    -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 200, bm, FX_N, pre),
	    -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0,
	    PROTO_OFFER_SPAN_MAX + 64, bm, FX_N, pre), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 128, bm, FX_N, pre),
	    -EINVAL);			/* word 2 left out: popcount 3 */
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 192, bm, FX_N - 1,
	    pre), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 192, bm, FX_N + 1,
	    pre), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, UINT64_MAX - 191, 192,
	    bm, FX_N, pre), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, UINT64_MAX - 192, 192,
	    bm, FX_N, pre), 8 + 88);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 192, NULL, FX_N,
	    pre), -EINVAL);
	assert_int_equal(proto_enc_offer(buf, BUFSZ, 1, 0, 192, bm, FX_N,
	    NULL), -EINVAL);
}

/* HAVE: confirm carried through, length tied to count. */
static void
test_have(void **state)
{
	static const uint8_t	zero[32];
	static uint8_t		has[17];
	struct proto_rec	r;
	uint32_t		len = build(&cases[5]);
	uint8_t			*b = buf + 8;
	int			n;

	assert_int_equal(cases[5].type, REC_HAVE);
	assert_int_equal(len, 40 + 1);
	assert_int_equal(dec(&cases[5], len, &lim_full, &r), 0);
	assert_true(r.u.have.confirm == b + 8);
	assert_true(r.u.have.bits == b + 40);
	/* Length: one byte short or long; a 41-byte body for 9 entries. */
	assert_int_equal(dec(&cases[5], len - 1, &lim_full, &r), -EBADMSG);
	b[len] = 0;
	assert_int_equal(dec(&cases[5], len + 1, &lim_full, &r), -EBADMSG);
	set32(b + 4, 9);
	assert_int_equal(dec(&cases[5], len, &lim_full, &r), -EBADMSG);
	assert_int_equal(dec(&cases[5], len + 1, &lim_full, &r), 0);
	set32(b + 4, 8);
	assert_int_equal(dec(&cases[5], len, &lim_full, &r), 0);
	assert_int_equal(proto_have_bit(&r.u.have, 7), 0);
	/* Any confirm value decodes (it is checked by the source). */
	memset(b + 8, 0xff, 32);
	assert_int_equal(dec(&cases[5], len, &lim_full, &r), 0);

	/* 17 entries: 3 bytes, bit 16 in the last one; none filled with
	 * an all-zero confirm. */
	has[16] = 1;
	n = proto_enc_have(buf, BUFSZ, 3, 17, has, zero);
	assert_int_equal(n, 8 + 48);
	assert_int_equal(le32(buf + 4), 43);
	assert_int_equal(b[42], 1);
	assert_int_equal(proto_decode(REC_HAVE, b, 43, &lim_full, &r), 0);
	assert_int_equal(proto_have_bit(&r.u.have, 16), 1);
	assert_int_equal(proto_have_bit(&r.u.have, 15), 0);
	assert_memory_equal(r.u.have.confirm, zero, 32);
	b[42] = 3;
	assert_int_equal(proto_decode(REC_HAVE, b, 43, &lim_full, &r),
	    -EBADMSG);
	b[42] = 0x80;
	assert_int_equal(proto_decode(REC_HAVE, b, 43, &lim_full, &r),
	    -EBADMSG);
}

/* pfn >= lim->pages, and any pfn at all while pages is 0. */
static void
test_pfn_range(void **state)
{
	struct proto_rec	r;
	struct proto_limits	lim = lim_full;
	static const uint32_t	types[] = { REC_OFFER, REC_PAGE_DATA,
	    REC_PAGE_ZERO, REC_PAGE_REF, REC_NEED };

	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];
		uint32_t		 len = build(c);
		int			 pfnrec = 0;

		for (size_t j = 0; j < sizeof(types) / sizeof(types[0]); j++)
			pfnrec |= types[j] == c->type;
		lim.pages = 0;
		assert_int_equal(dec(c, len, &lim, &r), pfnrec ? -EBADMSG : 0);
		if (!pfnrec)
			continue;
		/* The largest fixture pfn is 4095 in every one. */
		lim.pages = 4095;
		assert_int_equal(dec(c, len, &lim, &r), -EBADMSG);
		lim.pages = 4096;
		assert_int_equal(dec(c, len, &lim, &r), 0);
	}

	/* PAGE_REF: hint out of range; PFN_NONE is fine. */
	const struct rec_case *c = &cases[8];
	uint32_t len = build(c);
	uint8_t *e1 = buf + 8 + 8 + 48;		/* entry 1 */

	assert_int_equal(c->type, REC_PAGE_REF);
	set64(e1 + 8, NPAGES);
	assert_int_equal(dec(c, len, &lim_full, &r), -EBADMSG);
	set64(e1 + 8, NPAGES - 1);
	assert_int_equal(dec(c, len, &lim_full, &r), 0);
	set64(e1 + 8, PROTO_PFN_NONE);
	assert_int_equal(dec(c, len, &lim_full, &r), 0);
	set64(e1 + 8, PROTO_PFN_NONE - 1);
	assert_int_equal(dec(c, len, &lim_full, &r), -EBADMSG);
	/* A pfn is never PFN_NONE. */
	set64(e1 + 8, 0);
	set64(e1, PROTO_PFN_NONE);
	lim.pages = UINT64_MAX;
	assert_int_equal(dec(c, len, &lim, &r), -EBADMSG);
}

static void
test_hello(void **state)
{
	struct proto_rec	r;
	struct proto_hello	h = fx_hello;
	uint32_t		len = build(&cases[0]);
	uint8_t			*b = buf + 8;

	/* version_min > version_max. */
	set32(b + 0, 4);
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), -EBADMSG);
	set32(b + 0, 3);
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), 0);
	/* Non-printable host name byte; garbage after the NUL. */
	b[32 + 3] = 0x07;
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), -EBADMSG);
	b[32 + 3] = 't';
	b[95] = 'x';
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), -EBADMSG);
	/* A full 64-byte name without NUL. */
	memset(b + 32, 'n', 64);
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), 0);
	assert_int_equal(strlen(r.u.hello.host_name), 64);
	/* Empty name. */
	memset(b + 32, 0, 64);
	assert_int_equal(dec(&cases[0], len, &lim_full, &r), 0);
	assert_string_equal(r.u.hello.host_name, "");

	h.version_min = 5;
	assert_int_equal(proto_enc_hello(buf, BUFSZ, &h), -EINVAL);
	h = fx_hello;
	h.host_name[2] = '\n';
	assert_int_equal(proto_enc_hello(buf, BUFSZ, &h), -EINVAL);
	memset(h.host_name, 'z', sizeof(h.host_name));	/* no NUL */
	assert_int_equal(proto_enc_hello(buf, BUFSZ, &h), -EINVAL);
	h.host_name[64] = '\0';
	assert_int_equal(proto_enc_hello(buf, BUFSZ, &h), 104);
}

static void
test_error(void **state)
{
	struct proto_rec	r;
	char			big[PROTO_ERRMSG_MAX + 2];
	uint32_t		len;
	uint8_t			*b = buf + 8;
	int			n;

	memset(big, 'e', sizeof(big));
	big[PROTO_ERRMSG_MAX] = '\0';
	n = proto_enc_error(buf, BUFSZ, ENOSPC, big);
	assert_int_equal(n, 8 + 8 + PROTO_ERRMSG_MAX);
	assert_int_equal(proto_decode(REC_ERROR, b, n - 8, &lim_full, &r), 0);
	assert_int_equal(strlen(r.u.error.msg), PROTO_ERRMSG_MAX);
	big[PROTO_ERRMSG_MAX] = 'e';
	big[PROTO_ERRMSG_MAX + 1] = '\0';
	assert_int_equal(proto_enc_error(buf, BUFSZ, ENOSPC, big), -EINVAL);
	assert_int_equal(proto_enc_error(buf, BUFSZ, ENOSPC, "tab\there"),
	    -EINVAL);
	assert_int_equal(proto_enc_error(buf, BUFSZ, 0, "x"), -EINVAL);
	assert_int_equal(proto_enc_error(buf, BUFSZ, ENOSPC, NULL), -EINVAL);
	n = proto_enc_error(buf, BUFSZ, ENOSPC, "");
	assert_int_equal(n, 16);
	assert_int_equal(proto_decode(REC_ERROR, b, 8, &lim_full, &r), 0);
	assert_string_equal(r.u.error.msg, "");

	/* Decoder: over-long, non-printable, zero code. */
	memset(buf, 0, 8 + 8 + PROTO_ERRMSG_MAX + 8);
	set32(b, EIO);
	set32(b + 4, PROTO_ERRMSG_MAX + 1);
	memset(b + 8, 'a', PROTO_ERRMSG_MAX + 1);
	assert_int_equal(proto_decode(REC_ERROR, b, 8 + PROTO_ERRMSG_MAX + 1,
	    &lim_full, &r), -EMSGSIZE);
	len = build(&cases[1]);
	b[8 + 4] = 0x7f;
	assert_int_equal(dec(&cases[1], len, &lim_full, &r), -EBADMSG);
	b[8 + 4] = 0;
	assert_int_equal(dec(&cases[1], len, &lim_full, &r), -EBADMSG);
	b[8 + 4] = 0xc3;
	assert_int_equal(dec(&cases[1], len, &lim_full, &r), -EBADMSG);
	b[8 + 4] = ' ';
	assert_int_equal(dec(&cases[1], len, &lim_full, &r), 0);
	set32(b, 0);
	assert_int_equal(dec(&cases[1], len, &lim_full, &r), -EBADMSG);
}

static const struct {
	const char	*name;
	int		 ok;
} names[] = {
	{ "a", 1 },
	{ "guest-01.web_A", 1 },
	{ "...", 1 },
	{ "0123456789012345678901234567890123456789012345678901234567890ab", 1 },
	{ "0123456789012345678901234567890123456789012345678901234567890abc", 0 },
	{ "", 0 },
	{ "has space", 0 },
	{ "slash/", 0 },
	{ "semi;colon", 0 },
	{ "tab\t", 0 },
	{ "nl\n", 0 },
	{ "\x7f", 0 },
	{ "caf\xc3\xa9", 0 },
	{ "plus+", 0 },
	{ "star*", 0 },
	{ "dollar$", 0 },
};

static void
test_domain_info(void **state)
{
	struct proto_rec		r;
	struct proto_domain_info	di;
	uint32_t			len;
	uint8_t				*b = buf + 8;
	int				n;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t nl = strlen(names[i].name);

		/* Encoder: names longer than the buffer cannot be tried. */
		if (nl <= PROTO_NAME_MAX) {
			di = fx_di();
			memcpy(di.name, names[i].name, nl + 1);
			n = proto_enc_domain_info(buf, BUFSZ, &di);
			if (names[i].ok)
				assert_true(n > 0);
			else
				assert_int_equal(n, -EINVAL);
		}
		/* Decoder: a hand-built body. */
		memset(buf, 0, 512);
		set64(b + 0, 1000);
		set32(b + 8, 1);
		set32(b + 20, (uint32_t)nl);
		memcpy(b + 48, names[i].name, nl);
		n = proto_decode(REC_DOMAIN_INFO, b, 48 + nl, &lim_full, &r);
		if (names[i].ok) {
			assert_int_equal(n, 0);
			assert_string_equal(r.u.domain_info.name,
			    names[i].name);
			assert_null(r.u.domain_info.config);
		} else {
			assert_true(n == -EBADMSG || n == -EMSGSIZE);
		}
	}

	len = build(&cases[2]);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), 0);
	/* pages 0, over 2^40; vcpus 0; unknown flag; dedup 3. */
	struct {
		size_t off, width;
		uint64_t bad, good;
	} muts[] = {
		{ 0, 8, 0, NPAGES },
		{ 0, 8, (1ull << 40) + 1, NPAGES },
		{ 8, 4, 0, 4 },
		{ 12, 4, 8, 3 },		/* unknown flag bit */
		{ 12, 4, 0x80000000u, 3 },
		{ 16, 4, 3, 2 },
		{ 20, 4, 0, 14 },		/* name_len 0 */
		{ 20, 4, 13, 14 },		/* name/config split moved */
		{ 24, 4, 101, 100 },
	};
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		if (muts[i].width == 8)
			set64(b + muts[i].off, muts[i].bad);
		else
			set32(b + muts[i].off, (uint32_t)muts[i].bad);
		assert_int_equal(dec(&cases[2], len, &lim_full, &r), -EBADMSG);
		if (muts[i].width == 8)
			set64(b + muts[i].off, muts[i].good);
		else
			set32(b + muts[i].off, (uint32_t)muts[i].good);
		assert_int_equal(dec(&cases[2], len, &lim_full, &r), 0);
	}
	/* 2^40 pages is the maximum. */
	set64(b, 1ull << 40);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), 0);
	/* Reserved is ignored. */
	set32(b + 28, 0xffffffff);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), 0);
	/* name_len over 63, config over its maximum. */
	set32(b + 20, 64);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), -EMSGSIZE);
	set32(b + 20, 14);
	set32(b + 24, PROTO_CONFIG_MAX + 1);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), -EMSGSIZE);
	set32(b + 24, UINT32_MAX);
	assert_int_equal(dec(&cases[2], len, &lim_full, &r), -EMSGSIZE);

	/* Encoder argument checks. */
	di = fx_di();
	di.config_len = PROTO_CONFIG_MAX + 1;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
	di = fx_di();
	di.config = NULL;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
	di.config_len = 0;
	assert_true(proto_enc_domain_info(buf, BUFSZ, &di) > 0);
	di.dedup = 3;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
	di = fx_di();
	di.vcpus = 0;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
	di = fx_di();
	di.flags = 0x10;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
}

static void
test_misc_fields(void **state)
{
	struct proto_rec	r;
	struct proto_end	e = fx_end();
	uint32_t		len;
	uint8_t			*b = buf + 8;

	/* PAGE_DATA flags must be 0. */
	len = build(&cases[6]);
	for (uint32_t bit = 0; bit < 32; bit++) {
		set32(b + 4, 1u << bit);
		assert_int_equal(dec(&cases[6], len, &lim_full, &r), -EBADMSG);
	}
	set32(b + 4, 0);
	assert_int_equal(dec(&cases[6], len, &lim_full, &r), 0);

	/* HAVE: unused high bits of the last byte must be 0. */
	len = build(&cases[5]);
	assert_int_equal(b[40], 0x0d);		/* 1,0,1,1,0 LSB first */
	for (int bit = 5; bit < 8; bit++) {
		b[40] = (uint8_t)(0x0d | 1 << bit);
		assert_int_equal(dec(&cases[5], len, &lim_full, &r), -EBADMSG);
	}
	b[40] = 0x1f;
	assert_int_equal(dec(&cases[5], len, &lim_full, &r), 0);
	assert_int_equal(proto_have_bit(&r.u.have, 4), 1);

	/* END/READY: unknown flags. */
	len = build(&cases[12]);
	set32(b, 4);
	assert_int_equal(dec(&cases[12], len, &lim_full, &r), -EBADMSG);
	e.flags = 4;
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_END, &e), -EINVAL);
	e.flags = 0;
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_GO, &e), -EINVAL);

	/* CONTEXT: len beyond its maximum, len != body - 8. */
	len = build(&cases[11]);
	set32(b, PROTO_CONTEXT_MAX + 1);
	assert_int_equal(dec(&cases[11], len, &lim_full, &r), -EMSGSIZE);
	set32(b, len - 8 - 1);
	assert_int_equal(dec(&cases[11], len, &lim_full, &r), -EBADMSG);
	assert_int_equal(proto_enc_context(buf, BUFSZ, NULL, 0), 16);
	assert_int_equal(proto_decode(REC_CONTEXT, b, 8, &lim_full, &r), 0);
	assert_int_equal(r.u.context.len, 0);
	assert_int_equal(proto_enc_context(buf, BUFSZ, NULL, 1), -EINVAL);

	/* Reserved fields are ignored. */
	len = build(&cases[14]);		/* GO */
	memset(b, 0xff, 8);
	assert_int_equal(dec(&cases[14], len, &lim_full, &r), 0);
	len = build(&cases[15]);		/* RUNNING */
	memset(b + 24, 0xff, 8);
	assert_int_equal(dec(&cases[15], len, &lim_full, &r), 0);
	len = build(&cases[9]);			/* ITER_END */
	memset(b + 4, 0xff, 4);
	assert_int_equal(dec(&cases[9], len, &lim_full, &r), 0);
	len = build(&cases[7]);			/* PAGE_ZERO */
	memset(b + 4, 0xff, 4);
	assert_int_equal(dec(&cases[7], len, &lim_full, &r), 0);
	/* DOMAIN_ACK's second field was reserved; now it counts streams:
	 * 0 (what older destinations send) and 1 mean one. */
	len = build(&cases[3]);			/* DOMAIN_ACK */
	set32(b + 4, 1);
	assert_int_equal(dec(&cases[3], len, &lim_full, &r), 0);
	assert_int_equal(r.u.domain_ack.streams, 1);
	memset(b + 4, 0xff, 4);
	assert_int_equal(dec(&cases[3], len, &lim_full, &r), -EBADMSG);
}

static void
test_unknown_types(void **state)
{
	static const struct {
		uint32_t	type;
		int		ret;
	} t[] = {
		{ 0, -ENOTSUP },
		{ 19, -ENOTSUP },
		{ 0x7fffffff, -ENOTSUP },
		{ PROTO_OPTIONAL, -ENOENT },
		{ PROTO_OPTIONAL | 2, -ENOENT },
		{ PROTO_OPTIONAL | 0x7fff, -ENOENT },
		{ 0xffffffff, -ENOENT },
	};
	struct proto_rec	r;
	uint8_t			body[8] = { 0 };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(proto_decode(t[i].type, body, 8, &lim_full,
		    &r), t[i].ret);
		assert_int_equal(proto_decode(t[i].type, NULL, 0, &lim_full,
		    &r), t[i].ret);
		assert_string_equal(proto_type_name(t[i].type), "UNKNOWN");
		assert_int_equal(proto_legal(t[i].type, PROTO_S2D, PH_LIVE), 0);
	}
	/* Size limits come first, even for unknown types. */
	assert_int_equal(proto_decode(99, buf, PROTO_REC_MAX + 1, &lim_full,
	    &r), -EMSGSIZE);
	/* Bad arguments. */
	assert_int_equal(proto_decode(REC_GO, NULL, 8, &lim_full, &r),
	    -EINVAL);
	assert_int_equal(proto_decode(REC_GO, body, 8, NULL, &r), -EINVAL);
}

/* *out is written only on success. */
static void
test_out_untouched(void **state)
{
	struct proto_rec r, ref;

	for (size_t i = 0; i < NCASES; i++) {
		uint32_t len = build(&cases[i]);

		memset(&r, 0xa5, sizeof(r));
		memcpy(&ref, &r, sizeof(r));
		if (len > 0)
			assert_int_not_equal(dec(&cases[i], len - 1,
			    &lim_full, &r), 0);
		assert_int_not_equal(dec(&cases[i], len + 8, &lim_full, &r), 0);
		assert_memory_equal(&r, &ref, sizeof(r));
	}
}

/* ---- golden bytes: the layouts of docs/PROTOCOL.md ---- */

static void
test_golden(void **state)
{
	uint8_t *b = buf + 8;

	build(&cases[0]);			/* HELLO */
	assert_int_equal(le32(buf), 1);
	assert_int_equal(le32(buf + 4), 96);
	assert_int_equal(le32(b), 1);
	assert_int_equal(le32(b + 4), 3);
	assert_true(le64(b + 8) == fx_hello.caps);
	assert_memory_equal(b + 16, fx_hello.host_id, 16);
	assert_memory_equal(b + 32, "host-a.example.org\0\0", 20);

	build(&cases[2]);			/* DOMAIN_INFO */
	assert_int_equal(le32(buf + 4), 48 + 14 + 100);
	assert_true(le64(b) == NPAGES);
	assert_int_equal(le32(b + 8), 4);
	assert_int_equal(le32(b + 12), 3);
	assert_int_equal(le32(b + 16), 2);
	assert_int_equal(le32(b + 20), 14);
	assert_int_equal(le32(b + 24), 100);
	assert_int_equal(le32(b + 28), 0);
	assert_int_equal(b[32], 0xde);
	assert_int_equal(b[47], 0xff);
	assert_memory_equal(b + 48, "guest-01.web_a", 14);
	assert_memory_equal(b + 62, fx_config, 100);
	assert_int_equal(proto_rec_size(162), 8 + 168);

	build(&cases[4]);			/* OFFER: 24 + 24 + 5 * 8 */
	assert_int_equal(le32(buf), 5);
	assert_int_equal(le32(buf + 4), 88);
	assert_int_equal(le32(b), 9);
	assert_int_equal(le32(b + 4), 5);
	assert_true(le64(b + 8) == 3904);
	assert_int_equal(le32(b + 16), 192);
	assert_int_equal(le32(b + 20), 0);
	/* Bitmap words little-endian, bit i of word w = base + 64 w + i. */
	assert_int_equal(b[24], 0x05);		/* pfns 3904, 3906 */
	assert_int_equal(b[31], 0x80);		/* pfn 3967 */
	assert_true(le64(b + 32) == 0);
	assert_int_equal(b[40 + 1], 0x01);	/* pfn 4040 = 3904 + 128 + 8 */
	assert_int_equal(b[47], 0x80);		/* pfn 4095 */
	assert_memory_equal(b + 48, fx_digests[0], 8);
	assert_memory_equal(b + 48 + 8 * 3, fx_digests[3], 8);
	assert_memory_equal(b + 48 + 8 * 4, fx_digests[4], 8);

	build(&cases[5]);			/* HAVE: 40 + 1, pad 7 */
	assert_int_equal(le32(buf + 4), 41);
	assert_int_equal(le32(b), 9);
	assert_int_equal(le32(b + 4), 5);
	assert_memory_equal(b + 8, fx_confirm, 32);
	assert_int_equal(b[40], 0x0d);

	build(&cases[6]);			/* PAGE_DATA */
	assert_int_equal(le32(buf + 4), 8 + 2 * 4104);
	assert_int_equal(le32(b), 2);
	assert_int_equal(le32(b + 4), 0);
	assert_true(le64(b + 8) == 7);
	assert_true(le64(b + 16) == 4095);
	assert_memory_equal(b + 24, fx_pages, sizeof(fx_pages));

	build(&cases[8]);			/* PAGE_REF */
	assert_int_equal(le32(b), 5);
	assert_int_equal(le32(b + 4), 0);
	assert_true(le64(b + 8 + 48 * 2) == 7);
	assert_true(le64(b + 8 + 48 * 2 + 8) == 6);
	assert_memory_equal(b + 8 + 48 * 2 + 16, fx_digests[2], 32);

	build(&cases[9]);			/* ITER_END */
	assert_int_equal(le32(buf + 4), 24);
	assert_true(le64(b + 8) == fx_ie.pages_sent);
	assert_true(le64(b + 16) == 42);

	build(&cases[11]);			/* CONTEXT: 8 + 77, pad 3 */
	assert_int_equal(le32(buf + 4), 85);
	assert_int_equal(le32(b), 77);

	build(&cases[12]);			/* END */
	assert_int_equal(le32(buf + 4), 40);
	assert_int_equal(le32(b), 1);
	assert_int_equal(b[8], 0xf0);

	build(&cases[15]);			/* RUNNING */
	assert_int_equal(le32(buf + 4), 32);
	assert_true(le64(b + 8) == 99);
	assert_true(le64(b + 24) == 0);

	build(&cases[16]);			/* KEEPALIVE */
	assert_int_equal(le32(buf), 0x80000001u);
	assert_int_equal(le32(buf + 4), 0);

	build(&cases[14]);			/* GO */
	assert_int_equal(le32(buf + 4), 8);
	assert_true(le64(b) == 0);
}

/* ---- legality ---- */

#define S	PROTO_S2D
#define D	PROTO_D2S

static const struct {
	uint32_t	type;
	enum proto_dir	dir;
	int		phase;
	int		legal;
} legal_cases[] = {
	{ REC_HELLO, S, PH_HELLO, 1 },
	{ REC_HELLO, D, PH_HELLO, 1 },
	{ REC_HELLO, S, PH_INFO, 0 },
	{ REC_HELLO, D, PH_LIVE, 0 },
	{ REC_ERROR, S, PH_HELLO, 1 },
	{ REC_ERROR, D, PH_HANDOVER, 1 },
	{ REC_ERROR, S, PH_READY, 1 },
	{ REC_KEEPALIVE, S, PH_LIVE, 1 },
	{ REC_KEEPALIVE, D, PH_HELLO, 1 },
	{ REC_KEEPALIVE, D, PH_HANDOVER, 1 },
	{ REC_DOMAIN_INFO, S, PH_INFO, 1 },
	{ REC_DOMAIN_INFO, D, PH_INFO, 0 },	/* wrong direction */
	{ REC_DOMAIN_INFO, S, PH_HELLO, 0 },	/* before HELLO */
	{ REC_DOMAIN_INFO, S, PH_LIVE, 0 },
	{ REC_DOMAIN_ACK, D, PH_INFO, 1 },
	{ REC_DOMAIN_ACK, S, PH_INFO, 0 },
	{ REC_DOMAIN_ACK, D, PH_LIVE, 0 },
	{ REC_OFFER, S, PH_LIVE, 1 },
	{ REC_OFFER, D, PH_LIVE, 0 },
	{ REC_OFFER, S, PH_INFO, 0 },
	{ REC_OFFER, S, PH_FINAL, 0 },
	{ REC_HAVE, D, PH_LIVE, 1 },
	{ REC_HAVE, S, PH_LIVE, 0 },
	{ REC_HAVE, D, PH_FINAL, 0 },
	{ REC_PAGE_DATA, S, PH_LIVE, 1 },
	{ REC_PAGE_DATA, S, PH_FINAL, 1 },
	{ REC_PAGE_DATA, D, PH_LIVE, 0 },
	{ REC_PAGE_DATA, S, PH_INFO, 0 },
	{ REC_PAGE_DATA, S, PH_READY, 0 },
	{ REC_PAGE_ZERO, S, PH_LIVE, 1 },
	{ REC_PAGE_ZERO, S, PH_FINAL, 0 },
	{ REC_PAGE_ZERO, D, PH_LIVE, 0 },
	{ REC_PAGE_REF, S, PH_LIVE, 1 },
	{ REC_PAGE_REF, S, PH_FINAL, 0 },
	{ REC_PAGE_REF, D, PH_LIVE, 0 },
	{ REC_ITER_END, S, PH_LIVE, 1 },
	{ REC_ITER_END, S, PH_FINAL, 0 },
	{ REC_ITER_END, D, PH_LIVE, 0 },
	{ REC_NEED, D, PH_LIVE, 1 },
	{ REC_NEED, D, PH_FINAL, 1 },
	{ REC_NEED, D, PH_READY, 0 },
	{ REC_NEED, S, PH_LIVE, 0 },
	{ REC_CONTEXT, S, PH_LIVE, 1 },
	{ REC_CONTEXT, S, PH_FINAL, 0 },
	{ REC_CONTEXT, D, PH_LIVE, 0 },
	{ REC_END, S, PH_LIVE, 1 },
	{ REC_END, S, PH_FINAL, 0 },		/* END twice */
	{ REC_END, D, PH_LIVE, 0 },
	{ REC_READY, D, PH_FINAL, 1 },
	{ REC_READY, D, PH_LIVE, 0 },
	{ REC_READY, S, PH_FINAL, 0 },
	{ REC_GO, S, PH_READY, 1 },
	{ REC_GO, S, PH_FINAL, 0 },		/* GO before READY */
	{ REC_GO, S, PH_HANDOVER, 0 },
	{ REC_GO, D, PH_READY, 0 },
	{ REC_RUNNING, D, PH_HANDOVER, 1 },
	{ REC_RUNNING, D, PH_READY, 0 },	/* RUNNING before GO */
	{ REC_RUNNING, S, PH_HANDOVER, 0 },
	{ REC_FILTER, D, PH_INFO, 1 },
	{ REC_FILTER, S, PH_INFO, 0 },		/* wrong direction */
	{ REC_FILTER, D, PH_HELLO, 0 },
	{ REC_FILTER, D, PH_LIVE, 0 },		/* after DOMAIN_ACK */
	/* Bad arguments. */
	{ REC_ERROR, 0, PH_LIVE, 0 },
	{ REC_ERROR, 3, PH_LIVE, 0 },
	{ REC_ERROR, S, PH_COUNT, 0 },
	{ REC_ERROR, S, -1, 0 },
	{ 0, S, PH_LIVE, 0 },
	{ 17, S, PH_LIVE, 0 },
	{ PROTO_OPTIONAL | 2, S, PH_LIVE, 0 },
};

static void
test_legal_table(void **state)
{
	for (size_t i = 0; i < sizeof(legal_cases) / sizeof(legal_cases[0]);
	    i++) {
		int got = proto_legal(legal_cases[i].type, legal_cases[i].dir,
		    (enum proto_phase)legal_cases[i].phase);

		if (got != legal_cases[i].legal)
			fail_msg("legal(%s, %d, %d) = %d", proto_type_name(
			    legal_cases[i].type), legal_cases[i].dir,
			    legal_cases[i].phase, got);
	}
}

/* Exhaustive: exactly the (type, dir, phase) triples of the spec table. */
static void
test_legal_exhaustive(void **state)
{
	static const struct {
		uint32_t	type;
		unsigned int	dirs;	/* 1: S2D, 2: D2S */
		unsigned int	phases;
	} spec[] = {
		{ REC_HELLO,	   3, 1u << PH_HELLO },
		{ REC_ERROR,	   3, 0x3f },
		{ REC_DOMAIN_INFO, 1, 1u << PH_INFO },
		{ REC_DOMAIN_ACK,  2, 1u << PH_INFO },
		{ REC_OFFER,	   1, 1u << PH_LIVE },
		{ REC_HAVE,	   2, 1u << PH_LIVE },
		{ REC_PAGE_DATA,   1, 1u << PH_LIVE | 1u << PH_FINAL },
		{ REC_PAGE_ZERO,   1, 1u << PH_LIVE },
		{ REC_PAGE_REF,	   1, 1u << PH_LIVE },
		{ REC_ITER_END,	   1, 1u << PH_LIVE },
		{ REC_NEED,	   2, 1u << PH_LIVE | 1u << PH_FINAL },
		{ REC_CONTEXT,	   1, 1u << PH_LIVE },
		{ REC_END,	   1, 1u << PH_LIVE },
		{ REC_READY,	   2, 1u << PH_FINAL },
		{ REC_GO,	   1, 1u << PH_READY },
		{ REC_RUNNING,	   2, 1u << PH_HANDOVER },
		{ REC_JOIN,	   1, 1u << PH_INFO },
		{ REC_FILTER,	   2, 1u << PH_INFO },
		{ REC_KEEPALIVE,   3, 0x3f },
	};
	unsigned int nlegal = 0;

	for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++)
		for (int d = PROTO_S2D; d <= PROTO_D2S; d++)
			for (int p = 0; p < PH_COUNT; p++) {
				int want = (spec[i].dirs & (1u << (d - 1))) &&
				    (spec[i].phases & (1u << p));

				assert_int_equal(proto_legal(spec[i].type, d,
				    p), want);
				nlegal += want;
			}
	assert_int_equal(nlegal, 2 + 12 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 2 +
	    1 + 1 + 1 + 1 + 1 + 1 + 1 + 12);
}

#undef S
#undef D

/* ---- framing ---- */

static void
test_frame_peek(void **state)
{
	static const struct {
		uint32_t	len;
		size_t		total;
	} sizes[] = {
		{ 0, 8 }, { 1, 16 }, { 7, 16 }, { 8, 16 }, { 9, 24 },
		{ 4095, 4104 }, { PROTO_REC_MAX, 8 + PROTO_REC_MAX },
	};
	uint8_t		h[8];
	uint32_t	type = 0xdead, len = 0xdead;
	size_t		total = 0xdead;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		set32(h, REC_CONTEXT);
		set32(h + 4, sizes[i].len);
		memset(buf, 0, sizes[i].total);
		memcpy(buf, h, 8);
		for (size_t a = 0; a < sizes[i].total; a++)
			assert_int_equal(proto_frame_peek(buf, a,
			    PROTO_REC_MAX, &type, &len, &total), -EAGAIN);
		assert_int_equal(type, 0xdead);
		assert_int_equal(proto_frame_peek(buf, sizes[i].total,
		    PROTO_REC_MAX, &type, &len, &total), 0);
		assert_int_equal(type, REC_CONTEXT);
		assert_int_equal(len, sizes[i].len);
		assert_int_equal(total, sizes[i].total);
		assert_int_equal(proto_frame_peek(buf, sizes[i].total + 5,
		    PROTO_REC_MAX, &type, &len, &total), 0);
		assert_int_equal(total, sizes[i].total);
		type = len = 0xdead;
		total = 0xdead;
	}

	/* -EMSGSIZE needs only the header. */
	set32(h, REC_PAGE_DATA);
	set32(h + 4, PROTO_REC_MAX_PREAUTH + 1);
	for (size_t a = 0; a < 8; a++)
		assert_int_equal(proto_frame_peek(h, a, PROTO_REC_MAX_PREAUTH,
		    &type, &len, &total), -EAGAIN);
	assert_int_equal(proto_frame_peek(h, 8, PROTO_REC_MAX_PREAUTH, &type,
	    &len, &total), -EMSGSIZE);
	assert_int_equal(proto_frame_peek(h, 8, PROTO_REC_MAX, &type, &len,
	    &total), -EAGAIN);
	set32(h + 4, PROTO_REC_MAX + 1);
	assert_int_equal(proto_frame_peek(h, 8, PROTO_REC_MAX, &type, &len,
	    &total), -EMSGSIZE);
	assert_int_equal(proto_frame_peek(h, 8, UINT32_MAX, &type, &len,
	    &total), -EMSGSIZE);
	set32(h + 4, UINT32_MAX);
	assert_int_equal(proto_frame_peek(h, 8, UINT32_MAX, &type, &len,
	    &total), -EMSGSIZE);
	assert_int_equal(type, 0xdead);

	/* A stream of every record type, peeked one after the other. */
	size_t off = 0;
	for (size_t i = 0; i < NCASES; i++) {
		int n = cases[i].enc(buf2 + off, BUFSZ - off);

		assert_true(n > 0);
		off += (size_t)n;
	}
	size_t pos = 0;
	for (size_t i = 0; i < NCASES; i++) {
		struct proto_rec r;

		assert_int_equal(proto_frame_peek(buf2 + pos, off - pos,
		    PROTO_REC_MAX, &type, &len, &total), 0);
		assert_int_equal(type, cases[i].type);
		assert_int_equal(proto_decode(type, buf2 + pos + 8, len,
		    &lim_full, &r), 0);
		pos += total;
	}
	assert_int_equal(pos, off);
}

static void
test_stream_hdr(void **state)
{
	static const uint8_t golden[24] = {
		'S', 'H', 'A', 'R', 'E', 'M', 'I', 'G',
		1, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	static const struct {
		size_t		off;
		uint8_t		val;
		int		ret;
	} muts[] = {
		{ 0, 's', -EPROTO },
		{ 7, 'g', -EPROTO },
		{ 8, 2, -EPROTONOSUPPORT },
		{ 8, 0, -EPROTONOSUPPORT },
		{ 11, 1, -EPROTONOSUPPORT },
		{ 12, 1, -EPROTO },		/* flags */
		{ 15, 0x80, -EPROTO },
		{ 16, 1, -EPROTO },		/* reserved */
		{ 23, 0x80, -EPROTO },
	};
	uint8_t		h[24];
	uint32_t	v = 0xdead;

	memset(h, 0xff, sizeof(h));
	proto_stream_hdr_encode(h);
	assert_memory_equal(h, golden, 24);
	assert_int_equal(proto_stream_hdr_check(h, &v), 0);
	assert_int_equal(v, PROTO_VERSION);
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		memcpy(h, golden, 24);
		h[muts[i].off] = muts[i].val;
		v = 0xdead;
		assert_int_equal(proto_stream_hdr_check(h, &v), muts[i].ret);
		assert_int_equal(v, 0xdead);
	}
}

/* ---- PAGE_DATA in place ---- */

/*
 * PAGE_DATA decoded from its head only (link.c hands the pages over where
 * they lie): -EAGAIN until flags, count and pfns are there, then the
 * values and the verdicts of proto_decode() on the whole body, data NULL
 * unless the whole body is there.
 */
static void
test_page_data_head(void **state)
{
	struct proto_limits	lim = lim_full;
	struct proto_rec	r, whole;
	uint8_t			*b = buf + 8, save[8];
	uint32_t		len;
	size_t			head, avail;

	(void)state;
	assert_true(enc_page_data(buf, BUFSZ) > 0);
	len = le32(buf + 4);
	head = proto_page_data_head_len(b);
	assert_int_equal(head, 8 + 2 * 8);
	for (avail = 0; avail <= len; avail++) {
		memset(&r, 0xa5, sizeof(r));
		if (avail < head) {
			assert_int_equal(proto_decode_page_data_head(b, avail,
			    len, &lim, &r), -EAGAIN);
			continue;
		}
		assert_int_equal(proto_decode_page_data_head(b, avail, len,
		    &lim, &r), 0);
		assert_int_equal(r.type, REC_PAGE_DATA);
		assert_int_equal(r.u.page_data.count, 2);
		assert_int_equal(r.u.page_data.data_len, 2 * PROTO_PAGE_SIZE);
		assert_true(proto_pfn_at(r.u.page_data.pfns, 1) == fx_pfns[3]);
		assert_null(r.u.page_data.seg);
		if (avail < len)
			assert_null(r.u.page_data.data);
		else
			chk_page_data(&r);
	}

	/* The same verdicts as the whole body's. */
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &whole), 0);
	lim.pages = fx_pfns[3];			/* the second pfn is out */
	assert_int_equal(proto_decode_page_data_head(b, head, len, &lim, &r),
	    -EBADMSG);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	lim = lim_full;
	lim.rec_max = len - 1;
	assert_int_equal(proto_decode_page_data_head(b, head, len, &lim, &r),
	    -EMSGSIZE);
	lim = lim_full;
	lim.pages = 0;
	assert_int_equal(proto_decode_page_data_head(b, head, len, &lim, &r),
	    -EBADMSG);
	lim = lim_full;
	assert_int_equal(proto_decode_page_data_head(b, head, len - 8, &lim,
	    &r), -EBADMSG);			/* count disagrees with len */
	assert_int_equal(proto_decode_page_data_head(b, head + 1, head, &lim,
	    &r), -EINVAL);			/* avail over len */

	/* Bodies to decode whole: compressed, count 0 or over the batch. */
	memcpy(save, b, 8);
	set32(b + 4, PROTO_COMPRESS_ZSTD);
	assert_int_equal(proto_page_data_head_len(b), 0);
	set32(b + 4, 0);
	set32(b, 0);
	assert_int_equal(proto_page_data_head_len(b), 0);
	set32(b, PROTO_PAGE_BATCH_MAX + 1);
	assert_int_equal(proto_page_data_head_len(b), 0);
	set32(b, PROTO_PAGE_BATCH_MAX);
	assert_int_equal(proto_page_data_head_len(b),
	    8 + 8 * PROTO_PAGE_BATCH_MAX);
	memcpy(b, save, 8);
}

/* Pages read in order from one buffer or from pieces cut anywhere. */
static void
test_pages_reader(void **state)
{
	static const size_t	cuts[][4] = {
		{ 2 * PROTO_PAGE_SIZE, 0, 0, 0 },
		{ PROTO_PAGE_SIZE, PROTO_PAGE_SIZE, 0, 0 },
		{ 1, PROTO_PAGE_SIZE, 3000, PROTO_PAGE_SIZE - 3001 },
		{ 4095, 2, 4095, 0 },
	};
	struct iovec		 seg[4];
	struct proto_pages	 pp;
	uint8_t			 out[2][PROTO_PAGE_SIZE];
	const uint8_t		*src = &fx_pages[0][0];
	size_t			 off;
	unsigned		 c, n;

	(void)state;
	proto_pages_init(&pp, fx_pages, NULL, 0);
	proto_pages_copy(&pp, out[0]);
	proto_pages_copy(&pp, out[1]);
	assert_memory_equal(out, fx_pages, sizeof(out));
	for (c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		for (n = 0, off = 0; n < 4 && cuts[c][n] != 0; n++) {
			seg[n].iov_base = (void *)(uintptr_t)(src + off);
			seg[n].iov_len = cuts[c][n];
			off += cuts[c][n];
		}
		assert_int_equal(off, sizeof(fx_pages));
		memset(out, 0, sizeof(out));
		proto_pages_init(&pp, NULL, seg, n);
		proto_pages_copy(&pp, out[0]);
		proto_pages_copy(&pp, out[1]);
		assert_memory_equal(out, fx_pages, sizeof(out));
		assert_int_equal(pp.nseg, 0);
	}
}

/* ---- compressed PAGE_DATA ---- */

/*
 * The decoder checks the framing of a compressed PAGE_DATA (method
 * negotiated, frame length, count, pfns); the frame's contents are
 * pcomp's business (test_pcomp.c).  Golden layout: count, flags = method,
 * pfns, clen, reserved, frame, zero padding.
 */
static void
test_page_data_z(void **state)
{
	static const uint8_t	frame[13] = "not-a-frame!";
	struct proto_limits	lim = lim_full;
	struct proto_rec	r;
	uint8_t			*b = buf + 8;
	uint32_t		len;
	int			n;

	lim.compress = PROTO_COMPRESS_ZSTD;
	n = proto_enc_page_data_z(buf, BUFSZ, 2, fx_pfns + 2,
	    PROTO_COMPRESS_ZSTD, frame, sizeof(frame));
	assert_int_equal(n, (int)proto_rec_size(16 + 16 + sizeof(frame)));
	len = le32(buf + 4);
	assert_int_equal(len, 16 + 16 + sizeof(frame));
	assert_int_equal(le32(buf), REC_PAGE_DATA);
	assert_int_equal(le32(b), 2);
	assert_int_equal(le32(b + 4), PROTO_COMPRESS_ZSTD);
	assert_true(le64(b + 8) == fx_pfns[2] && le64(b + 16) == fx_pfns[3]);
	assert_int_equal(le32(b + 24), sizeof(frame));
	assert_int_equal(le32(b + 28), 0);
	assert_memory_equal(b + 32, frame, sizeof(frame));
	for (size_t i = 8 + len; i < (size_t)n; i++)
		assert_int_equal(buf[i], 0);

	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r), 0);
	assert_int_equal(r.u.page_data.count, 2);
	assert_int_equal(r.u.page_data.flags, PROTO_COMPRESS_ZSTD);
	assert_int_equal(r.u.page_data.data_len, sizeof(frame));
	assert_memory_equal(r.u.page_data.data, frame, sizeof(frame));
	assert_true(proto_pfn_at(r.u.page_data.pfns, 1) == fx_pfns[3]);

	/* Not negotiated: no compression, another method, no such method. */
	lim.compress = PROTO_COMPRESS_NONE;
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	lim.compress = PROTO_COMPRESS_LZ4;
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	lim.compress = 3;
	set32(b + 4, 3);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	set32(b + 4, PROTO_COMPRESS_ZSTD);
	lim.compress = PROTO_COMPRESS_ZSTD;

	/* Truncated anywhere, or a trailing byte: clen disagrees. */
	for (uint32_t l = 0; l < len; l++)
		assert_int_equal(proto_decode(REC_PAGE_DATA, b, l, &lim, &r),
		    -EBADMSG);
	b[len] = 0x55;
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len + 1, &lim, &r),
	    -EBADMSG);
	b[len] = 0;
	set32(b + 24, sizeof(frame) - 1);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	set32(b + 24, 0);		/* an empty frame */
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, 32, &lim, &r),
	    -EBADMSG);
	set32(b + 24, sizeof(frame));

	/* A frame as long as the pages is never needed: refused. */
	n = proto_enc_page_data_z(buf, BUFSZ, 1, fx_pfns, PROTO_COMPRESS_LZ4,
	    fx_pages[0], PROTO_PAGE_SIZE - 1);
	assert_true(n > 0);
	lim.compress = PROTO_COMPRESS_LZ4;
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, le32(buf + 4), &lim,
	    &r), 0);
	set32(b + 16, PROTO_PAGE_SIZE);
	memcpy(buf2, b, 24 + PROTO_PAGE_SIZE - 1);
	memcpy(buf2 + 24 + PROTO_PAGE_SIZE - 1, fx_pages[1], 1);
	assert_int_equal(proto_decode(REC_PAGE_DATA, buf2,
	    24 + PROTO_PAGE_SIZE, &lim, &r), -EBADMSG);

	/* Counts and pfns. */
	n = proto_enc_page_data_z(buf, BUFSZ, 2, fx_pfns + 2,
	    PROTO_COMPRESS_LZ4, frame, sizeof(frame));
	assert_true(n > 0);
	len = le32(buf + 4);
	set32(b, 0);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);
	set32(b, PROTO_PAGE_BATCH_MAX + 1);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EMSGSIZE);
	set32(b, 2);
	set64(b + 16, NPAGES);
	assert_int_equal(proto_decode(REC_PAGE_DATA, b, len, &lim, &r),
	    -EBADMSG);

	/* The encoder refuses what the decoder would. */
	assert_int_equal(proto_enc_page_data_z(buf, BUFSZ, 1, fx_pfns,
	    PROTO_COMPRESS_NONE, frame, 4), -EINVAL);
	assert_int_equal(proto_enc_page_data_z(buf, BUFSZ, 1, fx_pfns, 3,
	    frame, 4), -EINVAL);
	assert_int_equal(proto_enc_page_data_z(buf, BUFSZ, 1, fx_pfns,
	    PROTO_COMPRESS_ZSTD, frame, 0), -EINVAL);
	assert_int_equal(proto_enc_page_data_z(buf, BUFSZ, 1, fx_pfns,
	    PROTO_COMPRESS_ZSTD, fx_pages[0], PROTO_PAGE_SIZE), -EINVAL);
	assert_int_equal(proto_enc_page_data_z(buf, BUFSZ, 0, fx_pfns,
	    PROTO_COMPRESS_ZSTD, frame, 4), -EINVAL);
	assert_int_equal(proto_enc_page_data_z(buf, 40, 1, fx_pfns,
	    PROTO_COMPRESS_ZSTD, frame, sizeof(frame)), -EMSGSIZE);
}

/* DOMAIN_INFO.compress (offset 28, reserved before): any value decodes
 * (the destination refuses what it does not support); the encoder sends
 * only known methods. */
static void
test_domain_info_compress(void **state)
{
	struct proto_domain_info di = fx_di();
	struct proto_rec	r;
	uint32_t		len;
	int			n;

	di.compress = PROTO_COMPRESS_LZ4;
	n = proto_enc_domain_info(buf, BUFSZ, &di);
	assert_true(n > 0);
	len = le32(buf + 4);
	assert_int_equal(le32(buf + 8 + 28), PROTO_COMPRESS_LZ4);
	assert_int_equal(proto_decode(REC_DOMAIN_INFO, buf + 8, len, &lim_full,
	    &r), 0);
	assert_int_equal(r.u.domain_info.compress, PROTO_COMPRESS_LZ4);
	set32(buf + 8 + 28, 0x12345);
	assert_int_equal(proto_decode(REC_DOMAIN_INFO, buf + 8, len, &lim_full,
	    &r), 0);
	assert_int_equal(r.u.domain_info.compress, 0x12345);
	di.compress = PROTO_COMPRESS_MAX + 1;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
}

/*
 * Several streams: DOMAIN_INFO's STREAMS tail, DOMAIN_ACK's grant and
 * token, JOIN; the layouts of docs/PROTOCOL.md and every malformed form.
 */
static void
test_streams(void **state)
{
	struct proto_domain_info di = fx_di();
	struct proto_domain_ack a = fx_ack_st;
	struct proto_join j = { .index = 1 };
	struct proto_rec r;
	uint8_t *b = buf + 8;
	uint32_t len, tail;

	(void)state;
	/* DOMAIN_INFO: the flag and 8 octets after the config. */
	len = build(&cases[18]);
	assert_int_equal(len, 48 + 14 + 100 + 8);
	assert_int_equal(le32(b + 12), PROTO_DI_PAUSED | PROTO_DI_VERIFY |
	    PROTO_DI_STREAMS);
	tail = 48 + 14 + 100;
	assert_int_equal(le32(b + tail), 6);
	assert_int_equal(le32(b + tail + 4), 0);
	set32(b + tail + 4, 0xffffffff);	/* reserved */
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), 0);
	set32(b + tail, 1);			/* 1 is said by leaving it out */
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), -EBADMSG);
	set32(b + tail, PROTO_STREAMS_MAX + 1);
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), -EBADMSG);
	set32(b + tail, PROTO_STREAMS_MAX);
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), 0);
	assert_int_equal(r.u.domain_info.streams, PROTO_STREAMS_MAX);
	/* The flag without the tail, the tail without the flag. */
	assert_int_equal(dec(&cases[18], len - 8, &lim_full, &r), -EBADMSG);
	set32(b + 12, PROTO_DI_PAUSED);
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), -EBADMSG);
	/* Not with ADVISE. */
	set32(b + 12, PROTO_DI_STREAMS | PROTO_DI_ADVISE);
	assert_int_equal(dec(&cases[18], len, &lim_full, &r), -EBADMSG);
	/* One stream: no flag, no tail, the bytes of before. */
	di.streams = 1;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di),
	    (int)proto_rec_size(48 + 14 + 100));
	assert_int_equal(le32(b + 12), PROTO_DI_PAUSED | PROTO_DI_VERIFY);
	assert_int_equal(dec(&cases[2], 48 + 14 + 100, &lim_full, &r), 0);
	assert_int_equal(r.u.domain_info.streams, 1);
	/* The encoder derives the flag and checks the count. */
	di.flags |= PROTO_DI_STREAMS;
	assert_true(proto_enc_domain_info(buf, BUFSZ, &di) > 0);
	assert_int_equal(le32(b + 12), PROTO_DI_PAUSED | PROTO_DI_VERIFY);
	di.streams = PROTO_STREAMS_MAX + 1;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);
	di.streams = 2;
	di.flags = PROTO_DI_ADVISE;
	assert_int_equal(proto_enc_domain_info(buf, BUFSZ, &di), -EINVAL);

	/* DOMAIN_ACK: domid, streams, token. */
	len = build(&cases[17]);
	assert_int_equal(len, 24);
	assert_int_equal(le32(b), 7);
	assert_int_equal(le32(b + 4), 4);
	assert_memory_equal(b + 8, fx_ack_st.token, PROTO_TOKEN_LEN);
	set32(b + 4, 1);		/* a token needs two streams or more */
	assert_int_equal(dec(&cases[17], len, &lim_full, &r), -EBADMSG);
	set32(b + 4, 0);
	assert_int_equal(dec(&cases[17], len, &lim_full, &r), -EBADMSG);
	set32(b + 4, PROTO_STREAMS_MAX + 1);
	assert_int_equal(dec(&cases[17], len, &lim_full, &r), -EBADMSG);
	set32(b + 4, 2);		/* two streams need the token */
	assert_int_equal(dec(&cases[17], 8, &lim_full, &r), -EBADMSG);
	assert_int_equal(dec(&cases[17], 16, &lim_full, &r), -EBADMSG);
	/* One stream is the 8-octet form with 0, as before. */
	a.streams = 1;
	assert_int_equal(proto_enc_domain_ack_streams(buf, BUFSZ, &a), 16);
	assert_int_equal(le32(b + 4), 0);
	a.streams = 0;
	assert_int_equal(proto_enc_domain_ack_streams(buf, BUFSZ, &a), -EINVAL);
	a.streams = PROTO_STREAMS_MAX + 1;
	assert_int_equal(proto_enc_domain_ack_streams(buf, BUFSZ, &a), -EINVAL);

	/* JOIN: token, index 1..MAX-1, reserved. */
	len = build(&cases[19]);
	assert_int_equal(len, 24);
	assert_memory_equal(b, fx_ack_st.token, PROTO_TOKEN_LEN);
	assert_int_equal(le32(b + 16), 3);
	set32(b + 20, 0xffffffff);
	assert_int_equal(dec(&cases[19], len, &lim_full, &r), 0);
	set32(b + 16, 0);		/* stream 0 is the main connection */
	assert_int_equal(dec(&cases[19], len, &lim_full, &r), -EBADMSG);
	set32(b + 16, PROTO_STREAMS_MAX);
	assert_int_equal(dec(&cases[19], len, &lim_full, &r), -EBADMSG);
	set32(b + 16, PROTO_STREAMS_MAX - 1);
	assert_int_equal(dec(&cases[19], len, &lim_full, &r), 0);
	j.index = 0;
	assert_int_equal(proto_enc_join(buf, BUFSZ, &j), -EINVAL);
	j.index = PROTO_STREAMS_MAX;
	assert_int_equal(proto_enc_join(buf, BUFSZ, &j), -EINVAL);
	assert_int_equal(proto_enc_join(buf, BUFSZ, NULL), -EINVAL);
	/* JOIN fits before authentication; legal only before DOMAIN_INFO. */
	assert_int_equal(dec(&cases[19], build(&cases[19]), &lim_preauth, &r), 0);
	assert_int_equal(proto_legal(REC_JOIN, PROTO_S2D, PH_INFO), 1);
	assert_int_equal(proto_legal(REC_JOIN, PROTO_S2D, PH_LIVE), 0);
	assert_int_equal(proto_legal(REC_JOIN, PROTO_D2S, PH_INFO), 0);

	/* The stream of a pfn: runs of 64 pfns, round robin. */
	assert_int_equal(proto_stream_of(0, 1), 0);
	assert_int_equal(proto_stream_of(12345, 1), 0);
	assert_int_equal(proto_stream_of(63, 4), 0);
	assert_int_equal(proto_stream_of(64, 4), 1);
	assert_int_equal(proto_stream_of(64 * 4 + 5, 4), 0);
	assert_int_equal(proto_stream_of(64 * 7, 4), 3);
}

/*
 * END's list of unverified pfns: only in END, only with VERIFY, 1..16
 * entries, strictly ascending, its count matching the body.
 */
static void
test_end_unverified(void **state)
{
	struct proto_end e = fx_end();
	struct proto_rec r;
	uint8_t *b = buf + 8;
	uint32_t len;

	(void)state;
	/* Round trip, and the layout of docs/PROTOCOL.md. */
	len = (uint32_t)enc_end_uv(buf, BUFSZ);
	assert_int_equal(len, 8 + 48 + 3 * 8);
	assert_int_equal(le32(buf + 4), 48 + 3 * 8);
	assert_int_equal(le32(b), 3);
	assert_int_equal(le32(b + 40), 3);
	assert_int_equal(le32(b + 44), 0);
	assert_true(le64(b + 48) == 0x10);
	assert_true(le64(b + 64) == 0xfefff);
	assert_int_equal(proto_decode(REC_END, b, le32(buf + 4), &lim_full,
	    &r), 0);
	chk_end_uv(&r);

	e.flags |= PROTO_END_UNVERIFIED;
	e.nunverified = PROTO_END_UNVERIFIED_MAX;
	for (uint32_t i = 0; i < e.nunverified; i++)
		e.unverified[i] = 7 + 3 * (uint64_t)i;
	assert_true(proto_enc_end(buf, BUFSZ, REC_END, &e) > 0);
	len = le32(buf + 4);
	assert_int_equal(len, 48 + 8 * PROTO_END_UNVERIFIED_MAX);
	assert_int_equal(proto_decode(REC_END, b, len, &lim_full, &r), 0);
	assert_int_equal(r.u.end.nunverified, PROTO_END_UNVERIFIED_MAX);
	assert_true(r.u.end.unverified[15] == 7 + 45);
	/* The count must match the body, and stay within the maximum. */
	set32(b + 40, PROTO_END_UNVERIFIED_MAX - 1);
	assert_int_equal(proto_decode(REC_END, b, len, &lim_full, &r),
	    -EBADMSG);
	set32(b + 40, 0);
	assert_int_equal(proto_decode(REC_END, b, 48, &lim_full, &r),
	    -EBADMSG);
	set32(b + 40, PROTO_END_UNVERIFIED_MAX + 1);
	assert_int_equal(proto_decode(REC_END, b, len + 8, &lim_full, &r),
	    -EBADMSG);
	set32(b + 40, PROTO_END_UNVERIFIED_MAX);
	/* Not ascending. */
	set64(b + 48 + 8, 7);
	assert_int_equal(proto_decode(REC_END, b, len, &lim_full, &r),
	    -EBADMSG);
	set64(b + 48 + 8, 10);
	assert_int_equal(proto_decode(REC_END, b, len, &lim_full, &r), 0);
	/* The flag without VERIFY, or in READY. */
	set32(b, PROTO_END_UNVERIFIED);
	assert_int_equal(proto_decode(REC_END, b, len, &lim_full, &r),
	    -EBADMSG);
	set32(b, PROTO_END_VERIFY | PROTO_END_UNVERIFIED);
	assert_int_equal(proto_decode(REC_READY, b, len, &lim_full, &r),
	    -EBADMSG);
	/* Too short to hold the count. */
	assert_int_equal(proto_decode(REC_END, b, 44, &lim_full, &r),
	    -EBADMSG);
	/* The encoder refuses what the decoder refuses. */
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_READY, &e), -EINVAL);
	e.nunverified = 0;
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_END, &e), -EINVAL);
	e.nunverified = PROTO_END_UNVERIFIED_MAX + 1;
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_END, &e), -EINVAL);
	e.nunverified = 2;
	e.unverified[1] = e.unverified[0];
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_END, &e), -EINVAL);
	e.flags = PROTO_END_UNVERIFIED;
	e.unverified[1] = 99;
	assert_int_equal(proto_enc_end(buf, BUFSZ, REC_END, &e), -EINVAL);
}

/*
 * FILTER: the layout of docs/PROTOCOL.md, a filter sent in chunks, and
 * every rule of one record, in the decoder and in the encoder.  Cases 20
 * and 21 are "no filter" and a one-word last chunk.
 */
#define FI_BIG_LEN	(2 * (size_t)PROTO_FILTER_CHUNK_MAX + 16)
static uint8_t fi_big[FI_BIG_LEN];

/* Write a FILTER header with a body of len octets into buf (the body's
 * bit array left as it is); the decode's result. */
static int
fi_dec(uint64_t nbits, uint32_t k, uint64_t offset, size_t len,
    struct proto_rec *r)
{
	uint8_t *b = buf + 8;

	set64(b, nbits);
	set32(b + 8, k);
	set32(b + 12, 0);
	set64(b + 16, offset);
	return proto_decode(REC_FILTER, b, len, &lim_full, r);
}

static void
test_filter(void **state)
{
	struct proto_filter	f;
	struct proto_rec	r;
	uint32_t		type, len;
	uint64_t		off;
	size_t			total, d;
	uint8_t			*b = buf + 8;
	int			n;

	(void)state;
	/* Golden: nbits, k, reserved, offset, the bits; no padding. */
	len = build(&cases[21]);
	assert_int_equal(le32(buf), 18);
	assert_int_equal(len, 24 + 8);
	assert_true(le64(b) == FX_FI_NBITS);
	assert_int_equal(le32(b + 8), FX_FI_K);
	assert_int_equal(le32(b + 12), 0);
	assert_true(le64(b + 16) == FX_FI_OFFSET);
	assert_memory_equal(b + 24, fx_fbits, 8);
	set32(b + 12, 0xffffffff);		/* reserved: ignored */
	assert_int_equal(dec(&cases[21], len, &lim_full, &r), 0);
	chk_filter(&r);
	len = build(&cases[20]);
	assert_int_equal(len, 24);
	for (size_t i = 0; i < 24; i++)
		assert_int_equal(b[i], 0);

	/* No pfns: legal before the page count is known. */
	assert_int_equal(dec(&cases[20], 24, &lim_preauth, &r), 0);
	assert_int_equal(dec(&cases[21], build(&cases[21]), &lim_preauth,
	    &r), 0);
	assert_string_equal(proto_type_name(REC_FILTER), cases[20].name);

	/* A filter of two full chunks and one word, in offset order. */
	for (size_t i = 0; i < FI_BIG_LEN; i++)
		fi_big[i] = (uint8_t)(i * 131 + (i >> 12));
	f.nbits = FI_BIG_LEN * 8;
	f.k = PROTO_FILTER_K_MAX;
	for (off = 0; off < FI_BIG_LEN; off += d) {
		d = FI_BIG_LEN - off;
		if (d > PROTO_FILTER_CHUNK_MAX)
			d = PROTO_FILTER_CHUNK_MAX;
		f.offset = off;
		f.bits = fi_big + off;
		f.bits_len = (uint32_t)d;
		n = proto_enc_filter(buf, BUFSZ, &f);
		assert_int_equal(n, (int)(8 + 24 + d));
		assert_int_equal(proto_frame_peek(buf, (size_t)n,
		    PROTO_REC_MAX, &type, &len, &total), 0);
		assert_int_equal(type, REC_FILTER);
		assert_int_equal(total, (size_t)n);
		assert_int_equal(proto_decode(type, b, len, &lim_full, &r), 0);
		assert_int_equal(r.type, REC_FILTER);
		assert_true(r.u.filter.nbits == f.nbits);
		assert_int_equal(r.u.filter.k, f.k);
		assert_true(r.u.filter.offset == off);
		assert_int_equal(r.u.filter.bits_len, d);
		assert_ptr_equal(r.u.filter.bits, b + 24);
		assert_memory_equal(r.u.filter.bits, fi_big + off, d);
	}
	/* The largest filter's last full chunk. */
	f.nbits = PROTO_FILTER_BITS_MAX;
	f.offset = PROTO_FILTER_BITS_MAX / 8 - PROTO_FILTER_CHUNK_MAX;
	f.bits = fi_big;
	f.bits_len = PROTO_FILTER_CHUNK_MAX;
	assert_true(proto_enc_filter(buf, BUFSZ, &f) > 0);
	assert_int_equal(proto_decode(REC_FILTER, b, 24 +
	    PROTO_FILTER_CHUNK_MAX, &lim_full, &r), 0);

	/* The decoder's rules, each broken alone (1024 bits: 128 octets). */
	memset(b + 24, 0x5a, PROTO_FILTER_CHUNK_MAX + 16);
	assert_int_equal(fi_dec(1024, 1, 0, 24 + 128, &r), 0);
	assert_int_equal(fi_dec(1024, 0, 0, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, PROTO_FILTER_K_MAX + 1, 0, 24 + 8, &r),
	    -EBADMSG);
	assert_int_equal(fi_dec(1024, UINT32_MAX, 0, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, PROTO_FILTER_K_MAX, 0, 24 + 8, &r), 0);
	assert_int_equal(fi_dec(1024 + 32, 1, 0, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(1000, 1, 0, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(PROTO_FILTER_BITS_MAX + 64, 1, 0, 24 + 8, &r),
	    -EBADMSG);
	assert_int_equal(fi_dec(UINT64_MAX & ~63ull, 1, 0, 24 + 8, &r),
	    -EBADMSG);
	assert_int_equal(fi_dec(PROTO_FILTER_BITS_MAX, 1, 0, 24 + 8, &r), 0);
	/* The chunk: non-empty, whole words, at most CHUNK_MAX octets. */
	assert_int_equal(fi_dec(1024, 1, 0, 24, &r), -EBADMSG);
	for (d = 1; d < 8; d++)
		assert_int_equal(fi_dec(1024, 1, 0, 24 + 8 + d, &r), -EBADMSG);
	assert_int_equal(fi_dec(PROTO_FILTER_BITS_MAX, 1, 0, 24 +
	    PROTO_FILTER_CHUNK_MAX + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(PROTO_FILTER_BITS_MAX, 1, 8, 24 +
	    PROTO_FILTER_CHUNK_MAX, &r), 0);
	/* offset: whole words, the chunk inside nbits / 8, no wrap. */
	assert_int_equal(fi_dec(1024, 1, 4, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, 1, 120, 24 + 8, &r), 0);
	assert_int_equal(fi_dec(1024, 1, 120, 24 + 16, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, 1, 128, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, 1, 8, 24 + 128, &r), -EBADMSG);
	assert_int_equal(fi_dec(1024, 1, UINT64_MAX - 7, 24 + 16, &r),
	    -EBADMSG);			/* offset + 16 wraps to 8 */
	assert_int_equal(fi_dec(1024, 1, UINT64_MAX - 7, 24 + 8, &r),
	    -EBADMSG);			/* offset + 8 wraps to 0 */
	assert_int_equal(fi_dec(1024, 1, 1ull << 63, 24 + 8, &r), -EBADMSG);
	/* nbits 0: nothing else. */
	assert_int_equal(fi_dec(0, 0, 0, 24, &r), 0);
	assert_int_equal(fi_dec(0, 1, 0, 24, &r), -EBADMSG);
	assert_int_equal(fi_dec(0, 0, 8, 24, &r), -EBADMSG);
	assert_int_equal(fi_dec(0, 0, 0, 24 + 8, &r), -EBADMSG);
	assert_int_equal(fi_dec(0, 6, 0, 24 + 8, &r), -EBADMSG);

	/* The encoder refuses what the decoder refuses. */
	f = (struct proto_filter){ .nbits = 1024, .k = 6, .offset = 0,
	    .bits = fi_big, .bits_len = 8 };
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), 8 + 32);
	assert_int_equal(proto_enc_filter(buf, BUFSZ, NULL), -EINVAL);
	f.bits = NULL;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.bits = fi_big;
	f.k = 0;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.k = PROTO_FILTER_K_MAX + 1;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.k = 6;
	f.nbits = 1024 + 32;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.nbits = PROTO_FILTER_BITS_MAX + 64;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.nbits = 1024;
	f.bits_len = 0;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.bits_len = 12;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.nbits = PROTO_FILTER_BITS_MAX;
	f.bits_len = PROTO_FILTER_CHUNK_MAX + 8;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.nbits = 1024;
	f.bits_len = 8;
	f.offset = 4;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.offset = 128;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.offset = UINT64_MAX - 7;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f = (struct proto_filter){ .nbits = 0 };
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), 8 + 24);
	f.k = 1;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.k = 0;
	f.offset = 8;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	f.offset = 0;
	f.bits = fi_big;
	f.bits_len = 8;
	assert_int_equal(proto_enc_filter(buf, BUFSZ, &f), -EINVAL);
	/* A cap too small is -EMSGSIZE, after the arguments. */
	f.bits_len = 0;
	assert_int_equal(proto_enc_filter(buf, 8 + 23, &f), -EMSGSIZE);
}

/* ---- the fuzz seed corpus ---- */

/*
 * Input format of fuzz/fuzz_proto.c: u32 selector (LE) then records.
 * selector bits 0-2 phase, bit 3 direction (0 S2D, 1 D2S), bits 4-5
 * limits set (2: pages 2^20, PROTO_REC_MAX).
 */
/*
 * One seed file DIR/NN-NAME: the u32 selector, then the n bytes at rec
 * (n < 0: the encoder failed).  0, or 1 after saying what failed.
 */
static int
put_seed(const char *dir, size_t num, const char *name, uint32_t sel,
    const uint8_t *rec, int n)
{
	char	path[4096];
	uint8_t	s[4];
	FILE	*f;

	if (n < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/%02zu-%s", dir, num, name);
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		return 1;
	}
	set32(s, sel);
	fwrite(s, 1, 4, f);
	fwrite(rec, 1, (size_t)n, f);
	if (fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return 0;
}

static int
write_corpus(const char *dir)
{
	char	path[4096];
	FILE	*f;

	fx_init();
	for (size_t i = 0; i < 1024; i++)
		fi_big[i] = (uint8_t)(i * 37 + 11);
	for (size_t i = 0; i < NCASES; i++) {
		const struct rec_case	*c = &cases[i];

		if (put_seed(dir, i, c->name, (uint32_t)c->phase |
		    (c->dir == PROTO_D2S ? 8u : 0u) | 2u << 4, buf,
		    c->enc(buf, BUFSZ)) != 0)
			return 1;
	}
	/* The stream header, for proto_stream_hdr_check(). */
	proto_stream_hdr_encode(buf);
	if (put_seed(dir, NCASES + 1, "stream-header", PH_HELLO, buf,
	    PROTO_STREAM_HDR_LEN) != 0)
		return 1;
	/* A wide OFFER: the largest span, a few scattered bits, and a HAVE
	 * answering it (D2S). */
	{
		static uint64_t	bm[PROTO_OFFER_SPAN_MAX / 64];
		static const uint8_t has[4] = { 1, 1, 0, 1 };

		bm[0] = 1;
		bm[511] = 1ull << 33;
		bm[1023] = 1ull << 62 | 1ull << 63;
		if (put_seed(dir, NCASES + 2, "OFFER-wide", PH_LIVE | 2u << 4,
		    buf, proto_enc_offer(buf, BUFSZ, 77, NPAGES -
		    PROTO_OFFER_SPAN_MAX, PROTO_OFFER_SPAN_MAX, bm, 4,
		    (const uint8_t (*)[8])fx_prefixes)) != 0)
			return 1;
		if (put_seed(dir, NCASES + 3, "HAVE-confirm",
		    PH_LIVE | 8u | 2u << 4, buf, proto_enc_have(buf, BUFSZ, 77,
		    4, has, fx_confirm)) != 0)
			return 1;
	}
	/* Compressed PAGE_DATA, each method negotiated (selector bits 6-7);
	 * the frame bytes are opaque to the decoder. */
	for (uint32_t m = PROTO_COMPRESS_ZSTD; m <= PROTO_COMPRESS_MAX; m++) {
		static const uint8_t frame[24] = "\x28\xb5\x2f\xfd-frame-bytes";

		if (put_seed(dir, NCASES + 3 + m, m == PROTO_COMPRESS_ZSTD ?
		    "PAGE_DATA-zstd" : "PAGE_DATA-lz4", PH_LIVE | 2u << 4 |
		    m << 6, buf, proto_enc_page_data_z(buf, BUFSZ, 2,
		    fx_pfns + 2, m, frame, sizeof(frame))) != 0)
			return 1;
	}
	/* END with the pfns left out of its digest. */
	if (put_seed(dir, NCASES + 7, "END-unverified", PH_LIVE | 2u << 4, buf,
	    enc_end_uv(buf, BUFSZ)) != 0)
		return 1;
	/* A FILTER series as a destination sends it (D2S, INFO): 8192 bits
	 * in three chunks in offset order, then DOMAIN_ACK. */
	{
		static const uint32_t	chunk[3] = { 512, 256, 256 };
		struct proto_filter	fi = { .nbits = 8192, .k = 6 };
		size_t			pos = 0;
		int			n;

		for (int i = 0; i < 3; i++) {
			fi.bits = fi_big + fi.offset;
			fi.bits_len = chunk[i];
			if ((n = proto_enc_filter(buf + pos, BUFSZ - pos,
			    &fi)) < 0)
				return 1;
			pos += (size_t)n;
			fi.offset += chunk[i];
		}
		if ((n = enc_ack(buf + pos, BUFSZ - pos)) < 0)
			return 1;
		if (put_seed(dir, NCASES + 8, "FILTER-series", PH_INFO | 8u |
		    2u << 4, buf, (int)pos + n) != 0)
			return 1;
	}
	/* One multi-record input: a whole session, S2D side. */
	snprintf(path, sizeof(path), "%s/%02zu-session", dir, NCASES);
	if ((f = fopen(path, "wb")) == NULL)
		return 1;
	set32(buf, PH_LIVE | 2u << 4);
	fwrite(buf, 1, 4, f);
	for (size_t i = 0; i < NCASES; i++) {
		int n = cases[i].enc(buf, BUFSZ);

		fwrite(buf, 1, (size_t)n, f);
	}
	return fclose(f) != 0;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_enc_cap),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_full_batches),
		cmocka_unit_test(test_pfn_range),
		cmocka_unit_test(test_offer),
		cmocka_unit_test(test_have),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_domain_info),
		cmocka_unit_test(test_misc_fields),
		cmocka_unit_test(test_unknown_types),
		cmocka_unit_test(test_out_untouched),
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_legal_table),
		cmocka_unit_test(test_legal_exhaustive),
		cmocka_unit_test(test_frame_peek),
		cmocka_unit_test(test_stream_hdr),
		cmocka_unit_test(test_page_data_z),
		cmocka_unit_test(test_page_data_head),
		cmocka_unit_test(test_pages_reader),
		cmocka_unit_test(test_domain_info_compress),
		cmocka_unit_test(test_end_unverified),
		cmocka_unit_test(test_streams),
		cmocka_unit_test(test_filter),
	};

	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	fx_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
