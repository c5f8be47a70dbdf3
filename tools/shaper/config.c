/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RCMOE_SHAPER_GBPS: read once per process. A missing or unusable value is never replaced by a
 * default: shaped (TCP) sends then fail with EINVAL and one line on stderr says why, so that a
 * benchmark cannot silently run at loopback speed while claiming an emulated link.
 */
#include "shaper.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct shaper_config config;
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static atomic_flag complained = ATOMIC_FLAG_INIT;
static char problem[160];

/* How late a short sleep wakes on this host, in ns: the 15th of 16 probes of 50 us sorted by
 * lateness (a high percentile: timers on a shared VM are late in bursts). A token bucket loses
 * rate whenever a sender wakes later than the bucket's depth, so the depth must cover it, as
 * tc's tbf asks a burst to cover the timer's resolution. */
static int64_t sleep_lateness_ns(void)
{
	enum { PROBES = 16 };
	int64_t late[PROBES];
	for (int i = 0; i < PROBES; i++) {
		struct timespec a, b, d = { 0, 50000 };
		clock_gettime(CLOCK_MONOTONIC, &a);
		nanosleep(&d, NULL);
		clock_gettime(CLOCK_MONOTONIC, &b);
		int64_t ns = (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
		late[i] = ns > 50000 ? ns - 50000 : 0;
	}
	for (int i = 1; i < PROBES; i++) /* insertion sort: 16 values */
		for (int j = i; j > 0 && late[j - 1] > late[j]; j--) {
			int64_t t = late[j];
			late[j] = late[j - 1];
			late[j - 1] = t;
		}
	return late[PROBES - 2];
}

static void config_load(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	config.base_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;

	const char *s = getenv(RCMOE_SHAPER_ENV);
	char *end = NULL;
	double g = s && *s ? strtod(s, &end) : NAN;
	if (!s || !*s) {
		snprintf(problem, sizeof(problem), "%s is not set", RCMOE_SHAPER_ENV);
	} else if (*end || !isfinite(g) || g <= 0) {
		snprintf(problem, sizeof(problem), "%s=\"%.40s\" is not a positive number",
			 RCMOE_SHAPER_ENV, s);
	} else if (g < SHAPER_MIN_GBPS || g > SHAPER_MAX_GBPS) {
		snprintf(problem, sizeof(problem), "%s=%.40s is out of range (%g-%g)",
			 RCMOE_SHAPER_ENV, s, SHAPER_MIN_GBPS, SHAPER_MAX_GBPS);
	} else {
		config.valid = true;
		config.gbps = g;
		config.ps_per_byte = 8000.0 / g; /* 8 bits at g * 1e9 bits/s, in 1e-12 s */
		int64_t late = SHAPER_LATE_FACTOR * sleep_lateness_ns();
		double burst_ns = late > SHAPER_BURST_NS ? (double)late : SHAPER_BURST_NS;
		double burst = g * 1e9 / 8 * (burst_ns * 1e-9);
		config.burst = burst > SHAPER_MIN_BURST ? (size_t)burst : SHAPER_MIN_BURST;
		config.burst_ps = (int64_t)((double)config.burst * config.ps_per_byte);
		return;
	}
	config.problem = problem;
}

const struct shaper_config *shaper_config(void)
{
	pthread_once(&config_once, config_load);
	return &config;
}

/* Loading the library reads the setting, before the program can change its locale (strtod). */
__attribute__((constructor)) static void shaper_load(void)
{
	shaper_config();
}

void shaper_complain(const struct shaper_config *c)
{
	if (atomic_flag_test_and_set(&complained))
		return;
	char line[256];
	int n = snprintf(line, sizeof(line),
			 "rcmoe-shaper: %s (Gb/s per process, e.g. 10): TCP sends fail with "
			 "EINVAL\n",
			 c->problem ? c->problem : "no rate");
	/* Straight to the descriptor: stdio may hold locks, and stderr may itself be a TCP
	 * socket, which our own write() would refuse. */
	static void *_Atomic slot;
	ssize_t (*real_write)(int, const void *, size_t) =
		(ssize_t(*)(int, const void *, size_t))shaper_next(&slot, "write");
	if (real_write && n > 0)
		(void)!real_write(STDERR_FILENO, line, strlen(line));
}

SHAPER_EXPORT double rcmoe_shaper_gbps(void)
{
	return shaper_config()->gbps;
}

SHAPER_EXPORT unsigned long long rcmoe_shaper_bytes(void)
{
	return shaper_charged_bytes();
}
