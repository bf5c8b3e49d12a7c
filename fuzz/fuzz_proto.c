/*
 * fuzz_proto.c - libFuzzer target for the wire protocol decoder
 * (src/common/proto.c).
 *
 * Input format (the seed corpus in fuzz/corpus/proto follows it; it is
 * written by "test_proto --write-corpus DIR"):
 *
 *   u32 selector, little-endian
 *       bits 0-2  receiver phase given to proto_legal() (6 and 7 are out
 *                 of range on purpose)
 *       bit  3    direction of the records: 0 PROTO_S2D, 1 PROTO_D2S
 *       bits 4-5  limits: 0 { pages 0, PROTO_REC_MAX_PREAUTH }
 *                         1 { pages 1, PROTO_REC_MAX }
 *                         2 { pages 2^20, PROTO_REC_MAX }
 *                         3 { pages UINT64_MAX, PROTO_REC_MAX }
 *       bits 6-7  PAGE_DATA compression negotiated (proto_limits.compress):
 *                 0 none, 1 zstd, 2 lz4, 3 (no such method: compressed
 *                 records must all be refused)
 *       bits 8-31 ignored
 *   then a byte stream of records { u32 type, u32 length, body, pad }.
 *
 * Every record that proto_frame_peek() frames is given to proto_decode()
 * and proto_legal().  A record that decodes is encoded again with its
 * encoder; the new record must have the same type and length, must
 * decode, and must decode to the same values.  A PAGE_DATA is also
 * decoded from its head only (page_data_head).  Any other outcome, or a
 * return value outside the documented set, aborts.
 *
 * Built with clang -fsanitize=fuzzer (fuzz/meson.build), or without
 * libFuzzer together with replay_main.c to replay a corpus.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS	64

static const struct proto_limits limits[4] = {
	{ 0, PROTO_REC_MAX_PREAUTH, PROTO_COMPRESS_NONE },
	{ 1, PROTO_REC_MAX, PROTO_COMPRESS_NONE },
	{ 1u << 20, PROTO_REC_MAX, PROTO_COMPRESS_NONE },
	{ UINT64_MAX, PROTO_REC_MAX, PROTO_COMPRESS_NONE },
};

static uint8_t	enc[PROTO_REC_MAX + 64];
static uint64_t	pfns[PROTO_PFN_BATCH_MAX];
static uint64_t	hints[PROTO_PFN_BATCH_MAX];
static uint8_t	digests[PROTO_PFN_BATCH_MAX][32];
static uint8_t	has[PROTO_PFN_BATCH_MAX];
static uint8_t	prefixes[PROTO_PFN_BATCH_MAX][PROTO_PREFIX_LEN];
static uint64_t	bitmap[PROTO_OFFER_SPAN_MAX / 64];
static uint64_t	pfns2[PROTO_PFN_BATCH_MAX];

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

static int
same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
	return n == 0 || memcmp(a, b, n) == 0;
}

/* Do two decoded records of the same type carry the same values? */
static int
rec_equal(const struct proto_rec *a, const struct proto_rec *b)
{
	uint32_t i;

	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case REC_HELLO:
		return a->u.hello.version_min == b->u.hello.version_min &&
		    a->u.hello.version_max == b->u.hello.version_max &&
		    a->u.hello.caps == b->u.hello.caps &&
		    memcmp(a->u.hello.host_id, b->u.hello.host_id, 16) == 0 &&
		    strcmp(a->u.hello.host_name, b->u.hello.host_name) == 0;
	case REC_ERROR:
		return a->u.error.code == b->u.error.code &&
		    strcmp(a->u.error.msg, b->u.error.msg) == 0;
	case REC_DOMAIN_INFO: {
		const struct proto_domain_info *x = &a->u.domain_info;
		const struct proto_domain_info *y = &b->u.domain_info;

		return x->pages == y->pages && x->vcpus == y->vcpus &&
		    x->flags == y->flags && x->dedup == y->dedup &&
		    memcmp(x->uuid, y->uuid, 16) == 0 &&
		    strcmp(x->name, y->name) == 0 &&
		    x->config_len == y->config_len &&
		    same_bytes(x->config, y->config, x->config_len) &&
		    x->streams == y->streams;
	}
	case REC_DOMAIN_ACK:
		return a->u.domain_ack.domid == b->u.domain_ack.domid &&
		    a->u.domain_ack.streams == b->u.domain_ack.streams &&
		    (a->u.domain_ack.streams < 2 ||
		    memcmp(a->u.domain_ack.token, b->u.domain_ack.token,
		    PROTO_TOKEN_LEN) == 0);
	case REC_JOIN:
		return a->u.join.index == b->u.join.index &&
		    memcmp(a->u.join.token, b->u.join.token,
		    PROTO_TOKEN_LEN) == 0;
	case REC_FILTER:
		return a->u.filter.nbits == b->u.filter.nbits &&
		    a->u.filter.k == b->u.filter.k &&
		    a->u.filter.offset == b->u.filter.offset &&
		    a->u.filter.bits_len == b->u.filter.bits_len &&
		    same_bytes(a->u.filter.bits, b->u.filter.bits,
		    a->u.filter.bits_len);
	case REC_OFFER:
		if (a->u.offer.batch != b->u.offer.batch ||
		    a->u.offer.count != b->u.offer.count ||
		    a->u.offer.base_pfn != b->u.offer.base_pfn ||
		    a->u.offer.span != b->u.offer.span)
			return 0;
		if (memcmp(a->u.offer.bitmap, b->u.offer.bitmap,
		    a->u.offer.span / 8) != 0)
			return 0;
		proto_offer_pfns(&a->u.offer, pfns);
		proto_offer_pfns(&b->u.offer, pfns2);
		for (i = 0; i < a->u.offer.count; i++)
			if (pfns[i] != pfns2[i] ||
			    memcmp(proto_offer_prefix_at(&a->u.offer, i),
			    proto_offer_prefix_at(&b->u.offer, i),
			    PROTO_PREFIX_LEN) != 0)
				return 0;
		return 1;
	case REC_HAVE:
		if (a->u.have.batch != b->u.have.batch ||
		    a->u.have.count != b->u.have.count ||
		    memcmp(a->u.have.confirm, b->u.have.confirm,
		    PROTO_DIGEST_LEN) != 0)
			return 0;
		for (i = 0; i < a->u.have.count; i++)
			if (proto_have_bit(&a->u.have, i) !=
			    proto_have_bit(&b->u.have, i))
				return 0;
		return 1;
	case REC_PAGE_DATA:
		if (a->u.page_data.count != b->u.page_data.count ||
		    a->u.page_data.flags != b->u.page_data.flags)
			return 0;
		for (i = 0; i < a->u.page_data.count; i++)
			if (proto_pfn_at(a->u.page_data.pfns, i) !=
			    proto_pfn_at(b->u.page_data.pfns, i))
				return 0;
		return a->u.page_data.data_len == b->u.page_data.data_len &&
		    memcmp(a->u.page_data.data, b->u.page_data.data,
		    a->u.page_data.data_len) == 0;
	case REC_PAGE_ZERO:
	case REC_NEED:
		if (a->u.pfn_list.count != b->u.pfn_list.count)
			return 0;
		for (i = 0; i < a->u.pfn_list.count; i++)
			if (proto_pfn_at(a->u.pfn_list.pfns, i) !=
			    proto_pfn_at(b->u.pfn_list.pfns, i))
				return 0;
		return 1;
	case REC_PAGE_REF:
		if (a->u.page_ref.count != b->u.page_ref.count)
			return 0;
		for (i = 0; i < a->u.page_ref.count; i++)
			if (proto_ref_pfn_at(&a->u.page_ref, i) !=
			    proto_ref_pfn_at(&b->u.page_ref, i) ||
			    proto_ref_hint_at(&a->u.page_ref, i) !=
			    proto_ref_hint_at(&b->u.page_ref, i) ||
			    memcmp(proto_ref_digest_at(&a->u.page_ref, i),
			    proto_ref_digest_at(&b->u.page_ref, i), 32) != 0)
				return 0;
		return 1;
	case REC_ITER_END:
		return a->u.iter_end.iteration == b->u.iter_end.iteration &&
		    a->u.iter_end.pages_sent == b->u.iter_end.pages_sent &&
		    a->u.iter_end.dirty == b->u.iter_end.dirty;
	case REC_CONTEXT:
		return a->u.context.len == b->u.context.len &&
		    same_bytes(a->u.context.blob, b->u.context.blob,
		    a->u.context.len);
	case REC_END:
	case REC_READY:
		return a->u.end.flags == b->u.end.flags &&
		    memcmp(a->u.end.memory_sha256, b->u.end.memory_sha256,
		    32) == 0;
	case REC_RUNNING:
		return a->u.running.cpu_dest_us == b->u.running.cpu_dest_us &&
		    a->u.running.refs_filled == b->u.running.refs_filled &&
		    a->u.running.refs_failed == b->u.running.refs_failed;
	case REC_GO:
	case REC_KEEPALIVE:
		return 1;
	default:
		abort();	/* decoded a type we do not know */
	}
}

/* Encode a decoded record again into enc[]; returns its length. */
static int
reencode(const struct proto_rec *r)
{
	uint32_t	i;
	int		n;

	switch (r->type) {
	case REC_HELLO:
		return proto_enc_hello(enc, sizeof(enc), &r->u.hello);
	case REC_ERROR:
		return proto_enc_error(enc, sizeof(enc), r->u.error.code,
		    r->u.error.msg);
	case REC_DOMAIN_INFO:
		return proto_enc_domain_info(enc, sizeof(enc),
		    &r->u.domain_info);
	case REC_DOMAIN_ACK:
		return proto_enc_domain_ack_streams(enc, sizeof(enc),
		    &r->u.domain_ack);
	case REC_JOIN:
		return proto_enc_join(enc, sizeof(enc), &r->u.join);
	case REC_FILTER:
		return proto_enc_filter(enc, sizeof(enc), &r->u.filter);
	case REC_OFFER: {
		/* The bitmap is rebuilt from the decoded pfn list, so the
		 * byte comparison in rec_equal() also checks
		 * proto_offer_pfns(). */
		const struct proto_offer *o = &r->u.offer;

		CHECK(o->span % 64 == 0 && o->span / 64 >= 1 &&
		    o->span / 64 <= sizeof(bitmap) / sizeof(bitmap[0]));
		memset(bitmap, 0, o->span / 8);
		proto_offer_pfns(o, pfns);
		for (i = 0; i < o->count; i++) {
			uint64_t d = pfns[i] - o->base_pfn;

			CHECK(pfns[i] >= o->base_pfn && d < o->span);
			bitmap[d / 64] |= 1ull << (d % 64);
			memcpy(prefixes[i], proto_offer_prefix_at(o, i),
			    PROTO_PREFIX_LEN);
		}
		return proto_enc_offer(enc, sizeof(enc), o->batch, o->base_pfn,
		    o->span, bitmap, o->count,
		    (const uint8_t (*)[PROTO_PREFIX_LEN])prefixes);
	}
	case REC_HAVE:
		for (i = 0; i < r->u.have.count; i++)
			has[i] = (uint8_t)proto_have_bit(&r->u.have, i);
		return proto_enc_have(enc, sizeof(enc), r->u.have.batch,
		    r->u.have.count, has, r->u.have.confirm);
	case REC_PAGE_DATA:
		for (i = 0; i < r->u.page_data.count; i++)
			pfns[i] = proto_pfn_at(r->u.page_data.pfns, i);
		if (r->u.page_data.flags != 0)
			return proto_enc_page_data_z(enc, sizeof(enc),
			    r->u.page_data.count, pfns, r->u.page_data.flags,
			    r->u.page_data.data, r->u.page_data.data_len);
		n = proto_enc_page_data_head(enc, sizeof(enc),
		    r->u.page_data.count, pfns);
		if (n < 0)
			return n;
		CHECK((size_t)n + (size_t)r->u.page_data.count *
		    PROTO_PAGE_SIZE <= sizeof(enc));
		memcpy(enc + n, r->u.page_data.data,
		    (size_t)r->u.page_data.count * PROTO_PAGE_SIZE);
		return n + (int)(r->u.page_data.count * PROTO_PAGE_SIZE);
	case REC_PAGE_ZERO:
	case REC_NEED:
		for (i = 0; i < r->u.pfn_list.count; i++)
			pfns[i] = proto_pfn_at(r->u.pfn_list.pfns, i);
		return proto_enc_pfn_list(enc, sizeof(enc), r->type,
		    r->u.pfn_list.count, pfns);
	case REC_PAGE_REF:
		for (i = 0; i < r->u.page_ref.count; i++) {
			pfns[i] = proto_ref_pfn_at(&r->u.page_ref, i);
			hints[i] = proto_ref_hint_at(&r->u.page_ref, i);
			memcpy(digests[i], proto_ref_digest_at(&r->u.page_ref,
			    i), 32);
		}
		return proto_enc_page_ref(enc, sizeof(enc),
		    r->u.page_ref.count, pfns, hints,
		    (const uint8_t (*)[32])digests);
	case REC_ITER_END:
		return proto_enc_iter_end(enc, sizeof(enc), &r->u.iter_end);
	case REC_CONTEXT:
		return proto_enc_context(enc, sizeof(enc), r->u.context.blob,
		    r->u.context.len);
	case REC_END:
	case REC_READY:
		return proto_enc_end(enc, sizeof(enc), r->type, &r->u.end);
	case REC_GO:
		return proto_enc_go(enc, sizeof(enc));
	case REC_RUNNING:
		return proto_enc_running(enc, sizeof(enc), &r->u.running);
	case REC_KEEPALIVE:
		return proto_enc_keepalive(enc, sizeof(enc));
	default:
		abort();
	}
}

/* Decoded pfns must be in range: read every one through its accessor. */
static void
check_ranges(const struct proto_rec *r, const struct proto_limits *lim)
{
	uint64_t	h;
	uint32_t	i;

	switch (r->type) {
	case REC_OFFER:
		/* count pfns, strictly ascending, inside the window and
		 * < pages. */
		CHECK(r->u.offer.count >= 1 &&
		    r->u.offer.count <= PROTO_PFN_BATCH_MAX);
		CHECK(r->u.offer.span >= 64 &&
		    r->u.offer.span <= PROTO_OFFER_SPAN_MAX &&
		    r->u.offer.span % 64 == 0);
		CHECK(r->u.offer.base_pfn <= UINT64_MAX - r->u.offer.span);
		proto_offer_pfns(&r->u.offer, pfns);
		for (i = 0; i < r->u.offer.count; i++) {
			CHECK(pfns[i] < lim->pages);
			CHECK(pfns[i] >= r->u.offer.base_pfn &&
			    pfns[i] - r->u.offer.base_pfn < r->u.offer.span);
			CHECK(i == 0 || pfns[i] > pfns[i - 1]);
		}
		break;
	case REC_PAGE_DATA:
		/* Raw pages, or a frame of the negotiated method that is
		 * shorter than the pages it stands for. */
		CHECK(r->u.page_data.flags == 0 ||
		    (r->u.page_data.flags == lim->compress &&
		    r->u.page_data.data_len >= 1 &&
		    r->u.page_data.data_len <
		    r->u.page_data.count * PROTO_PAGE_SIZE));
		CHECK(r->u.page_data.flags != 0 || r->u.page_data.data_len ==
		    r->u.page_data.count * PROTO_PAGE_SIZE);
		for (i = 0; i < r->u.page_data.count; i++)
			CHECK(proto_pfn_at(r->u.page_data.pfns, i) <
			    lim->pages);
		break;
	case REC_PAGE_ZERO:
	case REC_NEED:
		for (i = 0; i < r->u.pfn_list.count; i++)
			CHECK(proto_pfn_at(r->u.pfn_list.pfns, i) < lim->pages);
		break;
	case REC_PAGE_REF:
		for (i = 0; i < r->u.page_ref.count; i++) {
			CHECK(proto_ref_pfn_at(&r->u.page_ref, i) <
			    lim->pages);
			h = proto_ref_hint_at(&r->u.page_ref, i);
			CHECK(h == PROTO_PFN_NONE || h < lim->pages);
		}
		break;
	case REC_HELLO:
		CHECK(r->u.hello.version_min <= r->u.hello.version_max);
		CHECK(strlen(r->u.hello.host_name) <= 64);
		break;
	case REC_ERROR:
		CHECK(strlen(r->u.error.msg) <= PROTO_ERRMSG_MAX);
		break;
	case REC_DOMAIN_INFO:
		CHECK(strlen(r->u.domain_info.name) >= 1);
		CHECK(strlen(r->u.domain_info.name) <= PROTO_NAME_MAX);
		break;
	case REC_FILTER: {
		/* "No filter" alone, or whole words inside the bit array
		 * (offset is the peer's u64: compare without adding). */
		const struct proto_filter *f = &r->u.filter;

		if (f->nbits == 0) {
			CHECK(f->k == 0 && f->offset == 0 && f->bits_len == 0);
			break;
		}
		CHECK(f->nbits % 64 == 0 && f->nbits <= PROTO_FILTER_BITS_MAX);
		CHECK(f->k >= 1 && f->k <= PROTO_FILTER_K_MAX);
		CHECK(f->bits_len >= 8 && f->bits_len % 8 == 0 &&
		    f->bits_len <= PROTO_FILTER_CHUNK_MAX);
		CHECK(f->offset % 8 == 0 && f->offset <= f->nbits / 8 &&
		    f->bits_len <= f->nbits / 8 - f->offset);
		break;
	}
	default:
		break;
	}
}

/*
 * The head-only decoder (link.c's PAGE_DATA in place) must reach the
 * whole decoder's verdict ret, and on success the same values, whenever
 * it takes the record (proto_page_data_head_len() not 0).
 */
static void
page_data_head(const uint8_t *body, uint32_t len,
    const struct proto_limits *lim, int ret, const struct proto_rec *whole)
{
	struct proto_rec r;
	size_t head;
	int rc;

	if (len < 8 || (head = proto_page_data_head_len(body)) == 0)
		return;
	if (head > len) {
		CHECK(ret != 0);
		return;
	}
	/* Short of the head: wait, or an error the whole body has too. */
	rc = proto_decode_page_data_head(body, head - 1, len, lim, &r);
	CHECK(rc == -EAGAIN || (rc != 0 && rc == ret));
	CHECK(proto_decode_page_data_head(body, head, len, lim, &r) == ret);
	if (ret != 0)
		return;
	CHECK(r.u.page_data.data == NULL && r.u.page_data.seg == NULL);
	r.u.page_data.data = whole->u.page_data.data;
	CHECK(rec_equal(&r, whole));
}

static void
one_record(const uint8_t *rec, uint32_t type, uint32_t len, size_t total,
    const struct proto_limits *lim, enum proto_dir dir, enum proto_phase ph)
{
	struct proto_rec	r, r2;
	uint32_t		type2, len2;
	size_t			total2;
	int			ret, legal, n;

	CHECK(proto_type_name(type) != NULL);
	legal = proto_legal(type, dir, ph);
	CHECK(legal == 0 || legal == 1);

	ret = proto_decode(type, rec + PROTO_REC_HDR_LEN, len, lim, &r);
	if (type == REC_PAGE_DATA)
		page_data_head(rec + PROTO_REC_HDR_LEN, len, lim, ret, &r);
	switch (ret) {
	case 0:
		break;
	case -ENOENT:
		CHECK(type & PROTO_OPTIONAL);
		CHECK(legal == 0);
		return;
	case -ENOTSUP:
		CHECK(!(type & PROTO_OPTIONAL));
		CHECK(legal == 0);
		return;
	case -EBADMSG:
	case -EMSGSIZE:
		return;
	default:
		abort();
	}
	CHECK(r.type == type);
	CHECK(strcmp(proto_type_name(type), "UNKNOWN") != 0);
	check_ranges(&r, lim);

	/* Encode again, frame, decode, compare.  One asymmetry by design
	 * (docs/PROTOCOL.md): any DOMAIN_INFO.compress decodes, so that the
	 * destination can refuse an unknown method with an ERROR, but the
	 * encoder sends only known methods. */
	n = reencode(&r);
	if (type == REC_DOMAIN_INFO &&
	    r.u.domain_info.compress > PROTO_COMPRESS_MAX) {
		CHECK(n == -EINVAL);
		return;
	}
	CHECK(n > 0);
	CHECK((size_t)n == total);
	CHECK(proto_frame_peek(enc, (size_t)n, lim->rec_max, &type2, &len2,
	    &total2) == 0);
	CHECK(type2 == type && len2 == len && total2 == total);
	for (size_t i = PROTO_REC_HDR_LEN + len; i < total; i++)
		CHECK(enc[i] == 0);
	CHECK(proto_decode(type2, enc + PROTO_REC_HDR_LEN, len2, lim, &r2) ==
	    0);
	CHECK(rec_equal(&r, &r2));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct proto_limits	*lim;
	struct proto_limits		 lim_sel;
	enum proto_dir			 dir;
	enum proto_phase		 ph;
	uint32_t			 sel, type, len, version;
	size_t				 total, off;
	int				 ret, nrec;

	if (size < 4)
		return 0;
	sel = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
	    (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
	ph = (enum proto_phase)(sel & 7);
	dir = (sel & 8) ? PROTO_D2S : PROTO_S2D;
	lim_sel = limits[(sel >> 4) & 3];
	lim_sel.compress = (sel >> 6) & 3;
	lim = &lim_sel;
	data += 4;
	size -= 4;

	/* The stream header check sees the same bytes. */
	if (size >= PROTO_STREAM_HDR_LEN) {
		ret = proto_stream_hdr_check(data, &version);
		CHECK(ret == 0 || ret == -EPROTO || ret == -EPROTONOSUPPORT);
		CHECK(ret != 0 || version == PROTO_VERSION);
	}

	for (off = 0, nrec = 0; nrec < MAX_RECORDS; nrec++) {
		ret = proto_frame_peek(data + off, size - off, lim->rec_max,
		    &type, &len, &total);
		if (ret == -EAGAIN || ret == -EMSGSIZE)
			break;
		CHECK(ret == 0);
		CHECK(len <= lim->rec_max);
		CHECK(total == proto_rec_size(len) && total % 8 == 0);
		CHECK(total <= size - off);
		one_record(data + off, type, len, total, lim, dir, ph);
		off += total;
	}
	return 0;
}
