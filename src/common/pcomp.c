/*
 * pcomp.c - PAGE_DATA compression: one frame per record over the record's
 * pages, zstd or lz4, behind a small table of methods.
 *
 * zstd: a single frame with its content size in the header (the default
 * of ZSTD_compress2); the receiver insists on exactly one frame, no
 * skippable frames, a declared size equal to the pages' size, and caps
 * the window it will allocate.  lz4: one raw block (LZ4_compress_fast_
 * extState / LZ4_decompress_safe); its size is the record's frame length
 * and the output must fill the pages exactly.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "pcomp.h"
#include "proto.h"

/*
 * Levels, chosen by measurement on 1 MiB records of sim guests with
 * text-like private pages (docs/BENCHMARKS.md, "Compression"): zstd
 * level 1 keeps nearly the ratio of level 3 (1.96 against 2.12) at about
 * twice its speed, and negative levels gain little speed for less ratio
 * (1.91 at -1, 1.78 at -5); lz4 acceleration 1 is its default.
 */
#define PCOMP_ZSTD_LEVEL	1
#define PCOMP_LZ4_ACCEL		1
/* Largest zstd window a receiver allocates: a record's pages fit. */
#define PCOMP_ZSTD_WLOG_MAX	21
_Static_assert(((size_t)1 << PCOMP_ZSTD_WLOG_MAX) >=
    (size_t)PROTO_PAGE_BATCH_MAX * PROTO_PAGE_SIZE, "zstd window");

struct pcomp {
	uint32_t	 method;
	ZSTD_CCtx	*zc;
	ZSTD_DCtx	*zd;
	void		*lz4;		/* LZ4_sizeofState() bytes */
};

static const char *const names[] = {
	[PROTO_COMPRESS_NONE] = "none",
	[PROTO_COMPRESS_ZSTD] = "zstd",
	[PROTO_COMPRESS_LZ4] = "lz4",
};

const char *
pcomp_name(uint32_t method)
{
	return method <= PROTO_COMPRESS_MAX ? names[method] : NULL;
}

int
pcomp_parse(const char *name)
{
	uint32_t m;

	for (m = 0; name != NULL && m <= PROTO_COMPRESS_MAX; m++)
		if (strcmp(name, names[m]) == 0)
			return (int)m;
	return -EINVAL;
}

uint64_t
pcomp_cap(uint32_t method)
{
	switch (method) {
	case PROTO_COMPRESS_ZSTD:
		return PROTO_CAP_ZSTD;
	case PROTO_COMPRESS_LZ4:
		return PROTO_CAP_LZ4;
	default:
		return 0;
	}
}

int
pcomp_parse_caps(const char *list, uint64_t *caps)
{
	char buf[64], *tok, *save;
	uint64_t c = 0;
	int m;

	if (list == NULL || strlen(list) >= sizeof(buf))
		return -EINVAL;
	if (strcmp(list, "none") == 0) {
		*caps = 0;
		return 0;
	}
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if ((m = pcomp_parse(tok)) <= 0)
			return -EINVAL;
		c |= pcomp_cap((uint32_t)m);
	}
	if (c == 0)
		return -EINVAL;
	*caps = c;
	return 0;
}

void
pcomp_free(struct pcomp *c)
{
	if (c == NULL)
		return;
	ZSTD_freeCCtx(c->zc);
	ZSTD_freeDCtx(c->zd);
	free(c->lz4);
	free(c);
}

struct pcomp *
pcomp_new(uint32_t method)
{
	struct pcomp *c;

	if (method == PROTO_COMPRESS_NONE || method > PROTO_COMPRESS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->method = method;
	if (method == PROTO_COMPRESS_ZSTD) {
		if ((c->zc = ZSTD_createCCtx()) == NULL ||
		    (c->zd = ZSTD_createDCtx()) == NULL ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(c->zc,
		    ZSTD_c_compressionLevel, PCOMP_ZSTD_LEVEL)) ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(c->zc,
		    ZSTD_c_contentSizeFlag, 1)) ||
		    ZSTD_isError(ZSTD_DCtx_setParameter(c->zd,
		    ZSTD_d_windowLogMax, PCOMP_ZSTD_WLOG_MAX)))
			goto fail;
	} else {
		if ((c->lz4 = malloc((size_t)LZ4_sizeofState())) == NULL)
			goto fail;
	}
	return c;
fail:
	pcomp_free(c);
	errno = ENOMEM;
	return NULL;
}

int
pcomp_compress(struct pcomp *c, const void *src, size_t len, void *dst,
    size_t cap)
{
	size_t r;
	int n;

	if (c == NULL || src == NULL || dst == NULL || len == 0 ||
	    len > INT_MAX)
		return -EINVAL;
	/* Only a frame shorter than the input is worth sending. */
	if (cap >= len)
		cap = len - 1;
	if (cap == 0)
		return 0;
	if (c->method == PROTO_COMPRESS_ZSTD) {
		r = ZSTD_compress2(c->zc, dst, cap, src, len);
		if (ZSTD_isError(r))
			return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ?
			    0 : -EINVAL;
		return (int)r;
	}
	n = LZ4_compress_fast_extState(c->lz4, src, dst, (int)len, (int)cap,
	    PCOMP_LZ4_ACCEL);
	return n > 0 ? n : 0;
}

int
pcomp_decompress(struct pcomp *c, const void *src, size_t clen, void *dst,
    size_t dlen)
{
	unsigned long long fsize;
	size_t r;
	int n;

	if (c == NULL || src == NULL || dst == NULL || clen == 0 ||
	    clen > INT_MAX || dlen > INT_MAX)
		return -EBADMSG;
	if (c->method == PROTO_COMPRESS_ZSTD) {
		/* Exactly one regular frame, declaring exactly dlen bytes. */
		const uint8_t *p = src;

		/* A regular frame: not skippable, not a legacy format. */
		if (clen < 4 || ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
		    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24) !=
		    ZSTD_MAGICNUMBER)
			return -EBADMSG;
		r = ZSTD_findFrameCompressedSize(src, clen);
		if (ZSTD_isError(r) || r != clen)
			return -EBADMSG;
		fsize = ZSTD_getFrameContentSize(src, clen);
		if (fsize != dlen)	/* also UNKNOWN, ERROR, skippable */
			return -EBADMSG;
		r = ZSTD_decompressDCtx(c->zd, dst, dlen, src, clen);
		return !ZSTD_isError(r) && r == dlen ? 0 : -EBADMSG;
	}
	n = LZ4_decompress_safe(src, dst, (int)clen, (int)dlen);
	return n >= 0 && (size_t)n == dlen ? 0 : -EBADMSG;
}
