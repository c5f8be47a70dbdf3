/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collNet call profile (plugin/coll/profile.h): stage sums from a call's marks, a skipped mark
 * counted as the next one, in-flight and post-gap sums, and the finalize line's figures.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rcmoe/log.h"
#include "coll/profile.h"

static char last_line[1024];

static void capture(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void capture(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		    const char *fmt, ...)
{
	(void)level, (void)flags, (void)file, (void)line;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_line, sizeof(last_line), fmt, ap);
	va_end(ap);
}

Test(coll_profile, stages_sum_the_time_between_marks)
{
	struct coll_profile p;
	memset(&p, 0, sizeof(p));
	uint64_t a[COLL_NMARKS] = { 1000, 3000, 7000, 15000, 16000 };
	uint64_t b[COLL_NMARKS] = { 2000, 0, 4000, 5000, 9000 }; /* never sendable */
	rcmoe_coll_profile_add(&p, a, 4096);
	rcmoe_coll_profile_add(&p, b, 2048);
	cr_expect_eq(p.calls, 2);
	cr_expect_eq(p.bytes, 6144);
	cr_expect_eq(p.stage_ns[0], 2000 + 2000, "post to sendable: b's missing mark is its next");
	cr_expect_eq(p.stage_ns[1], 4000 + 0);
	cr_expect_eq(p.stage_ns[2], 8000 + 1000);
	cr_expect_eq(p.stage_ns[3], 1000 + 4000);
}

Test(coll_profile, in_flight_and_gaps)
{
	struct coll_profile p;
	memset(&p, 0, sizeof(p));
	rcmoe_coll_profile_post(&p, 0, 0); /* the first post has no gap */
	rcmoe_coll_profile_post(&p, 3, 500);
	rcmoe_coll_profile_post(&p, 7, 1500);
	rcmoe_coll_profile_post(&p, 2, 1000);
	cr_expect_eq(p.inflight_sum, 12);
	cr_expect_eq(p.inflight_max, 7);
	cr_expect_eq(p.gaps, 3);
	cr_expect_eq(p.gap_ns, 3000);
}

Test(coll_profile, the_log_line_gives_means_in_microseconds)
{
	struct coll_profile p;
	memset(&p, 0, sizeof(p));
	rcmoe_log_set(capture);
	last_line[0] = 0;
	rcmoe_coll_profile_log(&p, 0x42, "PTS");
	cr_expect_eq(last_line[0], 0, "no calls, no line: %s", last_line);
	uint64_t m[COLL_NMARKS] = { 5000, 15000, 35000, 65000, 75000 };
	rcmoe_coll_profile_post(&p, 4, 0);
	rcmoe_coll_profile_post(&p, 2, 20000);
	rcmoe_coll_profile_add(&p, m, 262144);
	rcmoe_coll_profile_add(&p, m, 262144);
	rcmoe_coll_profile_log(&p, 0x42, "PTS");
	cr_expect(strstr(last_line, "collnet-PTS calls=2 mean_bytes=262144 in_flight_mean=3.00 "
				    "in_flight_max=4 post_gap_us=20.0") != NULL,
		  "%s", last_line);
	cr_expect(strstr(last_line, "encode=10.0 wait_peers=20.0 reduce_and_gather=30.0 "
				    "report=10.0 total=70.0") != NULL,
		  "%s", last_line);
}
