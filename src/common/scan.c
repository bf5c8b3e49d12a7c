/*
 * scan.c - the host's scanner thread.
 *
 * A pass lists the domains, forgets the ones that are gone, then walks
 * each domain in batches: map read-only, XXH3 every page, compare with
 * the fingerprints the index holds, SHA-256 only the pages that changed
 * (an all-zero page gets the known zero digest without hashing), unmap,
 * and apply the changed pages to the index in one short write-locked
 * update.  After each batch the thread sleeps as long as needed to keep
 * its CPU time at or below cpu_budget of the wall time since the pass
 * began.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pagehash.h"
#include "scan.h"

#define SCAN_BATCH_DEFAULT	256u
#define SCAN_SLEEP_MAX_NS	200000000LL	/* recheck stop at least 5/s */

struct scan {
	/* Read-only after scan_start(). */
	struct pidx		*ix;
	struct scan_params	 p;	/* hvp strings owned (copied) */
	char			*state_dir;
	char			*simhv_path;
	pthread_t		 thread;

	/* Protected by mu; cv signals the scanner (kick, stop), pass_cv
	 * signals waiters (a pass completed). */
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
	pthread_cond_t		 pass_cv;
	int			 stop;
	int			 kick;
	int			 busy;		/* a pass is under way;
						 * cleared with passes++ */
	struct scan_stats	 st;

	/* Owned by the scanner thread. */
	struct hv		*hv;
	uint64_t		*pfns, *old;
	uint64_t		*upfns, *ufps;
	uint8_t			(*udig)[PH_DIGEST_LEN];
	void			**pages;
};

static int64_t
ts_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Absolute CLOCK_MONOTONIC deadline ns from now (cv uses that clock). */
static struct timespec
deadline_in(int64_t ns)
{
	struct timespec ts;
	int64_t t = ts_ns(CLOCK_MONOTONIC) + ns;

	ts.tv_sec = t / 1000000000LL;
	ts.tv_nsec = t % 1000000000LL;
	return ts;
}

/* 1 if scan_stop() was called. */
static int
scan_stopping(struct scan *s)
{
	int r;

	pthread_mutex_lock(&s->mu);
	r = s->stop;
	pthread_mutex_unlock(&s->mu);
	return r;
}

/*
 * Sleep until cpu time since the pass began is <= budget * wall time,
 * waking early for stop.  Returns 1 if stopping.
 */
static int
scan_throttle(struct scan *s, int64_t wall0, int64_t cpu0)
{
	int64_t cpu, wall, need;
	struct timespec dl;
	int stop;

	if (s->p.cpu_budget >= 1.0)
		return scan_stopping(s);
	cpu = ts_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	wall = ts_ns(CLOCK_MONOTONIC) - wall0;
	need = (int64_t)((double)cpu / s->p.cpu_budget) - wall;
	pthread_mutex_lock(&s->mu);
	while (!s->stop && need > 0) {
		int64_t chunk = need < SCAN_SLEEP_MAX_NS ? need :
		    SCAN_SLEEP_MAX_NS;

		dl = deadline_in(chunk);
		pthread_cond_timedwait(&s->cv, &s->mu, &dl);
		wall = ts_ns(CLOCK_MONOTONIC) - wall0;
		need = (int64_t)((double)cpu / s->p.cpu_budget) - wall;
	}
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/*
 * Scan pfns [base, base + n) of an open domain: hash, compare, update.
 * 0, or a negative errno when the domain could not be mapped or the
 * index refused the update.
 */
static int
scan_batch(struct scan *s, struct hv_dom *hd, uint32_t domid, uint64_t base,
    size_t n, uint64_t *hashed)
{
	const struct hv_ops *ops = s->p.ops;
	struct hv_map *m = NULL;
	struct ph_queue q = { NULL, NULL };
	size_t i, nu = 0;
	uint64_t fp;
	int r;

	for (i = 0; i < n; i++)
		s->pfns[i] = base + i;
	if ((r = pidx_fp_get(s->ix, domid, s->pfns, n, s->old)) != 0)
		return r;
	if ((r = ops->map(hd, s->pfns, n, 0, s->pages, &m)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (s->pages[i] == NULL) {
			fp = 0;			/* hole */
		} else {
			fp = ph_xxh3(s->pages[i]);
			if (fp == 0)
				fp = 1;		/* 0 means "unknown" */
		}
		if (fp == s->old[i])
			continue;
		s->upfns[nu] = s->pfns[i];
		s->ufps[nu] = fp;
		if (fp != 0) {
			if (ph_is_zero(s->pages[i])) {
				memcpy(s->udig[nu], ph_zero_digest(),
				    PH_DIGEST_LEN);
			} else {
				/* two at a time (pagehash.h) */
				ph_queue_add(&q, s->pages[i], s->udig[nu]);
				(*hashed)++;
			}
		}
		nu++;
	}
	ph_queue_flush(&q);
	ops->unmap(hd, m);
	if (nu == 0)
		return 0;
	return pidx_update(s->ix, domid, s->upfns, nu, s->ufps,
	    (const uint8_t (*)[32])s->udig);
}

/*
 * Scan one domain.  A domain that cannot be opened or mapped (destroyed
 * meanwhile, or of a kind the backend cannot read) is dropped from the
 * index; it comes back on a later pass if it still exists.
 * Returns 1 if stopping.
 */
static int
scan_domain(struct scan *s, const struct hv_dom_info *di, int64_t wall0,
    int64_t cpu0)
{
	const struct hv_ops *ops = s->p.ops;
	struct hv_dom *hd = NULL;
	uint64_t base, hashed;
	char name[16];
	size_t n;
	int r;

	snprintf(name, sizeof(name), "%" PRIu32, di->domid);
	if (ops->dom_open(s->hv, name, &hd) != 0) {
		pidx_dom_remove(s->ix, di->domid);
		return scan_stopping(s);
	}
	for (base = 0; base < di->pages; base += n) {
		n = di->pages - base < s->p.batch_pages ?
		    (size_t)(di->pages - base) : s->p.batch_pages;
		hashed = 0;
		r = scan_batch(s, hd, di->domid, base, n, &hashed);
		pthread_mutex_lock(&s->mu);
		s->st.pages_scanned += r == 0 ? n : 0;
		s->st.pages_hashed += hashed;
		s->st.cpu_s = (double)ts_ns(CLOCK_THREAD_CPUTIME_ID) / 1e9;
		pthread_mutex_unlock(&s->mu);
		if (r != 0) {
			pidx_dom_remove(s->ix, di->domid);
			break;
		}
		if (scan_throttle(s, wall0, cpu0)) {
			ops->dom_close(hd);
			return 1;
		}
	}
	ops->dom_close(hd);
	return scan_stopping(s);
}

/* One full pass.  0, 1 if stopping, or a negative errno (no pass). */
static int
scan_pass(struct scan *s)
{
	const struct hv_ops *ops = s->p.ops;
	struct hv_dom_info *di = NULL;
	int64_t wall0, cpu0;
	uint32_t *doms = NULL;
	size_t n = 0, nd = 0, i, j;
	int r;

	wall0 = ts_ns(CLOCK_MONOTONIC);
	cpu0 = ts_ns(CLOCK_THREAD_CPUTIME_ID);
	if ((r = ops->list(s->hv, &di, &n)) != 0)
		return r;
	/* Forget domains that are gone, then track/resize the rest. */
	if ((r = pidx_doms(s->ix, &doms, &nd)) != 0)
		goto out;
	for (j = 0; j < nd; j++) {
		for (i = 0; i < n; i++)
			if (di[i].domid == doms[j])
				break;
		if (i == n)
			pidx_dom_remove(s->ix, doms[j]);
	}
	for (i = 0; i < n; i++) {
		if (pidx_dom_set(s->ix, di[i].domid, di[i].pages) != 0) {
			pidx_dom_remove(s->ix, di[i].domid);
			continue;
		}
		if ((r = scan_domain(s, &di[i], wall0, cpu0)) != 0)
			goto out;
	}
	if (s->p.pass_done != NULL)
		s->p.pass_done(s->ix, s->p.pass_arg);
	pthread_mutex_lock(&s->mu);
	s->st.cpu_s = (double)ts_ns(CLOCK_THREAD_CPUTIME_ID) / 1e9;
	s->st.passes++;
	s->st.domains = n;
	s->busy = 0;		/* with passes++: scan_sync() relies on it */
	pthread_cond_broadcast(&s->pass_cv);
	pthread_mutex_unlock(&s->mu);
out:
	free(doms);
	free(di);
	return r;
}

static void *
scan_main(void *arg)
{
	struct scan *s = arg;
	struct timespec dl;
	int stop = 0;

	while (!stop) {
		pthread_mutex_lock(&s->mu);
		s->busy = 1;
		s->kick = 0;	/* this pass serves every kick so far */
		pthread_mutex_unlock(&s->mu);
		/* The instance is (re)opened until the backend is usable. */
		if (s->hv == NULL && s->p.ops->open(&s->p.hvp, &s->hv) != 0)
			s->hv = NULL;
		if (s->hv != NULL && scan_pass(s) == 1)
			break;
		pthread_mutex_lock(&s->mu);
		s->busy = 0;
		dl = deadline_in((int64_t)s->p.interval_ms * 1000000LL);
		while (!s->stop && !s->kick)
			if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) ==
			    ETIMEDOUT)
				break;
		s->kick = 0;
		stop = s->stop;
		pthread_mutex_unlock(&s->mu);
	}
	if (s->hv != NULL)
		s->p.ops->close(s->hv);
	s->hv = NULL;
	return NULL;
}

static void
scan_free(struct scan *s)
{
	free(s->state_dir);
	free(s->simhv_path);
	free(s->pfns);
	free(s->old);
	free(s->upfns);
	free(s->ufps);
	free(s->udig);
	free(s->pages);
	free(s);
}

/*
 * Copy the parameters (batch_pages 0 = 256, capped at HV_MAP_BATCH_MAX;
 * cpu_budget <= 0 or > 1 = 1) and start the thread.  0, -EINVAL (no ops),
 * -ENOMEM, or the pthread error.
 */
int
scan_start(struct pidx *ix, const struct scan_params *p, struct scan **out)
{
	pthread_condattr_t ca;
	struct scan *s;
	size_t b;
	int r;

	if (ix == NULL || p == NULL || p->ops == NULL)
		return -EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->ix = ix;
	s->p = *p;
	if (s->p.batch_pages == 0)
		s->p.batch_pages = SCAN_BATCH_DEFAULT;
	if (s->p.batch_pages > HV_MAP_BATCH_MAX)
		s->p.batch_pages = HV_MAP_BATCH_MAX;
	if (!(s->p.cpu_budget > 0.0) || s->p.cpu_budget > 1.0)
		s->p.cpu_budget = 1.0;
	b = s->p.batch_pages;
	if ((p->hvp.state_dir != NULL &&
	    (s->state_dir = strdup(p->hvp.state_dir)) == NULL) ||
	    (p->hvp.simhv_path != NULL &&
	    (s->simhv_path = strdup(p->hvp.simhv_path)) == NULL) ||
	    (s->pfns = calloc(b, sizeof(*s->pfns))) == NULL ||
	    (s->old = calloc(b, sizeof(*s->old))) == NULL ||
	    (s->upfns = calloc(b, sizeof(*s->upfns))) == NULL ||
	    (s->ufps = calloc(b, sizeof(*s->ufps))) == NULL ||
	    (s->udig = calloc(b, sizeof(*s->udig))) == NULL ||
	    (s->pages = calloc(b, sizeof(*s->pages))) == NULL) {
		scan_free(s);
		return -ENOMEM;
	}
	s->p.hvp.state_dir = s->state_dir;
	s->p.hvp.simhv_path = s->simhv_path;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_cond_init(&s->pass_cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = pthread_create(&s->thread, NULL, scan_main, s)) != 0) {
		pthread_cond_destroy(&s->cv);
		pthread_cond_destroy(&s->pass_cv);
		pthread_mutex_destroy(&s->mu);
		scan_free(s);
		return -r;
	}
	*out = s;
	return 0;
}

void
scan_stop(struct scan *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_cond_destroy(&s->pass_cv);
	pthread_mutex_destroy(&s->mu);
	scan_free(s);
}

void
scan_kick(struct scan *s)
{
	pthread_mutex_lock(&s->mu);
	s->kick = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Wait for passes_done >= target (mu held).  0 or -ETIMEDOUT. */
static int
scan_wait_until(struct scan *s, uint64_t target, int timeout_ms)
{
	struct timespec dl;
	int r = 0;

	if (timeout_ms >= 0)
		dl = deadline_in((int64_t)timeout_ms * 1000000LL);
	while (s->st.passes < target) {
		if (timeout_ms < 0)
			pthread_cond_wait(&s->pass_cv, &s->mu);
		else if (pthread_cond_timedwait(&s->pass_cv, &s->mu, &dl) ==
		    ETIMEDOUT) {
			r = s->st.passes < target ? -ETIMEDOUT : 0;
			break;
		}
	}
	return r;
}

/* timeout_ms < 0 waits forever. */
int
scan_wait(struct scan *s, unsigned passes, int timeout_ms)
{
	int r;

	pthread_mutex_lock(&s->mu);
	r = scan_wait_until(s, s->st.passes + passes, timeout_ms);
	pthread_mutex_unlock(&s->mu);
	return r;
}

int
scan_sync(struct scan *s, int timeout_ms)
{
	int r;

	pthread_mutex_lock(&s->mu);
	s->kick = 1;
	pthread_cond_broadcast(&s->cv);
	r = scan_wait_until(s, s->st.passes + 1 + (uint64_t)s->busy,
	    timeout_ms);
	pthread_mutex_unlock(&s->mu);
	return r;
}

void
scan_get_stats(struct scan *s, struct scan_stats *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	out->busy = s->busy;
	pthread_mutex_unlock(&s->mu);
}
