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
 *
 * With compression on (policy.h), an eligible send is LSQ-encoded into the region's shadow: on
 * the CPU for host buffers, by the GPU encoder for GPU buffers (REQ_ENCODING; its length is in
 * the stream's header once the kernel is done). It is sent with RCMOE_MSG_ENCODED only when it
 * is shorter than the raw bytes. The receiver places encoded messages in its shadow, validates
 * the whole stream on the CPU, then decodes into NCCL's buffer (CPU, or GPU kernel) and reports
 * the original size.
 */
#include <string.h>
#include <time.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "core.h"
#include "policy.h"
#ifdef RCMOE_HAVE_CUDA
#include "rcmoe/kernels.h"
#endif

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

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
	return r->mr->host_shadow + (size_t)(r->data - r->mr->base) * r->mr->shadow_factor;
}

/* Room the shadow has for this transfer's wire bytes. */
static size_t shadow_room(const struct rcmoe_request *r)
{
	return r->size * r->mr->shadow_factor;
}

static int in_region(const struct rcmoe_mr *mr, const char *data, size_t size)
{
	return !mr || (data >= mr->base && size <= mr->size &&
		       (size_t)(data - mr->base) <= mr->size - size);
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

/* Has the GPU work recorded for this request finished? (A query: never blocks.) */
static rcmoe_status_t poll_event(struct rcmoe_comm *c, struct rcmoe_request *r, int *done)
{
	struct rcmoe_gpu_scope g;
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_poll(&r->ev, done);
	rcmoe_gpu_leave(&g);
	return st;
}

/* After GPU work was enqueued in the plugin's context (st: how that went): record the
 * request's event behind it, and leave the context. */
static rcmoe_status_t record_and_leave(struct rcmoe_comm *c, struct rcmoe_request *r,
				       struct rcmoe_gpu_scope *g, rcmoe_status_t st)
{
	if (st == RCMOE_OK)
		st = rcmoe_gpu_record(&r->ev, &c->stream);
	rcmoe_gpu_leave(g);
	return st;
}

/* Launch the raw device -> shadow copy of a GPU send. */
static rcmoe_status_t stage_raw(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_gpu_scope g;
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_copy_d2h(shadow_of(r), r->data, r->size, &c->stream);
	st = record_and_leave(c, r, &g, st);
	r->wire = shadow_of(r);
	r->wire_len = r->size;
	r->flags = 0;
	r->state = REQ_STAGING;
	return st;
}

/* A CPU encode finished? Send its stream if it is shorter than the raw bytes, else the raw
 * bytes from NCCL's buffer. */
static rcmoe_status_t cpu_encoded_ready(struct rcmoe_request *r)
{
	if (!rcmoe_cpu_job_done(&r->job))
		return RCMOE_OK;
	r->codec_ns = r->job.ns;
	if (r->job.status != RCMOE_OK) {
		RCMOE_WARN("LSQ encode of %zu bytes failed: %s", r->size,
			   rcmoe_status_str(r->job.status));
		return r->job.status;
	}
	if (r->job.out_len < r->size) {
		r->wire = shadow_of(r);
		r->wire_len = r->job.out_len;
		r->flags = RCMOE_MSG_ENCODED;
	}
	r->state = REQ_WAIT_POST;
	return RCMOE_OK;
}

/* A GPU encode finished? Then send its stream if it is shorter than the raw bytes, else stage
 * the raw bytes instead (incompressible data: NaN/Inf blocks). */
static rcmoe_status_t encoded_ready(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_wire_header hdr;
	int done;
	if (r->on_cpu)
		return cpu_encoded_ready(r);
	RCMOE_CHECK(poll_event(c, r, &done));
	if (!done)
		return RCMOE_OK;
	r->codec_ns = now_ns() - r->codec_start_ns;
	rcmoe_status_t st = rcmoe_wire_parse(shadow_of(r), shadow_room(r), &hdr);
	if (st != RCMOE_OK) {
		RCMOE_WARN("GPU encoder wrote an invalid stream (%s)", rcmoe_status_str(st));
		return RCMOE_ERR_INTERNAL;
	}
	size_t len = RCMOE_WIRE_HEADER_BYTES + hdr.payload_len;
	if (len < r->size) {
		r->wire = shadow_of(r);
		r->wire_len = len;
		r->flags = RCMOE_MSG_ENCODED;
		r->state = REQ_WAIT_POST;
		return RCMOE_OK;
	}
	return stage_raw(c, r);
}

/* Hand staged sends to the transport, strictly in the order they were posted. */
static rcmoe_status_t progress_sends(struct rcmoe_comm *c)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	struct rcmoe_request *r;
	while (c->next_post < c->next_seq && (r = req_by_seq(c, c->next_post)) != NULL) {
		if (r->state == REQ_ENCODING) {
			rcmoe_status_t st = encoded_ready(c, r);
			if (st != RCMOE_OK)
				return comm_fail(c, r, st);
			if (r->state == REQ_ENCODING)
				return RCMOE_OK;
		}
		if (r->state == REQ_STAGING) {
			int done;
			rcmoe_status_t st = poll_event(c, r, &done);
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

/* Host buffers: encode on this thread with the CPU codec (the reference itself). */
static rcmoe_status_t encode_cpu(struct rcmoe_request *r, const struct rcmoe_lsq_cfg *cfg)
{
	static atomic_int told;
	if (!atomic_exchange(&told, 1))
		RCMOE_INFO(NCCL_NET, "compressing host buffers on the CPU (RCMOE_CPU_CODEC_THREADS "
				     "workers); under MPS (or with RCMOE_CUDA_BUFFERS=on) the codec "
				     "runs on the GPU");
	struct rcmoe_cpu_job *job = &r->job;
	job->kind = RCMOE_JOB_ENCODE;
	job->in = r->data;
	job->in_len = r->size / rcmoe_dtype_size(cfg->dtype);
	job->out = shadow_of(r);
	job->out_cap = shadow_room(r);
	job->cfg = *cfg;
	r->on_cpu = 1;
	r->state = REQ_ENCODING;
	rcmoe_cpu_job_submit(job);
	return RCMOE_OK;
}

/* GPU buffers: the encoder writes the stream straight into the mapped shadow. */
static rcmoe_status_t encode_gpu(struct rcmoe_comm *c, struct rcmoe_request *r,
				 const struct rcmoe_lsq_cfg *cfg)
{
#ifdef RCMOE_HAVE_CUDA
	size_t n = r->size / rcmoe_dtype_size(cfg->dtype);
	struct rcmoe_gpu_scope g;
	r->codec_start_ns = now_ns();
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_lsq_encode(r->data, n, cfg, shadow_of(r), shadow_room(r),
					  c->gpu_work, c->gpu_work_bytes,
					  (cudaStream_t)c->stream.handle);
	st = record_and_leave(c, r, &g, st);
	if (st != RCMOE_OK) {
		RCMOE_WARN("GPU LSQ encode of %zu bytes failed: %s", r->size, rcmoe_status_str(st));
		return st;
	}
	r->state = REQ_ENCODING;
	return RCMOE_OK;
#else
	return RCMOE_ERR_UNSUPPORTED;
#endif
}

/* What isend and irecv share: refuse on a failed comm or a transfer outside its registration,
 * take a free request slot (*out stays NULL when none is free: NCCL retries), reset it and
 * attribute the transfer. */
static rcmoe_status_t req_start(struct rcmoe_comm *c, int is_send, void *data, size_t size,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out)
{
	struct rcmoe_request *r;
	*out = NULL;
	if (c->failed)
		return c->failed;
	if (!in_region(mr, data, size)) {
		RCMOE_WARN("%s: %zu bytes at %p are outside their registration",
			   is_send ? "isend" : "irecv", size, data);
		return RCMOE_ERR_INVALID;
	}
	r = req_alloc(c);
	if (!r)
		return RCMOE_OK;
	r->is_send = is_send;
	r->data = data;
	r->size = size;
	r->mr = mr;
	r->flags = 0;
	r->treq = NULL;
	r->wire_len = 0;
	r->codec_ns = 0;
	r->codec_start_ns = 0;
	r->on_cpu = 0;
	attribute(c, phandle, &r->info);
	*out = r;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_isend(struct rcmoe_comm *c, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out)
{
	struct rcmoe_request *r;
	*out = NULL;
	(void)tag; /* one request per irecv (maxRecvs = 1): tags select nothing */
	rcmoe_status_t st = req_start(c, 1, data, size, mr, phandle, &r);
	if (st != RCMOE_OK || !r)
		return st;
	r->wire = data;
	r->wire_len = size;
	r->state = REQ_WAIT_POST;
	struct rcmoe_lsq_cfg cfg;
	int encode = rcmoe_core_compressing() && mr &&
		     rcmoe_policy_lsq(rcmoe_core_params(), &r->info,
				      atomic_load_explicit(&c->ctx->attr_op, memory_order_relaxed),
				      size, c->next_seq, &cfg);
	/* The encoder needs room for its worst case (raw blocks plus header) in the shadow. */
	if (encode && rcmoe_lsq_bound(size / rcmoe_dtype_size(cfg.dtype), &cfg) > shadow_room(r))
		encode = 0;
	if (encode && is_gpu(r))
		st = encode_gpu(c, r, &cfg);
	else if (encode)
		st = encode_cpu(r, &cfg);
	else if (is_gpu(r) && size > 0)
		st = stage_raw(c, r);
	if (st != RCMOE_OK)
		return comm_fail(c, r, st);
	r->seq = c->next_seq++;
	RCMOE_CHECK(progress_sends(c));
	*out = r;
	return RCMOE_OK;
}

/* Called by the transport once the next message's length and flags are known. */
static rcmoe_status_t place_recv(void *arg, size_t wire_len, uint32_t flags, void **dest)
{
	struct rcmoe_request *r = arg;
	if (wire_len > r->size) {
		RCMOE_WARN("peer sent %zu bytes into a receive of at most %zu", wire_len, r->size);
		return RCMOE_ERR_OVERFLOW;
	}
	if ((flags & RCMOE_MSG_ENCODED) && !(r->mr && r->mr->shadow_factor == 2)) {
		RCMOE_WARN(
			"peer sent a compressed message, but RCMOE_A2A_BITS=0 here: set the same "
			"RCMOE_* variables on every rank");
		return RCMOE_ERR_USAGE;
	}
	r->wire_len = wire_len;
	r->flags = flags;
	*dest = (is_gpu(r) || (flags & RCMOE_MSG_ENCODED)) ? shadow_of(r) : r->data;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_irecv(struct rcmoe_comm *c, void *data, size_t size, int tag,
				struct rcmoe_mr *mr, void *phandle, struct rcmoe_request **out)
{
	struct rcmoe_request *r;
	rcmoe_status_t st;
	*out = NULL;
	(void)tag;
	st = req_start(c, 0, data, size, mr, phandle, &r);
	if (st != RCMOE_OK || !r)
		return st;
	r->state = REQ_XFER;
	st = rcmoe_core_transport()->irecv(c->trecv, size, 0, place_recv, r, &r->treq);
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
			logical, r->wire_len, r->codec_ns);
	if (p->stats_interval > 0 && p->stats_file[0] &&
	    elapsed_s(&ctx->last_dump) >= (uint64_t)p->stats_interval) {
		clock_gettime(CLOCK_MONOTONIC, &ctx->last_dump);
		rcmoe_stats_write(&ctx->stats, ctx->comm_id, p->stats_file, "periodic");
	}
}

static rcmoe_status_t finish(struct rcmoe_request *r, int *done, size_t *size)
{
	*done = 1;
	*size = r->is_send ? r->size : r->result;
	account(r, *size);
	req_release(r);
	return RCMOE_OK;
}

/* Raw bytes landed in the shadow of a GPU buffer: copy them up. */
static rcmoe_status_t unstage_raw(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_gpu_scope g;
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_copy_h2d(r->data, shadow_of(r), r->wire_len, &c->stream);
	st = record_and_leave(c, r, &g, st);
	r->state = REQ_UNSTAGING;
	return st;
}

/* An encoded message is in the shadow: validate all of it here, then decode into NCCL's buffer
 * (CPU for host buffers, GPU kernel reading the mapped shadow for GPU buffers). */
static rcmoe_status_t decode(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_wire_header hdr;
	const char *src = shadow_of(r);
	rcmoe_status_t st = rcmoe_codec_validate(src, r->wire_len, r->size, &hdr);
	if (st != RCMOE_OK) {
		RCMOE_WARN("refused a compressed message of %zu bytes for a %zu-byte receive: %s",
			   r->wire_len, r->size, rcmoe_status_str(st));
		return st;
	}
	size_t out = hdr.codec == RCMOE_CODEC_DEDUP ? hdr.count
						    : hdr.count * rcmoe_dtype_size(hdr.dtype);
	r->result = out;
	if (!is_gpu(r)) {
		struct rcmoe_cpu_job *job = &r->job;
		job->kind = RCMOE_JOB_DECODE;
		job->in = src;
		job->in_len = r->wire_len;
		job->out = r->data;
		job->out_cap = r->size;
		r->on_cpu = 1;
		r->state = REQ_UNSTAGING;
		rcmoe_cpu_job_submit(job);
		return RCMOE_OK;
	}
#ifdef RCMOE_HAVE_CUDA
	if (rcmoe_gpu_decode_work_bytes(&hdr) > c->gpu_work_bytes) {
		RCMOE_WARN("compressed message needs more GPU scratch than allocated");
		return RCMOE_ERR_OVERFLOW;
	}
	struct rcmoe_gpu_scope g;
	r->codec_start_ns = now_ns();
	st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_decode(src, &hdr, r->data, r->size, c->gpu_work,
				      c->gpu_work_bytes, (cudaStream_t)c->stream.handle);
	st = record_and_leave(c, r, &g, st);
	if (st != RCMOE_OK)
		RCMOE_WARN("GPU decode failed: %s", rcmoe_status_str(st));
	r->state = REQ_UNSTAGING;
	return st;
#else
	return RCMOE_ERR_UNSUPPORTED;
#endif
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
		r->result = r->wire_len;
		st = RCMOE_OK;
		if (r->is_send)
			return finish(r, done, size);
		if (r->flags & RCMOE_MSG_ENCODED)
			st = decode(c, r);
		else if (is_gpu(r) && r->wire_len > 0)
			st = unstage_raw(c, r);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		if (r->state != REQ_UNSTAGING)
			return finish(r, done, size);
	}
	if (r->state == REQ_UNSTAGING && r->on_cpu) {
		if (!rcmoe_cpu_job_done(&r->job))
			return RCMOE_OK;
		r->codec_ns = r->job.ns;
		st = r->job.status;
		if (st == RCMOE_OK && r->job.out_len != r->result)
			st = RCMOE_ERR_INTERNAL;
		if (st != RCMOE_OK) {
			RCMOE_WARN("decode of a validated stream failed: %s", rcmoe_status_str(st));
			return comm_fail(c, r, st);
		}
		return finish(r, done, size);
	}
	if (r->state == REQ_UNSTAGING) {
		int gdone;
		st = poll_event(c, r, &gdone);
		if (st != RCMOE_OK)
			return comm_fail(c, r, st);
		if (gdone) {
			if (r->codec_start_ns)
				r->codec_ns = now_ns() - r->codec_start_ns;
			return finish(r, done, size);
		}
	}
	return RCMOE_OK;
}
