/*
 * proto.h - the sharemig migration stream: record layouts, encoders and
 * the one validating decoder.  docs/PROTOCOL.md is the normative spec;
 * this header and proto.c implement it.
 *
 * Stream: each side first sends a 24-byte stream header
 *   u64 magic (PROTO_MAGIC), u32 version, u32 flags, u64 reserved
 * then records { u32 type; u32 length; body[length]; zero pad to 8 }.
 * All integers little-endian.  Bit 31 of type = optional record: a
 * receiver ignores an unknown optional record, and fails the migration on
 * an unknown mandatory one.
 *
 * Nothing here allocates or logs.  Decoded structs point into the caller's
 * record body (which must outlive them); array elements are read with the
 * proto_*_at() accessors, which convert byte order.
 */
#ifndef SHAREMIG_PROTO_H
#define SHAREMIG_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define PROTO_MAGIC		0x47494d4552414853ULL	/* "SHAREMIG" */
#define PROTO_VERSION		1u
#define PROTO_STREAM_HDR_LEN	24u
#define PROTO_REC_HDR_LEN	8u
/* Largest record body, checked on send and receive. */
#define PROTO_REC_MAX		(2u << 20)
/* Largest record body before HELLO has been exchanged (unauthenticated). */
#define PROTO_REC_MAX_PREAUTH	4096u

#define PROTO_PAGE_SIZE		4096u
#define PROTO_DIGEST_LEN	32u	/* SHA-256 */
#define PROTO_NAME_MAX		63u	/* domain name bytes, no NUL on wire */
#define PROTO_ERRMSG_MAX	1024u
#define PROTO_CONTEXT_MAX	(1u << 20)
#define PROTO_CONFIG_MAX	(64u << 10)
#define PROTO_PAGE_BATCH_MAX	256u	/* pages per PAGE_DATA */
#define PROTO_PFN_BATCH_MAX	4096u	/* entries per OFFER/HAVE/ZERO/REF/NEED */
#define PROTO_OFFER_SPAN_MAX	65536u	/* pfns covered by one OFFER */
#define PROTO_PREFIX_LEN	8u	/* digest bytes in an OFFER entry */
#define PROTO_PFN_NONE		UINT64_MAX
/* FILTER: the largest Bloom filter (16 MiB), hash count, and bit array
 * bytes carried by one record. */
#define PROTO_FILTER_BITS_MAX	(1ull << 27)
#define PROTO_FILTER_K_MAX	16u
#define PROTO_FILTER_CHUNK_MAX	(1u << 20)

#define PROTO_OPTIONAL		0x80000000u

enum proto_type {
	REC_HELLO	= 1,	/* both */
	REC_ERROR	= 2,	/* both, any phase */
	REC_DOMAIN_INFO	= 3,	/* S->D */
	REC_DOMAIN_ACK	= 4,	/* D->S */
	REC_OFFER	= 5,	/* S->D */
	REC_HAVE	= 6,	/* D->S */
	REC_PAGE_DATA	= 7,	/* S->D */
	REC_PAGE_ZERO	= 8,	/* S->D */
	REC_PAGE_REF	= 9,	/* S->D */
	REC_ITER_END	= 10,	/* S->D */
	REC_NEED	= 11,	/* D->S */
	REC_CONTEXT	= 12,	/* S->D */
	REC_END		= 13,	/* S->D */
	REC_READY	= 14,	/* D->S */
	REC_GO		= 15,	/* S->D */
	REC_RUNNING	= 16,	/* D->S */
	REC_JOIN	= 17,	/* S->D, first record of a data stream */
	REC_FILTER	= 18,	/* D->S, between DOMAIN_INFO and DOMAIN_ACK */
	REC_KEEPALIVE	= PROTO_OPTIONAL | 1,	/* both, any phase, empty */
};

/* Who sends a record. */
enum proto_dir {
	PROTO_S2D = 1,
	PROTO_D2S = 2,
};

/*
 * Phases of a session, as seen by the receiver of a record.  A record is
 * legal only in the phases proto_legal() allows; anything else is a
 * protocol error.
 *  HELLO:    stream headers exchanged, waiting for HELLO
 *  INFO:     HELLOs exchanged, DOMAIN_INFO / DOMAIN_ACK
 *  LIVE:     offers, pages, iterations (also NEED answers)
 *  FINAL:    CONTEXT/END sent, waiting for READY (NEED still legal)
 *  READY:    READY sent, waiting for GO
 *  HANDOVER: GO sent, waiting for RUNNING
 */
enum proto_phase {
	PH_HELLO	= 0,
	PH_INFO		= 1,
	PH_LIVE		= 2,
	PH_FINAL	= 3,
	PH_READY	= 4,
	PH_HANDOVER	= 5,
	PH_COUNT
};

/* Capability bits of HELLO. */
#define PROTO_CAP_REF		0x1ull
#define PROTO_CAP_ZERO		0x2ull
#define PROTO_CAP_VERIFY	0x4ull
#define PROTO_CAP_ZSTD		0x8ull	/* accepts zstd PAGE_DATA */
#define PROTO_CAP_LZ4		0x10ull	/* accepts lz4 PAGE_DATA */
#define PROTO_CAP_STREAMS	0x20ull	/* several streams: DOMAIN_INFO
					 * STREAMS, DOMAIN_ACK grant, JOIN */
#define PROTO_CAP_FILTER	0x40ull	/* sends / accepts FILTER (a Bloom
					 * filter of the destination's index)
					 * before DOMAIN_ACK */

/*
 * Several TCP streams per session (docs/PROTOCOL.md "Several streams"):
 * stream 0 is the main connection, streams 1..n-1 carry PAGE_DATA and
 * ITER_END only.  PAGE_DATA of pfn p goes on stream proto_stream_of(p, n)
 * while pages stream (LIVE); ITER_END/END are barriers across all.
 */
#define PROTO_STREAMS_MAX	8u
#define PROTO_TOKEN_LEN		16u
#define PROTO_STREAM_CHUNK_SHIFT 6	/* runs of 64 pfns share a stream */

static inline unsigned
proto_stream_of(uint64_t pfn, unsigned streams)
{
	return streams <= 1 ? 0 :
	    (unsigned)((pfn >> PROTO_STREAM_CHUNK_SHIFT) % streams);
}

/* DOMAIN_INFO flags. */
#define PROTO_DI_PAUSED		0x1u	/* leave the guest paused at the end */
#define PROTO_DI_VERIFY		0x2u	/* compare whole-memory digests */
#define PROTO_DI_ADVISE		0x4u	/* dry run: only OFFER/HAVE, no domain,
					 * no pages (placement advice) */
#define PROTO_DI_STREAMS	0x8u	/* u32 streams, u32 reserved follow
					 * the config (set by the encoder
					 * when streams > 1) */

enum proto_dedup {
	PROTO_DEDUP_NONE	= 0,
	PROTO_DEDUP_SHARED	= 1,
	PROTO_DEDUP_ALL		= 2,
};

/*
 * Compression of PAGE_DATA: DOMAIN_INFO.compress asks for a method, and
 * PAGE_DATA.flags names the method of each record (0: raw pages).
 */
enum proto_compress {
	PROTO_COMPRESS_NONE	= 0,
	PROTO_COMPRESS_ZSTD	= 1,
	PROTO_COMPRESS_LZ4	= 2,
};
#define PROTO_COMPRESS_MAX	PROTO_COMPRESS_LZ4

/* END / READY flags. */
#define PROTO_END_VERIFY	0x1u	/* memory_sha256 is meaningful */
#define PROTO_END_UNVERIFIED	0x2u	/* END only, with VERIFY: the pfns
					   left out of the digest follow */
#define PROTO_END_UNVERIFIED_MAX 16

/* ---- decoded records (host order; arrays stay in the body) ---- */

struct proto_hello {		/* body: 96 bytes */
	uint32_t	version_min;
	uint32_t	version_max;
	uint64_t	caps;
	uint8_t		host_id[16];
	char		host_name[65];	/* wire: 64 bytes NUL-padded */
};

struct proto_error {		/* body: u32 code, u32 len, msg[len] */
	uint32_t	code;		/* a positive errno value */
	char		msg[PROTO_ERRMSG_MAX + 1];	/* NUL-terminated copy */
};

struct proto_domain_info {	/* body: 48 bytes fixed + name + config */
	uint64_t	pages;
	uint32_t	vcpus;
	uint32_t	flags;		/* PROTO_DI_* */
	uint32_t	dedup;		/* enum proto_dedup */
	uint32_t	compress;	/* enum proto_compress asked for; the
					 * decoder passes any value, the
					 * destination refuses what it does
					 * not support */
	uint8_t		uuid[16];
	char		name[PROTO_NAME_MAX + 1];	/* NUL-terminated copy */
	const uint8_t	*config;	/* points into the body */
	uint32_t	config_len;
	uint32_t	streams;	/* streams asked for: 1 (no
					 * STREAMS flag) or 2..PROTO_STREAMS_MAX */
};

/* body: u32 domid, u32 streams (was reserved: 0 or 1 = one stream),
 * and with streams >= 2: u8 token[16] (24 bytes) */
struct proto_domain_ack {
	uint32_t	domid;
	uint32_t	streams;	/* granted, 1..PROTO_STREAMS_MAX */
	uint8_t		token[PROTO_TOKEN_LEN];	/* streams >= 2 only */
};

/* JOIN: the first record on a data stream, after HELLO.
 * body: u8 token[16], u32 index (1..PROTO_STREAMS_MAX - 1), u32 reserved */
struct proto_join {
	uint8_t		token[PROTO_TOKEN_LEN];
	uint32_t	index;
};

/*
 * OFFER: candidate pages of the source, identified by the first 8 bytes
 * of their SHA-256 (a hint only: identity is proven per batch by HAVE's
 * confirm digest, see docs/PROTOCOL.md).  The pfns are a bitmap over the
 * window [base_pfn, base_pfn + span).
 * body: u32 batch, u32 count, u64 base_pfn, u32 span, u32 reserved,
 *       u64 bitmap[span / 64], u8 prefix[count][8]
 * span is a multiple of 64 in 64..PROTO_OFFER_SPAN_MAX; the bitmap has
 * exactly count bits set, each at a pfn < pages.
 */
struct proto_offer {
	uint32_t	batch;
	uint32_t	count;
	uint64_t	base_pfn;
	uint32_t	span;
	const uint8_t	*bitmap;	/* span / 64 LE u64 words */
	const uint8_t	*prefixes;	/* count x 8 bytes */
};

/*
 * HAVE: per offered entry, whether the destination filled the page from
 * local content (copied and checked against its own SHA-256); confirm is
 * the SHA-256 of the concatenated full digests of the filled entries, in
 * order (all zero when none was filled).  The source accepts the batch's
 * fills only if its own digests of those pages hash to the same value.
 * body: u32 batch, u32 count, u8 confirm[32], u8 bits[(count+7)/8]
 */
struct proto_have {
	uint32_t	batch;
	uint32_t	count;
	const uint8_t	*confirm;	/* 32 bytes */
	const uint8_t	*bits;		/* bit i (LSB first) = filled entry i */
};

/*
 * PAGE_DATA.  flags 0: body u32 count, u32 flags, u64 pfn[count],
 * page[count][4096]; data_len = count * 4096.  flags = a compression
 * method (the one negotiated, proto_limits.compress): body u32 count,
 * u32 flags, u64 pfn[count], u32 clen, u32 reserved, u8 frame[clen],
 * 1 <= clen < count * 4096; data/data_len are the compressed frame, which
 * the receiver must decompress to exactly count * 4096 bytes (pcomp.h).
 */
struct proto_page_data {
	uint32_t	count;
	uint32_t	flags;		/* enum proto_compress */
	const uint8_t	*pfns;
	const uint8_t	*data;		/* NULL: the pages are in seg[] */
	uint32_t	data_len;
	/*
	 * Set by link.c, never by the decoder: the uncompressed pages left
	 * where they lie in the link's input, in nseg pieces in order
	 * (data_len bytes in all; a page may straddle two pieces).  Read
	 * the pages with proto_pages_*(), which take either form.
	 */
	const struct iovec *seg;
	unsigned	nseg;
};

struct proto_pfn_list {		/* PAGE_ZERO, NEED: u32 count, u32 reserved, u64 pfn[count] */
	uint32_t	count;
	const uint8_t	*pfns;
};

struct proto_page_ref {		/* body: u32 count, u32 reserved, {u64 pfn, u64 hint_pfn, u8 digest[32]}[count] */
	uint32_t	count;
	const uint8_t	*entries;
};

/*
 * FILTER: one piece of a Bloom filter over the 8-byte SHA-256 prefixes
 * the destination's host index holds (docs/PROTOCOL.md "FILTER"); a hint
 * that lets the source send as PAGE_DATA, without an offer, the pages the
 * destination certainly lacks.
 * body: u64 nbits, u32 k, u32 reserved, u64 offset, u8 bits[len - 24]
 * nbits 0: no filter (k 0, offset 0, no bits).  Otherwise nbits is a
 * multiple of 64 up to PROTO_FILTER_BITS_MAX, k is 1..PROTO_FILTER_K_MAX,
 * and bits[] is 8..PROTO_FILTER_CHUNK_MAX bytes, a multiple of 8, at byte
 * offset (a multiple of 8) of the bit array, inside its nbits / 8 bytes.
 */
struct proto_filter {
	uint64_t	nbits;
	uint32_t	k;
	uint64_t	offset;		/* byte offset of bits[0] in the array */
	const uint8_t	*bits;		/* points into the body; NULL
					 * when bits_len is 0 */
	uint32_t	bits_len;
};

struct proto_iter_end {		/* body: u32 iteration, u32 reserved, u64 pages_sent, u64 dirty */
	uint32_t	iteration;
	uint64_t	pages_sent;
	uint64_t	dirty;
};

struct proto_context {		/* body: u32 len, u32 reserved, blob[len] */
	uint32_t	len;
	const uint8_t	*blob;
};

struct proto_end {		/* END and READY; body: u32 flags, u32 reserved, u8 sha256[32],
				   with UNVERIFIED: u32 n, u32 reserved, u64 pfn[n] */
	uint32_t	flags;
	uint8_t		memory_sha256[32];
	uint32_t	nunverified;	/* 1..PROTO_END_UNVERIFIED_MAX, ascending */
	uint64_t	unverified[PROTO_END_UNVERIFIED_MAX];
};

struct proto_running {		/* body: u64 cpu_dest_us, u64 refs_filled, u64 refs_failed, u64 reserved */
	uint64_t	cpu_dest_us;
	uint64_t	refs_filled;
	uint64_t	refs_failed;
};

struct proto_rec {
	uint32_t	type;
	union {
		struct proto_hello	hello;
		struct proto_error	error;
		struct proto_domain_info domain_info;
		struct proto_domain_ack	domain_ack;
		struct proto_join	join;
		struct proto_offer	offer;
		struct proto_have	have;
		struct proto_page_data	page_data;
		struct proto_pfn_list	pfn_list;	/* PAGE_ZERO, NEED */
		struct proto_page_ref	page_ref;
		struct proto_iter_end	iter_end;
		struct proto_context	context;
		struct proto_end	end;		/* END, READY */
		struct proto_running	running;
		struct proto_filter	filter;
	} u;
};

/* What the decoder checks against. */
struct proto_limits {
	uint64_t	pages;		/* pfns must be < pages; 0 = not known yet
					 * (records carrying pfns are then
					 * rejected) */
	uint32_t	rec_max;	/* PROTO_REC_MAX or PROTO_REC_MAX_PREAUTH */
	uint32_t	compress;	/* the PAGE_DATA method negotiated
					 * (enum proto_compress); other
					 * non-zero flags are malformed */
};

/* ---- framing ---- */

/* Encode/check the stream header.  check: 0, -EPROTO (bad magic, or
 * flags or reserved not zero), -EPROTONOSUPPORT (framing version other
 * than PROTO_VERSION); *version is written only on success. */
void	proto_stream_hdr_encode(uint8_t out[PROTO_STREAM_HDR_LEN]);
int	proto_stream_hdr_check(const uint8_t in[PROTO_STREAM_HDR_LEN],
	    uint32_t *version);

/*
 * Look at the start of a byte stream.  Returns 0 and sets *type, *len
 * (body length) and *total (header + body + pad) when a whole record is
 * in buf[0..avail); -EAGAIN when more bytes are needed; -EMSGSIZE when
 * the length exceeds rec_max or PROTO_REC_MAX.  (Only the 8-byte header
 * must be present to get -EMSGSIZE.)  Padding bytes are not inspected.
 */
int	proto_frame_peek(const uint8_t *buf, size_t avail, uint32_t rec_max,
	    uint32_t *type, uint32_t *len, size_t *total);

/* ---- the one validating decoder ---- */

/*
 * Decode and validate one record body: fixed part present, counts within
 * their *_BATCH_MAX and times element size equal to the rest of the body
 * (record fully consumed, no overflow), strings printable, names
 * [A-Za-z0-9._-]{1,63}, every pfn < lim->pages, reserved fields ignored,
 * PAGE_DATA flags 0 or lim->compress (then the compressed frame's length
 * is checked, not its contents), a FILTER's bits inside its bit array,
 * no pfn-carrying record while lim->pages is 0.
 * Returns 0, -EBADMSG (malformed), -EMSGSIZE (over a limit), -ENOTSUP
 * (unknown mandatory type), -ENOENT (unknown optional type: to be
 * ignored), or -EINVAL (lim or out NULL, body NULL with len > 0).
 * *out (including out->type) is written only on success.
 */
int	proto_decode(uint32_t type, const uint8_t *body, size_t len,
	    const struct proto_limits *lim, struct proto_rec *out);

/*
 * A PAGE_DATA body whose pages need not be gathered: body[0..avail) is
 * the start of a body of len bytes.  proto_page_data_head_len() tells
 * from its first 8 bytes how much of it to have (flags, count, pfns), or
 * 0 when the record must be decoded whole (compressed, or a count out of
 * range: proto_decode() then says why).  proto_decode_page_data_head()
 * validates as proto_decode() does (the pages themselves are never
 * inspected) but leaves page_data.data NULL; -EAGAIN when avail is short
 * of the head.
 */
size_t	proto_page_data_head_len(const uint8_t body[8]);
int	proto_decode_page_data_head(const uint8_t *body, size_t avail,
	    size_t len, const struct proto_limits *lim, struct proto_rec *out);

/*
 * Reading PAGE_DATA's pages in order, from one buffer (data, NULL seg)
 * or from nseg pieces (struct proto_page_data's seg): proto_pages_init()
 * then one proto_pages_copy() per page, which copies the next
 * PROTO_PAGE_SIZE bytes to dst.  The caller copies no more pages than
 * the pieces hold.
 */
struct proto_pages {
	const struct iovec *seg;
	unsigned	nseg;
	size_t		off;		/* into seg[0] */
	struct iovec	one;
};

void	proto_pages_init(struct proto_pages *pp, const void *data,
	    const struct iovec *seg, unsigned nseg);
void	proto_pages_copy(struct proto_pages *pp, void *dst);

/*
 * Is a record of this type, sent in direction dir (S2D: the source sent
 * it), legal for its receiver in phase ph?  Returns 1 or 0; unknown
 * types, directions and phases give 0.
 */
int	proto_legal(uint32_t type, enum proto_dir dir, enum proto_phase ph);

/* The record type's name ("PAGE_DATA"), or "UNKNOWN". */
const char *proto_type_name(uint32_t type);

/* Array accessors (i < count; the decoder has checked bounds). */
uint64_t proto_pfn_at(const uint8_t *pfns, uint32_t i);
/* The offered pfns in order into pfns[o->count]. */
void	proto_offer_pfns(const struct proto_offer *o, uint64_t *pfns);
const uint8_t *proto_offer_prefix_at(const struct proto_offer *o, uint32_t i);
uint64_t proto_ref_pfn_at(const struct proto_page_ref *r, uint32_t i);
uint64_t proto_ref_hint_at(const struct proto_page_ref *r, uint32_t i);
const uint8_t *proto_ref_digest_at(const struct proto_page_ref *r, uint32_t i);
int	proto_have_bit(const struct proto_have *h, uint32_t i);

/* ---- encoders ----
 * Each writes a whole record (header, body, padding) into out[0..cap) and
 * returns its length, or -EMSGSIZE if cap is too small or the body would
 * exceed PROTO_REC_MAX, or -EINVAL for bad arguments (count 0 or over the
 * batch maximum, name not valid, ...).  proto_rec_size_*() give the length
 * needed.
 */
int	proto_enc_hello(uint8_t *out, size_t cap, const struct proto_hello *h);
int	proto_enc_error(uint8_t *out, size_t cap, uint32_t code, const char *msg);
int	proto_enc_domain_info(uint8_t *out, size_t cap,
	    const struct proto_domain_info *di);
int	proto_enc_domain_ack(uint8_t *out, size_t cap, uint32_t domid);
/* DOMAIN_ACK granting a->streams (1: the 8-byte form above, token
 * unused; 2..PROTO_STREAMS_MAX: with a->token). */
int	proto_enc_domain_ack_streams(uint8_t *out, size_t cap,
	    const struct proto_domain_ack *a);
int	proto_enc_join(uint8_t *out, size_t cap, const struct proto_join *j);
/* FILTER: f->bits[f->bits_len] at byte f->offset of an f->nbits-bit
 * array, under the decoder's rules (struct proto_filter); nbits 0 is the
 * "no filter" record (k, offset and bits_len 0; bits may then be NULL). */
int	proto_enc_filter(uint8_t *out, size_t cap, const struct proto_filter *f);
/* OFFER: bitmap[span/64] (host u64 words) with exactly count bits set,
 * prefixes[count] in pfn order. */
int	proto_enc_offer(uint8_t *out, size_t cap, uint32_t batch,
	    uint64_t base_pfn, uint32_t span, const uint64_t *bitmap,
	    uint32_t count, const uint8_t (*prefixes)[8]);
/* HAVE: has[count], each 0 or 1; confirm[32]. */
int	proto_enc_have(uint8_t *out, size_t cap, uint32_t batch, uint32_t count,
	    const uint8_t *has, const uint8_t confirm[32]);
/*
 * PAGE_DATA is written in two parts so page bytes need not be copied
 * twice: proto_enc_page_data_head() writes the record header, the fixed
 * part and the pfn array (a multiple of 8 bytes) and returns the number
 * of bytes it wrote (16 + 8 * count); the caller then appends exactly
 * count * 4096 bytes of page contents (no padding needed).  cap need only
 * hold the head.
 */
int	proto_enc_page_data_head(uint8_t *out, size_t cap, uint32_t count,
	    const uint64_t *pfns);
/*
 * A compressed PAGE_DATA: count pages whose contents, concatenated, were
 * compressed with method into frame[clen] (1 <= clen < count * 4096:
 * send raw pages when they do not shrink).  Writes the whole record.
 */
int	proto_enc_page_data_z(uint8_t *out, size_t cap, uint32_t count,
	    const uint64_t *pfns, uint32_t method, const uint8_t *frame,
	    uint32_t clen);
/* PAGE_ZERO or NEED. */
int	proto_enc_pfn_list(uint8_t *out, size_t cap, uint32_t type,
	    uint32_t count, const uint64_t *pfns);
int	proto_enc_page_ref(uint8_t *out, size_t cap, uint32_t count,
	    const uint64_t *pfns, const uint64_t *hints,
	    const uint8_t (*digests)[32]);
int	proto_enc_iter_end(uint8_t *out, size_t cap,
	    const struct proto_iter_end *ie);
int	proto_enc_context(uint8_t *out, size_t cap, const void *blob,
	    uint32_t len);
/* END or READY. */
int	proto_enc_end(uint8_t *out, size_t cap, uint32_t type,
	    const struct proto_end *e);
int	proto_enc_go(uint8_t *out, size_t cap);
int	proto_enc_running(uint8_t *out, size_t cap,
	    const struct proto_running *r);
int	proto_enc_keepalive(uint8_t *out, size_t cap);

size_t	proto_rec_size(size_t body_len);	/* 8 + body + pad */

#endif
