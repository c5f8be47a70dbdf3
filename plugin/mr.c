/* SPDX-License-Identifier: Apache-2.0 */
/* Memory registration. GPU regions get a pinned host shadow (mapped into the GPU) that the data
 * path stages through; with compression on, every region gets one, twice its size, for the
 * encoded streams. The host memory the transport may then move (NCCL's host buffer, the shadow)
 * is registered with the transport (reg_mr: pinning and NIC tables for RDMA, nothing for TCP).
 * All of it is done here (NCCL's service thread), never per message. */
#include <stdlib.h>

#include "rcmoe/log.h"
#include "core.h"

static void shadow_free(struct rcmoe_mr *mr)
{
	if (mr->host_shadow && mr->type == NCCL_PTR_CUDA) {
		struct rcmoe_gpu_scope g;
		if (rcmoe_gpu_enter(mr->gpu_dev, &g) == RCMOE_OK)
			rcmoe_gpu_host_free(mr->host_shadow);
		rcmoe_gpu_leave(&g);
	} else {
		free(mr->host_shadow);
	}
	mr->host_shadow = NULL;
}

static void transport_dereg(struct rcmoe_mr *mr)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	struct rcmoe_comm *c = mr->reg_comm;
	struct rcmoe_tmr **handles[] = { &mr->t_shadow, &mr->t_data };
	for (int i = 0; i < 2; i++) {
		if (!*handles[i])
			continue;
		rcmoe_status_t st = t->dereg_mr(c->tsend, c->trecv, *handles[i]);
		if (st != RCMOE_OK)
			RCMOE_WARN("deregMr: the %s transport could not deregister %zu bytes: %s",
				   t->name, mr->size, rcmoe_status_str(st));
		*handles[i] = NULL;
	}
}

/* Register with the transport the host memory it may move for this region, on the comm NCCL
 * registered the region with. */
static rcmoe_status_t transport_reg(struct rcmoe_comm *comm, struct rcmoe_mr *mr)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	rcmoe_status_t st = RCMOE_OK;
	if (!comm)
		return RCMOE_OK;
	mr->reg_comm = comm;
	/* An empty region carries only empty transfers, which move no memory (and verbs refuse
	 * to register 0 bytes). */
	if (mr->size == 0)
		return RCMOE_OK;
	if (mr->type == NCCL_PTR_HOST)
		st = t->reg_mr(comm->tsend, comm->trecv, mr->base, mr->size, &mr->t_data);
	if (st == RCMOE_OK && mr->host_shadow)
		st = t->reg_mr(comm->tsend, comm->trecv, mr->host_shadow,
			       mr->size * mr->shadow_factor, &mr->t_shadow);
	if (st != RCMOE_OK) {
		RCMOE_WARN("regMr: the %s transport could not register %zu bytes: %s", t->name,
			   mr->size, rcmoe_status_str(st));
		transport_dereg(mr);
	}
	return st;
}

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
	RCMOE_CHECK_GOTO(transport_reg(comm, mr), st, free_shadow);
	*out = mr;
	return RCMOE_OK;

free_shadow:
	shadow_free(mr);
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
	transport_dereg(mr);
	shadow_free(mr);
	free(mr);
	return RCMOE_OK;
}
