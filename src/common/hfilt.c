/*
 * hfilt.c - the host's FILTER of its index's contents (hfilt.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "hfilt.h"
#include "pidx.h"

struct hfilt {
	pthread_mutex_t		 mu;
	struct hfilt_snap	*cur;	/* mu */
};

struct hfilt *
hfilt_new(void)
{
	struct hfilt *h = calloc(1, sizeof(*h));

	if (h != NULL)
		pthread_mutex_init(&h->mu, NULL);
	return h;
}

void
hfilt_free(struct hfilt *h)
{
	if (h == NULL)
		return;
	hfilt_put(h->cur);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static void
hfilt_add(const uint8_t *key, void *arg)
{
	pfilt_add(arg, key);
}

static double
ms_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

int
hfilt_build(struct pidx *ix, uint64_t max_bits, struct hfilt_snap **out)
{
	struct hfilt_snap *sn;
	struct pidx_stats st;
	struct timespec t0;
	uint64_t nbits = 0;
	uint32_t k = 0;

	if ((sn = calloc(1, sizeof(*sn))) == NULL)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Sized by a count taken before the walk: contents the scanner adds
	 * meanwhile make the filter a little fuller, never wrong. */
	if (pidx_stats(ix, UINT32_MAX, &st) == 0)
		pfilt_size(st.unique_digests, max_bits, &nbits, &k);
	if (nbits > 0) {
		if (pfilt_init(&sn->f, nbits, k) != 0) {
			free(sn);
			return -ENOMEM;
		}
		sn->contents = pidx_each_key(ix, hfilt_add, &sn->f);
	}
	clock_gettime(CLOCK_MONOTONIC, &sn->built);
	sn->build_ms = ms_between(&t0, &sn->built);
	sn->refs = 1;
	*out = sn;
	return 0;
}

void
hfilt_set(struct hfilt *h, struct hfilt_snap *snap)
{
	struct hfilt_snap *old;

	pthread_mutex_lock(&h->mu);
	old = h->cur;
	h->cur = snap;
	pthread_mutex_unlock(&h->mu);
	hfilt_put(old);
}

struct hfilt_snap *
hfilt_get(struct hfilt *h)
{
	struct hfilt_snap *sn;

	pthread_mutex_lock(&h->mu);
	if ((sn = h->cur) != NULL)
		__atomic_add_fetch(&sn->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&h->mu);
	return sn;
}

double
hfilt_age_ms(const struct hfilt_snap *snap)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ms_between(&snap->built, &now);
}

void
hfilt_put(struct hfilt_snap *snap)
{
	if (snap == NULL ||
	    __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pfilt_free(&snap->f);
	free(snap);
}
