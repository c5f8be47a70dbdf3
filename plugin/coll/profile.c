/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collNet call profile (profile.h): a few clock reads per call and relaxed atomic sums, cheap
 * against a call's tens of microseconds, so it is always on.
 */
#include <time.h>

#include "rcmoe/log.h"
#include "profile.h"

uint64_t rcmoe_coll_profile_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void rcmoe_coll_profile_post(struct coll_profile *p, int running, uint64_t gap_ns)
{
	uint64_t r = running > 0 ? (uint64_t)running : 0;
	atomic_fetch_add_explicit(&p->inflight_sum, r, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&p->inflight_max, memory_order_relaxed);
	while (r > max &&
	       !atomic_compare_exchange_weak_explicit(&p->inflight_max, &max, r,
						      memory_order_relaxed, memory_order_relaxed))
		;
	if (gap_ns) {
		atomic_fetch_add_explicit(&p->gap_ns, gap_ns, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->gaps, 1, memory_order_relaxed);
	}
}

void rcmoe_coll_profile_add(struct coll_profile *p, const uint64_t marks[COLL_NMARKS],
			    uint64_t bytes)
{
	/* A mark the call skipped (nothing to send, say) takes the time of the next one. */
	uint64_t t[COLL_NMARKS];
	t[COLL_NMARKS - 1] = marks[COLL_NMARKS - 1];
	for (int i = COLL_NMARKS - 2; i >= 0; i--)
		t[i] = marks[i] && marks[i] <= t[i + 1] ? marks[i] : t[i + 1];
	for (int i = 0; i + 1 < COLL_NMARKS; i++)
		atomic_fetch_add_explicit(&p->stage_ns[i], t[i + 1] - t[i], memory_order_relaxed);
	atomic_fetch_add_explicit(&p->bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->calls, 1, memory_order_relaxed);
}

static double mean_us(uint64_t ns, uint64_t n)
{
	return n ? (double)ns / (double)n / 1e3 : 0.0;
}

void rcmoe_coll_profile_log(const struct coll_profile *p, uint64_t comm_id, const char *mode)
{
	uint64_t n = atomic_load(&p->calls);
	if (!n)
		return;
	uint64_t s[COLL_NMARKS - 1], total = 0;
	for (int i = 0; i + 1 < COLL_NMARKS; i++) {
		s[i] = atomic_load(&p->stage_ns[i]);
		total += s[i];
	}
	RCMOE_INFO(NCCL_NET,
		   "profile comm 0x%lx:collnet-%s calls=%lu mean_bytes=%.0f in_flight_mean=%.2f "
		   "in_flight_max=%lu post_gap_us=%.1f per call (us): encode=%.1f "
		   "wait_peers=%.1f reduce_and_gather=%.1f report=%.1f total=%.1f",
		   (unsigned long)comm_id, mode, (unsigned long)n,
		   (double)atomic_load(&p->bytes) / (double)n,
		   (double)atomic_load(&p->inflight_sum) / (double)n,
		   (unsigned long)atomic_load(&p->inflight_max),
		   mean_us(atomic_load(&p->gap_ns), atomic_load(&p->gaps)), mean_us(s[0], n),
		   mean_us(s[1], n), mean_us(s[2], n), mean_us(s[3], n), mean_us(total, n));
}
