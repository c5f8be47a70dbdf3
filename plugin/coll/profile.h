/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where a collNet call's time goes (profile.c). NCCL's CollNetChain hands the plugin one slot of
 * its staging buffer per call (at most 256 KiB in NCCL 2.28), so the collective side's speed is
 * calls per second: the sum of what one call waits for, divided by how many NCCL keeps in
 * flight. Each call notes when it reaches each mark below; at finalize the means per mode are
 * logged, with how many calls were in flight and how far apart NCCL posted them, so one run
 * tells which stage to shorten.
 */
#ifndef RCMOE_COLL_PROFILE_H
#define RCMOE_COLL_PROFILE_H

#include <stdatomic.h>
#include <stdint.h>

/* The marks, in the order a call reaches them. */
enum coll_mark {
	COLL_MARK_POST = 0, /* iallreduce took it */
	COLL_MARK_SENDABLE, /* its first messages may go: encoded (or staged) */
	COLL_MARK_RECEIVED, /* every peer's first message is in */
	COLL_MARK_DONE,     /* every step finished */
	COLL_MARK_REPORTED, /* test told NCCL */
	COLL_NMARKS
};

/* One mode's sums over the calls of every comm of a collNet context (NCCL's proxy threads of
 * several comms may add at once: atomics). */
struct coll_profile {
	_Atomic uint64_t calls;
	_Atomic uint64_t stage_ns[COLL_NMARKS - 1]; /* mark i to mark i + 1 */
	_Atomic uint64_t inflight_sum;              /* calls already running at each post */
	_Atomic uint64_t inflight_max;
	_Atomic uint64_t gap_ns; /* from the comm's previous post */
	_Atomic uint64_t gaps;
	_Atomic uint64_t bytes;
};

uint64_t rcmoe_coll_profile_now(void);
/* A call was posted with `running` others of its comm in flight, `gap_ns` after the comm's
 * previous post (0: the first). */
void rcmoe_coll_profile_post(struct coll_profile *p, int running, uint64_t gap_ns);
/* A call reported done with its marks (ns; a mark never reached counts as the next one). */
void rcmoe_coll_profile_add(struct coll_profile *p, const uint64_t marks[COLL_NMARKS],
			    uint64_t bytes);
/* One INFO line for the mode, if it had calls. */
void rcmoe_coll_profile_log(const struct coll_profile *p, uint64_t comm_id, const char *mode);

#endif
