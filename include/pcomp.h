/*
 * pcomp.h - compression of PAGE_DATA payloads (docs/PROTOCOL.md,
 * "PAGE_DATA"): zstd or lz4 over the concatenated pages of one record.
 *
 * One struct pcomp per migration and method, reused for every record
 * (ZSTD_CCtx/ZSTD_DCtx, the lz4 state), owned by one thread.  Nothing
 * here logs.
 */
#ifndef SHAREMIG_PCOMP_H
#define SHAREMIG_PCOMP_H

#include <stddef.h>
#include <stdint.h>

struct pcomp;

/* A context for method (enum proto_compress, not NONE), or NULL (bad
 * method: errno EINVAL, else ENOMEM). */
struct pcomp	*pcomp_new(uint32_t method);
void		 pcomp_free(struct pcomp *c);	/* accepts NULL */

/* "none", "zstd", "lz4"; NULL for an unknown method. */
const char	*pcomp_name(uint32_t method);
/* The method called name, or -EINVAL. */
int		 pcomp_parse(const char *name);
/* The HELLO capability bit that says a receiver accepts method (0 for
 * none or unknown). */
uint64_t	 pcomp_cap(uint32_t method);
/* A comma-separated list of methods ("zstd,lz4"; "none" = no method)
 * into the HELLO capability bits that accept them.  0 or -EINVAL. */
int		 pcomp_parse_caps(const char *list, uint64_t *caps);

/*
 * Compress src[len] into dst[cap].  Returns the compressed length when it
 * is shorter than len (and fits cap), 0 when the data does not shrink
 * (send it raw), or -EINVAL.
 */
int	pcomp_compress(struct pcomp *c, const void *src, size_t len,
	    void *dst, size_t cap);

/*
 * Decompress one frame src[clen] into dst, which must come out exactly
 * dlen bytes long.  Never writes more than dlen bytes.  0, or -EBADMSG
 * when the frame is corrupt, is not exactly one frame (trailing bytes),
 * declares or produces any other size (a "bomb" or short output).
 */
int	pcomp_decompress(struct pcomp *c, const void *src, size_t clen,
	    void *dst, size_t dlen);

#endif
