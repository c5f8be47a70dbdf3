/* SPDX-License-Identifier: Apache-2.0 */
/*
 * librcmoe-shaper internals, shared by its files:
 *   config.c     RCMOE_SHAPER_GBPS, read once; the one-line complaint when it is unusable
 *   bucket.c     the process-wide token bucket (lock-free), sleeping for tokens
 *   fdkind.c     which descriptors are TCP sockets, cached per descriptor
 *   interpose.c  send, sendto, sendmsg, write and writev
 *   next.c       the real libc functions behind ours (dlsym RTLD_NEXT)
 */
#ifndef RCMOE_SHAPER_H
#define RCMOE_SHAPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rcmoe_shaper.h"

#define SHAPER_EXPORT __attribute__((visibility("default")))

/* Sends up to this many bytes are control messages: never delayed, still charged. */
#define SHAPER_TINY_BYTES 512
/* The bucket holds max(64 KiB, 50 us of the link, 4x how late this host's sleeps wake): enough
 * for one socket buffer's worth of work per wake-up at low rates, without letting a fast link
 * burst for long, and without losing rate to late wake-ups (config.c measures them at load;
 * about 0.1 ms on a quiet host, up to a few ms on a loaded VM). */
#define SHAPER_MIN_BURST   (64u << 10)
#define SHAPER_BURST_NS    50000
#define SHAPER_LATE_FACTOR 4
/* A non-blocking send waits at most this long for its turn, then fails with EAGAIN, so that a
 * poll loop neither blocks nor spins. */
#define SHAPER_NB_WAIT_NS 2000000
/* A non-blocking send takes a partial grant only when it is at least this large (or the whole
 * request): many slivers would cost more syscalls than they save time. */
#define SHAPER_NB_MIN_CHUNK (4u << 10)
/* Waits shorter than this are not slept: a nanosleep costs about this much anyway, and the
 * bucket's clock still charges the full cost. */
#define SHAPER_MIN_SLEEP_NS 20000
/* Accepted rates: below 1 Mb/s one burst would take longer than the 64-bit picosecond clock
 * can reasonably count; above 100 Tb/s nothing is shaped in practice. */
#define SHAPER_MIN_GBPS 0.001
#define SHAPER_MAX_GBPS 100000.0

struct shaper_config {
	bool valid;          /* RCMOE_SHAPER_GBPS parsed and in range */
	double gbps;         /* the rate, 0 when !valid */
	double ps_per_byte;  /* link time of one byte, in picoseconds */
	size_t burst;        /* bucket size, bytes */
	int64_t burst_ps;    /* bucket size as link time */
	int64_t base_ns;     /* CLOCK_MONOTONIC at load: the bucket's clock starts here */
	const char *problem; /* why !valid, for the one-line complaint */
};

/* config.c */
const struct shaper_config *shaper_config(void);
/* Prints why the setting is unusable, once per process. */
void shaper_complain(const struct shaper_config *c);

/* bucket.c: a grant is what one call may send; settle charges what it really sent. */
struct shaper_grant {
	size_t len;         /* bytes the call may pass to the real function */
	int64_t charged_ps; /* link time reserved for them (0: nothing reserved) */
	bool tiny;          /* charged after the call, never waited for */
};
/* 0, or EAGAIN when a non-blocking caller would have had to wait more than SHAPER_NB_WAIT_NS
 * (after having waited that long). */
int shaper_acquire(const struct shaper_config *c, size_t want, bool nonblocking,
		   struct shaper_grant *g);
void shaper_settle(const struct shaper_config *c, const struct shaper_grant *g, ssize_t sent);
uint64_t shaper_charged_bytes(void);

/* fdkind.c */
bool shaper_fd_is_tcp(int fd);
void shaper_fd_forget(int fd);

/* next.c: the next definition of `name` after this library (libc's), cached in *slot; NULL
 * with errno ENOSYS when there is none. */
void *shaper_next(void *_Atomic *slot, const char *name);

/* In an interposed function `fn`: `real`, libc's fn, with our own prototype (ours matches
 * libc's); a missing one fails the call with ENOSYS. */
#define REAL(fn)                                                                                   \
	static void *_Atomic slot_;                                                                \
	__typeof__(&fn) real = (__typeof__(&fn))shaper_next(&slot_, #fn);                          \
	if (!real)                                                                                 \
	return -1

#endif
