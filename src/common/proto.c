/*
 * proto.c - the sharemig migration stream: wire layouts, encoders, the one
 * validating decoder and the record legality table.
 *
 * docs/PROTOCOL.md is the normative spec.  Every multi-byte field is
 * little-endian and is converted byte by byte; no C struct is ever copied
 * to or from the wire.  Nothing here allocates, logs or blocks.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "proto.h"

/* ---- wire layouts (byte offsets inside a record body) ---- */

/* Stream header. */
#define SH_MAGIC	0
#define SH_VERSION	8
#define SH_FLAGS	12
#define SH_RESERVED	16
#define SH_LEN		24
_Static_assert(SH_LEN == PROTO_STREAM_HDR_LEN, "stream header size");

/* Record header. */
#define RH_TYPE		0
#define RH_LENGTH	4
#define RH_LEN		8
_Static_assert(RH_LEN == PROTO_REC_HDR_LEN, "record header size");

/* HELLO. */
#define HELLO_VMIN	0
#define HELLO_VMAX	4
#define HELLO_CAPS	8
#define HELLO_HOSTID	16
#define HELLO_HOSTNAME	32
#define HELLO_HOSTNAME_LEN 64
#define HELLO_LEN	96
_Static_assert(HELLO_HOSTNAME + HELLO_HOSTNAME_LEN == HELLO_LEN,
    "HELLO body size");
_Static_assert(sizeof(((struct proto_hello *)0)->host_name) ==
    HELLO_HOSTNAME_LEN + 1, "HELLO host_name buffer");

/* ERROR. */
#define ERR_CODE	0
#define ERR_LEN		4
#define ERR_FIXED	8
#define ERR_MAXCODE	0x7fffffffu

/* DOMAIN_INFO: fixed part, then name[name_len], then config[config_len]. */
#define DI_PAGES	0
#define DI_VCPUS	8
#define DI_FLAGS	12
#define DI_DEDUP	16
#define DI_NAMELEN	20
#define DI_CONFIGLEN	24
#define DI_COMPRESS	28	/* was reserved: old sources send 0 */
#define DI_UUID		32
#define DI_FIXED	48
_Static_assert(DI_UUID + 16 == DI_FIXED, "DOMAIN_INFO fixed part size");
/* The largest page count accepted: 2^40 pfns = 52-bit physical addresses. */
#define DI_PAGES_MAX	(1ull << 40)
#define DI_FLAGS_KNOWN	(PROTO_DI_PAUSED | PROTO_DI_VERIFY | PROTO_DI_ADVISE | \
			    PROTO_DI_STREAMS)
/* With STREAMS, after the config: u32 streams, u32 reserved. */
#define DI_ST_STREAMS	0
#define DI_ST_RESERVED	4
#define DI_ST_LEN	8

/* DOMAIN_ACK: u32 domid, u32 streams; with streams >= 2 a token. */
#define ACK_DOMID	0
#define ACK_STREAMS	4
#define ACK_LEN		8
#define ACK_TOKEN	8
#define ACK_ST_LEN	(ACK_TOKEN + PROTO_TOKEN_LEN)
_Static_assert(ACK_ST_LEN == 24, "DOMAIN_ACK with a token");

/* JOIN: u8 token[16], u32 index, u32 reserved. */
#define JOIN_TOKEN	0
#define JOIN_INDEX	16
#define JOIN_RESERVED	20
#define JOIN_LEN	24
_Static_assert(JOIN_TOKEN + PROTO_TOKEN_LEN == JOIN_INDEX, "JOIN layout");
_Static_assert(JOIN_LEN <= PROTO_REC_MAX_PREAUTH, "JOIN is small");

/*
 * OFFER: u32 batch, u32 count, u64 base_pfn, u32 span, u32 reserved,
 * u64 bitmap[span / 64], u8 prefix[count][8].
 */
#define OF_BATCH	0
#define OF_COUNT	4
#define OF_BASE		8
#define OF_SPAN		16
#define OF_RESERVED	20
#define OF_FIXED	24
#define OF_WORD		64	/* pfns per bitmap word */

/* HAVE: u32 batch, u32 count, u8 confirm[32], u8 bits[(count + 7) / 8]. */
#define HV_BATCH	0
#define HV_COUNT	4
#define HV_CONFIRM	8
#define HV_FIXED	40
_Static_assert(HV_CONFIRM + PROTO_DIGEST_LEN == HV_FIXED, "HAVE fixed part");

/* PAGE_DATA: u32 count, u32 flags, u64 pfn[count], page[count]. */
#define PD_COUNT	0
#define PD_FLAGS	4
#define PD_FIXED	8
#define PD_PER_PAGE	(8 + PROTO_PAGE_SIZE)
/* Compressed (flags != 0): after the pfns, u32 clen, u32 reserved, frame. */
#define PDZ_CLEN	0
#define PDZ_RESERVED	4
#define PDZ_FIXED	8

/* PAGE_ZERO, NEED and PAGE_REF: u32 count, u32 reserved, entries. */
#define PL_COUNT	0
#define PL_RESERVED	4
#define PL_FIXED	8
#define REFE_PFN	0
#define REFE_HINT	8
#define REFE_DIGEST	16
#define REFE_LEN	48
_Static_assert(REFE_DIGEST + PROTO_DIGEST_LEN == REFE_LEN, "REF entry size");

/* ITER_END. */
#define IE_ITER		0
#define IE_RESERVED	4
#define IE_SENT		8
#define IE_DIRTY	16
#define IE_LEN		24
_Static_assert(IE_DIRTY + 8 == IE_LEN, "ITER_END body size");

/* CONTEXT: u32 len, u32 reserved, blob[len]. */
#define CTX_LEN		0
#define CTX_RESERVED	4
#define CTX_FIXED	8

/* END and READY. */
#define END_FLAGS	0
#define END_RESERVED	4
#define END_SHA		8
#define END_LEN		40
#define END_FLAGS_KNOWN	(PROTO_END_VERIFY | PROTO_END_UNVERIFIED)
_Static_assert(END_SHA + PROTO_DIGEST_LEN == END_LEN, "END body size");
/* END with UNVERIFIED: then u32 n, u32 reserved, u64 pfn[n]. */
#define END_UV_N	40
#define END_UV_RESERVED	44
#define END_UV_PFNS	48
#define END_UV_LEN(n)	(END_UV_PFNS + 8 * (size_t)(n))

/* FILTER: u64 nbits, u32 k, u32 reserved, u64 offset, u8 bits[]. */
#define FI_NBITS	0
#define FI_K		8
#define FI_RESERVED	12
#define FI_OFFSET	16
#define FI_FIXED	24
#define FI_WORD		64	/* nbits is a multiple of whole u64 words */

/* GO: 8 reserved bytes. */
#define GO_LEN		8

/* RUNNING. */
#define RUN_CPU		0
#define RUN_FILLED	8
#define RUN_FAILED	16
#define RUN_RESERVED	24
#define RUN_LEN		32
_Static_assert(RUN_RESERVED + 8 == RUN_LEN, "RUNNING body size");

/* Batch records must fit the record maximum even when full. */
_Static_assert(PD_FIXED + (uint64_t)PROTO_PAGE_BATCH_MAX * PD_PER_PAGE <=
    PROTO_REC_MAX, "full PAGE_DATA fits");
_Static_assert(OF_FIXED + (uint64_t)PROTO_OFFER_SPAN_MAX / 8 +
    (uint64_t)PROTO_PFN_BATCH_MAX * PROTO_PREFIX_LEN <= PROTO_REC_MAX,
    "full OFFER fits");
_Static_assert(PROTO_OFFER_SPAN_MAX % OF_WORD == 0, "OFFER span maximum");
_Static_assert(HV_FIXED + (uint64_t)(PROTO_PFN_BATCH_MAX + 7) / 8 <=
    PROTO_REC_MAX, "full HAVE fits");
_Static_assert(PL_FIXED + (uint64_t)PROTO_PFN_BATCH_MAX * REFE_LEN <=
    PROTO_REC_MAX, "full PAGE_REF fits");
_Static_assert(CTX_FIXED + (uint64_t)PROTO_CONTEXT_MAX <= PROTO_REC_MAX,
    "full CONTEXT fits");
_Static_assert(DI_FIXED + PROTO_NAME_MAX + (uint64_t)PROTO_CONFIG_MAX +
    DI_ST_LEN <= PROTO_REC_MAX, "full DOMAIN_INFO fits");
_Static_assert(FI_FIXED + (uint64_t)PROTO_FILTER_CHUNK_MAX <= PROTO_REC_MAX,
    "full FILTER fits");
_Static_assert(PROTO_FILTER_BITS_MAX % FI_WORD == 0 &&
    PROTO_FILTER_CHUNK_MAX % 8 == 0, "FILTER maxima are whole words");
_Static_assert(ERR_FIXED + PROTO_ERRMSG_MAX <= PROTO_REC_MAX_PREAUTH,
    "ERROR fits before authentication");
_Static_assert(HELLO_LEN <= PROTO_REC_MAX_PREAUTH,
    "HELLO fits before authentication");

/* ---- byte order ---- */

static inline uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static inline uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- the record table ---- */

#define PHB(p)		(1u << (p))
#define PH_ANY		((1u << PH_COUNT) - 1)
#define DIR_S		(1u << PROTO_S2D)
#define DIR_D		(1u << PROTO_D2S)

struct rec_desc {
	const char	*name;
	unsigned int	 dirs;		/* bit (1 << enum proto_dir) */
	unsigned int	 phases;	/* bit (1 << receiver's phase) */
};

/* Indexed by the type number without the optional bit. */
static const struct rec_desc mandatory[] = {
	[REC_HELLO] =		{ "HELLO",	 DIR_S | DIR_D,	PHB(PH_HELLO) },
	[REC_ERROR] =		{ "ERROR",	 DIR_S | DIR_D,	PH_ANY },
	[REC_DOMAIN_INFO] =	{ "DOMAIN_INFO", DIR_S,		PHB(PH_INFO) },
	[REC_DOMAIN_ACK] =	{ "DOMAIN_ACK",	 DIR_D,		PHB(PH_INFO) },
	[REC_OFFER] =		{ "OFFER",	 DIR_S,		PHB(PH_LIVE) },
	[REC_HAVE] =		{ "HAVE",	 DIR_D,		PHB(PH_LIVE) },
	[REC_PAGE_DATA] =	{ "PAGE_DATA",	 DIR_S,
				    PHB(PH_LIVE) | PHB(PH_FINAL) },
	[REC_PAGE_ZERO] =	{ "PAGE_ZERO",	 DIR_S,		PHB(PH_LIVE) },
	[REC_PAGE_REF] =	{ "PAGE_REF",	 DIR_S,		PHB(PH_LIVE) },
	[REC_ITER_END] =	{ "ITER_END",	 DIR_S,		PHB(PH_LIVE) },
	[REC_NEED] =		{ "NEED",	 DIR_D,
				    PHB(PH_LIVE) | PHB(PH_FINAL) },
	[REC_CONTEXT] =		{ "CONTEXT",	 DIR_S,		PHB(PH_LIVE) },
	[REC_END] =		{ "END",	 DIR_S,		PHB(PH_LIVE) },
	[REC_READY] =		{ "READY",	 DIR_D,		PHB(PH_FINAL) },
	[REC_GO] =		{ "GO",		 DIR_S,		PHB(PH_READY) },
	[REC_RUNNING] =		{ "RUNNING",	 DIR_D,		PHB(PH_HANDOVER) },
	[REC_JOIN] =		{ "JOIN",	 DIR_S,		PHB(PH_INFO) },
	[REC_FILTER] =		{ "FILTER",	 DIR_D,		PHB(PH_INFO) },
};

static const struct rec_desc optional[] = {
	[REC_KEEPALIVE & ~PROTO_OPTIONAL] =
				{ "KEEPALIVE",	 DIR_S | DIR_D,	PH_ANY },
};

static const struct rec_desc *
rec_desc(uint32_t type)
{
	const struct rec_desc	*tab = mandatory;
	size_t			 n = sizeof(mandatory) / sizeof(mandatory[0]);
	uint32_t		 i = type;

	if (type & PROTO_OPTIONAL) {
		tab = optional;
		n = sizeof(optional) / sizeof(optional[0]);
		i = type & ~PROTO_OPTIONAL;
	}
	if (i >= n || tab[i].name == NULL)
		return NULL;
	return &tab[i];
}

const char *
proto_type_name(uint32_t type)
{
	const struct rec_desc *d = rec_desc(type);

	return d != NULL ? d->name : "UNKNOWN";
}

/*
 * Is a record of this type, sent in direction dir, legal for a receiver
 * in phase ph?  Returns 1 or 0.  Unknown types, directions and phases are
 * never legal (an unknown optional record is dropped by the caller after
 * proto_decode() said -ENOENT, before this question comes up).
 */
int
proto_legal(uint32_t type, enum proto_dir dir, enum proto_phase ph)
{
	const struct rec_desc *d = rec_desc(type);

	if (d == NULL)
		return 0;
	if (dir != PROTO_S2D && dir != PROTO_D2S)
		return 0;
	if ((unsigned int)ph >= PH_COUNT)
		return 0;
	return (d->dirs & (1u << dir)) && (d->phases & PHB(ph));
}

/* ---- string rules ---- */

static bool
printable(uint8_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

static bool
name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* A domain name: [A-Za-z0-9._-]{1,63}. */
static bool
name_valid(const uint8_t *s, size_t len)
{
	size_t i;

	if (len < 1 || len > PROTO_NAME_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!name_char(s[i]))
			return false;
	return true;
}

static bool
printable_all(const uint8_t *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!printable(s[i]))
			return false;
	return true;
}

/* ---- framing ---- */

static size_t
pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

size_t
proto_rec_size(size_t body_len)
{
	return RH_LEN + pad8(body_len);
}

void
proto_stream_hdr_encode(uint8_t out[PROTO_STREAM_HDR_LEN])
{
	put64(out + SH_MAGIC, PROTO_MAGIC);
	put32(out + SH_VERSION, PROTO_VERSION);
	put32(out + SH_FLAGS, 0);
	put64(out + SH_RESERVED, 0);
}

/*
 * Check a peer's stream header.  Returns 0 and sets *version, -EPROTO if
 * the magic is wrong or flags or reserved are not zero (this is the one
 * place where reserved bits are checked: a stream that starts wrong is not
 * a sharemig stream), or -EPROTONOSUPPORT if the framing version is not
 * PROTO_VERSION.
 */
int
proto_stream_hdr_check(const uint8_t in[PROTO_STREAM_HDR_LEN],
    uint32_t *version)
{
	uint32_t v;

	if (get64(in + SH_MAGIC) != PROTO_MAGIC)
		return -EPROTO;
	if (get32(in + SH_FLAGS) != 0 || get64(in + SH_RESERVED) != 0)
		return -EPROTO;
	v = get32(in + SH_VERSION);
	if (v != PROTO_VERSION)
		return -EPROTONOSUPPORT;
	if (version != NULL)
		*version = v;
	return 0;
}

/*
 * Look at the start of a byte stream; see proto.h.  A length over
 * PROTO_REC_MAX is -EMSGSIZE whatever rec_max says.  Padding bytes are not
 * inspected (receivers ignore them like reserved fields).
 */
int
proto_frame_peek(const uint8_t *buf, size_t avail, uint32_t rec_max,
    uint32_t *type, uint32_t *len, size_t *total)
{
	uint32_t	t, l;
	size_t		tot;

	if (avail < RH_LEN)
		return -EAGAIN;
	t = get32(buf + RH_TYPE);
	l = get32(buf + RH_LENGTH);
	if (l > rec_max || l > PROTO_REC_MAX)
		return -EMSGSIZE;
	tot = proto_rec_size(l);
	if (avail < tot)
		return -EAGAIN;
	*type = t;
	*len = l;
	*total = tot;
	return 0;
}

/* ---- decoders: each sees a body of len <= rec_max bytes ---- */

static int
dec_hello(const uint8_t *b, size_t len, struct proto_hello *h)
{
	size_t n;

	if (len != HELLO_LEN)
		return -EBADMSG;
	h->version_min = get32(b + HELLO_VMIN);
	h->version_max = get32(b + HELLO_VMAX);
	if (h->version_min > h->version_max)
		return -EBADMSG;
	h->caps = get64(b + HELLO_CAPS);
	memcpy(h->host_id, b + HELLO_HOSTID, sizeof(h->host_id));
	/* Printable bytes, then NUL padding to the end of the field. */
	for (n = 0; n < HELLO_HOSTNAME_LEN && b[HELLO_HOSTNAME + n] != 0; n++)
		;
	if (!printable_all(b + HELLO_HOSTNAME, n))
		return -EBADMSG;
	for (size_t i = n; i < HELLO_HOSTNAME_LEN; i++)
		if (b[HELLO_HOSTNAME + i] != 0)
			return -EBADMSG;
	memcpy(h->host_name, b + HELLO_HOSTNAME, n);
	h->host_name[n] = '\0';
	return 0;
}

static int
dec_error(const uint8_t *b, size_t len, struct proto_error *e)
{
	uint32_t n;

	if (len < ERR_FIXED)
		return -EBADMSG;
	e->code = get32(b + ERR_CODE);
	n = get32(b + ERR_LEN);
	if (e->code == 0 || e->code > ERR_MAXCODE)
		return -EBADMSG;
	if (n > PROTO_ERRMSG_MAX)
		return -EMSGSIZE;
	if (n != len - ERR_FIXED)
		return -EBADMSG;
	if (!printable_all(b + ERR_FIXED, n))
		return -EBADMSG;
	memcpy(e->msg, b + ERR_FIXED, n);
	e->msg[n] = '\0';
	return 0;
}

static int
dec_domain_info(const uint8_t *b, size_t len, struct proto_domain_info *di)
{
	uint32_t nl, cl;
	size_t tail;

	if (len < DI_FIXED)
		return -EBADMSG;
	di->pages = get64(b + DI_PAGES);
	di->vcpus = get32(b + DI_VCPUS);
	di->flags = get32(b + DI_FLAGS);
	di->dedup = get32(b + DI_DEDUP);
	di->compress = get32(b + DI_COMPRESS);
	nl = get32(b + DI_NAMELEN);
	cl = get32(b + DI_CONFIGLEN);
	memcpy(di->uuid, b + DI_UUID, sizeof(di->uuid));
	if (di->pages == 0 || di->pages > DI_PAGES_MAX || di->vcpus == 0)
		return -EBADMSG;
	if (di->flags & ~DI_FLAGS_KNOWN)
		return -EBADMSG;
	/* An advice session has no pages to spread over streams. */
	if ((di->flags & PROTO_DI_STREAMS) && (di->flags & PROTO_DI_ADVISE))
		return -EBADMSG;
	if (di->dedup > PROTO_DEDUP_ALL)
		return -EBADMSG;
	if (nl > PROTO_NAME_MAX || cl > PROTO_CONFIG_MAX)
		return -EMSGSIZE;
	tail = (di->flags & PROTO_DI_STREAMS) ? DI_ST_LEN : 0;
	/* All bounded above, so the sum cannot overflow. */
	if ((size_t)nl + cl + tail != len - DI_FIXED)
		return -EBADMSG;
	di->streams = 1;
	if (tail) {
		di->streams = get32(b + DI_FIXED + nl + cl + DI_ST_STREAMS);
		if (di->streams < 2 || di->streams > PROTO_STREAMS_MAX)
			return -EBADMSG;
	}
	if (!name_valid(b + DI_FIXED, nl))
		return -EBADMSG;
	memcpy(di->name, b + DI_FIXED, nl);
	di->name[nl] = '\0';
	di->config = cl ? b + DI_FIXED + nl : NULL;
	di->config_len = cl;
	return 0;
}

/* 8 bytes (streams 0 or 1: one stream; 0 is what older destinations
 * sent in the then reserved field) or 24 with streams 2..MAX and a token. */
static int
dec_domain_ack(const uint8_t *b, size_t len, struct proto_domain_ack *a)
{
	if (len != ACK_LEN && len != ACK_ST_LEN)
		return -EBADMSG;
	a->domid = get32(b + ACK_DOMID);
	a->streams = get32(b + ACK_STREAMS);
	if (len == ACK_LEN) {
		if (a->streams > 1)
			return -EBADMSG;
		a->streams = 1;
		return 0;
	}
	if (a->streams < 2 || a->streams > PROTO_STREAMS_MAX)
		return -EBADMSG;
	memcpy(a->token, b + ACK_TOKEN, PROTO_TOKEN_LEN);
	return 0;
}

static int
dec_join(const uint8_t *b, size_t len, struct proto_join *j)
{
	if (len != JOIN_LEN)
		return -EBADMSG;
	memcpy(j->token, b + JOIN_TOKEN, PROTO_TOKEN_LEN);
	j->index = get32(b + JOIN_INDEX);
	if (j->index < 1 || j->index >= PROTO_STREAMS_MAX)
		return -EBADMSG;
	return 0;
}

/*
 * Check a batch count against its maximum and the rest of the body:
 * count in 1..max and fixed + count * elem == len exactly.  count <= 2^16
 * and elem <= 2^13, so the product cannot overflow.
 */
static int
check_count(uint32_t count, uint32_t max, size_t fixed, size_t elem,
    size_t len)
{
	if (count == 0)
		return -EBADMSG;
	if (count > max)
		return -EMSGSIZE;
	if ((uint64_t)count * elem != len - fixed)
		return -EBADMSG;
	return 0;
}

/* Every pfn of a stride-spaced array must be < pages. */
static int
check_pfns(const uint8_t *p, uint32_t count, size_t stride, uint64_t pages)
{
	uint32_t i;

	for (i = 0; i < count; i++)
		if (get64(p + (size_t)i * stride) >= pages)
			return -EBADMSG;
	return 0;
}

/* span: a multiple of 64 in 64..PROTO_OFFER_SPAN_MAX. */
static int
check_span(uint32_t span)
{
	if (span == 0 || span % OF_WORD != 0)
		return -EBADMSG;
	if (span > PROTO_OFFER_SPAN_MAX)
		return -EMSGSIZE;
	return 0;
}

/*
 * OFFER: the bitmap must have exactly count bits set, and the highest set
 * bit must name a pfn < pages.  base_pfn + span must not wrap, so no pfn
 * of the window does.
 */
static int
dec_offer(const uint8_t *b, size_t len, const struct proto_limits *lim,
    struct proto_offer *o)
{
	uint64_t	w, last = 0;
	uint32_t	nwords, i, bits = 0;
	int		r;

	if (len < OF_FIXED)
		return -EBADMSG;
	o->batch = get32(b + OF_BATCH);
	o->count = get32(b + OF_COUNT);
	o->base_pfn = get64(b + OF_BASE);
	o->span = get32(b + OF_SPAN);
	if (o->count == 0)
		return -EBADMSG;
	if (o->count > PROTO_PFN_BATCH_MAX)
		return -EMSGSIZE;
	if ((r = check_span(o->span)) < 0)
		return r;
	/* Both bounded above, so the sum cannot overflow. */
	if ((size_t)o->span / 8 + (size_t)o->count * PROTO_PREFIX_LEN !=
	    len - OF_FIXED)
		return -EBADMSG;
	if (o->base_pfn > UINT64_MAX - o->span)
		return -EBADMSG;
	o->bitmap = b + OF_FIXED;
	o->prefixes = o->bitmap + o->span / 8;
	nwords = o->span / OF_WORD;
	for (i = 0; i < nwords; i++) {
		w = get64(o->bitmap + (size_t)i * 8);
		if (w == 0)
			continue;
		bits += (uint32_t)__builtin_popcountll(w);
		last = o->base_pfn + (uint64_t)i * OF_WORD +
		    (uint64_t)(63 - __builtin_clzll(w));
	}
	/* count >= 1, so a match means some bit is set and last is valid. */
	if (bits != o->count)
		return -EBADMSG;
	if (last >= lim->pages)
		return -EBADMSG;
	return 0;
}

static int
dec_have(const uint8_t *b, size_t len, struct proto_have *h)
{
	uint32_t	count;
	size_t		nbytes;

	if (len < HV_FIXED)
		return -EBADMSG;
	h->batch = get32(b + HV_BATCH);
	count = get32(b + HV_COUNT);
	if (count == 0)
		return -EBADMSG;
	if (count > PROTO_PFN_BATCH_MAX)
		return -EMSGSIZE;
	nbytes = (count + 7) / 8;
	if (nbytes != len - HV_FIXED)
		return -EBADMSG;
	/* Bits past count in the last byte must be zero. */
	if (count % 8 && (b[HV_FIXED + nbytes - 1] >> (count % 8)) != 0)
		return -EBADMSG;
	h->count = count;
	h->confirm = b + HV_CONFIRM;
	h->bits = b + HV_FIXED;
	return 0;
}

/*
 * PAGE_DATA, raw (flags 0) or compressed with the negotiated method.  A
 * compressed frame must be shorter than the pages it stands for: a sender
 * sends raw pages when they do not shrink, so a longer frame is never
 * needed and the receiver's work stays bounded by the raw size.
 * b[0..avail) of a body of len bytes: raw pages need only the head
 * (PD_FIXED and the pfns) present, and data is set only when the whole
 * body is (proto_decode_page_data_head); a compressed frame needs it all.
 */
static int
dec_page_data(const uint8_t *b, size_t avail, size_t len,
    const struct proto_limits *lim, struct proto_page_data *pd)
{
	const uint8_t	*z;
	size_t		 head;
	uint32_t	 clen;
	int		 r;

	if (len < PD_FIXED)
		return -EBADMSG;
	if (avail < PD_FIXED)
		return -EAGAIN;
	pd->count = get32(b + PD_COUNT);
	pd->flags = get32(b + PD_FLAGS);
	if (pd->flags == 0) {
		if ((r = check_count(pd->count, PROTO_PAGE_BATCH_MAX, PD_FIXED,
		    PD_PER_PAGE, len)) < 0)
			return r;
		if (avail < PD_FIXED + (size_t)pd->count * 8)
			return -EAGAIN;
		pd->pfns = b + PD_FIXED;
		pd->data = avail == len ? pd->pfns + (size_t)pd->count * 8 :
		    NULL;
		pd->data_len = pd->count * PROTO_PAGE_SIZE;
		return check_pfns(pd->pfns, pd->count, 8, lim->pages);
	}
	if (avail != len)
		return -EAGAIN;
	if (pd->flags > PROTO_COMPRESS_MAX || pd->flags != lim->compress)
		return -EBADMSG;	/* a method not negotiated */
	if (pd->count == 0)
		return -EBADMSG;
	if (pd->count > PROTO_PAGE_BATCH_MAX)
		return -EMSGSIZE;
	head = PD_FIXED + (size_t)pd->count * 8 + PDZ_FIXED;
	if (len <= head)
		return -EBADMSG;
	z = b + PD_FIXED + (size_t)pd->count * 8;
	clen = get32(z + PDZ_CLEN);
	if (clen != len - head || clen >= pd->count * PROTO_PAGE_SIZE)
		return -EBADMSG;
	pd->pfns = b + PD_FIXED;
	pd->data = z + PDZ_FIXED;
	pd->data_len = clen;
	return check_pfns(pd->pfns, pd->count, 8, lim->pages);
}

static int
dec_pfn_list(const uint8_t *b, size_t len, const struct proto_limits *lim,
    struct proto_pfn_list *pl)
{
	int r;

	if (len < PL_FIXED)
		return -EBADMSG;
	pl->count = get32(b + PL_COUNT);
	if ((r = check_count(pl->count, PROTO_PFN_BATCH_MAX, PL_FIXED, 8,
	    len)) < 0)
		return r;
	pl->pfns = b + PL_FIXED;
	return check_pfns(pl->pfns, pl->count, 8, lim->pages);
}

static int
dec_page_ref(const uint8_t *b, size_t len, const struct proto_limits *lim,
    struct proto_page_ref *pr)
{
	uint64_t	hint;
	uint32_t	i;
	int		r;

	if (len < PL_FIXED)
		return -EBADMSG;
	pr->count = get32(b + PL_COUNT);
	if ((r = check_count(pr->count, PROTO_PFN_BATCH_MAX, PL_FIXED,
	    REFE_LEN, len)) < 0)
		return r;
	pr->entries = b + PL_FIXED;
	if ((r = check_pfns(pr->entries + REFE_PFN, pr->count, REFE_LEN,
	    lim->pages)) < 0)
		return r;
	for (i = 0; i < pr->count; i++) {
		hint = get64(pr->entries + (size_t)i * REFE_LEN + REFE_HINT);
		if (hint != PROTO_PFN_NONE && hint >= lim->pages)
			return -EBADMSG;
	}
	return 0;
}

static int
dec_iter_end(const uint8_t *b, size_t len, struct proto_iter_end *ie)
{
	if (len != IE_LEN)
		return -EBADMSG;
	ie->iteration = get32(b + IE_ITER);
	ie->pages_sent = get64(b + IE_SENT);
	ie->dirty = get64(b + IE_DIRTY);
	return 0;
}

static int
dec_context(const uint8_t *b, size_t len, struct proto_context *c)
{
	uint32_t n;

	if (len < CTX_FIXED)
		return -EBADMSG;
	n = get32(b + CTX_LEN);
	if (n > PROTO_CONTEXT_MAX)
		return -EMSGSIZE;
	if (n != len - CTX_FIXED)
		return -EBADMSG;
	c->len = n;
	c->blob = n ? b + CTX_FIXED : NULL;
	return 0;
}

/*
 * The unverified list is only meaningful in END with VERIFY; it is short
 * (at most PROTO_END_UNVERIFIED_MAX), non-empty and strictly ascending,
 * so that each list has exactly one encoding.
 */
static int
end_list_ok(uint32_t type, const struct proto_end *e)
{
	if (!(e->flags & PROTO_END_UNVERIFIED))
		return 1;
	if (type != REC_END || !(e->flags & PROTO_END_VERIFY) ||
	    e->nunverified == 0 || e->nunverified > PROTO_END_UNVERIFIED_MAX)
		return 0;
	for (uint32_t i = 1; i < e->nunverified; i++)
		if (e->unverified[i] <= e->unverified[i - 1])
			return 0;
	return 1;
}

static int
dec_end(uint32_t type, const uint8_t *b, size_t len, struct proto_end *e)
{
	if (len < END_LEN)
		return -EBADMSG;
	e->flags = get32(b + END_FLAGS);
	if (e->flags & ~END_FLAGS_KNOWN)
		return -EBADMSG;
	memcpy(e->memory_sha256, b + END_SHA, sizeof(e->memory_sha256));
	e->nunverified = 0;
	if (!(e->flags & PROTO_END_UNVERIFIED))
		return len == END_LEN ? 0 : -EBADMSG;
	if (len < END_UV_PFNS)
		return -EBADMSG;
	e->nunverified = get32(b + END_UV_N);
	if (e->nunverified == 0 || e->nunverified > PROTO_END_UNVERIFIED_MAX ||
	    len != END_UV_LEN(e->nunverified))
		return -EBADMSG;
	for (uint32_t i = 0; i < e->nunverified; i++)
		e->unverified[i] = get64(b + END_UV_PFNS + 8 * (size_t)i);
	return end_list_ok(type, e) ? 0 : -EBADMSG;
}

static int
dec_running(const uint8_t *b, size_t len, struct proto_running *r)
{
	if (len != RUN_LEN)
		return -EBADMSG;
	r->cpu_dest_us = get64(b + RUN_CPU);
	r->refs_filled = get64(b + RUN_FILLED);
	r->refs_failed = get64(b + RUN_FAILED);
	return 0;
}

/*
 * One FILTER record's fields, d bytes of bit array: nbits 0 ("no filter")
 * with nothing else, or a non-empty run of whole u64 words that lies
 * inside the nbits / 8 bytes of the array.  offset is the peer's u64, so
 * the bound is a subtraction from nbits / 8, which cannot wrap.  Whether
 * the records of a series fit together is the receiver's check.  Shared
 * by the decoder and the encoder, so neither accepts what the other
 * refuses.
 */
static bool
filter_ok(uint64_t nbits, uint32_t k, uint64_t offset, size_t d)
{
	if (nbits == 0)
		return k == 0 && offset == 0 && d == 0;
	if (nbits % FI_WORD != 0 || nbits > PROTO_FILTER_BITS_MAX)
		return false;
	if (k < 1 || k > PROTO_FILTER_K_MAX)
		return false;
	if (d == 0 || d % 8 != 0 || d > PROTO_FILTER_CHUNK_MAX)
		return false;
	if (offset % 8 != 0 || offset > nbits / 8 || d > nbits / 8 - offset)
		return false;
	return true;
}

/* FILTER; every violation is -EBADMSG (the record limit is checked
 * before, and bounds the chunk anyway). */
static int
dec_filter(const uint8_t *b, size_t len, struct proto_filter *f)
{
	if (len < FI_FIXED)
		return -EBADMSG;
	f->nbits = get64(b + FI_NBITS);
	f->k = get32(b + FI_K);
	f->offset = get64(b + FI_OFFSET);
	if (!filter_ok(f->nbits, f->k, f->offset, len - FI_FIXED))
		return -EBADMSG;
	f->bits_len = (uint32_t)(len - FI_FIXED);
	f->bits = f->bits_len ? b + FI_FIXED : NULL;
	return 0;
}

/* Records that carry pfns are meaningless before the page count is known. */
static bool
carries_pfns(uint32_t type)
{
	switch (type) {
	case REC_OFFER:
	case REC_PAGE_DATA:
	case REC_PAGE_ZERO:
	case REC_PAGE_REF:
	case REC_NEED:
		return true;
	default:
		return false;
	}
}

/*
 * Decode and validate one record body; see proto.h for the contract.  The
 * record is decoded into a local copy so *out is written only on success.
 * body may be NULL when len is 0.
 */
int
proto_decode(uint32_t type, const uint8_t *body, size_t len,
    const struct proto_limits *lim, struct proto_rec *out)
{
	struct proto_rec	r;
	int			ret;

	if (lim == NULL || out == NULL || (body == NULL && len != 0))
		return -EINVAL;
	if (len > lim->rec_max || len > PROTO_REC_MAX)
		return -EMSGSIZE;
	if (rec_desc(type) == NULL)
		return (type & PROTO_OPTIONAL) ? -ENOENT : -ENOTSUP;
	if (carries_pfns(type) && lim->pages == 0)
		return -EBADMSG;

	memset(&r, 0, sizeof(r));
	r.type = type;
	switch (type) {
	case REC_HELLO:
		ret = dec_hello(body, len, &r.u.hello);
		break;
	case REC_ERROR:
		ret = dec_error(body, len, &r.u.error);
		break;
	case REC_DOMAIN_INFO:
		ret = dec_domain_info(body, len, &r.u.domain_info);
		break;
	case REC_DOMAIN_ACK:
		ret = dec_domain_ack(body, len, &r.u.domain_ack);
		break;
	case REC_JOIN:
		ret = dec_join(body, len, &r.u.join);
		break;
	case REC_FILTER:
		ret = dec_filter(body, len, &r.u.filter);
		break;
	case REC_OFFER:
		ret = dec_offer(body, len, lim, &r.u.offer);
		break;
	case REC_HAVE:
		ret = dec_have(body, len, &r.u.have);
		break;
	case REC_PAGE_DATA:
		ret = dec_page_data(body, len, len, lim, &r.u.page_data);
		break;
	case REC_PAGE_ZERO:
	case REC_NEED:
		ret = dec_pfn_list(body, len, lim, &r.u.pfn_list);
		break;
	case REC_PAGE_REF:
		ret = dec_page_ref(body, len, lim, &r.u.page_ref);
		break;
	case REC_ITER_END:
		ret = dec_iter_end(body, len, &r.u.iter_end);
		break;
	case REC_CONTEXT:
		ret = dec_context(body, len, &r.u.context);
		break;
	case REC_END:
	case REC_READY:
		ret = dec_end(type, body, len, &r.u.end);
		break;
	case REC_GO:
		ret = len == GO_LEN ? 0 : -EBADMSG;
		break;
	case REC_RUNNING:
		ret = dec_running(body, len, &r.u.running);
		break;
	case REC_KEEPALIVE:
		ret = len == 0 ? 0 : -EBADMSG;
		break;
	default:
		/* In the table but not handled here: a programming error. */
		ret = -ENOTSUP;
		break;
	}
	if (ret < 0)
		return ret;
	*out = r;
	return 0;
}

/* ---- PAGE_DATA in place (link.c) ---- */

size_t
proto_page_data_head_len(const uint8_t body[8])
{
	uint32_t count = get32(body + PD_COUNT);

	if (get32(body + PD_FLAGS) != 0 || count == 0 ||
	    count > PROTO_PAGE_BATCH_MAX)
		return 0;
	return PD_FIXED + (size_t)count * 8;
}

int
proto_decode_page_data_head(const uint8_t *body, size_t avail, size_t len,
    const struct proto_limits *lim, struct proto_rec *out)
{
	struct proto_rec r;
	int ret;

	if (lim == NULL || out == NULL || body == NULL || avail > len)
		return -EINVAL;
	if (len > lim->rec_max || len > PROTO_REC_MAX)
		return -EMSGSIZE;
	if (lim->pages == 0)
		return -EBADMSG;
	memset(&r, 0, sizeof(r));
	r.type = REC_PAGE_DATA;
	if ((ret = dec_page_data(body, avail, len, lim, &r.u.page_data)) < 0)
		return ret;
	*out = r;
	return 0;
}

void
proto_pages_init(struct proto_pages *pp, const void *data,
    const struct iovec *seg, unsigned nseg)
{
	if (data != NULL) {
		pp->one.iov_base = (void *)(uintptr_t)data;
		pp->one.iov_len = SIZE_MAX;
		seg = &pp->one;
		nseg = 1;
	}
	pp->seg = seg;
	pp->nseg = nseg;
	pp->off = 0;
}

void
proto_pages_copy(struct proto_pages *pp, void *dst)
{
	uint8_t *d = dst;
	size_t left = PROTO_PAGE_SIZE, n;

	while (left > 0 && pp->nseg > 0) {
		n = pp->seg->iov_len - pp->off;
		if (n > left)
			n = left;
		memcpy(d, (const uint8_t *)pp->seg->iov_base + pp->off, n);
		d += n;
		left -= n;
		pp->off += n;
		if (pp->off == pp->seg->iov_len) {
			pp->seg++;
			pp->nseg--;
			pp->off = 0;
		}
	}
}

/* ---- array accessors ---- */

uint64_t
proto_pfn_at(const uint8_t *pfns, uint32_t i)
{
	return get64(pfns + (size_t)i * 8);
}

/* The set bits of the bitmap, lowest first, as pfns. */
void
proto_offer_pfns(const struct proto_offer *o, uint64_t *pfns)
{
	uint64_t	w, base;
	uint32_t	i, n = 0;

	for (i = 0; i < o->span / OF_WORD && n < o->count; i++) {
		w = get64(o->bitmap + (size_t)i * 8);
		base = o->base_pfn + (uint64_t)i * OF_WORD;
		while (w != 0 && n < o->count) {
			pfns[n++] = base + (uint64_t)__builtin_ctzll(w);
			w &= w - 1;
		}
	}
}

const uint8_t *
proto_offer_prefix_at(const struct proto_offer *o, uint32_t i)
{
	return o->prefixes + (size_t)i * PROTO_PREFIX_LEN;
}

uint64_t
proto_ref_pfn_at(const struct proto_page_ref *r, uint32_t i)
{
	return get64(r->entries + (size_t)i * REFE_LEN + REFE_PFN);
}

uint64_t
proto_ref_hint_at(const struct proto_page_ref *r, uint32_t i)
{
	return get64(r->entries + (size_t)i * REFE_LEN + REFE_HINT);
}

const uint8_t *
proto_ref_digest_at(const struct proto_page_ref *r, uint32_t i)
{
	return r->entries + (size_t)i * REFE_LEN + REFE_DIGEST;
}

int
proto_have_bit(const struct proto_have *h, uint32_t i)
{
	return (h->bits[i / 8] >> (i % 8)) & 1;
}

/* ---- encoders ---- */

/*
 * Start a record of body_len bytes in out[0..cap): check the sizes, write
 * the header and zero the body and its padding (so reserved fields and
 * padding are zero unless written).  Returns a pointer to the body, or
 * NULL with *err set to -EMSGSIZE.
 */
static uint8_t *
rec_begin(uint8_t *out, size_t cap, uint32_t type, size_t body_len,
    size_t zero_len, int *err)
{
	if (body_len > PROTO_REC_MAX || cap < RH_LEN + zero_len) {
		*err = -EMSGSIZE;
		return NULL;
	}
	put32(out + RH_TYPE, type);
	put32(out + RH_LENGTH, (uint32_t)body_len);
	memset(out + RH_LEN, 0, zero_len);
	return out + RH_LEN;
}

/* The common case: the whole record, padding included, is written here. */
static uint8_t *
rec_start(uint8_t *out, size_t cap, uint32_t type, size_t body_len, int *err)
{
	return rec_begin(out, cap, type, body_len, pad8(body_len), err);
}

int
proto_enc_hello(uint8_t *out, size_t cap, const struct proto_hello *h)
{
	uint8_t	*b;
	size_t	 n;
	int	 err;

	if (h == NULL || h->version_min > h->version_max)
		return -EINVAL;
	n = strnlen(h->host_name, sizeof(h->host_name));
	if (n > HELLO_HOSTNAME_LEN ||
	    !printable_all((const uint8_t *)h->host_name, n))
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_HELLO, HELLO_LEN, &err)) == NULL)
		return err;
	put32(b + HELLO_VMIN, h->version_min);
	put32(b + HELLO_VMAX, h->version_max);
	put64(b + HELLO_CAPS, h->caps);
	memcpy(b + HELLO_HOSTID, h->host_id, sizeof(h->host_id));
	memcpy(b + HELLO_HOSTNAME, h->host_name, n);
	return (int)proto_rec_size(HELLO_LEN);
}

int
proto_enc_error(uint8_t *out, size_t cap, uint32_t code, const char *msg)
{
	uint8_t	*b;
	size_t	 n;
	int	 err;

	if (msg == NULL || code == 0 || code > ERR_MAXCODE)
		return -EINVAL;
	n = strnlen(msg, PROTO_ERRMSG_MAX + 1);
	if (n > PROTO_ERRMSG_MAX || !printable_all((const uint8_t *)msg, n))
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_ERROR, ERR_FIXED + n, &err)) == NULL)
		return err;
	put32(b + ERR_CODE, code);
	put32(b + ERR_LEN, (uint32_t)n);
	memcpy(b + ERR_FIXED, msg, n);
	return (int)proto_rec_size(ERR_FIXED + n);
}

int
proto_enc_domain_info(uint8_t *out, size_t cap,
    const struct proto_domain_info *di)
{
	uint8_t	*b;
	size_t	 nl, body, tail;
	uint32_t flags;
	int	 err;

	if (di == NULL)
		return -EINVAL;
	nl = strnlen(di->name, sizeof(di->name));
	if (!name_valid((const uint8_t *)di->name, nl))
		return -EINVAL;
	if (di->pages == 0 || di->pages > DI_PAGES_MAX || di->vcpus == 0 ||
	    (di->flags & ~DI_FLAGS_KNOWN) || di->dedup > PROTO_DEDUP_ALL ||
	    di->compress > PROTO_COMPRESS_MAX ||
	    di->config_len > PROTO_CONFIG_MAX ||
	    (di->config == NULL && di->config_len != 0) ||
	    di->streams > PROTO_STREAMS_MAX ||
	    (di->streams > 1 && (di->flags & PROTO_DI_ADVISE)))
		return -EINVAL;
	/* The flag says whether the tail is there: derived, not taken. */
	flags = di->flags & ~PROTO_DI_STREAMS;
	tail = 0;
	if (di->streams > 1) {
		flags |= PROTO_DI_STREAMS;
		tail = DI_ST_LEN;
	}
	body = DI_FIXED + nl + di->config_len + tail;
	if ((b = rec_start(out, cap, REC_DOMAIN_INFO, body, &err)) == NULL)
		return err;
	put64(b + DI_PAGES, di->pages);
	put32(b + DI_VCPUS, di->vcpus);
	put32(b + DI_FLAGS, flags);
	put32(b + DI_DEDUP, di->dedup);
	put32(b + DI_COMPRESS, di->compress);
	put32(b + DI_NAMELEN, (uint32_t)nl);
	put32(b + DI_CONFIGLEN, di->config_len);
	memcpy(b + DI_UUID, di->uuid, sizeof(di->uuid));
	memcpy(b + DI_FIXED, di->name, nl);
	if (di->config_len)
		memcpy(b + DI_FIXED + nl, di->config, di->config_len);
	if (tail)
		put32(b + DI_FIXED + nl + di->config_len + DI_ST_STREAMS,
		    di->streams);
	return (int)proto_rec_size(body);
}

int
proto_enc_domain_ack(uint8_t *out, size_t cap, uint32_t domid)
{
	struct proto_domain_ack a = { .domid = domid, .streams = 1 };

	return proto_enc_domain_ack_streams(out, cap, &a);
}

int
proto_enc_domain_ack_streams(uint8_t *out, size_t cap,
    const struct proto_domain_ack *a)
{
	uint8_t	*b;
	size_t	 len;
	int	 err;

	if (a == NULL || a->streams < 1 || a->streams > PROTO_STREAMS_MAX)
		return -EINVAL;
	len = a->streams > 1 ? ACK_ST_LEN : ACK_LEN;
	if ((b = rec_start(out, cap, REC_DOMAIN_ACK, len, &err)) == NULL)
		return err;
	put32(b + ACK_DOMID, a->domid);
	/* One stream: the field stays 0, as it was when reserved. */
	if (a->streams > 1) {
		put32(b + ACK_STREAMS, a->streams);
		memcpy(b + ACK_TOKEN, a->token, PROTO_TOKEN_LEN);
	}
	return (int)proto_rec_size(len);
}

int
proto_enc_join(uint8_t *out, size_t cap, const struct proto_join *j)
{
	uint8_t	*b;
	int	 err;

	if (j == NULL || j->index < 1 || j->index >= PROTO_STREAMS_MAX)
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_JOIN, JOIN_LEN, &err)) == NULL)
		return err;
	memcpy(b + JOIN_TOKEN, j->token, PROTO_TOKEN_LEN);
	put32(b + JOIN_INDEX, j->index);
	return (int)proto_rec_size(JOIN_LEN);
}

/* The body is 24 octets plus whole words: no padding follows it. */
int
proto_enc_filter(uint8_t *out, size_t cap, const struct proto_filter *f)
{
	uint8_t	*b;
	size_t	 body;
	int	 err;

	if (f == NULL || (f->bits == NULL && f->bits_len != 0) ||
	    !filter_ok(f->nbits, f->k, f->offset, f->bits_len))
		return -EINVAL;
	body = FI_FIXED + (size_t)f->bits_len;
	if ((b = rec_start(out, cap, REC_FILTER, body, &err)) == NULL)
		return err;
	put64(b + FI_NBITS, f->nbits);
	put32(b + FI_K, f->k);
	put64(b + FI_OFFSET, f->offset);
	if (f->bits_len)
		memcpy(b + FI_FIXED, f->bits, f->bits_len);
	return (int)proto_rec_size(body);
}

static bool
count_ok(uint32_t count, uint32_t max)
{
	return count >= 1 && count <= max;
}

int
proto_enc_offer(uint8_t *out, size_t cap, uint32_t batch, uint64_t base_pfn,
    uint32_t span, const uint64_t *bitmap, uint32_t count,
    const uint8_t (*prefixes)[8])
{
	uint8_t		*b;
	size_t		 body;
	uint32_t	 i, nwords, bits = 0;
	int		 err;

	if (!count_ok(count, PROTO_PFN_BATCH_MAX) || check_span(span) < 0 ||
	    base_pfn > UINT64_MAX - span || bitmap == NULL || prefixes == NULL)
		return -EINVAL;
	nwords = span / OF_WORD;
	for (i = 0; i < nwords; i++)
		bits += (uint32_t)__builtin_popcountll(bitmap[i]);
	if (bits != count)
		return -EINVAL;
	body = OF_FIXED + (size_t)span / 8 + (size_t)count * PROTO_PREFIX_LEN;
	if ((b = rec_start(out, cap, REC_OFFER, body, &err)) == NULL)
		return err;
	put32(b + OF_BATCH, batch);
	put32(b + OF_COUNT, count);
	put64(b + OF_BASE, base_pfn);
	put32(b + OF_SPAN, span);
	for (i = 0; i < nwords; i++)
		put64(b + OF_FIXED + (size_t)i * 8, bitmap[i]);
	memcpy(b + OF_FIXED + (size_t)span / 8, prefixes,
	    (size_t)count * PROTO_PREFIX_LEN);
	return (int)proto_rec_size(body);
}

int
proto_enc_have(uint8_t *out, size_t cap, uint32_t batch, uint32_t count,
    const uint8_t *has, const uint8_t confirm[32])
{
	uint8_t		*b;
	size_t		 body;
	uint32_t	 i;
	int		 err;

	if (!count_ok(count, PROTO_PFN_BATCH_MAX) || has == NULL ||
	    confirm == NULL)
		return -EINVAL;
	for (i = 0; i < count; i++)
		if (has[i] > 1)
			return -EINVAL;
	body = HV_FIXED + (count + 7) / 8;
	if ((b = rec_start(out, cap, REC_HAVE, body, &err)) == NULL)
		return err;
	put32(b + HV_BATCH, batch);
	put32(b + HV_COUNT, count);
	memcpy(b + HV_CONFIRM, confirm, PROTO_DIGEST_LEN);
	for (i = 0; i < count; i++)
		b[HV_FIXED + i / 8] |= (uint8_t)(has[i] << (i % 8));
	return (int)proto_rec_size(body);
}

/*
 * Only the head is written and zeroed: header, count, flags and pfns.  The
 * length field covers the pages the caller appends; the body is a multiple
 * of 8 bytes, so no padding follows them.
 */
int
proto_enc_page_data_head(uint8_t *out, size_t cap, uint32_t count,
    const uint64_t *pfns)
{
	uint8_t		*b;
	size_t		 head, body;
	uint32_t	 i;
	int		 err;

	if (!count_ok(count, PROTO_PAGE_BATCH_MAX) || pfns == NULL)
		return -EINVAL;
	head = PD_FIXED + (size_t)count * 8;
	body = PD_FIXED + (size_t)count * PD_PER_PAGE;
	if ((b = rec_begin(out, cap, REC_PAGE_DATA, body, head, &err)) == NULL)
		return err;
	put32(b + PD_COUNT, count);
	put32(b + PD_FLAGS, 0);
	for (i = 0; i < count; i++)
		put64(b + PD_FIXED + (size_t)i * 8, pfns[i]);
	return (int)(RH_LEN + head);
}

int
proto_enc_page_data_z(uint8_t *out, size_t cap, uint32_t count,
    const uint64_t *pfns, uint32_t method, const uint8_t *frame,
    uint32_t clen)
{
	uint8_t		*b, *z;
	size_t		 body;
	uint32_t	 i;
	int		 err;

	if (!count_ok(count, PROTO_PAGE_BATCH_MAX) || pfns == NULL ||
	    method == PROTO_COMPRESS_NONE || method > PROTO_COMPRESS_MAX ||
	    frame == NULL || clen == 0 || clen >= count * PROTO_PAGE_SIZE)
		return -EINVAL;
	body = PD_FIXED + (size_t)count * 8 + PDZ_FIXED + clen;
	if ((b = rec_start(out, cap, REC_PAGE_DATA, body, &err)) == NULL)
		return err;
	put32(b + PD_COUNT, count);
	put32(b + PD_FLAGS, method);
	for (i = 0; i < count; i++)
		put64(b + PD_FIXED + (size_t)i * 8, pfns[i]);
	z = b + PD_FIXED + (size_t)count * 8;
	put32(z + PDZ_CLEN, clen);
	memcpy(z + PDZ_FIXED, frame, clen);
	return (int)proto_rec_size(body);
}

int
proto_enc_pfn_list(uint8_t *out, size_t cap, uint32_t type, uint32_t count,
    const uint64_t *pfns)
{
	uint8_t		*b;
	size_t		 body;
	uint32_t	 i;
	int		 err;

	if ((type != REC_PAGE_ZERO && type != REC_NEED) ||
	    !count_ok(count, PROTO_PFN_BATCH_MAX) || pfns == NULL)
		return -EINVAL;
	body = PL_FIXED + (size_t)count * 8;
	if ((b = rec_start(out, cap, type, body, &err)) == NULL)
		return err;
	put32(b + PL_COUNT, count);
	for (i = 0; i < count; i++)
		put64(b + PL_FIXED + (size_t)i * 8, pfns[i]);
	return (int)proto_rec_size(body);
}

int
proto_enc_page_ref(uint8_t *out, size_t cap, uint32_t count,
    const uint64_t *pfns, const uint64_t *hints,
    const uint8_t (*digests)[32])
{
	uint8_t		*b, *e;
	size_t		 body;
	uint32_t	 i;
	int		 err;

	if (!count_ok(count, PROTO_PFN_BATCH_MAX) || pfns == NULL ||
	    hints == NULL || digests == NULL)
		return -EINVAL;
	body = PL_FIXED + (size_t)count * REFE_LEN;
	if ((b = rec_start(out, cap, REC_PAGE_REF, body, &err)) == NULL)
		return err;
	put32(b + PL_COUNT, count);
	for (i = 0; i < count; i++) {
		e = b + PL_FIXED + (size_t)i * REFE_LEN;
		put64(e + REFE_PFN, pfns[i]);
		put64(e + REFE_HINT, hints[i]);
		memcpy(e + REFE_DIGEST, digests[i], PROTO_DIGEST_LEN);
	}
	return (int)proto_rec_size(body);
}

int
proto_enc_iter_end(uint8_t *out, size_t cap, const struct proto_iter_end *ie)
{
	uint8_t	*b;
	int	 err;

	if (ie == NULL)
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_ITER_END, IE_LEN, &err)) == NULL)
		return err;
	put32(b + IE_ITER, ie->iteration);
	put64(b + IE_SENT, ie->pages_sent);
	put64(b + IE_DIRTY, ie->dirty);
	return (int)proto_rec_size(IE_LEN);
}

int
proto_enc_context(uint8_t *out, size_t cap, const void *blob, uint32_t len)
{
	uint8_t	*b;
	int	 err;

	if (len > PROTO_CONTEXT_MAX || (blob == NULL && len != 0))
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_CONTEXT, CTX_FIXED + (size_t)len,
	    &err)) == NULL)
		return err;
	put32(b + CTX_LEN, len);
	if (len)
		memcpy(b + CTX_FIXED, blob, len);
	return (int)proto_rec_size(CTX_FIXED + (size_t)len);
}

int
proto_enc_end(uint8_t *out, size_t cap, uint32_t type,
    const struct proto_end *e)
{
	uint8_t	*b;
	int	 err;

	size_t	 len;

	if ((type != REC_END && type != REC_READY) || e == NULL ||
	    (e->flags & ~END_FLAGS_KNOWN) || !end_list_ok(type, e))
		return -EINVAL;
	len = e->flags & PROTO_END_UNVERIFIED ? END_UV_LEN(e->nunverified) :
	    END_LEN;
	if ((b = rec_start(out, cap, type, len, &err)) == NULL)
		return err;
	put32(b + END_FLAGS, e->flags);
	memcpy(b + END_SHA, e->memory_sha256, PROTO_DIGEST_LEN);
	if (e->flags & PROTO_END_UNVERIFIED) {
		put32(b + END_UV_N, e->nunverified);
		for (uint32_t i = 0; i < e->nunverified; i++)
			put64(b + END_UV_PFNS + 8 * (size_t)i,
			    e->unverified[i]);
	}
	return (int)proto_rec_size(len);
}

int
proto_enc_go(uint8_t *out, size_t cap)
{
	int err;

	if (rec_start(out, cap, REC_GO, GO_LEN, &err) == NULL)
		return err;
	return (int)proto_rec_size(GO_LEN);
}

int
proto_enc_running(uint8_t *out, size_t cap, const struct proto_running *r)
{
	uint8_t	*b;
	int	 err;

	if (r == NULL)
		return -EINVAL;
	if ((b = rec_start(out, cap, REC_RUNNING, RUN_LEN, &err)) == NULL)
		return err;
	put64(b + RUN_CPU, r->cpu_dest_us);
	put64(b + RUN_FILLED, r->refs_filled);
	put64(b + RUN_FAILED, r->refs_failed);
	return (int)proto_rec_size(RUN_LEN);
}

int
proto_enc_keepalive(uint8_t *out, size_t cap)
{
	int err;

	if (rec_start(out, cap, REC_KEEPALIVE, 0, &err) == NULL)
		return err;
	return (int)proto_rec_size(0);
}
