/*
 * guest.c - the simulated guest process ("simhv run") and its self-check.
 *
 * The guest maps its domain's memory writable and, by its profile, keeps
 * rewriting pages.  A write is: new content into the page, then the
 * page's version-table entry, then the dirty bits of both pages (see the
 * ordering argument in src/common/simdom.c).  Between whole writes it
 * honours pause requests: it saves its state (struct sg_state, the
 * "vCPU context") into the control block and acknowledges.  When it
 * starts it restores that state and first checks every page against it,
 * so a guest resumed after a migration reports whether its memory
 * arrived intact.
 */
#include <sys/stat.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "simguest.h"

static volatile sig_atomic_t guest_stop;

static void
on_term(int sig)
{
	(void)sig;
	guest_stop = 1;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static uint64_t
state_sum(const struct sg_state *st)
{
	const uint64_t *w = (const uint64_t *)st;
	size_t i, n = offsetof(struct sg_state, sum) / 8;
	uint64_t h = 0x736873756d737461ull;

	for (i = 0; i < n; i++) {
		h ^= w[i];
		h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 32;
	}
	return h;
}

void
sg_state_init(struct sg_state *st, const struct sg_layout *l)
{
	memset(st, 0, sizeof(*st));
	st->magic = SG_STATE_MAGIC;
	st->version = SG_STATE_VERSION;
	st->size = sizeof(*st);
	st->uid = l->cfg.uid;
	st->pages = l->pages;
	st->rng = l->cfg.seed ^ l->cfg.uid;
}

void
sg_state_save(struct simdom *sd, struct sg_state *st)
{
	st->sum = state_sum(st);
	__atomic_store_n(&sd->ctrl->ctx_len, 0, __ATOMIC_SEQ_CST);
	memcpy(sd->ctrl->context, st, sizeof(*st));
	__atomic_store_n(&sd->ctrl->ctx_len, (uint32_t)sizeof(*st),
	    __ATOMIC_RELEASE);
}

int
sg_state_load(struct simdom *sd, struct sg_state *st)
{
	uint32_t len = __atomic_load_n(&sd->ctrl->ctx_len, __ATOMIC_ACQUIRE);
	struct sg_state s;

	if (len == 0)
		return -ENODATA;
	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, sd->ctrl->context, sizeof(s));
	if (s.magic != SG_STATE_MAGIC || s.version != SG_STATE_VERSION ||
	    s.size != sizeof(s) || s.sum != state_sum(&s) ||
	    s.uid != sd->ctrl->cfg.uid || s.pages != sd->ctrl->pages)
		return -EINVAL;
	*st = s;
	return 0;
}

static void
bad_page(struct sg_check *res, uint64_t pfn)
{
	res->bad++;
	if (pfn < res->first_bad)
		res->first_bad = pfn;
}

/*
 * The memory must match the state: the version table's entries hash to
 * st->table_hash (so the table is the one the guest last wrote, not an
 * older consistent snapshot), and every page holds what its entry says.
 * A table mismatch is charged to the first table page.
 */
void
sg_self_check(struct simdom *sd, const struct sg_layout *l,
    const struct sg_state *st, struct sg_check *res)
{
	uint8_t buf[HV_PAGE_SIZE] __attribute__((aligned(8)));
	uint64_t pfn, hash = 0, slot, nslots;
	uint32_t e;

	res->bad = 0;
	res->first_bad = UINT64_MAX;
	nslots = l->ntable * SG_TABLE_ENTRIES;
	for (slot = 0; slot < nslots; slot++) {
		e = __atomic_load_n(sg_entry(sd->mem, slot), __ATOMIC_ACQUIRE);
		if (e == 0)
			continue;
		if (slot >= l->pages || slot < l->first)
			bad_page(res, 1 + slot / SG_TABLE_ENTRIES);
		else
			hash ^= sg_entry_hash(slot, e);
	}
	if (hash != st->table_hash)
		bad_page(res, 1);
	for (pfn = 0; pfn < l->pages; pfn++) {
		const uint8_t *page = sd->mem + pfn * HV_PAGE_SIZE;

		if (pfn >= 1 && pfn < l->first) {
			/* Table pages: only the head is fixed. */
			sg_expected(l, pfn, 0, buf);
			if (memcmp(page, buf, sizeof(struct sg_table_head)))
				bad_page(res, pfn);
			continue;
		}
		e = pfn == 0 ? 0 : *sg_entry(sd->mem, pfn);
		sg_expected(l, pfn, e, buf);
		if (memcmp(page, buf, HV_PAGE_SIZE) != 0)
			bad_page(res, pfn);
	}
}

void
sg_write(struct simdom *sd, const struct sg_layout *l, struct sg_state *st,
    uint64_t pfn, int zero)
{
	uint8_t *page = sd->mem + pfn * HV_PAGE_SIZE;
	uint32_t *ent = sg_entry(sd->mem, pfn), old, ver;

	do
		ver = (uint32_t)(++st->seq & SG_VER_MASK);
	while (ver == 0);
	if (zero) {
		memset(page, 0, HV_PAGE_SIZE);
		ver |= SG_VER_ZERO;
	} else
		sg_gen_private(l, page, pfn, ver);
	old = *ent;
	__atomic_store_n(ent, ver, __ATOMIC_RELEASE);
	st->table_hash ^= sg_entry_hash(pfn, old) ^ sg_entry_hash(pfn, ver);
	/* Only now, after the bytes: see simdom.c. */
	sd_dirty_mark(sd, pfn);
	sd_dirty_mark(sd, 1 + pfn / SG_TABLE_ENTRIES);
	st->writes++;
	__atomic_store_n(&sd->ctrl->writes, st->writes, __ATOMIC_RELEASE);
}

/* Between writes: stop while a pause is requested.  Returns 1 if it
 * paused. */
static int
pause_point(struct simdom *sd, struct sg_state *st)
{
	struct sd_ctrl *c = sd->ctrl;
	uint32_t gen;

	if (!__atomic_load_n(&c->pause_req, __ATOMIC_SEQ_CST))
		return 0;
	sg_state_save(sd, st);
	for (;;) {
		gen = __atomic_load_n(&c->pause_gen, __ATOMIC_SEQ_CST);
		__atomic_store_n(&c->paused_ack, gen, __ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&c->pause_req, __ATOMIC_SEQ_CST) ||
		    guest_stop)
			break;
		sleep_us(200);
	}
	return 1;
}

int
sg_run(const char *dir, const char *name)
{
	struct simdom *sd = NULL;
	struct sg_layout l;
	struct sg_state st;
	struct sg_check res;
	struct sigaction sa;
	double last, t, carry = 0, cap, peak, f;
	uint64_t pfn;
	int r, zero, writes, status = 1;
	unsigned long ticks = 0;
	struct stat sb;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((r = sd_open(dir, name, SD_OPEN_MEM_RW, &sd)) < 0) {
		fprintf(stderr, "simhv run: %s: %s\n", name, strerror(-r));
		return 1;
	}
	if ((r = sd_guest_lock(sd)) < 0) {
		fprintf(stderr, "simhv run: %s: a guest is already running\n",
		    name);
		sd_close(sd);
		return 1;
	}
	__atomic_store_n(&sd->ctrl->guest_pid, (int32_t)getpid(),
	    __ATOMIC_SEQ_CST);
	__atomic_store_n(&sd->ctrl->guest_state, SD_GUEST_STARTING,
	    __ATOMIC_SEQ_CST);
	if ((r = sg_layout_init(&l, &sd->ctrl->cfg, sd->ctrl->pages)) < 0 ||
	    (r = sg_state_load(sd, &st)) < 0) {
		fprintf(stderr, "simhv run: %s: no usable saved state: %s\n",
		    name, strerror(-r));
		sd->ctrl->check_bad_pfn = UINT64_MAX;
		sd->ctrl->check_bad_count = sd->ctrl->pages;
		__atomic_store_n(&sd->ctrl->check_result, SD_CHECK_FAILED,
		    __ATOMIC_RELEASE);
		__atomic_store_n(&sd->ctrl->guest_state, SD_GUEST_FAILED,
		    __ATOMIC_SEQ_CST);
		goto out;
	}

	/* Check first, before a single write. */
	sg_self_check(sd, &l, &st, &res);
	sd->ctrl->check_bad_pfn = res.first_bad;
	sd->ctrl->check_bad_count = res.bad;
	__atomic_store_n(&sd->ctrl->check_result,
	    res.bad ? SD_CHECK_FAILED : SD_CHECK_OK, __ATOMIC_RELEASE);
	if (res.bad)
		fprintf(stderr, "simhv run: %s: self-check FAILED: %llu bad "
		    "pages, first pfn %llu\n", name,
		    (unsigned long long)res.bad,
		    (unsigned long long)res.first_bad);
	else
		fprintf(stderr, "simhv run: %s: self-check ok (%llu pages)\n",
		    name, (unsigned long long)l.pages);
	__atomic_store_n(&sd->ctrl->writes, st.writes, __ATOMIC_RELEASE);
	__atomic_store_n(&sd->ctrl->guest_state, SD_GUEST_RUNNING,
	    __ATOMIC_SEQ_CST);

	/* Write rate/s pages, a few every millisecond, carrying fractions;
	 * at most 10 ms worth at once so a stall does not become a burst. */
	(void)sg_rate_factor(&l, 0, &peak);
	cap = l.cfg.rate * peak / 100.0 + 1;
	last = now_s();
	while (!guest_stop) {
		/* A domain whose file is gone (destroyed, state directory
		 * removed) has no one to run for. */
		if (++ticks % 1000 == 0 && fstat(sd->fd, &sb) == 0 &&
		    sb.st_nlink == 0) {
			fprintf(stderr, "simhv run: %s: domain file removed, "
			    "exiting\n", name);
			break;
		}
		if (pause_point(sd, &st)) {
			last = now_s();
			continue;
		}
		t = now_s();
		/* 1 except in bursty workloads (kbuild). */
		f = sg_rate_factor(&l, (uint64_t)(t * 1000.0), &peak);
		/* A throttle of P% takes P% of the guest's time away: it
		 * sleeps through that share of each tick, so it writes
		 * that much less (auto-converge, docs/SIM.md). */
		carry += (t - last) * l.cfg.rate * f *
		    (double)(100 - sd_throttle_get(sd)) / 100.0;
		last = t;
		if (carry > cap)
			carry = cap;
		for (writes = 0; carry >= 1 && !guest_stop; writes++) {
			/* Pause only between whole writes. */
			if (__atomic_load_n(&sd->ctrl->pause_req,
			    __ATOMIC_SEQ_CST))
				break;
			if (sg_next_write(&l, &st, &pfn, &zero) < 0) {
				carry = 0;
				break;
			}
			sg_write(sd, &l, &st, pfn, zero);
			carry -= 1;
		}
		sleep_us(1000);
	}
	sg_state_save(sd, &st);
	status = 0;
out:
	__atomic_store_n(&sd->ctrl->guest_pid, 0, __ATOMIC_SEQ_CST);
	if (status == 0)
		__atomic_store_n(&sd->ctrl->guest_state, SD_GUEST_NONE,
		    __ATOMIC_SEQ_CST);
	sd_close(sd);	/* drops the guest lock */
	return status;
}
