/*
 * hv.c - backend lookup.  The only place that knows the list of backends.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bitmap.h"
#include "hv.h"
#include "log.h"
#include "pagehash.h"

static const struct hv_ops *const backends[] = {
	&hv_sim_ops,
#ifdef HAVE_XEN
	&hv_xen_ops,
#endif
};

const struct hv_ops *
hv_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

static int
in_list(const uint64_t *l, size_t n, uint64_t p)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] == p)
			return 1;
	return 0;
}

/* Add a page to the running segment; emit the segment when it is full. */
static int
seg_add(struct ph_ctx **sctx, struct hv_digest_seg *sg, uint64_t pfn,
    const void *page, hv_digest_seg_fn *seg, void *arg)
{
	if (*sctx == NULL && (*sctx = ph_ctx_new()) == NULL)
		return -ENOMEM;
	if (sg->pages == 0)
		sg->first = pfn;
	sg->last = pfn;
	ph_ctx_update(*sctx, page, PH_PAGE_SIZE);
	if (++sg->pages == HV_DIGEST_SEG) {
		ph_ctx_final(*sctx, sg->sha256);
		*sctx = NULL;
		seg(arg, sg);
		sg->index++;
		sg->pages = 0;
	}
	return 0;
}

int
hv_digest(const struct hv_ops *ops, struct hv_dom *d, const uint64_t *set,
    uint64_t pages, int want, const uint64_t *skip, size_t nskip,
    struct hv_digest *out, hv_digest_seg_fn *seg, void *arg)
{
	uint64_t pfns[HV_MAP_BATCH_MAX], cand[HV_MAP_BATCH_MAX], p = 0;
	void *pg[HV_MAP_BATCH_MAX];
	struct hv_digest_seg sg;
	struct ph_ctx *ctx, *sctx = NULL;
	struct hv_map *map;
	size_t n, nc, i, first;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	memset(&sg, 0, sizeof(sg));
	if (skip != NULL) {
		if (nskip > HV_OUTSIDE_MAX)
			return -EINVAL;
		memcpy(out->outside, skip, nskip * sizeof(*skip));
		out->noutside = nskip;
	}
	if ((ctx = ph_ctx_new()) == NULL)
		return -ENOMEM;
	for (;;) {
		for (n = 0; p < pages && n < HV_MAP_BATCH_MAX; p++)
			if (bm_test(set, p) == !!want &&
			    !(skip != NULL && in_list(skip, nskip, p)))
				pfns[n++] = p;
		if (n == 0)
			break;
		if ((rc = ops->map(d, pfns, n, 0, pg, &map)) != 0)
			goto out;
		first = out->noutside;
		if (skip == NULL && out->noutside < HV_OUTSIDE_MAX) {
			for (nc = 0, i = 0; i < n; i++)
				if (pg[i] != NULL)
					cand[nc++] = pfns[i];
			size_t k = ops->outside_pfns(d, cand, nc,
			    out->outside + first, HV_OUTSIDE_MAX - first);

			out->noutside += k < HV_OUTSIDE_MAX - first ? k :
			    HV_OUTSIDE_MAX - first;
		}
		for (i = 0; i < n; i++) {
			if (pg[i] == NULL || in_list(out->outside + first,
			    out->noutside - first, pfns[i]))
				continue;
			ph_ctx_update(ctx, pg[i], PH_PAGE_SIZE);
			out->pages++;
			if (seg != NULL && (rc = seg_add(&sctx, &sg, pfns[i],
			    pg[i], seg, arg)) != 0)
				break;
		}
		ops->unmap(d, map);
		if (rc != 0)
			goto out;
	}
	if (sctx != NULL && sg.pages > 0) {
		ph_ctx_final(sctx, sg.sha256);
		sctx = NULL;
		seg(arg, &sg);
	}
out:
	ph_ctx_free(sctx);
	if (rc != 0) {
		ph_ctx_free(ctx);
		return rc;
	}
	ph_ctx_final(ctx, out->sha256);
	return 0;
}

void
hv_digest_log_seg(void *arg, const struct hv_digest_seg *s)
{
	char hex[2 * PH_DIGEST_LEN + 1];

	ph_hex(s->sha256, hex);
	log_debug("%s: verify segment %llu: pfns %#llx-%#llx, %llu pages, "
	    "sha256 %s", (const char *)arg, (unsigned long long)s->index,
	    (unsigned long long)s->first, (unsigned long long)s->last,
	    (unsigned long long)s->pages, hex);
}

void
hv_digest_log(const char *prefix, const struct hv_digest *dg)
{
	char list[HV_OUTSIDE_MAX * 20 + 1] = "";
	size_t off = 0;

	for (size_t i = 0; i < dg->noutside; i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, " %#llx",
		    (unsigned long long)dg->outside[i]);
	log_info("%s: verify hashed %llu pages; %zu left out, written by the "
	    "host's own daemons:%s", prefix, (unsigned long long)dg->pages,
	    dg->noutside, dg->noutside ? list : " none");
}
