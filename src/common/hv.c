/*
 * hv.c - backend lookup.  The only place that knows the list of backends.
 */
#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "hv.h"
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

int
hv_digest(const struct hv_ops *ops, struct hv_dom *d, const uint64_t *set,
    uint64_t pages, int want, uint8_t out[32])
{
	uint64_t pfns[HV_MAP_BATCH_MAX], p = 0;
	void *pg[HV_MAP_BATCH_MAX];
	struct hv_map *map;
	struct ph_ctx *ctx;
	size_t n, i;
	int rc;

	if ((ctx = ph_ctx_new()) == NULL)
		return -ENOMEM;
	for (;;) {
		for (n = 0; p < pages && n < HV_MAP_BATCH_MAX; p++)
			if (bm_test(set, p) == !!want)
				pfns[n++] = p;
		if (n == 0)
			break;
		if ((rc = ops->map(d, pfns, n, 0, pg, &map)) != 0) {
			ph_ctx_free(ctx);
			return rc;
		}
		for (i = 0; i < n; i++)
			if (pg[i] != NULL)
				ph_ctx_update(ctx, pg[i], PH_PAGE_SIZE);
		ops->unmap(d, map);
	}
	ph_ctx_final(ctx, out);
	return 0;
}
