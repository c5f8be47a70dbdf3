/* SPDX-License-Identifier: Apache-2.0 */
/* Connection setup and teardown: wraps the transport's comms with the core's request slots and
 * GPU stream/events (created here, on NCCL's service thread, never on the data path). */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "core.h"

static void comm_free(struct rcmoe_comm *c)
{
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
		rcmoe_gpu_event_destroy(&c->reqs[i].ev);
	rcmoe_gpu_stream_destroy(&c->stream);
	free(c);
}

static rcmoe_status_t comm_alloc(struct rcmoe_ctx *ctx, int is_send, struct rcmoe_comm **out)
{
	rcmoe_status_t st = RCMOE_OK;
	struct rcmoe_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return RCMOE_ERR_NOMEM;
	c->is_send = is_send;
	c->ctx = ctx ? ctx : rcmoe_core_default_ctx();
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
		c->reqs[i].comm = c;
	if (rcmoe_core_props_cuda()) {
		RCMOE_CHECK_GOTO(rcmoe_gpu_stream_create(&c->stream), st, free_comm);
		for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
			RCMOE_CHECK_GOTO(rcmoe_gpu_event_create(&c->reqs[i].ev), st, free_comm);
	}
	*out = c;
	return RCMOE_OK;

free_comm:
	comm_free(c);
	return st;
}

rcmoe_status_t rcmoe_core_listen(struct rcmoe_ctx *ctx, int dev, void *handle,
				 struct rcmoe_listen_comm **out)
{
	rcmoe_status_t st;
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
