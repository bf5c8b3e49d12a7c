/*
 * test_hv_sim.c - the sim backend through struct hv_ops: listing,
 * opening, mapping rules, log-dirty with a live writer, pause/unpause of a
 * real guest process, context and config, a whole pre-copy migration
 * between two state directories whose resumed guest checks its memory,
 * and the profiles' sharing.
 *
 * Guest processes are either forked children running sg_run() (guest.c)
 * or, for unpause-spawns-the-guest, the built simhv binary
 * (build/src/simhv/simhv next to build/tests/, or $SHAREMIG_SIMHV).
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "hv.h"
#include "pagehash.h"
#include "simdom.h"
#include "simguest.h"

static const struct hv_ops *ops = &hv_sim_ops;
static char simhv_bin[PATH_MAX];

static void
msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static char *
mktmp(void)
{
	char *d = strdup("/tmp/test_hv_sim.XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static void
rmtree(char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static struct hv *
hv_at(const char *dir)
{
	struct hv_params p = { .state_dir = dir,
		.simhv_path = simhv_bin[0] ? simhv_bin : NULL };
	struct hv *hv;

	assert_int_equal(ops->open(&p, &hv), 0);
	return hv;
}

/* What `simhv create` does. */
static void
make_dom(const char *dir, const char *name, uint64_t pages,
    uint32_t profile, double share, uint32_t rate, uint64_t seed)
{
	struct sd_config cfg = { .profile = profile, .rate = rate,
		.share = share, .seed = seed };
	static const uint8_t uuid[16] = { 0xab };
	struct simdom *sd;

	cfg.uid = 0x9e3779b97f4a7c15ull * (uint64_t)(rand() + 1) ^
	    (uint64_t)getpid() << 32 ^ pages;
	if (cfg.uid == 0)
		cfg.uid = 1;
	assert_int_equal(sd_create(dir, name, pages, 1, uuid, &cfg, &sd), 0);
	assert_int_equal(sg_init_memory(sd), 0);
	assert_int_equal(sd_commit(sd), 0);
	sd_close(sd);
}

static struct sd_ctrl
ctrl_of(const char *dir, const char *name)
{
	struct sd_ctrl c;

	assert_int_equal(sd_read_ctrl(dir, name, &c), 0);
	return c;
}

/*
 * unpause() returns once the guest process runs; its resume self-check is
 * its own first work.  Wait (up to 30 s) for the check's result.
 */
static struct sd_ctrl
ctrl_checked(const char *dir, const char *name)
{
	struct sd_ctrl c;
	int i;

	for (i = 0; i < 30000; i++) {
		c = ctrl_of(dir, name);
		if (c.check_result != SD_CHECK_NONE)
			break;
		msleep(1);
	}
	return c;
}

/* A guest process as a forked child; returns once it is writing. */
static pid_t
guest_child(const char *dir, const char *name)
{
	struct simdom *sd;
	pid_t pid;
	int i;

	/* Created domains are paused; like `simhv start`, unpause first. */
	assert_int_equal(sd_open(dir, name, 0, &sd), 0);
	__atomic_store_n(&sd->ctrl->pause_req, 0, __ATOMIC_SEQ_CST);
	sd_close(sd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* No orphaned guests when an assertion ends the test. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		_exit(sg_run(dir, name));
	}
	for (i = 0; i < 5000; i++) {
		if (ctrl_of(dir, name).guest_state == SD_GUEST_RUNNING)
			return pid;
		msleep(1);
	}
	fail_msg("guest child did not start");
	return -1;
}

static void
reap(pid_t pid, int sig)
{
	int status;

	if (sig)
		kill(pid, sig);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void
test_open_errors(void **state)
{
	struct hv_params p = { 0 };
	struct hv *hv;

	(void)state;
	assert_int_equal(ops->open(&p, &hv), -EINVAL);
	p.state_dir = "/nonexistent/sharemig";
	assert_int_equal(ops->open(&p, &hv), -ENOENT);
	p.state_dir = "/etc/passwd";
	assert_int_equal(ops->open(&p, &hv), -ENOTDIR);
	assert_string_equal(ops->name, "sim");
	ops->close(NULL);
}

static void
test_list_open(void **state)
{
	struct hv_dom_info *v, info, shape = { .pages = 64, .vcpus = 1 };
	struct hv_dom *a, *byid, *in;
	void *cfg;
	size_t n, len;
	char id[16];
	char *dir = mktmp();
	struct hv *hv;

	(void)state;
	make_dom(dir, "beta", 128, SD_PROFILE_IDLE, 0, 0, 1);
	make_dom(dir, "alpha", 64, SD_PROFILE_MICRO, 0.5, 0, 1);
	hv = hv_at(dir);
	assert_int_equal(ops->dom_open(hv, "alpha", &a), 0);
	assert_int_equal(ops->config_get(a, &cfg, &len), 0);
	snprintf(shape.name, sizeof(shape.name), "gamma");
	assert_int_equal(ops->create(hv, &shape, cfg, len, &in), 0);
	free(cfg);

	assert_int_equal(ops->list(hv, &v, &n), 0);
	assert_int_equal(n, 2);		/* the incoming one is not listed */
	assert_string_equal(v[0].name, "alpha");
	assert_string_equal(v[1].name, "beta");
	assert_int_equal(v[0].pages, 64);
	assert_int_equal(v[1].pages, 128);
	assert_int_not_equal(v[0].domid, v[1].domid);
	assert_int_not_equal(v[0].domid, 0);
	assert_int_equal(v[0].flags & (HV_DOM_RUNNING | HV_DOM_INCOMING), 0);
	assert_true(v[0].flags & HV_DOM_PAUSED);	/* no guest */

	snprintf(id, sizeof(id), "%u", v[1].domid);
	assert_int_equal(ops->dom_open(hv, id, &byid), 0);
	assert_int_equal(ops->dom_info(byid, &info), 0);
	assert_string_equal(info.name, "beta");
	assert_int_equal(info.domid, v[1].domid);
	ops->dom_close(byid);
	free(v);

	assert_int_equal(ops->dom_open(hv, "nope", &byid), -ENOENT);
	assert_int_equal(ops->dom_open(hv, "4711", &byid), -ENOENT);
	assert_int_equal(ops->dom_open(hv, "gamma", &byid), -ENOENT);
	assert_int_equal(ops->dom_open(hv, "../x", &byid), -ENOENT);
	assert_int_equal(ops->dom_info(in, &info), 0);
	assert_true(info.flags & HV_DOM_INCOMING);
	assert_true(info.flags & HV_DOM_PAUSED);

	/* commit makes it visible. */
	assert_int_equal(ops->commit(in), 0);
	assert_int_equal(ops->list(hv, &v, &n), 0);
	assert_int_equal(n, 3);
	free(v);
	assert_int_equal(ops->destroy(in), 0);
	assert_int_equal(ops->list(hv, &v, &n), 0);
	assert_int_equal(n, 2);
	free(v);
	ops->dom_close(a);
	ops->close(hv);
	rmtree(dir);
}

static void
test_map_rules(void **state)
{
	struct hv_dom *d, *in;
	struct hv_map *m;
	struct hv_dom_info shape;
	struct sg_layout l;
	struct sd_ctrl c;
	uint64_t pfns[HV_MAP_BATCH_MAX + 1];
	void *pages[HV_MAP_BATCH_MAX + 1], *cfg;
	uint8_t want[HV_PAGE_SIZE];
	size_t i, len;
	char *dir = mktmp(), *dir2 = mktmp();
	struct hv *hv, *hv2;

	(void)state;
	make_dom(dir, "vm", 2048, SD_PROFILE_MICRO, 0.5, 0, 3);
	c = ctrl_of(dir, "vm");
	assert_int_equal(sg_layout_init(&l, &c.cfg, c.pages), 0);
	hv = hv_at(dir);
	hv2 = hv_at(dir2);
	assert_int_equal(ops->dom_open(hv, "vm", &d), 0);

	/* Read-only: every page as the profile says. */
	for (i = 0; i < 2048; i++)
		pfns[i % HV_MAP_BATCH_MAX] = 2047 - i;
	assert_int_equal(ops->map(d, pfns, HV_MAP_BATCH_MAX, 0, pages, &m), 0);
	for (i = 0; i < HV_MAP_BATCH_MAX; i++) {
		assert_non_null(pages[i]);
		sg_expected(&l, pfns[i], 0, want);
		assert_memory_equal(pages[i], want, HV_PAGE_SIZE);
	}
	ops->unmap(d, m);
	ops->unmap(d, NULL);

	static const struct {
		uint64_t pfn;
		size_t n;
		int writable, expect;
	} cases[] = {
		{ 0, 1, 1, -EPERM },
		{ 2047, 1, 0, 0 },
		{ 2048, 1, 0, -EINVAL },
		{ UINT64_MAX, 1, 0, -EINVAL },
		{ 0, HV_MAP_BATCH_MAX + 1, 0, -EINVAL },
		{ 5, 0, 0, 0 },
	};
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t k;

		for (k = 0; k < cases[i].n; k++)
			pfns[k] = cases[i].pfn;
		m = NULL;
		assert_int_equal(ops->map(d, pfns, cases[i].n,
		    cases[i].writable, pages, &m), cases[i].expect);
		if (cases[i].expect == 0)
			ops->unmap(d, m);
		else
			assert_null(m);		/* not written on error */
	}

	/* Incoming: writable until committed. */
	assert_int_equal(ops->dom_info(d, &shape), 0);
	assert_int_equal(ops->config_get(d, &cfg, &len), 0);
	assert_int_equal(ops->create(hv2, &shape, cfg, len, &in), 0);
	free(cfg);
	pfns[0] = 9;
	pfns[1] = 2047;
	assert_int_equal(ops->map(in, pfns, 2, 1, pages, &m), 0);
	memset(pages[0], 0x11, HV_PAGE_SIZE);
	memset(pages[1], 0x22, HV_PAGE_SIZE);
	ops->unmap(in, m);
	pfns[0] = 2048;
	assert_int_equal(ops->map(in, pfns, 1, 1, pages, &m), -EINVAL);
	assert_int_equal(ops->create(hv2, &shape, "profile=micro uid=7", 19,
	    &d), -EEXIST);
	assert_int_equal(ops->commit(in), 0);
	pfns[0] = 9;
	assert_int_equal(ops->map(in, pfns, 2, 1, pages, &m), -EPERM);
	assert_int_equal(ops->map(in, pfns, 2, 0, pages, &m), 0);
	assert_int_equal(((uint8_t *)pages[0])[4095], 0x11);
	assert_int_equal(((uint8_t *)pages[1])[0], 0x22);
	ops->unmap(in, m);
	ops->dom_close(in);

	ops->dom_close(d);
	ops->close(hv);
	ops->close(hv2);
	rmtree(dir);
	rmtree(dir2);
}

static uint64_t
live_writes(const char *dir, const char *name)
{
	return ctrl_of(dir, name).writes;
}

static void
test_logdirty_pause(void **state)
{
	struct hv_dom *d;
	struct hv_dom_info info;
	struct sg_layout l;
	struct sd_ctrl c;
	uint64_t *bm, pfn, w1, w2;
	size_t nset;
	void *ctx;
	size_t ctxlen;
	char *dir = mktmp();
	struct hv *hv;
	pid_t pid;

	(void)state;
	make_dom(dir, "w", 4096, SD_PROFILE_WRITER, 0, 20000, 5);
	c = ctrl_of(dir, "w");
	assert_int_equal(sg_layout_init(&l, &c.cfg, c.pages), 0);
	hv = hv_at(dir);
	assert_int_equal(ops->dom_open(hv, "w", &d), 0);
	bm = bm_alloc(4096);

	assert_int_equal(ops->dirty_fetch(d, bm, 0), -EINVAL);
	pid = guest_child(dir, "w");
	assert_int_equal(ops->dom_info(d, &info), 0);
	assert_true(info.flags & HV_DOM_RUNNING);
	assert_false(info.flags & HV_DOM_PAUSED);
	assert_int_equal(ops->context_get(d, &ctx, &ctxlen), -EBUSY);

	assert_int_equal(ops->logdirty_enable(d), 0);
	/* Wait (up to 10 s on a loaded machine) for the guest to write. */
	for (nset = 0, pfn = 0; pfn < 1000 && nset <= 1; pfn++) {
		uint64_t *more = bm_alloc(4096);

		msleep(10);
		assert_int_equal(ops->dirty_fetch(d, more, 0), 0);
		bm_or(bm, more, 4096);
		free(more);
		nset = bm_count(bm, 4096);
	}
	assert_true(nset > 1);
	/* Only the hot set and the table are written. */
	for (pfn = bm_next(bm, 4096, 0); pfn < 4096;
	    pfn = bm_next(bm, 4096, pfn + 1))
		assert_true((pfn >= 1 && pfn < l.first) ||
		    (pfn >= l.first && pfn < l.first + l.wset));

	/* Paused: nothing more is written or dirtied. */
	assert_int_equal(ops->pause(d), 0);
	assert_int_equal(ops->dom_info(d, &info), 0);
	assert_true(info.flags & HV_DOM_PAUSED);
	assert_true(info.flags & HV_DOM_RUNNING);
	assert_int_equal(ops->dirty_fetch(d, bm, 1), 0);
	w1 = live_writes(dir, "w");
	msleep(30);
	w2 = live_writes(dir, "w");
	assert_int_equal(w1, w2);
	assert_int_equal(ops->dirty_fetch(d, bm, 1), 0);
	assert_int_equal(bm_count(bm, 4096), 0);
	assert_int_equal(ops->context_get(d, &ctx, &ctxlen), 0);
	assert_int_equal(ctxlen, sizeof(struct sg_state));
	assert_int_equal(((struct sg_state *)ctx)->writes, w1);
	/* A live (paused) guest keeps its own state. */
	assert_int_equal(ops->context_set(d, ctx, ctxlen), -EBUSY);
	free(ctx);
	/* Pausing twice is fine. */
	assert_int_equal(ops->pause(d), 0);

	assert_int_equal(ops->unpause(d), 0);
	for (pfn = 0; pfn < 1000 && live_writes(dir, "w") <= w2; pfn++)
		msleep(10);
	assert_true(live_writes(dir, "w") > w2);
	assert_int_equal(ops->dirty_fetch(d, bm, 0), 0);
	assert_true(bm_count(bm, 4096) > 0);
	assert_int_equal(ops->logdirty_disable(d), 0);
	assert_int_equal(ops->dirty_fetch(d, bm, 0), -EINVAL);

	/* A dead guest: pause returns at once, the domain is paused. */
	reap(pid, SIGKILL);
	assert_int_equal(ops->pause(d), 0);
	assert_int_equal(ops->dom_info(d, &info), 0);
	assert_false(info.flags & HV_DOM_RUNNING);
	assert_true(info.flags & HV_DOM_PAUSED);
	assert_int_equal(ops->context_get(d, &ctx, &ctxlen), 0);
	free(ctx);

	free(bm);
	assert_int_equal(ops->destroy(d), 0);
	ops->close(hv);
	rmtree(dir);
}

/* Writes of a live guest over ms milliseconds. */
static uint64_t
writes_over(const char *dir, const char *name, int ms)
{
	uint64_t w0 = live_writes(dir, name);

	msleep(ms);
	return live_writes(dir, name) - w0;
}

/* Until the guest has written n more pages (10 s at most): 1 if it did. */
static int
writes_reach(const char *dir, const char *name, uint64_t n)
{
	uint64_t w0 = live_writes(dir, name);
	int i;

	for (i = 0; i < 1000; i++) {
		if (live_writes(dir, name) - w0 >= n)
			return 1;
		msleep(10);
	}
	return 0;
}

/*
 * throttle(): the live guest writes (100 - P)% of its rate; 0 gives the
 * rate back.  The bounds hold on a loaded machine: load only slows the
 * guest further, and the unthrottled checks wait instead of timing.
 */
static void
test_throttle(void **state)
{
	struct hv_dom *d;
	char *dir = mktmp();
	struct hv *hv;
	uint64_t saved = 0, w;
	pid_t pid;

	(void)state;
	make_dom(dir, "t", 4096, SD_PROFILE_WRITER, 0, 20000, 5);
	hv = hv_at(dir);
	assert_int_equal(ops->dom_open(hv, "t", &d), 0);
	assert_int_equal(ops->throttle(d, 100, &saved), -EINVAL);
	assert_int_equal(ctrl_of(dir, "t").throttle_pct, 0);
	pid = guest_child(dir, "t");
	assert_true(writes_reach(dir, "t", 4000));

	assert_int_equal(ops->throttle(d, 90, &saved), 0);
	assert_int_equal(ctrl_of(dir, "t").throttle_pct, 90);
	msleep(20);
	/* 10% of 20000/s for 500 ms is 1000; 10 ms of burst on top. */
	w = writes_over(dir, "t", 500);
	assert_true(w <= 1000 + 201 + 100);
	assert_int_equal(ops->throttle(d, 99, &saved), 0);
	msleep(20);
	w = writes_over(dir, "t", 500);
	assert_true(w <= 100 + 201 + 20);

	/* Removed: the full rate again. */
	assert_int_equal(ops->throttle(d, 0, &saved), 0);
	assert_int_equal(ctrl_of(dir, "t").throttle_pct, 0);
	assert_true(writes_reach(dir, "t", 4000));

	/* A throttle set on a paused domain holds when it runs again. */
	assert_int_equal(ops->pause(d), 0);
	assert_int_equal(ops->throttle(d, 95, &saved), 0);
	assert_int_equal(ops->unpause(d), 0);
	msleep(20);
	w = writes_over(dir, "t", 500);
	assert_true(w <= 500 + 201 + 50);
	assert_int_equal(ops->throttle(d, 0, &saved), 0);

	reap(pid, SIGKILL);
	assert_int_equal(ops->destroy(d), 0);
	ops->close(hv);
	rmtree(dir);
}

/*
 * --compressible: 0 gives exactly the old random bytes (existing images
 * and digests stay valid); F > 0 makes the first F of a private page
 * text-like and leaves the rest as before.
 */
static void
test_compressible(void **state)
{
	struct sd_config cfg = { .profile = SD_PROFILE_MICRO, .rate = 1000,
	    .share = 0.0, .seed = 1, .uid = 0x1234 };
	static uint8_t a[HV_PAGE_SIZE], b[HV_PAGE_SIZE];
	struct sg_layout l;
	size_t i;

	(void)state;
	assert_int_equal(sg_layout_init(&l, &cfg, 256), 0);
	sg_gen_private(&l, a, 100, 7);
	sg_gen_unique(b, cfg.uid, 100, 7);
	assert_memory_equal(a, b, HV_PAGE_SIZE);
	cfg.compressible = 0.75;
	assert_int_equal(sg_layout_init(&l, &cfg, 256), 0);
	sg_gen_private(&l, a, 100, 7);
	for (i = 0; i < 3072; i++)
		assert_true((a[i] >= 0x20 && a[i] < 0x7f) || a[i] == '\n');
	assert_memory_equal(a + 3072, b + 3072, HV_PAGE_SIZE - 3072);
	assert_memory_not_equal(a, b, 3072);
	/* Deterministic, and another version differs. */
	sg_gen_private(&l, b, 100, 7);
	assert_memory_equal(a, b, HV_PAGE_SIZE);
	sg_gen_private(&l, b, 100, 8);
	assert_memory_not_equal(a, b, 3072);
}

static void
test_context_config(void **state)
{
	struct hv_dom *d, *in;
	struct hv_dom_info shape;
	static const struct {
		const char *cfg;
		int expect;
	} bad[] = {
		{ "", -EINVAL },
		{ "profile=micro", -EINVAL },
		{ "profile=micro share=2 uid=5", -EINVAL },
		{ "profile=nope uid=5", -EINVAL },
		{ "uid=5 profile=idle extra", -EINVAL },
	};
	uint8_t blob[SD_CONTEXT_MAX + 1];
	struct sd_config parsed, orig;
	void *cfg, *got;
	size_t len, glen, i;
	char *dir = mktmp(), *dir2 = mktmp();
	struct hv *hv, *hv2;

	(void)state;
	make_dom(dir, "c", 64, SD_PROFILE_MICRO, 0.25, 77, 99);
	orig = ctrl_of(dir, "c").cfg;
	hv = hv_at(dir);
	hv2 = hv_at(dir2);
	assert_int_equal(ops->dom_open(hv, "c", &d), 0);
	assert_int_equal(ops->config_get(d, &cfg, &len), 0);
	assert_true(len > 0 && len <= HV_CONFIG_MAX);
	assert_int_equal(sd_config_parse(cfg, len, &parsed), 0);
	assert_memory_equal(&parsed, &orig, sizeof(parsed));
	assert_int_equal(ops->dom_info(d, &shape), 0);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ops->create(hv2, &shape, bad[i].cfg,
		    strlen(bad[i].cfg), &in), bad[i].expect);
	shape.pages = 3;
	assert_int_equal(ops->create(hv2, &shape, cfg, len, &in), -EINVAL);
	assert_int_equal(ops->dom_info(d, &shape), 0);
	assert_int_equal(ops->create(hv2, &shape, cfg, len, &in), 0);
	free(cfg);
	assert_int_equal(ops->create(hv2, &shape, "profile=idle uid=1", 18,
	    &d), -EEXIST);
	assert_int_equal(ops->config_get(in, &cfg, &len), 0);
	assert_int_equal(sd_config_parse(cfg, len, &parsed), 0);
	assert_memory_equal(&parsed, &orig, sizeof(parsed));
	free(cfg);

	/* No context yet; set then get round-trips. */
	assert_int_equal(ops->context_get(in, &got, &glen), -ENODATA);
	for (i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7);
	assert_int_equal(ops->context_set(in, blob, sizeof(blob)), -EINVAL);
	assert_int_equal(ops->context_set(in, blob, 0), -EINVAL);
	assert_int_equal(ops->context_set(in, blob, 100), 0);
	assert_int_equal(ops->context_get(in, &got, &glen), 0);
	assert_int_equal(glen, 100);
	assert_memory_equal(got, blob, 100);
	free(got);
	/* An incoming domain never runs. */
	assert_int_equal(ops->unpause(in), -EINVAL);

	assert_int_equal(ops->destroy(in), 0);
	ops->dom_close(d);
	ops->close(hv);
	ops->close(hv2);
	rmtree(dir);
	rmtree(dir2);
}

static void
copy_pages(struct hv_dom *src, struct hv_dom *dst, const uint64_t *pfns,
    size_t n)
{
	void *sp[HV_MAP_BATCH_MAX], *dp[HV_MAP_BATCH_MAX];
	struct hv_map *sm, *dm;
	size_t i, k;

	for (i = 0; i < n; i += k) {
		k = n - i < HV_MAP_BATCH_MAX ? n - i : HV_MAP_BATCH_MAX;
		assert_int_equal(ops->map(src, pfns + i, k, 0, sp, &sm), 0);
		assert_int_equal(ops->map(dst, pfns + i, k, 1, dp, &dm), 0);
		for (size_t j = 0; j < k; j++)
			memcpy(dp[j], sp[j], HV_PAGE_SIZE);
		ops->unmap(dst, dm);
		ops->unmap(src, sm);
	}
}

static void
copy_dirty(struct hv_dom *src, struct hv_dom *dst, uint64_t pages,
    int final)
{
	uint64_t *bm = bm_alloc(pages), *pfns, p;
	size_t n = 0;

	pfns = calloc(pages, sizeof(*pfns));
	assert_int_equal(ops->dirty_fetch(src, bm, final), 0);
	for (p = bm_next(bm, pages, 0); p < pages; p = bm_next(bm, pages, p + 1))
		pfns[n++] = p;
	copy_pages(src, dst, pfns, n);
	free(pfns);
	free(bm);
}

static void
mem_digest(struct hv_dom *d, uint64_t pages, uint8_t out[PH_DIGEST_LEN])
{
	struct ph_ctx *c = ph_ctx_new();
	void *p[1];
	struct hv_map *m;
	uint64_t pfn;

	for (pfn = 0; pfn < pages; pfn++) {
		assert_int_equal(ops->map(d, &pfn, 1, 0, p, &m), 0);
		ph_ctx_update(c, p[0], HV_PAGE_SIZE);
		ops->unmap(d, m);
	}
	ph_ctx_final(c, out);
}

enum { MIG_OK, MIG_CORRUPT, MIG_SKIP_FINAL };

/*
 * Pre-copy "vm" from src_dir to dst_dir through hv_ops while a forked
 * guest writes, the way the daemons do: log-dirty first, all pages, dirty
 * rounds, pause, last round, context.  Returns the committed, paused
 * destination handle.
 */
static struct hv_dom *
migrate(struct hv *src_hv, struct hv *dst_hv, const char *src_dir,
    int how, uint64_t corrupt_pfn)
{
	struct hv_dom *src, *dst;
	struct hv_dom_info shape;
	uint8_t d1[PH_DIGEST_LEN], d2[PH_DIGEST_LEN];
	uint64_t *all, p;
	void *cfg, *ctx;
	size_t len;
	pid_t pid;
	int round;

	pid = guest_child(src_dir, "vm");
	assert_int_equal(ops->dom_open(src_hv, "vm", &src), 0);
	assert_int_equal(ops->dom_info(src, &shape), 0);
	assert_int_equal(ops->config_get(src, &cfg, &len), 0);
	assert_int_equal(ops->create(dst_hv, &shape, cfg, len, &dst), 0);
	free(cfg);

	assert_int_equal(ops->logdirty_enable(src), 0);
	all = calloc(shape.pages, sizeof(*all));
	for (p = 0; p < shape.pages; p++)
		all[p] = p;
	copy_pages(src, dst, all, shape.pages);
	free(all);
	for (round = 0; round < 3; round++) {
		msleep(10);
		copy_dirty(src, dst, shape.pages, 0);
	}
	msleep(20);
	assert_int_equal(ops->pause(src), 0);
	if (how != MIG_SKIP_FINAL)
		copy_dirty(src, dst, shape.pages, 1);
	assert_int_equal(ops->context_get(src, &ctx, &len), 0);
	assert_int_equal(ops->context_set(dst, ctx, len), 0);
	free(ctx);

	/* I1: byte equality at the moment of pause. */
	mem_digest(src, shape.pages, d1);
	mem_digest(dst, shape.pages, d2);
	if (how == MIG_OK)
		assert_memory_equal(d1, d2, sizeof(d1));
	else if (how == MIG_SKIP_FINAL)
		assert_memory_not_equal(d1, d2, sizeof(d1));
	if (how == MIG_CORRUPT) {
		void *pg[1];
		struct hv_map *m;

		assert_int_equal(ops->map(dst, &corrupt_pfn, 1, 1, pg, &m), 0);
		((uint8_t *)pg[0])[1234] ^= 0x40;
		ops->unmap(dst, m);
	}
	assert_int_equal(ops->commit(dst), 0);
	reap(pid, SIGTERM);
	assert_int_equal(ops->destroy(src), 0);
	return dst;
}

/* The destination's memory checked in-process against the context. */
static uint64_t
check_in_process(const char *dir, uint64_t *first_bad)
{
	struct simdom *sd;
	struct sg_layout l;
	struct sg_state st;
	struct sg_check res;

	assert_int_equal(sd_open(dir, "vm", 0, &sd), 0);
	assert_int_equal(sg_layout_init(&l, &sd->ctrl->cfg, sd->ctrl->pages), 0);
	assert_int_equal(sg_state_load(sd, &st), 0);
	sg_self_check(sd, &l, &st, &res);
	sd_close(sd);
	*first_bad = res.first_bad;
	return res.bad;
}

static void
test_migrate(void **state)
{
	static const struct {
		uint32_t profile;
		uint32_t rate;
	} cases[] = {
		{ SD_PROFILE_WRITER, 20000 },
		{ SD_PROFILE_MICRO, 20000 },
		{ SD_PROFILE_IDLE, 0 },
	};
	struct hv_dom *dst;
	struct hv_dom_info info;
	struct sd_ctrl c;
	uint64_t bad, first;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = mktmp(), *dir2 = mktmp();
		struct hv *hv = hv_at(dir), *hv2 = hv_at(dir2);

		make_dom(dir, "vm", 8192, cases[i].profile, 0.5,
		    cases[i].rate, 11);
		dst = migrate(hv, hv2, dir, MIG_OK, 0);
		assert_int_equal(check_in_process(dir2, &first), 0);
		if (simhv_bin[0] == '\0') {
			ops->destroy(dst);
			ops->close(hv);
			ops->close(hv2);
			rmtree(dir);
			rmtree(dir2);
			skip();
		}
		/* Unpause spawns simhv run; the guest checks itself first. */
		assert_int_equal(ops->unpause(dst), 0);
		assert_int_equal(ops->dom_info(dst, &info), 0);
		assert_true(info.flags & HV_DOM_RUNNING);
		assert_false(info.flags & HV_DOM_PAUSED);
		c = ctrl_checked(dir2, "vm");
		assert_int_equal(c.check_result, SD_CHECK_OK);
		assert_int_equal(c.check_bad_count, 0);
		if (cases[i].rate) {
			uint64_t w0 = c.writes;
			int t;

			/* It writes again (a loaded machine may take a while
			 * to schedule it: up to 10 s). */
			for (t = 0; t < 1000 &&
			    ctrl_of(dir2, "vm").writes <= w0; t++)
				msleep(10);
			assert_true(ctrl_of(dir2, "vm").writes > w0);
		}
		/* Still consistent after it ran on the destination. */
		assert_int_equal(ops->pause(dst), 0);
		bad = check_in_process(dir2, &first);
		assert_int_equal(bad, 0);
		assert_int_equal(ops->destroy(dst), 0);
		ops->close(hv);
		ops->close(hv2);
		rmtree(dir);
		rmtree(dir2);
	}
}

static void
test_migrate_corrupt(void **state)
{
	struct hv_dom *dst;
	struct sd_ctrl c;
	uint64_t first;
	char *dir = mktmp(), *dir2 = mktmp();
	struct hv *hv = hv_at(dir), *hv2 = hv_at(dir2);

	(void)state;
	/* A lost last round is caught (in-process check). */
	make_dom(dir, "vm", 4096, SD_PROFILE_WRITER, 0, 20000, 3);
	dst = migrate(hv, hv2, dir, MIG_SKIP_FINAL, 0);
	assert_true(check_in_process(dir2, &first) > 0);
	assert_int_equal(ops->destroy(dst), 0);

	/* One flipped bit in one page: caught, and named, by the resumed
	 * guest. */
	make_dom(dir, "vm", 4096, SD_PROFILE_MICRO, 0.5, 20000, 3);
	dst = migrate(hv, hv2, dir, MIG_CORRUPT, 3000);
	assert_int_equal(check_in_process(dir2, &first), 1);
	assert_int_equal(first, 3000);
	if (simhv_bin[0] != '\0') {
		assert_int_equal(ops->unpause(dst), 0);
		c = ctrl_checked(dir2, "vm");
		assert_int_equal(c.check_result, SD_CHECK_FAILED);
		assert_int_equal(c.check_bad_count, 1);
		assert_int_equal(c.check_bad_pfn, 3000);
	}
	assert_int_equal(ops->destroy(dst), 0);
	ops->close(hv);
	ops->close(hv2);
	rmtree(dir);
	rmtree(dir2);
	if (simhv_bin[0] == '\0')
		skip();
}

struct digest_set {
	uint8_t		(*d)[PH_DIGEST_LEN];
	size_t		n;
	size_t		zero;
};

static int
cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, PH_DIGEST_LEN);
}

static void
digests(struct hv *hv, const char *name, struct digest_set *s)
{
	struct hv_dom *d;
	struct hv_dom_info info;
	struct hv_map *m;
	void *pg[1];
	uint64_t p;

	assert_int_equal(ops->dom_open(hv, name, &d), 0);
	assert_int_equal(ops->dom_info(d, &info), 0);
	s->n = info.pages;
	s->zero = 0;
	s->d = calloc(s->n, PH_DIGEST_LEN);
	for (p = 0; p < s->n; p++) {
		assert_int_equal(ops->map(d, &p, 1, 0, pg, &m), 0);
		ph_sha256(pg[0], s->d[p]);
		s->zero += ph_is_zero(pg[0]);
		ops->unmap(d, m);
	}
	ops->dom_close(d);
}

static double
shared_fraction(const struct digest_set *a, struct digest_set *b_sorted)
{
	size_t i, hit = 0;

	for (i = 0; i < a->n; i++)
		hit += bsearch(a->d[i], b_sorted->d, b_sorted->n, PH_DIGEST_LEN,
		    cmp_digest) != NULL;
	return (double)hit / (double)a->n;
}

static void
test_profiles_share(void **state)
{
	static const struct {
		uint32_t profile;
		double share;
		double want_shared, want_zero;
	} cases[] = {
		{ SD_PROFILE_MICRO, 0.5, 0.5, 0.0 },
		{ SD_PROFILE_MICRO, 0.828, 0.828, 0.0 },
		{ SD_PROFILE_MICRO, 0.0, 0.0, 0.0 },
		{ SD_PROFILE_WRITER, 0, 0.25 + 0.45, 0.45 },
		{ SD_PROFILE_IDLE, 0, 0.30 + 0.30, 0.30 },
	};
	struct digest_set a, b, bs;
	size_t i, samepfn;
	double f;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = mktmp(), *dir2 = mktmp();
		struct hv *hv = hv_at(dir), *hv2 = hv_at(dir2);

		make_dom(dir, "a", 4000, cases[i].profile, cases[i].share, 0,
		    42);
		make_dom(dir2, "b", 4000, cases[i].profile, cases[i].share, 0,
		    42);
		digests(hv, "a", &a);
		digests(hv2, "b", &b);
		bs = b;
		bs.d = malloc(b.n * PH_DIGEST_LEN);
		memcpy(bs.d, b.d, b.n * PH_DIGEST_LEN);
		qsort(bs.d, bs.n, PH_DIGEST_LEN, cmp_digest);
		f = shared_fraction(&a, &bs);
		/* Zero pages match zero pages: they count as shared. */
		assert_true(f > cases[i].want_shared - 0.01);
		assert_true(f < cases[i].want_shared + 0.01);
		assert_true((double)a.zero / a.n > cases[i].want_zero - 0.01);
		assert_true((double)a.zero / a.n < cases[i].want_zero + 0.01);
		/* The image is not at the same pfns in both. */
		for (samepfn = 0, f = 0; samepfn < a.n; samepfn++)
			f += memcmp(a.d[samepfn], b.d[samepfn],
			    PH_DIGEST_LEN) == 0 &&
			    memcmp(a.d[samepfn], ph_zero_digest(), PH_DIGEST_LEN);
		assert_true(f <= 0.1 * (double)a.n);
		free(a.d);
		free(b.d);
		free(bs.d);
		ops->close(hv);
		ops->close(hv2);
		rmtree(dir);
		rmtree(dir2);
	}
}

/* A different seed shares nothing but zero pages. */
static void
test_seed_separates(void **state)
{
	struct digest_set a, b;
	char *dir = mktmp();
	struct hv *hv = hv_at(dir);

	(void)state;
	make_dom(dir, "a", 1000, SD_PROFILE_MICRO, 0.9, 0, 1);
	make_dom(dir, "b", 1000, SD_PROFILE_MICRO, 0.9, 0, 2);
	digests(hv, "a", &a);
	digests(hv, "b", &b);
	qsort(b.d, b.n, PH_DIGEST_LEN, cmp_digest);
	assert_true(shared_fraction(&a, &b) == 0.0);
	assert_int_equal(a.zero, 0);
	free(a.d);
	free(b.d);
	ops->close(hv);
	rmtree(dir);
}

static void
find_simhv(void)
{
	char exe[PATH_MAX - 64], *slash;
	const char *env = getenv("SHAREMIG_SIMHV");
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(simhv_bin, sizeof(simhv_bin),
			    "%s/../src/simhv/simhv", exe);
			if (access(simhv_bin, X_OK) == 0)
				return;
		}
	}
	if (env != NULL && access(env, X_OK) == 0) {
		snprintf(simhv_bin, sizeof(simhv_bin), "%s", env);
		return;
	}
	simhv_bin[0] = '\0';
	fprintf(stderr, "test_hv_sim: simhv binary not built: spawn cases "
	    "skipped\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_list_open),
		cmocka_unit_test(test_map_rules),
		cmocka_unit_test(test_logdirty_pause),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_context_config),
		cmocka_unit_test(test_compressible),
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_migrate_corrupt),
		cmocka_unit_test(test_profiles_share),
		cmocka_unit_test(test_seed_separates),
	};

	signal(SIGPIPE, SIG_IGN);
	find_simhv();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
