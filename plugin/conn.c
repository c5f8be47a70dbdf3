/* SPDX-License-Identifier: Apache-2.0 */
/* Connection setup and teardown: wraps the transport's comms with the core's request slots and
 * GPU stream/events (created here, on NCCL's service thread, never on the data path). */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "core.h"
#include "policy.h"

static void comm_free(struct rcmoe_comm *c)
{
	struct rcmoe_gpu_scope g = { 0, -1 };
	if (c->gpu_dev >= 0 && rcmoe_gpu_enter(c->gpu_dev, &g) == RCMOE_OK) {
		for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
			rcmoe_gpu_event_destroy(&c->reqs[i].ev);
		rcmoe_gpu_dev_free(c->gpu_work);
		rcmoe_gpu_stream_destroy(&c->stream);
	}
	rcmoe_gpu_leave(&g);
	rcmoe_a2a_dedup_destroy(c->dedup);
	free(c);
}

static rcmoe_status_t comm_alloc(struct rcmoe_ctx *ctx, int is_send, struct rcmoe_comm **out)
{
	rcmoe_status_t st = RCMOE_OK;
	struct rcmoe_gpu_scope g = { 0, -1 };
	struct rcmoe_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return RCMOE_ERR_NOMEM;
	c->gpu_dev = -1;
	c->is_send = is_send;
	c->ctx = ctx ? ctx : rcmoe_core_default_ctx();
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
		c->reqs[i].comm = c;
	if (rcmoe_core_compressing())
		RCMOE_CHECK_GOTO(rcmoe_a2a_dedup_create(rcmoe_core_params(), is_send, &c->dedup),
				 st, free_comm);
	if (rcmoe_core_props_cuda()) {
		int dev;
		RCMOE_CHECK_GOTO(rcmoe_gpu_context_bind(&dev), st, free_comm);
		c->gpu_dev = dev;
		RCMOE_CHECK_GOTO(rcmoe_gpu_enter(dev, &g), st, leave_context);
		RCMOE_CHECK_GOTO(rcmoe_gpu_stream_create(&c->stream), st, leave_context);
		for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
			RCMOE_CHECK_GOTO(rcmoe_gpu_event_create(&c->reqs[i].ev), st, leave_context);
		if (rcmoe_core_compressing()) {
			/* For the largest transfer NCCL may post: a few bytes per thousand
			 * elements, allocated once here rather than grown on the data path. */
			c->gpu_work_bytes = rcmoe_policy_gpu_work_bytes(rcmoe_core_params(),
									RCMOE_MAX_P2P_BYTES);
			RCMOE_CHECK_GOTO(rcmoe_gpu_dev_alloc(&c->gpu_work, c->gpu_work_bytes), st,
					 leave_context);
		}
		rcmoe_gpu_leave(&g);
	}
	*out = c;
	return RCMOE_OK;

leave_context:
	rcmoe_gpu_leave(&g);
free_comm:
	comm_free(c);
	return st;
}

/* NCCL numbers net devices 0..devices()-1, one per device of the transport. */
static rcmoe_status_t check_dev(const char *what, int dev)
{
	int ndev;
	RCMOE_CHECK(rcmoe_core_devices(&ndev));
	if (dev >= 0 && dev < ndev)
		return RCMOE_OK;
	RCMOE_WARN("%s on device %d, but the %s transport has %d", what, dev,
		   rcmoe_core_transport()->name, ndev);
	return RCMOE_ERR_INVALID;
}

rcmoe_status_t rcmoe_core_listen(struct rcmoe_ctx *ctx, int dev, void *handle,
				 struct rcmoe_listen_comm **out)
{
	rcmoe_status_t st;
	RCMOE_CHECK(check_dev("listen", dev));
	struct rcmoe_listen_comm *l = calloc(1, sizeof(*l));
	if (!l)
		return RCMOE_ERR_NOMEM;
	l->ctx = ctx ? ctx : rcmoe_core_default_ctx();
	l->dev = dev;
	memset(handle, 0, NCCL_NET_HANDLE_MAXSIZE);
	RCMOE_CHECK_GOTO(rcmoe_core_transport()->listen(dev, handle, &l->tlisten), st, free_listen);
	*out = l;
	return RCMOE_OK;

free_listen:
	free(l);
	return st;
}

rcmoe_status_t rcmoe_core_connect(struct rcmoe_ctx *ctx, int dev, void *handle,
				  struct rcmoe_comm **out)
{
	struct rcmoe_tsend *t = NULL;
	rcmoe_status_t st;
	*out = NULL;
	RCMOE_CHECK(check_dev("connect", dev));
	RCMOE_CHECK(rcmoe_core_transport()->connect(dev, handle, &t));
	if (!t)
		return RCMOE_OK; /* not yet: NCCL calls again */
	RCMOE_CHECK_GOTO(comm_alloc(ctx, 1, out), st, close_transport);
	(*out)->tsend = t;
	return RCMOE_OK;

close_transport:
	rcmoe_core_transport()->close_send(t);
	return st;
}

rcmoe_status_t rcmoe_core_accept(struct rcmoe_listen_comm *l, struct rcmoe_comm **out)
{
	struct rcmoe_trecv *t = NULL;
	rcmoe_status_t st;
	*out = NULL;
	RCMOE_CHECK(rcmoe_core_transport()->accept(l->tlisten, &t));
	if (!t)
		return RCMOE_OK;
	RCMOE_CHECK_GOTO(comm_alloc(l->ctx, 0, out), st, close_transport);
	(*out)->trecv = t;
	return RCMOE_OK;

close_transport:
	rcmoe_core_transport()->close_recv(t);
	return st;
}

rcmoe_status_t rcmoe_core_close(struct rcmoe_comm *c)
{
	rcmoe_status_t st = RCMOE_OK;
	if (!c)
		return RCMOE_OK;
	/* Transfers still in flight (an abort) may be writing into buffers: stop and wait for
	 * them (a transport thread lets go in microseconds, a codec job or GPU copy within its
	 * run time) before anything is freed. */
	rcmoe_core_quiesce(c, NULL);
	if (c->tsend)
		st = rcmoe_core_transport()->close_send(c->tsend);
	if (c->trecv)
		st = rcmoe_core_transport()->close_recv(c->trecv);
	comm_free(c);
	return st;
}

rcmoe_status_t rcmoe_core_close_listen(struct rcmoe_listen_comm *l)
{
	rcmoe_status_t st = RCMOE_OK;
	if (!l)
		return RCMOE_OK;
	if (l->tlisten)
		st = rcmoe_core_transport()->close_listen(l->tlisten);
	free(l);
	return st;
}
