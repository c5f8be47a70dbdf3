/* SPDX-License-Identifier: Apache-2.0 */
/* ncclNetPlugin_v11 (NCCL 2.28 - 2.30): the native table. init is per communicator. */
#include "abi.h"

static ncclResult_t v11_init(void **ctx, uint64_t comm_id, ncclNetCommConfig_v11_t *config,
			     ncclDebugLogger_t logger, ncclProfilerCallback_t prof)
{
	(void)config; /* traffic class: TCP has nothing to map it to */
	return rcmoe_to_nccl(rcmoe_core_init((struct rcmoe_ctx **)ctx, comm_id, logger, prof));
}

static ncclResult_t v11_properties(int dev, ncclNetProperties_v11_t *props)
{
	return rcmoe_abi_properties(dev, props);
}

static ncclResult_t v11_listen(void *ctx, int dev, void *handle, void **listen)
{
	return rcmoe_to_nccl(
		rcmoe_core_listen(ctx, dev, handle, (struct rcmoe_listen_comm **)listen));
}

static ncclResult_t v11_connect(void *ctx, int dev, void *handle, void **send,
				ncclNetDeviceHandle_v11_t **dev_comm)
{
	if (dev_comm)
		*dev_comm = NULL;
	return rcmoe_to_nccl(rcmoe_core_connect(ctx, dev, handle, (struct rcmoe_comm **)send));
}

static ncclResult_t v11_finalize(void *ctx)
{
	return rcmoe_to_nccl(rcmoe_core_finalize(ctx));
}

static ncclResult_t v11_set_attr(void *ctx, ncclNetAttr_v11_t *attr)
{
	rcmoe_core_set_attr(ctx, attr);
	return ncclSuccess;
}

RCMOE_EXPORT const ncclNet_v11_t ncclNetPlugin_v11 = {
	.name = RCMOE_NET_NAME,
	.init = v11_init,
	.devices = rcmoe_abi_devices,
	.getProperties = v11_properties,
	.listen = v11_listen,
	.connect = v11_connect,
	.accept = rcmoe_abi_accept,
	.regMr = rcmoe_abi_reg_mr,
	.regMrDmaBuf = rcmoe_abi_reg_mr_dmabuf,
	.deregMr = rcmoe_abi_dereg_mr,
	.isend = rcmoe_abi_isend,
	.irecv = rcmoe_abi_irecv,
	.iflush = rcmoe_abi_iflush,
	.test = rcmoe_abi_test,
	.closeSend = rcmoe_abi_close,
	.closeRecv = rcmoe_abi_close,
	.closeListen = rcmoe_abi_close_listen,
	.getDeviceMr = NULL,
	.irecvConsumed = NULL,
	.makeVDevice = NULL,
	.finalize = v11_finalize,
	.setNetAttr = v11_set_attr,
};
