/* SPDX-License-Identifier: Apache-2.0 */
/* ncclCollNetPlugin_v11 (NCCL 2.28 - 2.30): the collective side's native table. init is per
 * communicator. iallgather and ireducescatter are NULL: NCCL's cost model then never picks an
 * algorithm that needs them (CollNetDirect and NVLS all-gather / reduce-scatter). */
#include "abi.h"
#include "coll/coll.h"

static ncclResult_t cv11_init(void **ctx, uint64_t comm_id, ncclDebugLogger_t logger)
{
	return rcmoe_to_nccl(rcmoe_coll_init((struct rcmoe_coll_ctx **)ctx, comm_id, logger));
}

static ncclResult_t cv11_properties(int dev, ncclNetProperties_v11_t *props)
{
	/* The net device's own properties: NCCL merges devices of the same name. */
	return rcmoe_abi_properties(dev, props);
}

static ncclResult_t cv11_listen(void *ctx, int dev, void *handle, void **listen)
{
	return rcmoe_to_nccl(
		rcmoe_coll_listen(ctx, dev, handle, (struct rcmoe_coll_listen **)listen));
}

static ncclResult_t cv11_finalize(void *ctx)
{
	return rcmoe_to_nccl(rcmoe_coll_finalize(ctx));
}

RCMOE_EXPORT const ncclCollNet_v11_t ncclCollNetPlugin_v11 = {
	.name = RCMOE_NET_NAME,
	.init = cv11_init,
	.devices = rcmoe_abi_coll_devices,
	.getProperties = cv11_properties,
	.listen = cv11_listen,
	.connect = rcmoe_abi_coll_connect,
	.reduceSupport = rcmoe_abi_coll_reduce_support,
	.regMr = rcmoe_abi_coll_reg_mr,
	.regMrDmaBuf = rcmoe_abi_coll_reg_mr_dmabuf,
	.deregMr = rcmoe_abi_coll_dereg_mr,
	.iallreduce = rcmoe_abi_coll_iallreduce,
	.iallgather = NULL,
	.ireducescatter = NULL,
	.iflush = rcmoe_abi_coll_iflush,
	.test = rcmoe_abi_coll_test,
	.closeColl = rcmoe_abi_coll_close,
	.closeListen = rcmoe_abi_coll_close_listen,
	.makeVDevice = NULL,
	.finalize = cv11_finalize,
};
