/* SPDX-License-Identifier: Apache-2.0 */
/* ncclNetPlugin_v10 (NCCL 2.26, 2.27): a thin adapter over the same core. v10 has no per-comm
 * init or finalize, so every comm shares the process-wide context. */
#include <string.h>

#include "abi.h"

static ncclResult_t v10_init(ncclDebugLogger_t logger, ncclProfilerCallback_t prof)
{
	return rcmoe_to_nccl(rcmoe_core_init(NULL, 0, logger, prof));
}

static ncclResult_t v10_properties(int dev, ncclNetProperties_v10_t *props)
{
	ncclNetProperties_v11_t p11;
	ncclResult_t r = rcmoe_abi_properties(dev, &p11);
	if (r != ncclSuccess)
		return r;
	/* v10 is v11 without the trailing maxMultiRequestSize. */
	memcpy(props, &p11, sizeof(*props));
	return ncclSuccess;
}

static ncclResult_t v10_listen(int dev, void *handle, void **listen)
{
	return rcmoe_to_nccl(
		rcmoe_core_listen(NULL, dev, handle, (struct rcmoe_listen_comm **)listen));
}

static ncclResult_t v10_connect(int dev, ncclNetCommConfig_v10_t *config, void *handle, void **send,
				ncclNetDeviceHandle_v10_t **dev_comm)
{
	(void)config;
	if (dev_comm)
		*dev_comm = NULL;
	return rcmoe_to_nccl(rcmoe_core_connect(NULL, dev, handle, (struct rcmoe_comm **)send));
}

RCMOE_EXPORT const ncclNet_v10_t ncclNetPlugin_v10 = {
	.name = RCMOE_NET_NAME,
	.init = v10_init,
	.devices = rcmoe_abi_devices,
	.getProperties = v10_properties,
	.listen = v10_listen,
	.connect = v10_connect,
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
};
