/* SPDX-License-Identifier: Apache-2.0 */
/* Memory registration. GPU regions get a pinned host shadow (mapped into the GPU) that the data
 * path stages through; with compression on, every region gets one, twice its size, for the
 * encoded streams. All of it is allocated here (NCCL's service thread), never per message. */
#include <stdlib.h>

#include "rcmoe/log.h"
#include "core.h"

rcmoe_status_t rcmoe_core_reg_mr(struct rcmoe_comm *comm, void *data, size_t size, int type,
				 struct rcmoe_mr **out)
{
	rcmoe_status_t st = RCMOE_OK;
	struct rcmoe_mr *mr;
	if (type != NCCL_PTR_HOST && type != NCCL_PTR_CUDA) {
		RCMOE_WARN("regMr: unsupported memory type %d", type);
		return RCMOE_ERR_INVALID;
	}
	if (type == NCCL_PTR_CUDA && !rcmoe_core_props_cuda()) {
		RCMOE_WARN("regMr: GPU memory registered, but GPU buffers were not claimed");
		return RCMOE_ERR_INVALID;
	}
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return RCMOE_ERR_NOMEM;
	mr->base = data;
	mr->size = size;
	mr->type = type;
	mr->shadow_factor = rcmoe_core_compressing() ? 2 : 1;
	mr->gpu_dev = comm ? comm->gpu_dev : -1;
	if (type == NCCL_PTR_CUDA) {
		struct rcmoe_gpu_scope g;
		st = rcmoe_gpu_enter(mr->gpu_dev, &g);
		if (st == RCMOE_OK)
			st = rcmoe_gpu_host_alloc((void **)&mr->host_shadow,
						  size * mr->shadow_factor);
		rcmoe_gpu_leave(&g);
		if (st != RCMOE_OK) {
			RCMOE_WARN("regMr: cannot allocate %zu bytes of pinned staging",
				   size * mr->shadow_factor);
			goto free_mr;
		}
	} else if (rcmoe_core_compressing()) {
		mr->host_shadow = malloc(size ? size * 2 : 1);
		if (!mr->host_shadow) {
			st = RCMOE_ERR_NOMEM;
			goto free_mr;
		}
	}
	*out = mr;
	return RCMOE_OK;

free_mr:
	free(mr);
	return st;
}

rcmoe_status_t rcmoe_core_dereg_mr(struct rcmoe_comm *comm, struct rcmoe_mr *mr)
{
	if (!mr)
		return RCMOE_OK;
	/* NCCL frees the region right after this (and before it closes the comm). After an abort
	 * a transfer of ours may still be writing into it or its shadow (a transport thread, a
	 * codec worker, a GPU copy): stop and wait for those first. */
	if (comm)
		rcmoe_core_quiesce(comm, mr);
	if (mr->host_shadow && mr->type == NCCL_PTR_CUDA) {
		struct rcmoe_gpu_scope g;
		if (rcmoe_gpu_enter(mr->gpu_dev, &g) == RCMOE_OK)
			rcmoe_gpu_host_free(mr->host_shadow);
		rcmoe_gpu_leave(&g);
	} else {
		free(mr->host_shadow);
	}
	free(mr);
	return RCMOE_OK;
}
