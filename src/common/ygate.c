/*
 * ygate.c - the yield gate of content lookups after iteration 0.  See
 * ygate.h.
 */
#include <string.h>

#include "ygate.h"

void
ygate_init(struct ygate *g)
{
	memset(g, 0, sizeof(*g));
}

int
ygate_closed(const struct ygate *g)
{
	return g->lookups >= YG_PROBE &&
	    (uint64_t)g->hits * YG_MIN < g->lookups;
}

int
ygate_look(struct ygate *g)
{
	if (!ygate_closed(g))
		return 1;
	if (++g->skipped < YG_SAMPLE)
		return 0;
	g->skipped = 0;
	return 1;
}

void
ygate_seen(struct ygate *g, int hit)
{
	g->lookups++;
	if (hit)
		g->hits++;
	if (g->lookups >= YG_WINDOW) {
		g->lookups /= 2;
		g->hits /= 2;
	}
}
