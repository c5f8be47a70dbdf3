/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data path: isend, irecv, test. Runs on NCCL's proxy progress thread, so nothing here
 * blocks or allocates: requests come from each comm's fixed slots, staging from the region's
 * shadow, and GPU work is polled through events.
 *
 * A send of a GPU buffer is first copied to its host shadow (REQ_STAGING), then handed to the
 * transport in sequence order (REQ_WAIT_POST -> REQ_XFER), so messages leave in the order NCCL
 * posted them even when their copies finish out of order. A receive into a GPU buffer lands in
 * the shadow and is copied up (REQ_UNSTAGING) before test reports it done with its size.
 */
#include <string.h>
#include <time.h>

#include "rcmoe/log.h"
#include "core.h"

/* Ask the profiler side, through NCCL, which operation this transfer belongs to. */
static void attribute(struct rcmoe_comm *c, void *phandle, struct rcmoe_msg_info *info)
{
	rcmoe_msg_info_reset(info);
	ncclProfilerCallback_t prof = c->ctx->prof;
	if (!prof || !phandle)
		return;
	void *eh = NULL;
	if (prof(&eh, ncclProfilerNetEventStart, phandle, RCMOE_PROFILER_PLUGIN_ID, info) !=
	    ncclSuccess)
		return;
	if (eh)
		prof(&eh, ncclProfilerNetEventStop, phandle, RCMOE_PROFILER_PLUGIN_ID, NULL);
}

static struct rcmoe_request *req_alloc(struct rcmoe_comm *c)
{
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
		if (c->reqs[i].state == REQ_FREE)
			return &c->reqs[i];
	return NULL;
}

static void req_release(struct rcmoe_request *r)
{
	r->state = REQ_FREE;
	r->treq = NULL;
}

/* Fail the comm for good: NCCL aborts on the error, and nothing more may touch its buffers. */
static rcmoe_status_t comm_fail(struct rcmoe_comm *c, struct rcmoe_request *r, rcmoe_status_t st)
{
	c->failed = st;
	if (r)
		req_release(r);
	return st;
}

static int is_gpu(const struct rcmoe_request *r)
{
	return r->mr && r->mr->type == NCCL_PTR_CUDA;
}

static char *shadow_of(const struct rcmoe_request *r)
{
	return r->mr->host_shadow + (r->data - r->mr->base);
}

static int in_region(const struct rcmoe_mr *mr, const char *data, size_t size)
{
	return !mr || (data >= mr->base && size <= mr->size && (size_t)(data - mr->base) <= mr->size - size);
}

static struct rcmoe_request *req_by_seq(struct rcmoe_comm *c, uint64_t seq)
{
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++) {
		struct rcmoe_request *r = &c->reqs[i];
		if (r->state != REQ_FREE && r->seq == seq)
			return r;
	}
	return NULL;
}

/* Hand staged sends to the transport, strictly in the order they were posted. */
static rcmoe_status_t progress_sends(struct rcmoe_comm *c)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	struct rcmoe_request *r;
	while (c->next_post < c->next_seq && (r = req_by_seq(c, c->next_post)) != NULL) {
		if (r->state == REQ_STAGING) {
			int done;
			rcmoe_status_t st = rcmoe_gpu_poll(&r->ev, &done);
			if (st != RCMOE_OK)
				return comm_fail(c, r, st);
			if (!done)
				return RCMOE_OK;
			r->state = REQ_WAIT_POST;
		}
		if (r->state != REQ_WAIT_POST)
			return RCMOE_OK;
		rcmoe_status_t st = t->isend(c->tsend, r->wire, r->wire_len, 0, r->flags, &r->treq);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		if (!r->treq)
			return RCMOE_OK; /* transport full: try again on the next test */
		r->state = REQ_XFER;
		c->next_post++;
	}
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_isend(struct rcmoe_comm *c, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out)
{
	struct rcmoe_request *r;
	*out = NULL;
	if (c->failed)
		return c->failed;
	if (!in_region(mr, data, size)) {
		RCMOE_WARN("isend: %zu bytes at %p are outside their registration", size, data);
		return RCMOE_ERR_INVALID;
	}
	r = req_alloc(c);
	if (!r)
		return RCMOE_OK; /* NCCL retries */
	r->is_send = 1;
	r->data = data;
	r->size = size;
	r->mr = mr;
	r->flags = 0;
	r->treq = NULL;
	attribute(c, phandle, &r->info);
	(void)tag; /* one request per irecv (maxRecvs = 1): tags select nothing */

	r->wire = data;
	r->wire_len = size;
	r->state = REQ_WAIT_POST;
	if (is_gpu(r) && size > 0) {
		int saved = rcmoe_gpu_capture_relax();
		rcmoe_status_t st = rcmoe_gpu_copy_d2h(shadow_of(r), data, size, &c->stream);
		if (st == RCMOE_OK)
			st = rcmoe_gpu_record(&r->ev, &c->stream);
		rcmoe_gpu_capture_restore(saved);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		r->wire = shadow_of(r);
		r->state = REQ_STAGING;
	}
	r->seq = c->next_seq++;
	RCMOE_CHECK(progress_sends(c));
	*out = r;
	return RCMOE_OK;
}

/* Called by the transport once the next message's length and flags are known. */
static rcmoe_status_t place_recv(void *arg, size_t wire_len, uint32_t flags, void **dest)
{
	struct rcmoe_request *r = arg;
	if (flags & RCMOE_MSG_ENCODED) {
		RCMOE_WARN("received an encoded message, but compression is off on this side");
		return RCMOE_ERR_MALFORMED;
	}
	if (wire_len > r->size) {
		RCMOE_WARN("peer sent %zu bytes into a receive of at most %zu", wire_len, r->size);
		return RCMOE_ERR_OVERFLOW;
	}
	r->wire_len = wire_len;
	r->flags = flags;
	*dest = is_gpu(r) ? shadow_of(r) : r->data;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_irecv(struct rcmoe_comm *c, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out)
{
	struct rcmoe_request *r;
	rcmoe_status_t st;
	*out = NULL;
	if (c->failed)
		return c->failed;
	if (!in_region(mr, data, size)) {
		RCMOE_WARN("irecv: %zu bytes at %p are outside their registration", size, data);
		return RCMOE_ERR_INVALID;
	}
	r = req_alloc(c);
	if (!r)
		return RCMOE_OK;
	r->is_send = 0;
	r->data = data;
	r->size = size;
	r->mr = mr;
	r->wire_len = 0;
	r->flags = 0;
	attribute(c, phandle, &r->info);
	r->state = REQ_XFER;
	st = rcmoe_core_transport()->irecv(c->trecv, size, 0, place_recv, r, &r->treq);
	(void)tag;
	if (st != RCMOE_OK)
		return comm_fail(c, r, st);
	if (!r->treq) {
		req_release(r);
		return RCMOE_OK;
	}
	r->seq = c->next_seq++;
	*out = r;
	return RCMOE_OK;
}

static uint64_t elapsed_s(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - since->tv_sec);
}

/* Counters, and the periodic dump when RCMOE_STATS_INTERVAL asks for one. */
static void account(struct rcmoe_request *r, size_t logical)
{
	struct rcmoe_ctx *ctx = r->comm->ctx;
	const struct rcmoe_params *p = rcmoe_core_params();
	rcmoe_stats_add(&ctx->stats, r->is_send ? RCMOE_DIR_SEND : RCMOE_DIR_RECV, &r->info,
			logical, r->wire_len, 0);
	if (p->stats_interval > 0 && p->stats_file[0] &&
	    elapsed_s(&ctx->last_dump) >= (uint64_t)p->stats_interval) {
		clock_gettime(CLOCK_MONOTONIC, &ctx->last_dump);
		rcmoe_stats_write(&ctx->stats, ctx->comm_id, p->stats_file, "periodic");
	}
}

static rcmoe_status_t finish(struct rcmoe_request *r, int *done, size_t *size)
{
	*done = 1;
	*size = r->is_send ? r->size : r->wire_len;
	account(r, *size);
	req_release(r);
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_test(struct rcmoe_request *r, int *done, size_t *size)
{
	struct rcmoe_comm *c = r->comm;
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	rcmoe_status_t st;
	*done = 0;
	*size = 0;
	if (c->failed)
		return comm_fail(c, r, c->failed);
	if (r->is_send)
		RCMOE_CHECK(progress_sends(c));

	if (r->state == REQ_XFER) {
		int tdone = 0;
		size_t len = 0;
		uint32_t flags = 0;
		st = t->test(r->treq, &tdone, &len, &flags);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		if (!tdone)
			return RCMOE_OK;
		r->treq = NULL;
		if (r->is_send || !is_gpu(r) || r->wire_len == 0)
			return finish(r, done, size);
		int saved = rcmoe_gpu_capture_relax();
		st = rcmoe_gpu_copy_h2d(r->data, shadow_of(r), r->wire_len, &c->stream);
		if (st == RCMOE_OK)
			st = rcmoe_gpu_record(&r->ev, &c->stream);
		rcmoe_gpu_capture_restore(saved);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		r->state = REQ_UNSTAGING;
	}
	if (r->state == REQ_UNSTAGING) {
		int gdone;
		st = rcmoe_gpu_poll(&r->ev, &gdone);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		if (gdone)
			return finish(r, done, size);
	}
	return RCMOE_OK;
}
