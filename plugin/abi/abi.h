/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the ABI table files: the one translation of rcmoe_status_t to ncclResult_t, and the
 * export marker for the tables (everything else is hidden). */
#ifndef RCMOE_ABI_H
#define RCMOE_ABI_H

#include "rcmoe/nccl_abi.h"
#include "rcmoe/status.h"

#define RCMOE_EXPORT __attribute__((visibility("default")))

/* NCCL's meanings: System for network/host failures, Remote for the peer, InvalidUsage for
 * configuration, Internal when NCCL misused the interface or rcmoe broke. */
static inline ncclResult_t rcmoe_to_nccl(rcmoe_status_t st)
{
	switch (st) {
	case RCMOE_OK: return ncclSuccess;
	case RCMOE_ERR_USAGE:
	case RCMOE_ERR_UNSUPPORTED: return ncclInvalidUsage;
	case RCMOE_ERR_REMOTE:
	case RCMOE_ERR_MALFORMED:
	case RCMOE_ERR_TRUNCATED:
	case RCMOE_ERR_OVERFLOW: return ncclRemoteError;
	case RCMOE_ERR_CUDA: return ncclUnhandledCudaError;
	case RCMOE_ERR_NOMEM:
	case RCMOE_ERR_SYSTEM: return ncclSystemError;
	case RCMOE_ERR_INVALID:
	case RCMOE_ERR_INTERNAL: return ncclInternalError;
	}
	return ncclInternalError;
}

/* Shared v10/v11 entry points (net_common.c). */
#include "core.h"
ncclResult_t rcmoe_abi_devices(int *ndev);
ncclResult_t rcmoe_abi_accept(void *listen, void **recv, ncclNetDeviceHandle_v11_t **dev);
ncclResult_t rcmoe_abi_reg_mr(void *comm, void *data, size_t size, int type, void **mhandle);
ncclResult_t rcmoe_abi_reg_mr_dmabuf(void *comm, void *data, size_t size, int type, uint64_t offset,
				     int fd, void **mhandle);
ncclResult_t rcmoe_abi_dereg_mr(void *comm, void *mhandle);
ncclResult_t rcmoe_abi_isend(void *comm, void *data, size_t size, int tag, void *mhandle,
			     void *phandle, void **request);
ncclResult_t rcmoe_abi_irecv(void *comm, int n, void **data, size_t *sizes, int *tags,
			     void **mhandles, void **phandles, void **request);
ncclResult_t rcmoe_abi_iflush(void *comm, int n, void **data, int *sizes, void **mhandles,
			      void **request);
ncclResult_t rcmoe_abi_test(void *request, int *done, int *sizes);
ncclResult_t rcmoe_abi_close(void *comm);
ncclResult_t rcmoe_abi_close_listen(void *listen);
/* Fill the fields both property versions share. */
ncclResult_t rcmoe_abi_properties(int dev, ncclNetProperties_v11_t *props);

/* Shared collNet v10/v11 entry points (coll_common.c). */
ncclResult_t rcmoe_abi_coll_connect(void *handles[], int nranks, int rank, void *listen,
				    void **coll);
/* The collNet table's devices: the net side's, or none where the collective side cannot run on
 * the transport in use (coll_common.c). */
ncclResult_t rcmoe_abi_coll_devices(int *ndev);
ncclResult_t rcmoe_abi_coll_reduce_support(ncclDataType_t dtype, ncclRedOp_t op, int *supported);
ncclResult_t rcmoe_abi_coll_reg_mr(void *coll, void *data, size_t size, int type, void **mhandle);
ncclResult_t rcmoe_abi_coll_reg_mr_dmabuf(void *coll, void *data, size_t size, int type,
					  uint64_t offset, int fd, void **mhandle);
ncclResult_t rcmoe_abi_coll_dereg_mr(void *coll, void *mhandle);
ncclResult_t rcmoe_abi_coll_iallreduce(void *coll, void *send, void *recv, size_t count,
				       ncclDataType_t dtype, ncclRedOp_t op, void *send_mh,
				       void *recv_mh, void **request);
ncclResult_t rcmoe_abi_coll_iflush(void *coll, void *data, int size, void *mhandle, void **request);
ncclResult_t rcmoe_abi_coll_test(void *request, int *done, int *size);
ncclResult_t rcmoe_abi_coll_close(void *coll);
ncclResult_t rcmoe_abi_coll_close_listen(void *listen);

#endif
