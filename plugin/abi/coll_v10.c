/* SPDX-License-Identifier: Apache-2.0 */
/* ncclCollNetPlugin_v10 (NCCL 2.26, 2.27): a thin adapter over the same core. v10 is initialised
 * once per process and has no finalize: every comm shares the process-wide context. NCCL 2.26
 * and 2.27 use this table as it is, so the NULL iallgather and ireducescatter decline those
 * collectives there too. (NCCL 2.28 and later find the v11 table first; their v10 shim would
 * wrap the NULLs in non-NULL functions.) */
#include <string.h>

#include "abi.h"
#include "coll/coll.h"

static ncclResult_t cv10_init(ncclDebugLogger_t logger)
{
	return rcmoe_to_nccl(rcmoe_coll_init(NULL, 0, logger));
}

static ncclResult_t cv10_properties(int dev, ncclNetProperties_v10_t *props)
{
	ncclNetProperties_v11_t p11;
	ncclResult_t r = rcmoe_abi_properties(dev, &p11);
	if (r != ncclSuccess)
		return r;
	/* v10 is v11 without the trailing maxMultiRequestSize. */
	memcpy(props, &p11, sizeof(*props));
	return ncclSuccess;
}

static ncclResult_t cv10_listen(int dev, void *handle, void **listen)
{
	return rcmoe_to_nccl(
		rcmoe_coll_listen(NULL, dev, handle, (struct rcmoe_coll_listen **)listen));
}

RCMOE_EXPORT const ncclCollNet_v10_t ncclCollNetPlugin_v10 = {
	.name = RCMOE_NET_NAME,
	.init = cv10_init,
	.devices = rcmoe_abi_coll_devices,
	.getProperties = cv10_properties,
	.listen = cv10_listen,
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
};
