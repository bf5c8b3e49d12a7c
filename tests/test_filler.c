/*
 * test_filler.c - the destination's page fills and its OFFER worker
 * (src/destd/filler.c) on the sim backend: a donor domain indexed in a
 * real pidx, an incoming domain mapped writable, OFFER jobs filled on the
 * worker thread and handed back through a libevent loop.
 *
 * Checks: filled pages equal the donor's byte for byte; an entry whose
 * prefix is not indexed, or whose indexed location no longer holds that
 * content, is not filled (and the second counts as stale, I4); confirm
 * is SHA-256 over the filled entries' digests; jobs come back in
 * submission order; filler_drain hands everything back at once;
 * filler_stop returns the jobs not handed back, in order; fill_job_run
 * (the inline path) gives the same answer as the worker.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "filler.h"
#include "hv.h"
#include "pagehash.h"
#include "pidx.h"
#include "simdom.h"
#include "simguest.h"

#define PAGES	64
#define NOFFER	36	/* entries per job: 32 indexed, 4 not */

static const struct hv_ops *ops = &hv_sim_ops;

struct fix {
	char		 dir[64];
	struct hv_params hvp;
	struct hv	*hv;
	struct pidx	*ix;
	struct hv_dom	*donor, *in;
	uint8_t		 dg[PAGES][32];		/* the donor's digests */
	uint8_t		 page[PAGES][4096];	/* the donor's pages */
	struct event_base *base;
	/* delivered jobs */
	uint32_t	 order[16];
	unsigned	 ndone;
	struct fill_job	*last;
};

static void
make_dom(const char *dir, const char *name, uint64_t pages, double share,
    uint64_t uid)
{
	struct sd_config cfg = { .profile = SD_PROFILE_MICRO, .share = share,
		.seed = 1, .uid = uid };
	static const uint8_t uuid[16] = { 0xcd };
	struct simdom *sd;

	assert_int_equal(sd_create(dir, name, pages, 1, uuid, &cfg, &sd), 0);
	assert_int_equal(sg_init_memory(sd), 0);
	assert_int_equal(sd_commit(sd), 0);
	sd_close(sd);
}

static int
setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct hv_dom_info info, shape = { .pages = 4 * PAGES, .vcpus = 1 };
	uint64_t pfns[PAGES], fps[PAGES];
	void *pages[PAGES];
	struct hv_map *map;
	unsigned i;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_filler.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	make_dom(f->dir, "donor", PAGES, 0.0, 77);
	f->hvp.state_dir = f->dir;
	assert_int_equal(ops->open(&f->hvp, &f->hv), 0);
	assert_int_equal(ops->dom_open(f->hv, "donor", &f->donor), 0);
	assert_int_equal(ops->dom_info(f->donor, &info), 0);
	for (i = 0; i < PAGES; i++)
		pfns[i] = i;
	assert_int_equal(ops->map(f->donor, pfns, PAGES, 0, pages, &map), 0);
	for (i = 0; i < PAGES; i++) {
		memcpy(f->page[i], pages[i], 4096);
		ph_sha256(pages[i], f->dg[i]);
		fps[i] = ph_xxh3(pages[i]) | 1;
	}
	ops->unmap(f->donor, map);
	/* Index the donor; pfn 33's entry claims pfn 34's content: stale. */
	memcpy(f->dg[33], f->dg[34], 32);
	f->ix = pidx_new();
	assert_non_null(f->ix);
	assert_int_equal(pidx_dom_set(f->ix, info.domid, PAGES), 0);
	assert_int_equal(pidx_update(f->ix, info.domid, pfns, PAGES - 30, fps,
	    (const uint8_t (*)[32])f->dg), 0);
	/* Pages 34.. are not indexed (pidx_update above stops at 33); put
	 * pfn 34's real digest back for the expectations. */
	ph_sha256(f->page[33], f->dg[33]);
	snprintf(shape.name, sizeof(shape.name), "incoming");
	assert_int_equal(ops->create(f->hv, &shape, "profile=idle uid=5", 18,
	    &f->in), 0);
	f->base = event_base_new();
	assert_non_null(f->base);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	ops->destroy(f->in);
	ops->dom_close(f->donor);
	ops->close(f->hv);
	pidx_free(f->ix);
	event_base_free(f->base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/*
 * A job for pfns [first, first + NOFFER) of the incoming domain, entry i
 * offering donor page i: entries 0..31 indexed, entry 32 offers page
 * 34's content (indexed at pfn 33, which holds something else: stale),
 * 33..35 offer pages 35..37 (not indexed).
 */
/* A job of n entries for pfns [first, first + n) of the incoming
 * domain, mapped; prefixes left zero for the caller. */
static struct fill_job *
job_alloc(struct fix *f, uint32_t n, uint64_t first)
{
	struct fill_job *j = calloc(1, sizeof(*j));
	uint32_t i;

	assert_non_null(j);
	j->count = n;
	j->pfns = calloc(n, sizeof(*j->pfns));
	j->prefix = calloc(n, sizeof(*j->prefix));
	j->pages = calloc(n, sizeof(*j->pages));
	j->has = calloc(n, 1);
	assert_true(j->pfns && j->prefix && j->pages && j->has);
	for (i = 0; i < n; i++)
		j->pfns[i] = first + i;
	assert_int_equal(ops->map(f->in, j->pfns, n, 1, j->pages,
	    &j->maps[0]), 0);
	j->nmaps = 1;
	return j;
}

static struct fill_job *
job(struct fix *f, uint32_t batch, uint64_t first)
{
	struct fill_job *j = job_alloc(f, NOFFER, first);
	uint32_t i, src;

	j->batch = batch;
	for (i = 0; i < NOFFER; i++) {
		src = i < 32 ? i : i + 2;
		memcpy(j->prefix[i], f->dg[src], 8);
	}
	return j;
}

static void
unmap_free(struct fix *f, struct fill_job *j)
{
	unsigned k;

	for (k = 0; k < j->nmaps; k++)
		ops->unmap(f->in, j->maps[k]);
	fill_job_free(j);
}

/* What HAVE must say about a job built by job(). */
static void
check_job(struct fix *f, const struct fill_job *j)
{
	struct ph_ctx *ctx = ph_ctx_new();
	uint8_t want[32];
	uint32_t i;

	assert_int_equal(j->nhad, 32);
	assert_int_equal(j->stale, 1);
	for (i = 0; i < NOFFER; i++) {
		assert_int_equal(j->has[i], i < 32);
		if (i < 32) {
			assert_memory_equal(j->pages[i], f->page[i], 4096);
			ph_ctx_update(ctx, f->dg[i], 32);
		}
	}
	ph_ctx_final(ctx, want);
	assert_memory_equal(j->confirm, want, 32);
}

static void
on_done(struct fill_job *j, void *arg)
{
	struct fix *f = arg;

	f->order[f->ndone++] = j->batch;
	check_job(f, j);
	unmap_free(f, j);
}

static void
test_fill_page(void **state)
{
	struct fix *f = *state;
	struct fill_ctx c;
	uint8_t buf[4096], got[32];

	fill_ctx_init(&c, ops, f->hv, f->ix);
	/* Full digest, by index. */
	assert_int_equal(fill_page(&c, NULL, PROTO_PFN_NONE, f->dg[5], 32,
	    buf, got), 0);
	assert_memory_equal(buf, f->page[5], 4096);
	assert_memory_equal(got, f->dg[5], 32);
	/* By hint in "self" (the donor stands in): no index needed. */
	assert_int_equal(fill_page(&c, f->donor, 40, f->dg[40], 32, buf, got),
	    0);
	assert_int_equal(c.hinted, 1);
	assert_memory_equal(buf, f->page[40], 4096);
	/* A wrong hint falls back to the index, a stale location fails. */
	assert_int_equal(fill_page(&c, f->donor, 41, f->dg[6], 32, buf, got),
	    0);
	assert_memory_equal(buf, f->page[6], 4096);
	assert_int_equal(fill_page(&c, NULL, PROTO_PFN_NONE, f->dg[34], 32,
	    buf, got), -ENOENT);
	assert_int_equal(c.stale, 2);	/* hint 41, location 33 */
	/* Not indexed at all. */
	assert_int_equal(fill_page(&c, NULL, PROTO_PFN_NONE, f->dg[50], 32,
	    buf, got), -ENOENT);
	fill_ctx_close(&c);
}

static void
test_inline(void **state)
{
	struct fix *f = *state;
	struct fill_ctx c;
	struct fill_job *j = job(f, 9, 0);

	fill_ctx_init(&c, ops, f->hv, f->ix);
	fill_job_run(&c, j);
	check_job(f, j);
	fill_ctx_close(&c);
	unmap_free(f, j);
}

/*
 * More donors than the context keeps open (FILL_SRC_DOMS), offered so
 * that an entry whose domain is a cache hit in an old slot waits, mapped,
 * for its partner while the partner's lookup opens a new domain into that
 * very slot.  The waiting entry's domain must stay open: every entry is
 * filled with its donor's bytes.  (Were it closed, the copy would read a
 * stale pointer and the slow path would hide it here; the sanitizer
 * pass of .ci/run reports the use after free.)
 */
static void
test_many_donors(void **state)
{
	enum { NDON = FILL_SRC_DOMS + 3, PER = 4 };
	/* donors 0..7 fill the cache; then (old hit, new miss) pairs */
	static const unsigned seq[] = { 0, 1, 2, 3, 4, 5, 6, 7, 0, 8, 1, 9,
		2, 10, 3, 0, 4, 1 };
	enum { N = sizeof(seq) / sizeof(seq[0]) };
	struct fix *f = *state;
	struct hv_dom *d[NDON];
	struct hv_dom_info info;
	struct hv_map *map;
	struct fill_ctx c;
	struct fill_job *j;
	uint8_t page[NDON][PER][4096], dg[NDON][PER][32];
	unsigned used[NDON] = { 0 }, at[N];
	uint64_t pfns[16], fps[16];
	void *pages[16];
	char name[16];
	unsigned k, i, e;

	_Static_assert(FILL_SRC_DOMS == 8, "seq assumes 8 open domains");
	for (k = 0; k < NDON; k++) {
		snprintf(name, sizeof(name), "don%u", k);
		make_dom(f->dir, name, 16, 0.0, 1000 + k);
		assert_int_equal(ops->dom_open(f->hv, name, &d[k]), 0);
		assert_int_equal(ops->dom_info(d[k], &info), 0);
		for (i = 0; i < 16; i++)
			pfns[i] = i;
		assert_int_equal(ops->map(d[k], pfns, 16, 0, pages, &map), 0);
		for (i = 0; i < PER; i++) {
			memcpy(page[k][i], pages[i], 4096);
			ph_sha256(pages[i], dg[k][i]);
			fps[i] = ph_xxh3(pages[i]) | 1;
		}
		ops->unmap(d[k], map);
		assert_int_equal(pidx_dom_set(f->ix, info.domid, 16), 0);
		assert_int_equal(pidx_update(f->ix, info.domid, pfns, PER, fps,
		    (const uint8_t (*)[32])dg[k]), 0);
	}
	j = job_alloc(f, N, 100);
	for (e = 0; e < N; e++) {
		at[e] = used[seq[e]]++;
		assert_true(at[e] < PER);
		memcpy(j->prefix[e], dg[seq[e]][at[e]], 8);
	}
	fill_ctx_init(&c, ops, f->hv, f->ix);
	fill_job_run(&c, j);
	assert_int_equal(j->nhad, N);
	assert_int_equal(j->stale, 0);
	for (e = 0; e < N; e++) {
		assert_int_equal(j->has[e], 1);
		assert_memory_equal(j->pages[e], page[seq[e]][at[e]], 4096);
	}
	fill_ctx_close(&c);
	unmap_free(f, j);
	for (k = 0; k < NDON; k++)
		ops->dom_close(d[k]);
}

/* A worker with n jobs submitted: batches batch0.., pfns from i * stride. */
static struct filler *
worker_with(struct fix *f, unsigned n, uint32_t batch0, uint64_t stride)
{
	struct filler *w;
	unsigned i;

	assert_int_equal(filler_new(ops, &f->hvp, f->ix, f->base, on_done, f,
	    &w), 0);
	for (i = 0; i < n; i++)
		filler_submit(w, job(f, batch0 + i, i * stride));
	return w;
}

static void
test_worker_order(void **state)
{
	struct fix *f = *state;
	struct filler *w = worker_with(f, 3, 0, NOFFER);
	unsigned i;

	assert_int_equal(filler_busy(w), 3);
	/* Handed back through the event only (nothing else is pending in
	 * this loop, so poll it). */
	for (i = 0; i < 10000 && f->ndone < 3; i++) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(f->ndone, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(f->order[i], i);
	assert_int_equal(filler_busy(w), 0);
	assert_null(filler_stop(w));
	filler_free(w);
}

static void
test_drain(void **state)
{
	struct fix *f = *state;
	struct filler *w = worker_with(f, 3, 10, 0);
	unsigned i;

	/* Synchronously, without the loop. */
	filler_drain(w);
	assert_int_equal(f->ndone, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(f->order[i], 10 + i);
	assert_int_equal(filler_busy(w), 0);
	filler_free(w);
}

static void
test_stop(void **state)
{
	struct fix *f = *state;
	struct fill_job *list, *j, *next;
	struct filler *w = worker_with(f, 8, 20, 1);
	unsigned n = 0;
	uint32_t prev = 0;

	/* None handed back (no loop ran): all eight come back, in order,
	 * finished or not, and done is not called. */
	list = filler_stop(w);
	for (j = list; j != NULL; j = next) {
		next = j->next;
		assert_true(j->batch >= prev);
		prev = j->batch;
		n++;
		unmap_free(f, j);
	}
	assert_int_equal(n, 8);
	assert_int_equal(f->ndone, 0);
	assert_int_equal(filler_busy(w), 0);
	assert_null(filler_stop(w));		/* idempotent */
	filler_drain(w);			/* a no-op once stopped */
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(f->ndone, 0);
	filler_free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fill_page, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_donors, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_worker_order, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
	};

	if (evthread_use_pthreads() != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
