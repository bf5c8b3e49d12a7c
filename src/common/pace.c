/*
 * pace.c - token bucket and auto-converge step.  See pace.h.
 */
#include "hv.h"
#include "pace.h"

static uint64_t
burst_for(uint64_t rate)
{
	uint64_t b = rate / (1000000000ull / PACE_BURST_NS);

	return b < PACE_BURST_MIN ? PACE_BURST_MIN : b;
}

/* Bring the tokens up to now_ns.  A clock that went back earns nothing. */
static void
refill(struct pace_bucket *b, uint64_t now_ns)
{
	__int128 earned, room;

	if (now_ns <= b->last_ns)
		return;
	earned = (__int128)(now_ns - b->last_ns) * b->rate / 1000000000;
	b->last_ns = now_ns;
	room = (__int128)b->burst - b->tokens;
	if (b->rate == 0 || earned >= room)
		b->tokens = (int64_t)b->burst;
	else
		b->tokens += (int64_t)earned;
}

void
pace_bucket_init(struct pace_bucket *b, uint64_t rate, uint64_t now_ns)
{
	b->rate = rate;
	b->burst = burst_for(rate);
	b->tokens = (int64_t)b->burst;
	b->last_ns = now_ns;
}

void
pace_bucket_set_rate(struct pace_bucket *b, uint64_t rate, uint64_t now_ns)
{
	refill(b, now_ns);
	b->rate = rate;
	b->burst = burst_for(rate);
	if (rate == 0 || b->tokens > (int64_t)b->burst)
		b->tokens = (int64_t)b->burst;
}

void
pace_bucket_charge(struct pace_bucket *b, uint64_t n, uint64_t now_ns)
{
	refill(b, now_ns);
	if (b->rate == 0)
		return;
	/* Debt is bounded by what one caller can queue; saturate anyway. */
	if (n > (uint64_t)INT64_MAX / 2)
		n = (uint64_t)INT64_MAX / 2;
	if (b->tokens < INT64_MIN / 2 + (int64_t)n)
		b->tokens = INT64_MIN / 2;
	else
		b->tokens -= (int64_t)n;
}

uint64_t
pace_bucket_wait_ns(struct pace_bucket *b, uint64_t now_ns)
{
	unsigned __int128 ns;

	refill(b, now_ns);
	if (b->rate == 0 || b->tokens > 0)
		return 0;
	/* Until the bucket holds one token again. */
	ns = ((unsigned __int128)(-(b->tokens)) + 1) * 1000000000u;
	ns = (ns + b->rate - 1) / b->rate;
	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

int
pace_progress(unsigned round, uint64_t dirty, uint64_t dirty_prev,
    uint64_t sent_bytes)
{
	if (dirty == 0)
		return 1;
	if (round >= 1 &&
	    (unsigned __int128)dirty * 10 >= (unsigned __int128)dirty_prev * 9)
		return 0;
	if ((unsigned __int128)dirty * HV_PAGE_SIZE * 2 > sent_bytes)
		return 0;
	return 1;
}

unsigned
pace_throttle_next(unsigned cur, int progress)
{
	if (progress)
		return cur;
	if (cur == 0)
		return PACE_THROTTLE_FIRST;
	if (cur + PACE_THROTTLE_STEP >= PACE_THROTTLE_MAX)
		return PACE_THROTTLE_MAX;
	return cur + PACE_THROTTLE_STEP;
}
