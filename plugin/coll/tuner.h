/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tuner: NCCL's cost table of each collective, edited so that all-reduces the collective side
 * compresses go to CollNetChain and everything else stays NCCL's own choice. Version-neutral;
 * plugin/abi/tuner_v5.c exports it as ncclTunerPlugin_v5.
 *
 * One context per communicator, read-only after init (two log-once flags are atomics): NCCL may
 * call getCollInfo of different communicators from different threads. The tuner keeps no state
 * of its own outside its contexts.
 */
#ifndef RCMOE_TUNER_H
#define RCMOE_TUNER_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/nccl_abi.h"
#include "rcmoe/status.h"
#include "ar_policy.h"

struct rcmoe_tuner;

/* What rcmoe_tuner_apply did to a table. */
enum {
	RCMOE_TUNE_UNCHANGED = 0, /* not an all-reduce, compression off, or no collNet to use */
	RCMOE_TUNE_STEERED = 1,   /* CollNetChain/Simple made the cheapest entry */
	RCMOE_TUNE_KEPT_OFF = 2,  /* too small: the collNet entries set to NCCL_ALGO_PROTO_IGNORE */
	RCMOE_TUNE_NO_COLLNET =
		3, /* large enough, but NCCL ruled CollNetChain/Simple out: unchanged */
};

/* Read the RCMOE_AR_* settings (a contradiction is a WARN and RCMOE_ERR_USAGE, as at net init).
 * logger may be NULL (then the plugin's logger). */
rcmoe_status_t rcmoe_tuner_init(struct rcmoe_tuner **out, uint64_t comm_id, size_t nranks,
				size_t nnodes, ncclDebugLogger_t logger);
/* Edit one cost table: `table` holds nalgo rows of nproto floats. A table NULL or smaller than
 * the v5 layout needs (CollNetChain row, Simple column) is left alone: RCMOE_ERR_INVALID for
 * NULL, success and one WARN per communicator for a small one. */
rcmoe_status_t rcmoe_tuner_coll_info(struct rcmoe_tuner *t, int func, size_t nbytes, float *table,
				     int nalgo, int nproto);
rcmoe_status_t rcmoe_tuner_finalize(struct rcmoe_tuner *t);

/* The table edit itself, a pure function (tests call it through the exported table). */
int rcmoe_tuner_apply(const struct rcmoe_ar_settings *s, int func, size_t nbytes, float *table,
		      int nalgo, int nproto);

#endif
