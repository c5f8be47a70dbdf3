/* SPDX-License-Identifier: Apache-2.0 */
/* ncclTunerPlugin_v5 (NCCL 2.28 - 2.30): NCCL finds it in the net plugin's library when
 * NCCL_TUNER_PLUGIN is unset (tuner.cc:61-67 in 2.28.9). init and finalize are per
 * communicator; the logic is plugin/coll/tuner.c. */
#include "abi.h"
#include "coll/tuner.h"

static ncclResult_t tv5_init(void **ctx, uint64_t comm_id, size_t nranks, size_t nnodes,
			     ncclDebugLogger_t logger, ncclNvlDomainInfo_v5_t *nvl,
			     ncclTunerConstants_v5_t *constants)
{
	(void)nvl;       /* NVLink domains: no bearing on collNet */
	(void)constants; /* NCCL's cost model is kept as it is */
	if (!ctx)
		return ncclInternalError;
	return rcmoe_to_nccl(
		rcmoe_tuner_init((struct rcmoe_tuner **)ctx, comm_id, nranks, nnodes, logger));
}

static ncclResult_t tv5_get_coll_info(void *ctx, ncclFunc_t func, size_t nbytes, int npipe_ops,
				      float **table, int nalgo, int nproto, int reg_buff,
				      int *nchannels)
{
	(void)npipe_ops;
	(void)reg_buff;
	(void)nchannels; /* 0 as NCCL passes it: NCCL's channel count stays */
	/* NCCL passes its float[algo][proto] array cast to float **. */
	return rcmoe_to_nccl(
		rcmoe_tuner_coll_info(ctx, (int)func, nbytes, (float *)table, nalgo, nproto));
}

static ncclResult_t tv5_finalize(void *ctx)
{
	return rcmoe_to_nccl(rcmoe_tuner_finalize(ctx));
}

RCMOE_EXPORT const ncclTuner_v5_t ncclTunerPlugin_v5 = {
	.name = "RCMoE",
	.init = tv5_init,
	.getCollInfo = tv5_get_coll_info,
	.finalize = tv5_finalize,
};
