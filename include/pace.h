/*
 * pace.h - the pacing arithmetic of the pre-copy engine: the token bucket
 * behind the bandwidth cap and the auto-converge throttle step.
 *
 * Pure functions of their arguments (times are nanoseconds of the
 * caller's monotonic clock): no clock reads, no I/O, no allocation, so
 * tests/test_pace.c drives them with a fake clock.  The engine
 * (src/sourced/mig_src.c) owns the state and the timers.
 */
#ifndef SHAREMIG_PACE_H
#define SHAREMIG_PACE_H

#include <stdint.h>

#define PACE_BURST_MIN		(64u << 10)	/* smallest bucket, bytes */
#define PACE_BURST_NS		20000000ull	/* bucket = 20 ms at the rate */

#define PACE_THROTTLE_FIRST	20u	/* first auto-converge step, % */
#define PACE_THROTTLE_STEP	10u	/* added per round without progress */
#define PACE_THROTTLE_MAX	99u

/*
 * A token bucket of bytes.  It fills at rate bytes per second up to
 * burst; sending is allowed while it holds any token, and a batch is
 * charged in full even if that leaves it in debt, which is paid back
 * before the next one goes.  Over any interval of t seconds, at most
 * burst + rate * t + (one batch) bytes are charged.  rate 0 = unlimited:
 * never waits.
 */
struct pace_bucket {
	uint64_t	rate;		/* bytes per second, 0 = unlimited */
	uint64_t	burst;		/* most tokens it holds */
	int64_t		tokens;		/* < 0: debt */
	uint64_t	last_ns;	/* when tokens was brought up to date */
};

/* Start full at now_ns; burst = 20 ms at the rate, at least 64 KiB. */
void	pace_bucket_init(struct pace_bucket *b, uint64_t rate,
	    uint64_t now_ns);
/* Change the rate (0 = unlimited) from now_ns on; tokens earned so far
 * are kept, clamped to the new burst; lifting the cap forgives a debt. */
void	pace_bucket_set_rate(struct pace_bucket *b, uint64_t rate,
	    uint64_t now_ns);
/* n bytes were queued at now_ns. */
void	pace_bucket_charge(struct pace_bucket *b, uint64_t n,
	    uint64_t now_ns);
/* 0 if sending may go on at now_ns, else the nanoseconds until it may. */
uint64_t pace_bucket_wait_ns(struct pace_bucket *b, uint64_t now_ns);

/*
 * Did a pre-copy round make progress?  round: the round that just ended
 * (0 = the first, which sent everything); dirty: pages dirty at its end;
 * dirty_prev: the same at the previous round's end; sent_bytes: bytes
 * queued during it.  No progress: from round 1 on, the dirty set shrank
 * by 10% or less (the engine's own stop rule), or the guest dirtied
 * more than half of what the round sent (QEMU's
 * throttle-trigger-threshold, 50%).  1 progress, 0 none.
 */
int	pace_progress(unsigned round, uint64_t dirty, uint64_t dirty_prev,
	    uint64_t sent_bytes);
/*
 * The auto-converge throttle for the next round, in percent of the
 * guest's CPU taken away: unchanged after a round with progress,
 * otherwise 0 -> PACE_THROTTLE_FIRST, then + PACE_THROTTLE_STEP per
 * round without progress, at most PACE_THROTTLE_MAX.
 */
unsigned pace_throttle_next(unsigned cur, int progress);

#endif
