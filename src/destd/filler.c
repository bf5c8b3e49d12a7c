/*
 * filler.c - page fills from local content, and the OFFER worker.
 * See filler.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "filler.h"
#include "log.h"
#include "pagehash.h"

void
fill_ctx_init(struct fill_ctx *c, const struct hv_ops *ops, struct hv *hv,
    struct pidx *index)
{
	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->hv = hv;
	c->index = index;
}

void
fill_ctx_close(struct fill_ctx *c)
{
	unsigned i;

	for (i = 0; i < FILL_SRC_DOMS; i++) {
		if (c->src[i].dom != NULL)
			c->ops->dom_close(c->src[i].dom);
		c->src[i].dom = NULL;
	}
}

/* An open handle on a local domain to copy from, cached. */
static struct hv_dom *
fill_src_dom(struct fill_ctx *c, uint32_t domid)
{
	char name[16];
	unsigned i, k;

	for (i = 0; i < FILL_SRC_DOMS; i++)
		if (c->src[i].dom != NULL && c->src[i].domid == domid)
			return c->src[i].dom;
	k = c->src_next++ % FILL_SRC_DOMS;
	if (c->src[k].dom != NULL && c->src[k].dom == c->pinned)
		k = c->src_next++ % FILL_SRC_DOMS;	/* the next one */
	if (c->src[k].dom != NULL)
		c->ops->dom_close(c->src[k].dom);
	c->src[k].dom = NULL;
	snprintf(name, sizeof(name), "%u", domid);
	if (c->ops->dom_open(c->hv, name, &c->src[k].dom) != 0)
		return NULL;
	c->src[k].domid = domid;
	return c->src[k].dom;
}

/* Map page pfn of domain d: 0 (*page, *map set), -ENOENT (a hole) or
 * -errno. */
static int
fill_map(struct fill_ctx *c, struct hv_dom *d, uint64_t pfn, const void **page,
    struct hv_map **map)
{
	void *p;
	int rc;

	if ((rc = c->ops->map(d, &pfn, 1, 0, &p, map)) != 0)
		return rc;
	if (p == NULL) {
		c->ops->unmap(d, *map);
		return -ENOENT;
	}
	*page = p;
	return 0;
}

/*
 * Copy page pfn of domain d into dst and check that the copy's SHA-256
 * (left in got) starts with digest[0..dlen).
 */
static int
fill_copy_verified(struct fill_ctx *c, struct hv_dom *d, uint64_t pfn,
    void *dst, const uint8_t *digest, size_t dlen, uint8_t got[32])
{
	struct hv_map *map;
	const void *page;
	int rc;

	if ((rc = fill_map(c, d, pfn, &page, &map)) != 0)
		return rc;
	ph_copy_sha256(dst, page, got);
	c->ops->unmap(d, map);
	if (memcmp(got, digest, dlen) != 0) {
		c->stale++;
		return -ESTALE;
	}
	return 0;
}

int
fill_page(struct fill_ctx *c, struct hv_dom *self, uint64_t hint,
    const uint8_t *dg, size_t dlen, void *dst, uint8_t got[32])
{
	struct pidx_loc locs[FILL_LOCS];
	struct hv_dom *d;
	size_t n, i;

	if (self != NULL && hint != PROTO_PFN_NONE &&
	    fill_copy_verified(c, self, hint, dst, dg, dlen, got) == 0) {
		c->hinted++;
		return 0;
	}
	n = pidx_lookup(c->index, dg, locs, FILL_LOCS);
	for (i = 0; i < n; i++) {
		if ((d = fill_src_dom(c, locs[i].domid)) == NULL)
			continue;
		if (fill_copy_verified(c, d, locs[i].pfn, dst, dg, dlen,
		    got) == 0)
			return 0;
	}
	return -ENOENT;
}

int
fill_offered(struct fill_ctx *c, const uint8_t prefix[8], void *dst,
    uint8_t got[32])
{
	uint8_t cand[4][PIDX_KEY_LEN];
	size_t nc, k;

	nc = pidx_find_prefix(c->index, prefix, cand, 4);
	for (k = 0; k < nc; k++)
		if (fill_page(c, NULL, PROTO_PFN_NONE, cand[k], PIDX_KEY_LEN,
		    dst, got) == 0)
			return 0;
	return -ENOENT;
}

/*
 * The first try of an OFFER entry, as fill_offered would make it: the
 * first location of the first index key with that prefix (found is
 * pidx_find_prefix_loc's answer for it, with the location in loc),
 * mapped into *src (the caller copies it and unmaps).  FIRST_MAPPED,
 * FIRST_NONE when no key has that prefix (nothing to fill from), or
 * FIRST_FAILED.
 */
enum { FIRST_NONE, FIRST_MAPPED, FIRST_FAILED };

struct fill_src {
	struct hv_dom	*dom;
	struct hv_map	*map;
	const void	*page;
};

static int
fill_offered_first(struct fill_ctx *c, int found, const struct pidx_loc *loc,
    struct fill_src *src)
{
	if (found == 0)
		return FIRST_NONE;
	if (found == 1 || (src->dom = fill_src_dom(c, loc->domid)) == NULL ||
	    fill_map(c, src->dom, loc->pfn, &src->page, &src->map) != 0)
		return FIRST_FAILED;
	return FIRST_MAPPED;
}

/* ---- the worker ---- */

struct filler {
	const struct hv_ops	*ops;
	struct hv_params	 hvp;
	struct pidx		*index;
	filler_done_cb		 done;
	void			*arg;
	struct event		*ev_done;
	pthread_t		 thread;

	pthread_mutex_t		 mu;
	pthread_cond_t		 cv_work;	/* a job queued, or stop */
	pthread_cond_t		 cv_done;	/* a job finished */
	struct fill_job		*todo, **todo_tail;	/* mu */
	struct fill_job		*fin, **fin_tail;	/* mu */
	int			 stop;			/* mu */

	unsigned		 busy;		/* event loop: submitted, not
						 * yet handed to done */
	int			 stopped;	/* event loop */
};

static double
thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * In two passes, so that the copies are made and hashed two at a time
 * (ph_copy_sha256_2: the digest is of the bytes written into the new
 * domain, DESIGN I4): first every entry's first try is looked up (all
 * at once: pidx_find_prefix_loc_n fetches ahead), then mapped
 * (fill_offered_first), and copied and hashed with the next one (at
 * most two mapped at once); then each copy whose digest starts with its
 * key is
 * kept, an entry with no key of its prefix is left unfilled, and any
 * other goes through fill_offered from the start (which tries that copy
 * again, counts it stale if it still differs, and tries the other keys
 * and locations).  The same fills as one fill_offered per entry, in entry
 * order.
 */
void
fill_job_run(struct fill_ctx *c, struct fill_job *j)
{
	struct ph_ctx *ctx = NULL;
	struct {
		uint8_t	 got[32];		/* the copy's digest */
		uint8_t	 first;			/* FIRST_* */
	} *e = NULL;
	struct {				/* the first tries' lookups */
		struct pidx_loc	*loc;
		uint8_t		(*key)[PIDX_KEY_LEN];
		int		*found;
	} f = { NULL, NULL, NULL };
	struct fill_src src[2];
	double t0 = thread_cpu_s();
	uint64_t stale0 = c->stale;
	uint32_t i, pend = UINT32_MAX;	/* a mapped first try, not copied */

	j->nhad = 0;
	memset(j->confirm, 0, sizeof(j->confirm));
	if (c->hv == NULL || (ctx = ph_ctx_new()) == NULL ||
	    (e = calloc(j->count, sizeof(*e))) == NULL ||
	    (f.loc = calloc(j->count, sizeof(*f.loc) + sizeof(*f.key) +
	    sizeof(*f.found))) == NULL) {
		ph_ctx_free(ctx);
		goto out;	/* nothing filled: the source sends them all */
	}
	f.key = (uint8_t (*)[PIDX_KEY_LEN])(f.loc + j->count);
	f.found = (int *)(f.key + j->count);
	pidx_find_prefix_loc_n(c->index, j->count,
	    (const uint8_t (*)[8])j->prefix, f.key, f.loc, f.found);
	for (i = 0; i < j->count; i++) {
		if (j->pages[i] == NULL)
			continue;
		e[i].first = (uint8_t)fill_offered_first(c, f.found[i],
		    &f.loc[i], &src[pend == UINT32_MAX ? 0 : 1]);
		if (e[i].first != FIRST_MAPPED)
			continue;
		if (pend == UINT32_MAX) {
			pend = i;
			c->pinned = src[0].dom;	/* kept open until copied */
			continue;
		}
		ph_copy_sha256_2(j->pages[pend], src[0].page, j->pages[i],
		    src[1].page, e[pend].got, e[i].got);
		c->ops->unmap(src[0].dom, src[0].map);
		c->ops->unmap(src[1].dom, src[1].map);
		pend = UINT32_MAX;
		c->pinned = NULL;
	}
	if (pend != UINT32_MAX) {
		ph_copy_sha256(j->pages[pend], src[0].page, e[pend].got);
		c->ops->unmap(src[0].dom, src[0].map);
		c->pinned = NULL;
	}
	for (i = 0; i < j->count; i++) {
		if (j->pages[i] == NULL || e[i].first == FIRST_NONE)
			continue;
		if ((e[i].first != FIRST_MAPPED ||
		    memcmp(e[i].got, f.key[i], PIDX_KEY_LEN) != 0) &&
		    fill_offered(c, j->prefix[i], j->pages[i], e[i].got) != 0)
			continue;
		j->has[i] = 1;
		ph_ctx_update(ctx, e[i].got, 32);
		j->nhad++;
	}
	ph_ctx_final(ctx, j->confirm);
	if (j->nhad == 0)
		memset(j->confirm, 0, sizeof(j->confirm));
out:
	free(e);
	free(f.loc);
	j->stale = c->stale - stale0;
	j->cpu_s = thread_cpu_s() - t0;
}

static void *
filler_main(void *arg)
{
	struct filler *f = arg;
	struct fill_ctx c;
	struct hv *hv = NULL;
	struct fill_job *j;
	int rc;

	if ((rc = f->ops->open(&f->hvp, &hv)) != 0) {
		log_err("fill worker: cannot open the backend: %s",
		    strerror(-rc));
		hv = NULL;
	}
	fill_ctx_init(&c, f->ops, hv, f->index);
	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->todo == NULL && !f->stop)
			pthread_cond_wait(&f->cv_work, &f->mu);
		if (f->stop)
			break;
		j = f->todo;
		pthread_mutex_unlock(&f->mu);
		fill_job_run(&c, j);
		pthread_mutex_lock(&f->mu);
		/* Only now off the queue: filler_stop finds it either
		 * queued or finished, never lost. */
		if ((f->todo = j->next) == NULL)
			f->todo_tail = &f->todo;
		j->next = NULL;
		*f->fin_tail = j;
		f->fin_tail = &j->next;
		pthread_cond_broadcast(&f->cv_done);
		pthread_mutex_unlock(&f->mu);
		/* filler_stop joins this thread before it frees the event. */
		event_active(f->ev_done, EV_READ, 0);
		pthread_mutex_lock(&f->mu);
	}
	pthread_mutex_unlock(&f->mu);
	fill_ctx_close(&c);
	if (hv != NULL)
		f->ops->close(hv);
	return NULL;
}

/* Hand the finished jobs to done, in order, until the worker stops. */
static void
filler_deliver(struct filler *f)
{
	struct fill_job *j;

	while (!f->stopped) {
		pthread_mutex_lock(&f->mu);
		if ((j = f->fin) != NULL) {
			if ((f->fin = j->next) == NULL)
				f->fin_tail = &f->fin;
			j->next = NULL;
		}
		pthread_mutex_unlock(&f->mu);
		if (j == NULL)
			return;
		f->busy--;
		f->done(j, f->arg);
	}
}

static void
filler_done_ev(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	filler_deliver(arg);
}

int
filler_new(const struct hv_ops *ops, const struct hv_params *hvp,
    struct pidx *index, struct event_base *base, filler_done_cb done,
    void *arg, struct filler **out)
{
	struct filler *f;
	int rc;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return -ENOMEM;
	f->ops = ops;
	f->hvp = *hvp;
	f->index = index;
	f->done = done;
	f->arg = arg;
	f->todo_tail = &f->todo;
	f->fin_tail = &f->fin;
	if ((f->ev_done = event_new(base, -1, 0, filler_done_ev, f)) == NULL) {
		free(f);
		return -ENOMEM;
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv_work, NULL);
	pthread_cond_init(&f->cv_done, NULL);
	if ((rc = pthread_create(&f->thread, NULL, filler_main, f)) != 0) {
		event_free(f->ev_done);
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cv_work);
		pthread_cond_destroy(&f->cv_done);
		free(f);
		return -rc;
	}
	*out = f;
	return 0;
}

void
filler_submit(struct filler *f, struct fill_job *j)
{
	j->next = NULL;
	f->busy++;
	pthread_mutex_lock(&f->mu);
	*f->todo_tail = j;
	f->todo_tail = &j->next;
	pthread_cond_signal(&f->cv_work);
	pthread_mutex_unlock(&f->mu);
}

unsigned
filler_busy(const struct filler *f)
{
	return f == NULL || f->stopped ? 0 : f->busy;
}

void
filler_drain(struct filler *f)
{
	if (f == NULL || f->stopped)
		return;
	pthread_mutex_lock(&f->mu);
	while (f->todo != NULL)
		pthread_cond_wait(&f->cv_done, &f->mu);
	pthread_mutex_unlock(&f->mu);
	filler_deliver(f);
}

struct fill_job *
filler_stop(struct filler *f)
{
	struct fill_job *list, *j;

	if (f == NULL || f->stopped)
		return NULL;
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_signal(&f->cv_work);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	f->stopped = 1;
	event_del(f->ev_done);
	/* Finished first, then the ones never started: submission order. */
	list = f->fin;
	for (j = list; j != NULL && j->next != NULL; j = j->next)
		;
	if (j != NULL)
		j->next = f->todo;
	else
		list = f->todo;
	f->fin = f->todo = NULL;
	f->fin_tail = &f->fin;
	f->todo_tail = &f->todo;
	f->busy = 0;
	return list;
}

void
filler_free(struct filler *f)
{
	struct fill_job *j, *next;

	if (f == NULL)
		return;
	for (j = filler_stop(f); j != NULL; j = next) {
		next = j->next;
		fill_job_free(j);
	}
	event_free(f->ev_done);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv_work);
	pthread_cond_destroy(&f->cv_done);
	free(f);
}

void
fill_job_free(struct fill_job *j)
{
	if (j == NULL)
		return;
	free(j->pfns);
	free(j->prefix);
	free(j->pages);
	free(j->has);
	free(j);
}
