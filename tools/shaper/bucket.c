/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One token bucket per process, shared by every thread and every TCP socket, without a lock.
 *
 * The bucket is kept as a single time, `tat` (the theoretical arrival time of the GCRA
 * formulation): the moment at which the link will have carried every byte granted so far. A
 * grant of n bytes moves it from max(tat, now) by n bytes of link time, with one
 * compare-and-swap; the sender may start once tat - burst <= now, i.e. when the bucket holds n
 * tokens again. A full bucket is tat <= now, and max(tat, now) is what caps it at its size.
 * Grants are therefore served in the order they were taken (FIFO over threads), each sleeps
 * only for its own turn, and an oversleep costs no rate as long as it is shorter than the
 * burst. Bytes a call did not send are given back by moving tat back.
 *
 * Times are picoseconds since the library was loaded: 8 ps is one byte at 1 Tb/s, and 2^63 ps
 * is 106 days of process life.
 */
#include "shaper.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t tat_ps;
static _Atomic uint64_t charged_bytes;

static int64_t now_ps(const struct shaper_config *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - c->base_ns) * 1000;
}

static int64_t cost_ps(const struct shaper_config *c, size_t n)
{
	return (int64_t)((double)n * c->ps_per_byte + 0.5);
}

/* Sleeps until the bucket clock reads `t`, through signals (as a send with SA_RESTART would). */
static void sleep_until(const struct shaper_config *c, int64_t t)
{
	int64_t ns = c->base_ns + t / 1000;
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Tiny sends: charged after the fact, pushing later senders back instead of waiting. */
static void charge(const struct shaper_config *c, size_t n)
{
	int64_t now = now_ps(c), cost = cost_ps(c, n);
	int64_t old = atomic_load_explicit(&tat_ps, memory_order_relaxed);
	/* Relaxed: tat is the only shared state, nothing else is published through it. */
	while (!atomic_compare_exchange_weak_explicit(&tat_ps, &old, (old > now ? old : now) + cost,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

int shaper_acquire(const struct shaper_config *c, size_t want, bool nonblocking,
		   struct shaper_grant *g)
{
	g->len = want;
	g->charged_ps = 0;
	g->tiny = want <= SHAPER_TINY_BYTES;
	if (g->tiny)
		return 0;
	/* Never more than the bucket holds in one call: a short write is legal TCP. */
	size_t n = want < c->burst ? want : c->burst;
	size_t floor_n = n < SHAPER_NB_MIN_CHUNK ? n : SHAPER_NB_MIN_CHUNK;
	int64_t now = now_ps(c), cost, start;
	int64_t old = atomic_load_explicit(&tat_ps, memory_order_relaxed);
	for (;;) {
		int64_t base = old > now ? old : now;
		size_t take = n;
		if (nonblocking) {
			/* What may start within the wait: the bucket's content by now + wait. */
			int64_t room = now + SHAPER_NB_WAIT_NS * 1000 + c->burst_ps - base;
			double fit = room > 0 ? (double)room / c->ps_per_byte : 0;
			if (fit < (double)floor_n) {
				/* Not our turn within the wait: wait it out, then let the caller's
				 * poll loop come back, as a full socket buffer would. */
				sleep_until(c, now + SHAPER_NB_WAIT_NS * 1000);
				return EAGAIN;
			}
			if (fit < (double)take)
				take = (size_t)fit;
		}
		cost = cost_ps(c, take);
		if (atomic_compare_exchange_weak_explicit(&tat_ps, &old, base + cost,
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			start = base + cost - c->burst_ps;
			g->len = take;
			break;
		}
	}
	g->charged_ps = cost;
	if (start - now > SHAPER_MIN_SLEEP_NS * 1000)
		sleep_until(c, start);
	return 0;
}

void shaper_settle(const struct shaper_config *c, const struct shaper_grant *g, ssize_t sent)
{
	size_t done = sent > 0 ? (size_t)sent : 0;
	if (done)
		atomic_fetch_add_explicit(&charged_bytes, done, memory_order_relaxed);
	if (g->tiny) {
		if (done)
			charge(c, done);
		return;
	}
	/* Give back what was reserved and not sent. When tat has since fallen behind the clock
	 * this changes nothing: an idle bucket is full either way. */
	int64_t unused = g->charged_ps - (done ? cost_ps(c, done) : 0);
	if (unused > 0)
		atomic_fetch_sub_explicit(&tat_ps, unused, memory_order_relaxed);
}

uint64_t shaper_charged_bytes(void)
{
	return atomic_load_explicit(&charged_bytes, memory_order_relaxed);
}
