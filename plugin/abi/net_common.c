/* SPDX-License-Identifier: Apache-2.0 */
/* Entry points whose signatures are the same in net v10 and v11. */
#include <string.h>

#include "rcmoe/log.h"
#include "abi.h"

ncclResult_t rcmoe_abi_devices(int *ndev)
{
	return rcmoe_to_nccl(rcmoe_core_devices(ndev));
}

ncclResult_t rcmoe_abi_properties(int dev, ncclNetProperties_v11_t *p)
{
	struct rcmoe_props props;
	rcmoe_status_t st = rcmoe_core_properties(dev, &props);
	if (st != RCMOE_OK)
		return rcmoe_to_nccl(st);
	memset(p, 0, sizeof(*p));
	p->name = props.name;
	p->pciPath = props.pci_path;
	p->guid = props.guid;
	p->ptrSupport = props.ptr_support;
	p->regIsGlobal = 0;
	p->forceFlush = 0; /* GPU receives are complete (copy done) before test says so */
	p->speed = props.speed;
	p->port = 0;
	p->latency = props.latency;
	p->maxComms = 1024 * 1024;
	p->maxRecvs = 1;
	p->netDeviceType = NCCL_NET_DEVICE_HOST;
	p->netDeviceVersion = 0;
	p->vProps.ndevs = 1;
	p->vProps.devs[0] = dev;
	p->maxP2pBytes = props.max_p2p_bytes;
	p->maxCollBytes = props.max_p2p_bytes;
	p->maxMultiRequestSize = 1;
	return ncclSuccess;
}

ncclResult_t rcmoe_abi_accept(void *listen, void **recv, ncclNetDeviceHandle_v11_t **dev)
{
	if (dev)
		*dev = NULL;
	return rcmoe_to_nccl(rcmoe_core_accept(listen, (struct rcmoe_comm **)recv));
}

ncclResult_t rcmoe_abi_reg_mr(void *comm, void *data, size_t size, int type, void **mhandle)
{
	return rcmoe_to_nccl(
		rcmoe_core_reg_mr(comm, data, size, type, (struct rcmoe_mr **)mhandle));
}

ncclResult_t rcmoe_abi_reg_mr_dmabuf(void *comm, void *data, size_t size, int type, uint64_t offset,
				     int fd, void **mhandle)
{
	/* DMA-BUF is not claimed (ptrSupport); the address is enough for our staging. */
	return rcmoe_abi_reg_mr(comm, data, size, type, mhandle);
}

ncclResult_t rcmoe_abi_dereg_mr(void *comm, void *mhandle)
{
	return rcmoe_to_nccl(rcmoe_core_dereg_mr(comm, mhandle));
}

ncclResult_t rcmoe_abi_isend(void *comm, void *data, size_t size, int tag, void *mhandle,
			     void *phandle, void **request)
{
	return rcmoe_to_nccl(rcmoe_core_isend(comm, data, size, tag, mhandle, phandle,
					      (struct rcmoe_request **)request));
}

ncclResult_t rcmoe_abi_irecv(void *comm, int n, void **data, size_t *sizes, int *tags,
			     void **mhandles, void **phandles, void **request)
{
	if (n != 1) {
		RCMOE_WARN("irecv: %d receives grouped, but maxRecvs is 1", n);
		return ncclInternalError;
	}
	return rcmoe_to_nccl(rcmoe_core_irecv(
		comm, data[0], sizes[0], tags ? tags[0] : 0, mhandles ? mhandles[0] : NULL,
		phandles ? phandles[0] : NULL, (struct rcmoe_request **)request));
}

ncclResult_t rcmoe_abi_iflush(void *comm, int n, void **data, int *sizes, void **mhandles,
			      void **request)
{
	/* Receives into GPU memory are copied (and waited for) before test reports them done. */
	*request = NULL;
	return ncclSuccess;
}

ncclResult_t rcmoe_abi_test(void *request, int *done, int *sizes)
{
	size_t size = 0;
	rcmoe_status_t st = rcmoe_core_test(request, done, &size);
	if (st == RCMOE_OK && *done && sizes)
		*sizes = (int)size;
	return rcmoe_to_nccl(st);
}

ncclResult_t rcmoe_abi_close(void *comm)
{
	return rcmoe_to_nccl(rcmoe_core_close(comm));
}

ncclResult_t rcmoe_abi_close_listen(void *listen)
{
	return rcmoe_to_nccl(rcmoe_core_close_listen(listen));
}
