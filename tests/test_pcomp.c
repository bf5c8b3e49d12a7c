/*
 * test_pcomp.c - unit tests of PAGE_DATA compression (src/common/pcomp.c).
 *
 * For each method: round trips of random, text-like, zero and mixed
 * pages; incompressible data is reported as such; and the decoder's
 * bounds: a frame that would produce more than the pages (a bomb),
 * fewer (short output), a truncated frame at every length, trailing
 * bytes, a zstd frame without its content size or a skippable frame, and
 * corrupted frames never write past the output nor succeed with the
 * wrong size.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4.h>
#include <zstd.h>

#include "pcomp.h"
#include "proto.h"

#define PG		PROTO_PAGE_SIZE
#define NPG		PROTO_PAGE_BATCH_MAX
#define GUARD		4096u

static uint8_t	src[NPG * PG];
static uint8_t	frame[NPG * PG + 1024];
static uint8_t	out[NPG * PG + GUARD];

static const uint32_t methods[] = { PROTO_COMPRESS_ZSTD, PROTO_COMPRESS_LZ4 };
#define NMETHODS	(sizeof(methods) / sizeof(methods[0]))

static uint64_t
rnd(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(&seed);
}

static void
fill_text(uint8_t *p, size_t n, uint64_t seed)
{
	static const char *const w[8] = { "the ", "page ", "memory ",
	    "kernel ", "of ", "struct ", "return ", "NULL\n" };
	size_t i = 0;

	while (i < n) {
		const char *s = w[rnd(&seed) & 7];

		for (; *s != '\0' && i < n; s++)
			p[i++] = (uint8_t)*s;
	}
}

/* Compress n pages of src with c; the frame length (> 0). */
static size_t
squeeze(struct pcomp *c, uint32_t n)
{
	int clen = pcomp_compress(c, src, (size_t)n * PG, frame,
	    sizeof(frame));

	assert_true(clen > 0);
	assert_true((size_t)clen < (size_t)n * PG);
	return (size_t)clen;
}

/* Decompress into out, checking the guard zone after dlen. */
static int
expand(struct pcomp *c, const void *f, size_t clen, size_t dlen)
{
	int rc;

	memset(out, 0xa5, sizeof(out));
	rc = pcomp_decompress(c, f, clen, out, dlen);
	for (size_t i = dlen; i < dlen + GUARD; i++)
		assert_int_equal(out[i], 0xa5);
	return rc;
}

static void
test_names(void **state)
{
	uint64_t caps;

	assert_string_equal(pcomp_name(PROTO_COMPRESS_NONE), "none");
	assert_string_equal(pcomp_name(PROTO_COMPRESS_ZSTD), "zstd");
	assert_string_equal(pcomp_name(PROTO_COMPRESS_LZ4), "lz4");
	assert_null(pcomp_name(3));
	assert_int_equal(pcomp_parse("zstd"), PROTO_COMPRESS_ZSTD);
	assert_int_equal(pcomp_parse("lz4"), PROTO_COMPRESS_LZ4);
	assert_int_equal(pcomp_parse("none"), PROTO_COMPRESS_NONE);
	assert_int_equal(pcomp_parse("gzip"), -EINVAL);
	assert_int_equal(pcomp_parse(""), -EINVAL);
	assert_int_equal(pcomp_parse(NULL), -EINVAL);
	assert_true(pcomp_cap(PROTO_COMPRESS_ZSTD) == PROTO_CAP_ZSTD);
	assert_true(pcomp_cap(PROTO_COMPRESS_LZ4) == PROTO_CAP_LZ4);
	assert_true(pcomp_cap(PROTO_COMPRESS_NONE) == 0);
	assert_int_equal(pcomp_parse_caps("zstd,lz4", &caps), 0);
	assert_true(caps == (PROTO_CAP_ZSTD | PROTO_CAP_LZ4));
	assert_int_equal(pcomp_parse_caps("lz4", &caps), 0);
	assert_true(caps == PROTO_CAP_LZ4);
	assert_int_equal(pcomp_parse_caps("none", &caps), 0);
	assert_true(caps == 0);
	caps = 77;
	assert_int_equal(pcomp_parse_caps("zstd,gzip", &caps), -EINVAL);
	assert_int_equal(pcomp_parse_caps("", &caps), -EINVAL);
	assert_int_equal(pcomp_parse_caps(",", &caps), -EINVAL);
	assert_int_equal(pcomp_parse_caps("none,zstd", &caps), -EINVAL);
	assert_true(caps == 77);
	assert_null(pcomp_new(PROTO_COMPRESS_NONE));
	assert_null(pcomp_new(3));
	pcomp_free(NULL);
}

static void
test_roundtrip(void **state)
{
	static const uint32_t counts[] = { 1, 2, 17, NPG };

	for (size_t m = 0; m < NMETHODS; m++) {
		struct pcomp *c = pcomp_new(methods[m]);

		assert_non_null(c);
		for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]);
		    k++) {
			uint32_t n = counts[k];
			size_t clen;

			/* Text, zero and random pages mixed. */
			for (uint32_t i = 0; i < n; i++) {
				uint8_t *p = src + (size_t)i * PG;

				if (i % 3 == 0)
					fill_text(p, PG, i + 1);
				else if (i % 3 == 1)
					memset(p, 0, PG);
				else
					fill_random(p, PG, i + 1);
			}
			if (n == 1)
				fill_text(src, PG, 9);
			clen = squeeze(c, n);
			assert_int_equal(expand(c, frame, clen, (size_t)n * PG),
			    0);
			assert_memory_equal(out, src, (size_t)n * PG);
		}
		/* The context is reused: many records in a row. */
		for (uint32_t i = 0; i < 50; i++) {
			size_t clen;

			fill_text(src, 4 * PG, 100 + i);
			clen = squeeze(c, 4);
			assert_int_equal(expand(c, frame, clen, 4 * PG), 0);
			assert_memory_equal(out, src, 4 * PG);
		}
		pcomp_free(c);
	}
}

/* Pages that do not shrink: 0, the caller sends them raw. */
static void
test_incompressible(void **state)
{
	for (size_t m = 0; m < NMETHODS; m++) {
		struct pcomp *c = pcomp_new(methods[m]);

		fill_random(src, 8 * PG, 42);
		assert_int_equal(pcomp_compress(c, src, 8 * PG, frame,
		    sizeof(frame)), 0);
		/* No room below the input's size either. */
		fill_text(src, PG, 1);
		assert_int_equal(pcomp_compress(c, src, PG, frame, 10), 0);
		assert_int_equal(pcomp_compress(c, src, 0, frame, 10),
		    -EINVAL);
		assert_int_equal(pcomp_compress(NULL, src, PG, frame, 10),
		    -EINVAL);
		pcomp_free(c);
	}
}

/*
 * The output size is exact: a frame of 2 pages given room for 1 (a
 * bomb), a frame of 1 page where 2 are expected (short), a frame of
 * 1 page and 1 byte.
 */
static void
test_sizes(void **state)
{
	for (size_t m = 0; m < NMETHODS; m++) {
		struct pcomp *c = pcomp_new(methods[m]);
		size_t clen;

		memset(src, 'x', 2 * PG);
		clen = squeeze(c, 2);
		assert_int_equal(expand(c, frame, clen, PG), -EBADMSG);
		assert_int_equal(expand(c, frame, clen, 2 * PG - 1), -EBADMSG);
		assert_int_equal(expand(c, frame, clen, 3 * PG), -EBADMSG);
		assert_int_equal(expand(c, frame, clen, 2 * PG), 0);
		/* A huge run: many pages' worth claimed by a tiny frame. */
		memset(src, 0, NPG * PG);
		clen = squeeze(c, NPG);
		assert_true(clen < 8192);
		assert_int_equal(expand(c, frame, clen, PG), -EBADMSG);
		pcomp_free(c);
	}
}

/* Every truncation and trailing bytes are refused. */
static void
test_truncated_trailing(void **state)
{
	for (size_t m = 0; m < NMETHODS; m++) {
		struct pcomp *c = pcomp_new(methods[m]);
		size_t clen, l;

		fill_text(src, 3 * PG, 5);
		clen = squeeze(c, 3);
		for (l = 0; l < clen; l++)
			assert_int_equal(expand(c, frame, l, 3 * PG), -EBADMSG);
		frame[clen] = 0;
		frame[clen + 1] = 0;
		assert_int_equal(expand(c, frame, clen + 1, 3 * PG), -EBADMSG);
		assert_int_equal(expand(c, frame, clen + 2, 3 * PG), -EBADMSG);
		/* Two frames back to back are not one frame. */
		memcpy(frame + clen, frame, clen);
		assert_int_equal(expand(c, frame, 2 * clen, 3 * PG), -EBADMSG);
		assert_int_equal(expand(c, frame, 2 * clen, 6 * PG), -EBADMSG);
		pcomp_free(c);
	}
}

/* zstd frames a sender of ours never makes are refused. */
static void
test_zstd_frames(void **state)
{
	struct pcomp *c = pcomp_new(PROTO_COMPRESS_ZSTD);
	ZSTD_CCtx *zc = ZSTD_createCCtx();
	size_t clen;

	fill_text(src, 2 * PG, 7);
	/* No content size in the header. */
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(zc,
	    ZSTD_c_contentSizeFlag, 0)));
	{
		ZSTD_outBuffer ob = { frame, sizeof(frame), 0 };
		ZSTD_inBuffer ib = { src, 2 * PG, 0 };

		assert_int_equal(ZSTD_compressStream2(zc, &ob, &ib,
		    ZSTD_e_end), 0);
		clen = ob.pos;
	}
	assert_int_equal(ZSTD_getFrameContentSize(frame, clen),
	    ZSTD_CONTENTSIZE_UNKNOWN);
	assert_int_equal(expand(c, frame, clen, 2 * PG), -EBADMSG);
	/* A skippable frame. */
	clen = ZSTD_compress(frame, sizeof(frame), src, 2 * PG, 1);
	assert_false(ZSTD_isError(clen));
	memmove(frame + 8, frame, clen);
	frame[0] = 0x50;
	frame[1] = 0x2a;
	frame[2] = 0x4d;
	frame[3] = 0x18;
	frame[4] = (uint8_t)clen;
	frame[5] = (uint8_t)(clen >> 8);
	frame[6] = frame[7] = 0;
	assert_int_equal(expand(c, frame, clen + 8, 2 * PG), -EBADMSG);
	/* The regular frame after it alone is fine. */
	assert_int_equal(expand(c, frame + 8, clen, 2 * PG), 0);
	ZSTD_freeCCtx(zc);
	pcomp_free(c);
}

/*
 * Flipped bytes: the result is an error or exactly the pages' size
 * (zstd and lz4 frames carry no checksum here; byte equality is proven
 * by --verify's digests and the guest's self-check), never a write past
 * the output.
 */
static void
test_corrupt(void **state)
{
	for (size_t m = 0; m < NMETHODS; m++) {
		struct pcomp *c = pcomp_new(methods[m]);
		static uint8_t good[NPG * PG];
		size_t clen;
		int rc;

		fill_text(src, 4 * PG, 11);
		clen = squeeze(c, 4);
		memcpy(good, frame, clen);
		for (size_t i = 0; i < clen; i++) {
			for (unsigned bit = 0; bit < 8; bit += 3) {
				memcpy(frame, good, clen);
				frame[i] ^= (uint8_t)(1u << bit);
				rc = expand(c, frame, clen, 4 * PG);
				assert_true(rc == 0 || rc == -EBADMSG);
			}
		}
		/* Garbage. */
		fill_random(frame, 4096, 3);
		assert_int_equal(expand(c, frame, 4096, 4 * PG), -EBADMSG);
		pcomp_free(c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_incompressible),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_truncated_trailing),
		cmocka_unit_test(test_zstd_frames),
		cmocka_unit_test(test_corrupt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
