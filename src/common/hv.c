/*
 * hv.c - backend lookup.  The only place that knows the list of backends.
 */
#include <string.h>

#include "hv.h"

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
