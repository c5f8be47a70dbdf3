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
 * With compression on, an eligible send is encoded into the region's shadow through the encode
 * plan the policy chose for it (policy.h: which codec, its configuration, its bound, scratch and
 * entry points; nothing here knows which codec it is): on the CPU for host buffers, by the GPU
 * encoder for GPU buffers (REQ_ENCODING; its length is in the stream's header once the kernel is
 * done). It is sent with RCMOE_MSG_ENCODED only when it is shorter than the raw bytes. The
 * receiver places encoded messages in its shadow, validates the whole stream on the CPU, then
 * decodes into NCCL's buffer (CPU, or GPU kernel) and reports the original size.
 *
 * With RCMOE_A2A_DEDUP=on a plan may also dedup a host-buffer send against its connection's
 * window (a2a_dedup.h). Such a window is read and written by every message, so these encodes
 * start only when the send is the next to hand to the transport, and such decodes only when no
 * earlier receive of the connection may still hold one (REQ_WAIT_DECODE): one at a time, in
 * the connection's order, on the CPU codec workers.
 *
 * A transport that needs each receive's destination before its message arrives
 * (needs_posted_dest: RDMA writes) is given it at irecv (posted_landing), before anyone knows
 * whether the message will be encoded: a GPU receive's shadow, which takes either; else the
 * shadow when the policy says the receive may get a stream, NCCL's buffer when it surely gets
 * raw bytes. A guess that proves wrong costs one copy, never correctness (received): raw bytes
 * in a host receive's shadow are copied down by a CPU codec worker, a stream that landed in
 * NCCL's buffer is copied into the shadow and decoded from there.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "core.h"
#include "policy.h"

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

/* Fail the comm for good (the first error sticks): NCCL aborts on it. The transport is told
 * to stop moving bytes at once; each request then reports the failure only once nothing can
 * write into its buffers any more (req_quiet), so NCCL never frees or reuses a buffer that a
 * transport worker, a codec worker or a GPU copy of ours is still filling. */
static rcmoe_status_t comm_fail_why(struct rcmoe_comm *c, rcmoe_status_t st, const char *why)
{
	if (c->failed)
		return c->failed;
	c->failed = st;
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (c->tsend)
		t->abort_send(c->tsend, st, why);
	if (c->trecv)
		t->abort_recv(c->trecv, st, why);
	return st;
}

static rcmoe_status_t comm_fail(struct rcmoe_comm *c, rcmoe_status_t st)
{
	return comm_fail_why(c, st, "the plugin failed this connection (see the warning before)");
}

static int is_gpu(const struct rcmoe_request *r)
{
	return r->mr && r->mr->type == NCCL_PTR_CUDA;
}

static char *shadow_of(const struct rcmoe_request *r)
{
	return r->mr->host_shadow + (size_t)(r->data - r->mr->base) * r->mr->shadow_factor;
}

/* The transport's registration of the host bytes at p, which are NCCL's buffer or the shadow
 * of this transfer (mr.c registered both); NULL when the transfer has no registered region. */
static struct rcmoe_tmr *tmr_of(const struct rcmoe_request *r, const char *p)
{
	if (!r->mr)
		return NULL;
	return p == r->data ? r->mr->t_data : r->mr->t_shadow;
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

/* Every copy and kernel launch that writes checks its length against the buffer it writes
 * first. A length that does not fit is a plugin bug or a peer out of step; it must end as an
 * NCCL error naming the message, never as a write past a buffer (on the GPU, a fault that takes
 * down every process sharing the device). */
static rcmoe_status_t check_fits(const struct rcmoe_request *r, const char *what, size_t len,
				 size_t room)
{
	if (len <= room)
		return RCMOE_OK;
	RCMOE_WARN("%s for message %llu (%s of %s, %zu bytes) needs %zu bytes, its destination "
		   "holds %zu: refused",
		   what, (unsigned long long)r->seq, rcmoe_func_name(r->info.func),
		   rcmoe_dtype_name(r->info.dtype), r->size, len, room);
	return RCMOE_ERR_OVERFLOW;
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
	if (st == RCMOE_OK && *done)
		r->gpu_pending = 0;
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
	/* Whatever was enqueued before a failure may still run: a failed comm waits for the
	 * event (or, if even recording failed, for the whole stream at close). */
	r->gpu_pending = 1;
	return st;
}

/* Launch the raw device -> shadow copy of a GPU send. */
static rcmoe_status_t stage_raw(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_gpu_scope g;
	RCMOE_CHECK(check_fits(r, "staging copy", r->size, shadow_room(r)));
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

/* The encoder's stream in the shadow must be this request's: its header decodes to exactly the
 * request's bytes and carries the request's sequence number as its operation id. Anything else
 * (a stale stream, a short write) is a plugin bug that must not reach the wire. */
static rcmoe_status_t check_encoded(const struct rcmoe_request *r, size_t *len)
{
	struct rcmoe_wire_header hdr;
	rcmoe_status_t st = rcmoe_wire_parse(shadow_of(r), shadow_room(r), &hdr);
	if (st != RCMOE_OK) {
		RCMOE_WARN("the encoder left no valid stream for message %llu (%zu bytes): %s",
			   (unsigned long long)r->seq, r->size, rcmoe_status_str(st));
		return RCMOE_ERR_INTERNAL;
	}
	if (hdr.op_id != r->seq || rcmoe_wire_decoded_bytes(&hdr) != r->size ||
	    RCMOE_WIRE_HEADER_BYTES + hdr.payload_len > shadow_room(r)) {
		RCMOE_WARN("the encoded stream for message %llu (%zu bytes) is another's: op %llu, "
			   "%llu x %s, %llu payload bytes",
			   (unsigned long long)r->seq, r->size, (unsigned long long)hdr.op_id,
			   (unsigned long long)hdr.count, rcmoe_dtype_name(hdr.dtype),
			   (unsigned long long)hdr.payload_len);
		return RCMOE_ERR_INTERNAL;
	}
	*len = RCMOE_WIRE_HEADER_BYTES + hdr.payload_len;
	return RCMOE_OK;
}

/* Dedup counters of a message coded against its comm's window. */
static void count_dedup(struct rcmoe_request *r, uint64_t blocks, uint64_t dups, uint64_t saved)
{
	rcmoe_stats_add_dedup(&r->comm->ctx->stats, r->is_send ? RCMOE_DIR_SEND : RCMOE_DIR_RECV,
			      &r->info, blocks, dups, saved);
}

/* A CPU encode finished? Send its stream if it is shorter than the raw bytes, else the raw
 * bytes from NCCL's buffer. (A window-dedup encode is started here, in order.) */
static rcmoe_status_t cpu_encoded_ready(struct rcmoe_request *r)
{
	if (r->dd_pending) {
		r->dd_pending = 0;
		rcmoe_a2a_dedup_encode_job(r->comm->dedup, &r->job, &r->wd, r->data, r->size,
					   shadow_of(r), shadow_room(r));
		rcmoe_cpu_job_submit(&r->job);
	}
	if (!rcmoe_cpu_job_done(&r->job))
		return RCMOE_OK;
	r->codec_ns = r->job.ns;
	if (r->job.status != RCMOE_OK) {
		RCMOE_WARN("%s encode of %zu bytes failed: %s", rcmoe_codec_name(r->job.cfg.codec),
			   r->size, rcmoe_status_str(r->job.status));
		return r->job.status;
	}
	if (r->job.out_len < r->size) {
		size_t len;
		RCMOE_CHECK(check_encoded(r, &len));
		if (len != r->job.out_len) {
			RCMOE_WARN(
				"CPU encoder reported %zu bytes for message %llu, its header %zu",
				r->job.out_len, (unsigned long long)r->seq, len);
			return RCMOE_ERR_INTERNAL;
		}
		r->wire = shadow_of(r);
		r->wire_len = len;
		r->flags = RCMOE_MSG_ENCODED;
	}
	if (r->dd_job) {
		const struct rcmoe_wdedup_tx *tx = &r->comm->dedup->tx;
		count_dedup(r, tx->last_blocks, tx->last_duplicates, tx->last_saved_bytes);
	}
	r->state = REQ_WAIT_POST;
	return RCMOE_OK;
}

/* A GPU encode finished? Then send its stream if it is shorter than the raw bytes, else stage
 * the raw bytes instead (incompressible data: NaN/Inf blocks). */
static rcmoe_status_t encoded_ready(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	int done;
	if (r->on_cpu)
		return cpu_encoded_ready(r);
	RCMOE_CHECK(poll_event(c, r, &done));
	if (!done)
		return RCMOE_OK;
	r->codec_ns = now_ns() - r->codec_start_ns;
	size_t len;
	RCMOE_CHECK(check_encoded(r, &len));
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
			RCMOE_CHECK(encoded_ready(c, r));
			if (r->state == REQ_ENCODING)
				return RCMOE_OK;
		}
		if (r->state == REQ_STAGING) {
			int done;
			RCMOE_CHECK(poll_event(c, r, &done));
			if (!done)
				return RCMOE_OK;
			r->state = REQ_WAIT_POST;
		}
		if (r->state != REQ_WAIT_POST)
			return RCMOE_OK;
		RCMOE_CHECK(t->isend(c->tsend, r->wire, r->wire_len, tmr_of(r, r->wire), 0,
				     r->flags, &r->treq));
		if (!r->treq)
			return RCMOE_OK; /* transport full: try again on the next test */
		r->state = REQ_XFER;
		c->next_post++;
	}
	return RCMOE_OK;
}

/* Hand r's job to the CPU codec workers: `kind` from `in` to `out`; the request waits in `state`
 * (REQ_ENCODING or REQ_UNSTAGING) until the job is done. The caller sets what the kind needs
 * beyond that (the encoder and its settings, or the function to call). */
static void cpu_job_start(struct rcmoe_request *r, int kind, const void *in, size_t in_len,
			  void *out, size_t out_cap, enum rcmoe_req_state state)
{
	struct rcmoe_cpu_job *job = &r->job;
	job->kind = kind;
	job->in = in;
	job->in_len = in_len;
	job->out = out;
	job->out_cap = out_cap;
	r->on_cpu = 1;
	r->state = state;
	rcmoe_cpu_job_submit(job);
}

/* Host buffers: the plan's CPU encoder (the reference itself), on a CPU codec worker. */
static rcmoe_status_t encode_cpu(struct rcmoe_request *r, const struct rcmoe_encode_plan *plan)
{
	static atomic_int told;
	if (!atomic_exchange(&told, 1))
		RCMOE_INFO(NCCL_NET,
			   "compressing host buffers on the CPU (RCMOE_CPU_CODEC_THREADS "
			   "workers); under MPS (or with RCMOE_CUDA_BUFFERS=on) the codec "
			   "runs on the GPU");
	r->job.encode = plan->cpu_encode;
	r->job.cfg = plan->cfg;
	cpu_job_start(r, RCMOE_JOB_ENCODE, r->data, plan->n, shadow_of(r), shadow_room(r),
		      REQ_ENCODING);
	return RCMOE_OK;
}

/* Host buffers, against the comm's dedup window: queued now, started by progress_sends once
 * every earlier send has been posted (their window updates are done by then). */
static rcmoe_status_t encode_dedup(struct rcmoe_request *r, const struct rcmoe_encode_plan *plan)
{
	r->wd = plan->wd;
	r->job.cfg.codec = RCMOE_CODEC_WDEDUP;
	r->on_cpu = 1;
	r->dd_job = 1;
	r->dd_pending = 1;
	r->state = REQ_ENCODING;
	return RCMOE_OK;
}

/* GPU buffers: the encoder writes the stream straight into the mapped shadow. */
static rcmoe_status_t encode_gpu(struct rcmoe_comm *c, struct rcmoe_request *r,
				 const struct rcmoe_encode_plan *plan)
{
	struct rcmoe_gpu_scope g;
	RCMOE_CHECK(check_fits(r, "GPU encode scratch", plan->gpu_work, c->gpu_work_bytes));
	r->codec_start_ns = now_ns();
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = plan->gpu_encode(&plan->cfg, r->data, plan->n, shadow_of(r), shadow_room(r),
				      c->gpu_work, c->gpu_work_bytes, &c->stream);
	st = record_and_leave(c, r, &g, st);
	if (st != RCMOE_OK) {
		RCMOE_WARN("GPU %s encode of %zu bytes failed: %s",
			   rcmoe_codec_name(plan->cfg.codec), r->size, rcmoe_status_str(st));
		return st;
	}
	r->state = REQ_ENCODING;
	return RCMOE_OK;
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
	r->gpu_pending = 0;
	r->dd_job = 0;
	r->dd_pending = 0;
	r->landing = NULL;
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
	/* Numbered before any work starts: the encoder stamps it into the stream as its
	 * operation id, and every check names the message by it. */
	r->seq = c->next_seq++;
	struct rcmoe_encode_plan plan;
	int encode = rcmoe_core_compressing() && mr &&
		     rcmoe_policy_plan(rcmoe_core_params(), &r->info,
				       atomic_load_explicit(&c->ctx->attr_op, memory_order_relaxed),
				       size, r->seq, &plan);
	/* Window dedup runs on host buffers only (a2a_dedup.h); a GPU buffer takes the stateless
	 * codec when there is one. */
	int dedup = encode && plan.dedup && c->dedup && !is_gpu(r) &&
		    plan.dedup_bound <= shadow_room(r);
	/* The encoder needs room for its worst case (e.g. raw blocks plus header) in the shadow;
	 * the encoders check that cap again before they write. */
	if (encode && !dedup && (!plan.stateless || plan.bound > shadow_room(r)))
		encode = 0;
	if (dedup)
		st = encode_dedup(r, &plan);
	else if (encode && is_gpu(r))
		st = encode_gpu(c, r, &plan);
	else if (encode)
		st = encode_cpu(r, &plan);
	else if (is_gpu(r) && size > 0)
		st = stage_raw(c, r);
	if (st == RCMOE_OK)
		st = progress_sends(c);
	if (st != RCMOE_OK)
		return comm_fail(c, st); /* NCCL aborts: the slot is never handed out */
	*out = r;
	return RCMOE_OK;
}

/* May a message of wire_len bytes with these flags go into receive r? */
static rcmoe_status_t check_arrival(const struct rcmoe_request *r, size_t wire_len, uint32_t flags)
{
	if (wire_len > r->size) {
		RCMOE_WARN("peer sent %zu bytes into a receive of at most %zu", wire_len, r->size);
		return RCMOE_ERR_OVERFLOW;
	}
	if ((flags & RCMOE_MSG_ENCODED) && !(r->mr && r->mr->shadow_factor == 2)) {
		RCMOE_WARN(
			"peer sent a compressed message, but compression is off here "
			"(RCMOE_A2A_BITS=0, RCMOE_A2A_DEDUP=off): set the same RCMOE_* variables "
			"on every rank");
		return RCMOE_ERR_USAGE;
	}
	return RCMOE_OK;
}

/*
 * Where a receive lands when its destination must be given before the message is known
 * (needs_posted_dest). It must hold anything the receive may get: raw bytes up to its size, or
 * a stream, which is never longer (a sender encodes only when the stream is shorter than the
 * raw bytes, and a send is never longer than its receive). A GPU receive's shadow takes both,
 * as it does with sockets. A host receive without a shadow (compression off here) gets raw
 * bytes only. Otherwise it is a guess, since a wrong one costs a copy (received):
 *  - the shadow, where a stream decodes from with no copy, and raw bytes cost a copy of the
 *    whole message (a CPU codec worker, off the proxy thread) into NCCL's buffer;
 *  - NCCL's buffer, where raw bytes need nothing, and a stream costs a copy of the stream
 *    (half the raw bytes or less with LSQ) into the shadow on the proxy thread, which reads
 *    the stream once anyway to validate it.
 * So the shadow whenever the policy says this receive may get a stream (also when its
 * attribution is unknown: a stream then never lands in NCCL's buffer, which a peer's refused
 * stream would spoil), NCCL's buffer when it surely cannot: another datatype or function
 * (all-reduce's ring steps, integers), or shorter than RCMOE_MIN_BYTES.
 */
static char *posted_landing(const struct rcmoe_request *r)
{
	if (!r->mr)
		return r->data; /* unregistered: a transport that posts ahead refuses it */
	if (is_gpu(r))
		return shadow_of(r);
	if (!r->mr->host_shadow)
		return r->data;
	uint32_t op = atomic_load_explicit(&r->comm->ctx->attr_op, memory_order_relaxed);
	return rcmoe_policy_may_receive_encoded(rcmoe_core_params(), &r->info, op, r->size)
		       ? shadow_of(r)
		       : r->data;
}

/* Called by the transport before any byte of the message is written: once its length and
 * flags are known (sockets), or at irecv with RCMOE_PLACE_ANY (needs_posted_dest). */
static rcmoe_status_t place_recv(void *arg, size_t wire_len, uint32_t flags, void **dest,
				 struct rcmoe_tmr **tmr)
{
	struct rcmoe_request *r = arg;
	if (flags == RCMOE_PLACE_ANY) {
		r->landing = posted_landing(r);
	} else {
		RCMOE_CHECK(check_arrival(r, wire_len, flags));
		r->wire_len = wire_len;
		r->flags = flags;
		r->landing = (is_gpu(r) || (flags & RCMOE_MSG_ENCODED)) ? shadow_of(r) : r->data;
	}
	*dest = r->landing;
	*tmr = tmr_of(r, r->landing);
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
	if (st != RCMOE_OK) {
		req_release(r); /* the transport took nothing */
		return comm_fail(c, st);
	}
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
	RCMOE_CHECK(check_fits(r, "copy to the GPU", r->wire_len, r->size));
	rcmoe_status_t st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_copy_h2d(r->data, shadow_of(r), r->wire_len, &c->stream);
	st = record_and_leave(c, r, &g, st);
	r->state = REQ_UNSTAGING;
	return st;
}

/* May r's window-dedup stream be decoded now? Not while an earlier receive of the comm may
 * still hold one that is not decoded yet: the window must take the messages in order. */
static int dedup_turn(const struct rcmoe_comm *c, const struct rcmoe_request *r)
{
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++) {
		const struct rcmoe_request *q = &c->reqs[i];
		if (q == r || q->state == REQ_FREE || q->seq >= r->seq)
			continue;
		if (q->state == REQ_XFER || q->state == REQ_WAIT_DECODE ||
		    (q->state == REQ_UNSTAGING && q->dd_job))
			return 0;
	}
	return 1;
}

/* A window-dedup stream, on its turn: validated against the comm's window here (a stream the
 * window refuses is never decoded), then decoded by a CPU worker, which updates the window. */
static rcmoe_status_t decode_dedup(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_wire_header hdr;
	const char *src = shadow_of(r), *why = NULL;
	if (!dedup_turn(c, r))
		return RCMOE_OK;
	if (!c->dedup || is_gpu(r)) {
		RCMOE_WARN("refused deduplicated message %llu of %zu bytes: %s; set the same "
			   "RCMOE_* variables on every rank",
			   (unsigned long long)r->seq, r->wire_len,
			   c->dedup ? "window dedup runs on host buffers only, and this receive is "
				      "a GPU buffer (RCMOE_CUDA_BUFFERS)"
				    : "RCMOE_A2A_DEDUP=off here");
		return RCMOE_ERR_USAGE;
	}
	rcmoe_status_t st =
		rcmoe_wdedup_validate(&c->dedup->rx, src, r->wire_len, r->size, &hdr, &why);
	if (st != RCMOE_OK) {
		RCMOE_WARN("refused deduplicated message %llu of %zu bytes for a %zu-byte receive "
			   "(%s %s from peer %d): %s: %s; nothing decoded",
			   (unsigned long long)r->seq, r->wire_len, r->size,
			   rcmoe_func_name(r->info.func), rcmoe_dtype_name(r->info.dtype),
			   r->info.peer, rcmoe_status_str(st), why ? why : "-");
		return st;
	}
	r->result = rcmoe_wire_decoded_bytes(&hdr);
	/* the stream fills at most the first half of the shadow (it is shorter than the receive):
	 * the second half holds the decoded literal blocks */
	rcmoe_a2a_dedup_decode_job(c->dedup, &r->job, src, r->wire_len, r->data, r->size,
				   shadow_of(r) + r->size, shadow_room(r) - r->size);
	r->on_cpu = 1;
	r->dd_job = 1;
	r->state = REQ_UNSTAGING;
	rcmoe_cpu_job_submit(&r->job);
	return RCMOE_OK;
}

/* An encoded message is in the shadow: validate all of it here, then decode into NCCL's buffer
 * (CPU for host buffers, GPU kernel reading the mapped shadow for GPU buffers). */
static rcmoe_status_t decode(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	struct rcmoe_wire_header hdr;
	const char *src = shadow_of(r);
	if (rcmoe_wire_parse(src, r->wire_len, &hdr) == RCMOE_OK &&
	    hdr.codec == RCMOE_CODEC_WDEDUP) {
		r->state = REQ_WAIT_DECODE;
		return decode_dedup(c, r);
	}
	rcmoe_status_t st = rcmoe_codec_validate(src, r->wire_len, r->size, &hdr);
	if (st != RCMOE_OK) {
		struct rcmoe_wire_header h = { 0 };
		int parsed = rcmoe_wire_parse(src, r->wire_len, &h) == RCMOE_OK;
		RCMOE_WARN("refused compressed message %llu of %zu bytes for a %zu-byte receive "
			   "(%s %s, %zu elements): %s; its header: %s op %llu, %llu x %s",
			   (unsigned long long)r->seq, r->wire_len, r->size,
			   rcmoe_func_name(r->info.func), rcmoe_dtype_name(r->info.dtype),
			   r->info.count, rcmoe_status_str(st), parsed ? "sender's" : "unreadable",
			   (unsigned long long)h.op_id, (unsigned long long)h.count,
			   parsed ? rcmoe_dtype_name(h.dtype) : "-");
		return st;
	}
	r->result = rcmoe_wire_decoded_bytes(&hdr); /* validated against the receive */
	if (!is_gpu(r)) {
		cpu_job_start(r, RCMOE_JOB_DECODE, src, r->wire_len, r->data, r->size,
			      REQ_UNSTAGING);
		return RCMOE_OK;
	}
	RCMOE_CHECK(check_fits(r, "GPU decode scratch", rcmoe_gpu_codec_decode_work_bytes(&hdr),
			       c->gpu_work_bytes));
	struct rcmoe_gpu_scope g;
	r->codec_start_ns = now_ns();
	st = rcmoe_gpu_enter(c->gpu_dev, &g);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_codec_decode(src, &hdr, r->data, r->size, c->gpu_work,
					    c->gpu_work_bytes, &c->stream);
	st = record_and_leave(c, r, &g, st);
	if (st != RCMOE_OK)
		RCMOE_WARN("GPU decode of message %llu failed: %s", (unsigned long long)r->seq,
			   rcmoe_status_str(st));
	r->state = REQ_UNSTAGING;
	return st;
}

/* A CPU codec worker's copy of raw bytes that landed in a host receive's shadow. */
static rcmoe_status_t copy_down(struct rcmoe_cpu_job *job)
{
	memcpy(job->out, job->in, job->in_len);
	job->out_len = job->in_len;
	return RCMOE_OK;
}

/*
 * The transport says the message is in (len bytes with `flags`, at r->landing): get it where
 * the rest of the path expects it. A stream is decoded from the shadow; raw bytes end in
 * NCCL's buffer (host) or are copied up from the shadow (GPU). Where the destination was
 * posted before the message was known (posted_landing), the message may be elsewhere: one
 * copy puts it right.
 */
static rcmoe_status_t received(struct rcmoe_comm *c, struct rcmoe_request *r, size_t len,
			       uint32_t flags)
{
	RCMOE_CHECK(check_arrival(r, len, flags));
	r->wire_len = len;
	r->flags = flags & RCMOE_MSG_ENCODED;
	r->result = len;
	if (r->flags) {
		if (r->landing == r->data) {
			/* A stream in NCCL's buffer: the decoders write there, so it moves to the
			 * shadow first (at most half of it, which the stream fits). */
			RCMOE_CHECK(check_fits(r, "stream copy", len, shadow_room(r)));
			memcpy(shadow_of(r), r->data, len);
		}
		return decode(c, r);
	}
	if (is_gpu(r))
		return len > 0 ? unstage_raw(c, r) : RCMOE_OK;
	if (r->landing != r->data && len > 0) {
		r->job.call = copy_down;
		cpu_job_start(r, RCMOE_JOB_CALL, shadow_of(r), len, r->data, r->size,
			      REQ_UNSTAGING);
	}
	return RCMOE_OK;
}

/* Has everything that may write into r's buffers stopped? Only asked of a failed comm, whose
 * transport was told to stop: its workers let go within microseconds, a codec job or
 * GPU copy in flight within its own run time. Never blocks. */
static int req_quiet(struct rcmoe_comm *c, struct rcmoe_request *r)
{
	if (r->treq) {
		int tdone = 0;
		size_t len;
		uint32_t flags;
		/* An aborted transport reports each request (done or failed) only once none of
		 * its threads can touch it; until then the request stays. */
		if (rcmoe_core_transport()->test(r->treq, &tdone, &len, &flags) == RCMOE_OK &&
		    !tdone)
			return 0;
		r->treq = NULL;
	}
	if (rcmoe_cpu_job_busy(&r->job))
		return 0;
	if (r->gpu_pending) {
		int gdone = 0;
		/* A poll that errs (a broken context) cannot tell: close waits for the stream. */
		if (poll_event(c, r, &gdone) == RCMOE_OK && !gdone)
			return 0;
		r->gpu_pending = 0;
	}
	return 1;
}

/* Move r along; an error fails the whole comm (the caller quiesces r before reporting it). */
static rcmoe_status_t progress(struct rcmoe_comm *c, struct rcmoe_request *r, int *done,
			       size_t *size)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (r->is_send)
		RCMOE_CHECK(progress_sends(c));

	if (r->state == REQ_XFER) {
		int tdone = 0;
		size_t len = 0;
		uint32_t flags = 0;
		rcmoe_status_t st = t->test(r->treq, &tdone, &len, &flags);
		if (st != RCMOE_OK) {
			r->treq = NULL; /* the transport released it with its error */
			return st;
		}
		if (!tdone)
			return RCMOE_OK;
		r->treq = NULL;
		r->result = r->wire_len;
		if (r->is_send)
			return finish(r, done, size);
		RCMOE_CHECK(received(c, r, len, flags));
		if (r->state != REQ_UNSTAGING && r->state != REQ_WAIT_DECODE)
			return finish(r, done, size);
	} else if (r->state == REQ_WAIT_DECODE) {
		RCMOE_CHECK(decode_dedup(c, r));
	}
	if (r->state == REQ_UNSTAGING && r->on_cpu) {
		if (!rcmoe_cpu_job_done(&r->job))
			return RCMOE_OK;
		/* copy_down is a copy, not codec time */
		r->codec_ns =
			r->job.kind == RCMOE_JOB_CALL && r->job.call == copy_down ? 0 : r->job.ns;
		rcmoe_status_t st = r->job.status;
		if (st == RCMOE_OK && r->job.out_len != r->result)
			st = RCMOE_ERR_INTERNAL;
		if (st != RCMOE_OK) {
			RCMOE_WARN("decode of validated message %llu failed: %s%s%s",
				   (unsigned long long)r->seq, rcmoe_status_str(st),
				   r->dd_job && r->comm->dedup->why ? ": " : "",
				   r->dd_job && r->comm->dedup->why ? r->comm->dedup->why : "");
			return st;
		}
		if (r->dd_job) {
			const struct rcmoe_wdedup_rx *rx = &c->dedup->rx;
			count_dedup(r, rx->last_blocks, rx->last_duplicates, rx->last_saved_bytes);
		}
		return finish(r, done, size);
	}
	if (r->state == REQ_UNSTAGING) {
		int gdone;
		RCMOE_CHECK(poll_event(c, r, &gdone));
		if (gdone) {
			if (r->codec_start_ns)
				r->codec_ns = now_ns() - r->codec_start_ns;
			return finish(r, done, size);
		}
	}
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_test(struct rcmoe_request *r, int *done, size_t *size)
{
	struct rcmoe_comm *c = r->comm;
	*done = 0;
	*size = 0;
	if (!c->failed) {
		rcmoe_status_t st = progress(c, r, done, size);
		if (st == RCMOE_OK)
			return RCMOE_OK;
		comm_fail(c, st);
	}
	/* Failed: the error is reported (and the slot freed) only once r is quiet. */
	if (!req_quiet(c, r))
		return RCMOE_OK;
	req_release(r);
	return c->failed;
}

/* A request of ours that may touch mr's buffers (any region's when mr is NULL). */
static int in_flight(const struct rcmoe_request *r, const struct rcmoe_mr *mr)
{
	return r->state != REQ_FREE && (!mr || r->mr == mr);
}

/* Wait until nothing of ours writes into `mr`'s buffers (every region when mr is NULL): NCCL
 * frees them right after deregMr (and close). In a normal teardown nothing is in flight; after
 * an abort, requests may still be moving: the comm is stopped and each is waited for (transport
 * threads let go in microseconds, a codec job or GPU copy within its run time). Blocks: called
 * from deregMr and close only, never on the data path. */
void rcmoe_core_quiesce(struct rcmoe_comm *c, const struct rcmoe_mr *mr)
{
	int busy = 0;
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++)
		busy += in_flight(&c->reqs[i], mr);
	if (!busy)
		return;
	RCMOE_INFO(NCCL_NET,
		   "%s with %d transfer(s) in flight: stopping the connection and "
		   "waiting for them",
		   mr ? "deregMr" : "close", busy);
	comm_fail_why(c, RCMOE_ERR_INVALID, "closed by NCCL with transfers in flight");
	for (int i = 0; i < NCCL_NET_MAX_REQUESTS; i++) {
		struct rcmoe_request *r = &c->reqs[i];
		if (!in_flight(r, mr))
			continue;
		while (!req_quiet(c, r))
			sched_yield();
		req_release(r);
	}
}
