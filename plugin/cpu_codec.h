/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CPU codec workers: the host-buffer path's encodes and decodes run here, off NCCL's proxy
 * thread, so the proxy keeps posting and polling while messages are coded on other cores, and
 * several messages are coded at once. Jobs live in the requests (no allocation per message);
 * the proxy thread polls rcmoe_cpu_job_done like it polls a GPU event.
 */
#ifndef RCMOE_CPU_CODEC_H
#define RCMOE_CPU_CODEC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rcmoe/codec.h"
#include "rcmoe/status.h"

/* ENCODE and DECODE: the p2p path's codec jobs. CALL: any other work (the collective side's
 * sums, validations and decodes, plugin/coll/), run as job->call(job). */
enum rcmoe_cpu_job_kind { RCMOE_JOB_ENCODE, RCMOE_JOB_DECODE, RCMOE_JOB_CALL };

/* A CPU encoder as an encode plan holds it (policy.h): rcmoe_codec_encode's shape. */
typedef rcmoe_status_t (*rcmoe_cpu_encode_fn)(const struct rcmoe_codec_cfg *cfg, const void *src,
					      size_t n, void *dst, size_t cap, size_t *len);

struct rcmoe_cpu_job {
	_Atomic int state; /* 0 idle, 1 queued or running, 2 done */
	enum rcmoe_cpu_job_kind kind;
	const void *in;
	size_t in_len; /* encode: elements; decode: stream bytes */
	void *out;
	size_t out_cap;             /* bytes */
	rcmoe_cpu_encode_fn encode; /* encode: the plan's CPU entry point, and its config */
	struct rcmoe_codec_cfg cfg;
	/* call: the work and what it works on (its status is the job's) */
	rcmoe_status_t (*call)(struct rcmoe_cpu_job *job);
	void *arg;
	int index;
	/* results, valid once done */
	rcmoe_status_t status;
	size_t out_len; /* encode: stream bytes; decode: bytes decoded */
	uint64_t ns;
	struct rcmoe_cpu_job *next;
};

/* Start `nthreads` workers once per process (0: none, jobs then run inline in submit). */
rcmoe_status_t rcmoe_cpu_codec_start(int nthreads);
/* Queue a filled job; never blocks on the work itself. */
void rcmoe_cpu_job_submit(struct rcmoe_cpu_job *job);
/* Run the job on the calling thread, now: for work smaller than a worker's wake-up (a futex
 * and a scheduler hop, tens of microseconds on a loaded host). Done when it returns. */
void rcmoe_cpu_job_run_here(struct rcmoe_cpu_job *job);
/* 1 once the job's results are valid. */
int rcmoe_cpu_job_done(struct rcmoe_cpu_job *job);
/* 1 while a worker may still touch the job's buffers (close waits for that). */
int rcmoe_cpu_job_busy(struct rcmoe_cpu_job *job);

#endif
