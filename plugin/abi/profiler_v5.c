/* SPDX-License-Identifier: Apache-2.0 */
/* ncclProfiler_v5: NCCL finds it in the net plugin's library when NCCL_PROFILER_PLUGIN is unset. */
#include "rcmoe/log.h"
#include "abi.h"
#include "profiler.h"

static ncclResult_t v5_init(void **context, uint64_t comm_id, int *mask, const char *name,
			    int nnodes, int nranks, int rank, ncclDebugLogger_t logger)
{
	rcmoe_log_set(logger);
	return rcmoe_to_nccl(rcmoe_prof_init(context, comm_id, mask, name, nnodes, nranks, rank));
}

static ncclResult_t v5_start(void *context, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	return rcmoe_to_nccl(rcmoe_prof_start(context, handle, d));
}

static ncclResult_t v5_stop(void *handle)
{
	return rcmoe_to_nccl(rcmoe_prof_stop(handle));
}

static ncclResult_t v5_record(void *handle, ncclProfilerEventState_v5_t state,
			      ncclProfilerEventStateArgs_v5_t *args)
{
	return ncclSuccess;
}

static ncclResult_t v5_finalize(void *context)
{
	return rcmoe_to_nccl(rcmoe_prof_finalize(context));
}

RCMOE_EXPORT const ncclProfiler_v5_t ncclProfiler_v5 = {
	.name = "RCMoE",
	.init = v5_init,
	.startEvent = v5_start,
	.stopEvent = v5_stop,
	.recordEventState = v5_record,
	.finalize = v5_finalize,
};
