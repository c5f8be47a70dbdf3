/* SPDX-License-Identifier: Apache-2.0 */
/* CollNet entry points whose signatures are the same in v10 and v11 (coll_v11.c, coll_v10.c). */
#include <stdatomic.h>

#include "rcmoe/log.h"
#include "abi.h"
#include "coll/coll.h"

/* The collective side (plugin/coll/) sends from unregistered buffers and places each message
 * once its header arrived: a transport that needs registered memory and destinations posted
 * ahead (ib: needs_posted_dest) cannot carry it yet. collNet then reports no device, which
 * NCCL takes as collNet unavailable: all-reduce goes by NCCL's own algorithms over the net
 * side, uncompressed. */
ncclResult_t rcmoe_abi_coll_devices(int *ndev)
{
	static atomic_int told;
	rcmoe_status_t st = rcmoe_core_devices(ndev);
	if (st != RCMOE_OK || !rcmoe_core_transport()->needs_posted_dest)
		return rcmoe_to_nccl(st);
	if (!atomic_exchange(&told, 1))
		RCMOE_INFO(NCCL_INIT | NCCL_NET,
			   "collNet: no device, since the collective side runs over the socket "
			   "transport only and the %s transport is in use; all-reduce goes by "
			   "NCCL's own algorithms, uncompressed (RCMOE_TRANSPORT=socket for the "
			   "collective side)",
			   rcmoe_core_transport()->name);
	*ndev = 0;
	return ncclSuccess;
}

ncclResult_t rcmoe_abi_coll_connect(void *handles[], int nranks, int rank, void *listen,
				    void **coll)
{
	return rcmoe_to_nccl(
		rcmoe_coll_connect(handles, nranks, rank, listen, (struct rcmoe_coll_comm **)coll));
}

ncclResult_t rcmoe_abi_coll_reduce_support(ncclDataType_t dtype, ncclRedOp_t op, int *supported)
{
	return rcmoe_to_nccl(rcmoe_coll_reduce_support((int)dtype, (int)op, supported));
}

ncclResult_t rcmoe_abi_coll_reg_mr(void *coll, void *data, size_t size, int type, void **mhandle)
{
	return rcmoe_to_nccl(
		rcmoe_coll_reg_mr(coll, data, size, type, (struct rcmoe_coll_mr **)mhandle));
}

ncclResult_t rcmoe_abi_coll_reg_mr_dmabuf(void *coll, void *data, size_t size, int type,
					  uint64_t offset, int fd, void **mhandle)
{
	(void)offset; /* DMA-BUF is not claimed (ptrSupport): the address is all we use */
	(void)fd;
	return rcmoe_abi_coll_reg_mr(coll, data, size, type, mhandle);
}

ncclResult_t rcmoe_abi_coll_dereg_mr(void *coll, void *mhandle)
{
	return rcmoe_to_nccl(rcmoe_coll_dereg_mr(coll, mhandle));
}

ncclResult_t rcmoe_abi_coll_iallreduce(void *coll, void *send, void *recv, size_t count,
				       ncclDataType_t dtype, ncclRedOp_t op, void *send_mh,
				       void *recv_mh, void **request)
{
	return rcmoe_to_nccl(rcmoe_coll_iallreduce(coll, send, recv, count, (int)dtype, (int)op,
						   send_mh, recv_mh, (struct coll_call **)request));
}

ncclResult_t rcmoe_abi_coll_iflush(void *coll, void *data, int size, void *mhandle, void **request)
{
	/* Host memory: the bytes are in place before test reports a call done. */
	(void)coll;
	(void)data;
	(void)size;
	(void)mhandle;
	*request = NULL;
	return ncclSuccess;
}

ncclResult_t rcmoe_abi_coll_test(void *request, int *done, int *size)
{
	size_t bytes = 0;
	rcmoe_status_t st = rcmoe_coll_test(request, done, &bytes);
	if (st == RCMOE_OK && *done && size)
		*size = (int)bytes; /* at most RCMOE_MAX_P2P_BYTES (iallreduce checks) */
	return rcmoe_to_nccl(st);
}

ncclResult_t rcmoe_abi_coll_close(void *coll)
{
	return rcmoe_to_nccl(rcmoe_coll_close(coll));
}

ncclResult_t rcmoe_abi_coll_close_listen(void *listen)
{
	return rcmoe_to_nccl(rcmoe_coll_close_listen(listen));
}
