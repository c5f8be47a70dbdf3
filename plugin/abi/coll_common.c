/* SPDX-License-Identifier: Apache-2.0 */
/* CollNet entry points whose signatures are the same in v10 and v11 (coll_v11.c, coll_v10.c). */
#include "abi.h"
#include "coll/coll.h"

/* The transport's devices, over either transport: the collective side registers what it moves
 * and posts each receive's destination ahead where the transport needs it (IB; coll.h). */
ncclResult_t rcmoe_abi_coll_devices(int *ndev)
{
	return rcmoe_to_nccl(rcmoe_core_devices(ndev));
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
