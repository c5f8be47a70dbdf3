/* SPDX-License-Identifier: Apache-2.0 */
/*
 * All-reduce on device buffers (NCCL_PTR_CUDA): the same three modes, messages and checks as the
 * host path (ar_engine.c), with the element work done by kernels in the plugin's own CUDA
 * context (gpu_context.c) on the comm's stream, so that only compressed or summed bytes cross
 * to pinned host memory for the transport:
 *
 *   lossless  copy send to pinned `hs` (raw bytes must go out raw); the host path runs on hs/hr
 *             (its sum on a worker: sum.c); copy the result hr back to recv.
 *   PTS       encode send once into pinned memory (the stream every peer gets); once every
 *             stream is in and validated on a worker, decode and accumulate all of them in
 *             rank order straight from pinned memory into recv (one kernel pair).
 *   LSQ       encode every shard of send into pinned memory; the owner, once the N streams of
 *             its shard are validated, decodes them on the GPU, sums them in rank order
 *             (rank_sum.cu), encodes the sum into pinned memory (the all-gather stream) and
 *             decodes that stream into recv; every other shard's stream is validated and
 *             decoded into recv.
 *
 * Same bits as the host path: every kernel here produces the bytes of its CPU reference (the
 * encoders and decoders: the kernels/ .cu files, tested byte for byte; rank_sum: rcmoe_ar_add, the
 * one definition sum.c applies, in the same order), with the same seed, operation ids and shards;
 * and the lossless mode's arithmetic runs on the host, sum.c itself. So a GPU rank and a host
 * rank given the same input hold the same bits.
 *
 * Never blocks NCCL's proxy thread: kernels and copies only enqueue (the copies are kernels too:
 * kernels/stage_copy.cu), each step is followed by a record of the call's event, and test
 * polls it (cudaEventQuery). Nothing synchronizes: buffers grow on first use per size class
 * (cudaHostAlloc, cudaMalloc in the plugin's context, which the application's synchronous copies
 * do not hold), and what they replace is only freed at close (cudaFree would synchronize).
 *
 * Lanes. A call is at most 256 KiB (NCCL's CollNetChain), so its kernels are small and their
 * time is mostly launch and ramp: on one stream the calls NCCL keeps in flight would queue
 * behind each other's kernels, about 6 per call for PTS and 14-20 for LSQ (on the H100, 4 ranks,
 * the calls went at about 62 and 240 us each, 2026-12-07). So the comm has RCMOE_COLL_GPU_LANES
 * streams, each with its own scratch, and call seq runs all its steps in order on lane
 * seq % RCMOE_COLL_GPU_LANES: consecutive calls overlap on the GPU, and calls that share a lane
 * take turns with its scratch in stream order, as all calls did on the one stream before. Calls
 * share nothing else on the GPU (each has its own pinned buffers and NCCL its own slots).
 *
 * Launches. Each launch costs NCCL's proxy thread microseconds of CPU (more under MPS), and with
 * about 27 per LSQ call that, not the GPU, set the pace (the lanes gave PTS +50% but LSQ only
 * +25%, 2026-12-07). So an LSQ call batches: its shards are encoded in one launch
 * (encode_shards), the owner's streams and the all-gather streams that arrive together are
 * decoded in one (struct dec_batch), and short streams decode without a scratch fill
 * (kernels/lsq_decode.cu): 9 to 11 launches per call at 4 ranks.
 *
 * LSQ streams are validated on the proxy thread, inside test (rcmoe_coll__run_here), not on the
 * CPU codec workers as on the host path: that reads one kind and scale per block and allocates
 * nothing, a few microseconds for a 256 KiB call, while a worker's wake-up and the next test
 * noticing it cost tens of microseconds per hop, and an LSQ call had two such hops in its
 * critical path. PTS streams stay on a worker: their validation allocates a table of positions
 * (rcmoe_pts_validate), which the proxy thread must not do per call.
 */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "ar_internal.h"
#include "core.h"
#include "gpu_codec.h"

/* ---- buffers ---- */

static int kind_fits(int have, int want)
{
	return want == RCMOE_BUF_HOST ? have != RCMOE_BUF_DEVICE : have == want;
}

static void buf_release(struct rcmoe_growbuf *g)
{
	switch (g->kind) {
	case RCMOE_BUF_PINNED: rcmoe_gpu_host_free(g->p); break;
	case RCMOE_BUF_DEVICE: rcmoe_gpu_dev_free(g->p); break;
	default: free(g->p);
	}
	g->p = NULL;
	g->cap = 0;
	g->kind = RCMOE_BUF_HOST;
}

void rcmoe_coll__buf_free_host(struct rcmoe_growbuf *g)
{
	if (g->kind == RCMOE_BUF_HOST)
		buf_release(g);
}

rcmoe_status_t rcmoe_coll__grow(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g, size_t need,
				int kind)
{
	if (need <= g->cap && g->p && kind_fits(g->kind, kind))
		return RCMOE_OK;
	size_t cap = 4096;
	while (cap < need)
		cap *= 2;
	if (g->p && g->kind != RCMOE_BUF_HOST) {
		/* Kernels enqueued earlier may still use it: kept until close. */
		struct rcmoe_coll_retired *r = malloc(sizeof(*r));
		if (!r)
			return RCMOE_ERR_NOMEM;
		r->buf = *g;
		r->next = c->gpu.retired;
		c->gpu.retired = r;
	} else {
		free(g->p);
	}
	g->p = NULL;
	g->cap = 0;
	g->kind = kind;
	rcmoe_status_t st = RCMOE_OK;
	switch (kind) {
	case RCMOE_BUF_PINNED: st = rcmoe_gpu_host_alloc(&g->p, cap); break;
	case RCMOE_BUF_DEVICE: st = rcmoe_gpu_dev_alloc(&g->p, cap); break;
	default: g->p = malloc(cap); st = g->p ? RCMOE_OK : RCMOE_ERR_NOMEM;
	}
	if (st != RCMOE_OK) {
		g->p = NULL;
		g->kind = RCMOE_BUF_HOST;
		return st;
	}
	g->cap = cap;
	return RCMOE_OK;
}

/* ---- the comm ---- */

rcmoe_status_t rcmoe_coll_gpu_open(struct rcmoe_coll_comm *c)
{
	struct rcmoe_gpu_scope g = { 0, -1 };
	rcmoe_status_t st;
	int dev;
	c->gpu.dev = -1;
	if (!rcmoe_core_props_cuda())
		return RCMOE_OK;
	if (c->nranks > rcmoe_gpu_codec_max_sources()) {
		RCMOE_WARN("collNet rank %d: %d ranks, but the GPU all-reduce sums at most %d: "
			   "declining (RCMOE_CUDA_BUFFERS=off keeps all-reduce on host buffers)",
			   c->rank, c->nranks, rcmoe_gpu_codec_max_sources());
		return RCMOE_ERR_UNSUPPORTED;
	}
	RCMOE_CHECK(rcmoe_gpu_context_bind(&dev));
	c->gpu.dev = dev;
	RCMOE_CHECK_GOTO(rcmoe_gpu_enter(dev, &g), st, leave);
	for (int l = 0; l < RCMOE_COLL_GPU_LANES; l++)
		RCMOE_CHECK_GOTO(rcmoe_gpu_stream_create(&c->gpu.lanes[l].stream), st, leave);
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++)
		RCMOE_CHECK_GOTO(rcmoe_gpu_event_create(&c->calls[i].ev), st, leave);
	st = RCMOE_OK;
leave:
	rcmoe_gpu_leave(&g);
	return st; /* on error the caller's rcmoe_coll_gpu_close frees what was made */
}

void rcmoe_coll_gpu_close(struct rcmoe_coll_comm *c)
{
	struct rcmoe_gpu_scope g = { 0, -1 };
	if (c->gpu.dev < 0)
		return;
	if (rcmoe_gpu_enter(c->gpu.dev, &g) == RCMOE_OK) {
		/* The frees synchronize with our own context only: its work never waits for
		 * NCCL's, so this cannot hang; and nothing of ours may touch freed memory. */
		for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
			struct coll_call *k = &c->calls[i];
			if (k->xa_send)
				for (int x = 0; x < 4 * c->nranks; x++)
					if (k->xa_send[x].in.kind != RCMOE_BUF_HOST)
						buf_release(&k->xa_send[x].in);
			struct rcmoe_growbuf *bufs[] = { &k->work, &k->own, &k->agout, &k->hs,
							 &k->hr };
			for (size_t b = 0; b < sizeof(bufs) / sizeof(bufs[0]); b++)
				if (bufs[b]->kind != RCMOE_BUF_HOST)
					buf_release(bufs[b]);
			rcmoe_gpu_event_destroy(&k->ev);
		}
		for (int l = 0; l < RCMOE_COLL_GPU_LANES; l++) {
			buf_release(&c->gpu.lanes[l].work);
			buf_release(&c->gpu.lanes[l].dec);
		}
		while (c->gpu.retired) {
			struct rcmoe_coll_retired *r = c->gpu.retired;
			c->gpu.retired = r->next;
			buf_release(&r->buf);
			free(r);
		}
		for (int l = 0; l < RCMOE_COLL_GPU_LANES; l++)
			rcmoe_gpu_stream_destroy(&c->gpu.lanes[l].stream);
	}
	rcmoe_gpu_leave(&g);
	c->gpu.dev = -1;
}

/* ---- steps and their event ---- */

/* After enqueueing a step (st: how that went): record the call's event behind it, its number
 * in *tick. Recorded even after a failure, so that quiet waits for whatever was enqueued. */
static rcmoe_status_t mark(struct coll_call *k, rcmoe_status_t st, uint64_t *tick)
{
	rcmoe_status_t r = rcmoe_gpu_record(&k->ev, &k->lane->stream);
	if (r == RCMOE_OK)
		*tick = ++k->ev_rec;
	if (st != RCMOE_OK || r != RCMOE_OK)
		RCMOE_WARN("collNet rank %d: all-reduce call %llu (%zu x %s, %s): GPU work could "
			   "not be enqueued: %s",
			   k->comm->rank, (unsigned long long)k->seq, k->count,
			   rcmoe_dtype_name(k->dtype), rcmoe_ar_mode_name(k->mode),
			   rcmoe_status_str(st != RCMOE_OK ? st : r));
	return st != RCMOE_OK ? st : r;
}

static int step_done(const struct coll_call *k, uint64_t tick)
{
	return tick && k->ev_seen >= tick;
}

/* Has the work recorded last finished? Then so has every step before it (the call's steps
 * all run on its lane's stream). */
static rcmoe_status_t poll(struct coll_call *k)
{
	int done = 0;
	if (k->ev_seen == k->ev_rec)
		return RCMOE_OK;
	RCMOE_CHECK(rcmoe_gpu_poll(&k->ev, &done));
	if (done)
		k->ev_seen = k->ev_rec;
	return RCMOE_OK;
}

/* The length of a stream this rank's encoder wrote into pinned memory (its header, read once
 * the encode is done): it must be the stream of this operation and fit. Workers validate all of
 * it later, as they do every stream. */
static rcmoe_status_t own_stream(const struct coll_call *k, const void *p, size_t cap, size_t count,
				 uint64_t op, struct rcmoe_wire_header *h, size_t *len)
{
	rcmoe_status_t st = rcmoe_wire_parse(p, cap, h);
	if (st == RCMOE_OK &&
	    (h->op_id != op || h->count != count || h->payload_len > cap - RCMOE_WIRE_HEADER_BYTES))
		st = RCMOE_ERR_INTERNAL;
	if (st != RCMOE_OK) {
		RCMOE_WARN(
			"collNet rank %d: all-reduce call %llu (%s): the GPU encoder left no valid "
			"stream of op %llu: %s",
			k->comm->rank, (unsigned long long)k->seq, rcmoe_ar_mode_name(k->mode),
			(unsigned long long)op, rcmoe_status_str(st));
		return RCMOE_ERR_INTERNAL;
	}
	*len = RCMOE_WIRE_HEADER_BYTES + h->payload_len;
	return RCMOE_OK;
}

static rcmoe_status_t work_for(struct coll_call *k, size_t need)
{
	return rcmoe_coll__grow(k->comm, &k->lane->work, need ? need : 1, RCMOE_BUF_DEVICE);
}

/* Encode n elements at device address src into pinned dst; no scratch growth inside. */
static rcmoe_status_t encode(struct coll_call *k, const struct rcmoe_codec_cfg *cfg,
			     const void *src, size_t n, void *dst, size_t cap)
{
	struct coll_gpu_lane *g = k->lane;
	RCMOE_CHECK(work_for(k, rcmoe_gpu_codec_encode_work_bytes(cfg, n)));
	return rcmoe_gpu_codec_encode(cfg, src, n, dst, cap, g->work.p, g->work.cap, &g->stream);
}

/* Decode the validated stream at src (pinned) into device memory. */
static rcmoe_status_t decode(struct coll_call *k, const void *src,
			     const struct rcmoe_wire_header *h, void *dst, size_t bytes)
{
	struct coll_gpu_lane *g = k->lane;
	RCMOE_CHECK(work_for(k, rcmoe_gpu_codec_decode_work_bytes(h)));
	return rcmoe_gpu_codec_decode(src, h, dst, bytes, g->work.p, g->work.cap, &g->stream);
}

/* Validated LSQ streams to decode, gathered so that those the batched decoder takes
 * (rcmoe_gpu_lsq_decode_many: short streams, all of a call's) go in one launch per
 * RCMOE_GPU_LSQ_MAX_SEGS; the others are decoded one by one as they come. */
struct dec_batch {
	struct coll_call *k;
	struct rcmoe_gpu_lsq_dec d[RCMOE_GPU_LSQ_MAX_SEGS];
	int n;
};

static rcmoe_status_t batch_flush(struct dec_batch *b)
{
	rcmoe_status_t st = RCMOE_OK;
	if (b->n)
		st = rcmoe_gpu_codec_lsq_decode_many(b->d, b->n, &b->k->lane->stream);
	b->n = 0;
	return st;
}

static rcmoe_status_t batch_add(struct dec_batch *b, const void *src,
				const struct rcmoe_wire_header *h, void *dst, size_t bytes)
{
	if (!rcmoe_gpu_codec_lsq_decode_many_fits(h))
		return decode(b->k, src, h, dst, bytes);
	b->d[b->n++] =
		(struct rcmoe_gpu_lsq_dec){ .src = src, .hdr = *h, .dst = dst, .dst_bytes = bytes };
	return b->n == RCMOE_GPU_LSQ_MAX_SEGS ? batch_flush(b) : RCMOE_OK;
}

/* A receive whose stream lands in pinned memory the kernels read, sized now (not at arrival:
 * no CUDA call may run inside the transport's test). */
static rcmoe_status_t recv_pinned(struct coll_call *k, struct coll_xfer *x, size_t max_len)
{
	rcmoe_coll__xfer_init(x, NULL, 0, NULL, max_len, 1);
	x->pinned = 1;
	return rcmoe_coll__grow(k->comm, &x->in, max_len, RCMOE_BUF_PINNED);
}

/* ---- setting a call up ---- */

static rcmoe_status_t setup_lossless(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	size_t bytes = k->count * k->esize;
	RCMOE_CHECK(rcmoe_coll__grow(c, &k->hs, bytes, RCMOE_BUF_PINNED));
	RCMOE_CHECK(rcmoe_coll__grow(c, &k->hr, bytes, RCMOE_BUF_PINNED));
	k->hsend = k->hs.p;
	k->hrecv = k->hr.p;
	RCMOE_CHECK(rcmoe_coll__setup_lossless(k));
	for (int p = 0; p < c->nranks; p++)
		k->xa_send[p].ready = 0; /* once the copy is done */
	return mark(k, rcmoe_gpu_copy_d2h(k->hs.p, k->send, bytes, &k->lane->stream), &k->t_in);
}

static rcmoe_status_t setup_pts(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	struct rcmoe_codec_cfg cfg = rcmoe_coll__pts_cfg(k);
	size_t bound = rcmoe_codec_bound(&cfg, k->count);
	if (bound == 0)
		return RCMOE_ERR_INVALID;
	RCMOE_CHECK(rcmoe_coll__grow(c, &k->own, bound, RCMOE_BUF_PINNED));
	for (int p = 0; p < c->nranks; p++)
		if (p != c->rank) {
			rcmoe_coll__xfer_init(&k->xa_send[p], k->own.p, 0, NULL, 0, 0);
			RCMOE_CHECK(recv_pinned(k, &k->xa_recv[p], bound));
		}
	rcmoe_status_t st = encode(k, &cfg, k->send, k->count, k->own.p, k->own.cap);
	if (st == RCMOE_OK && k->clear) /* "Leftovers" (ar_engine.c): after the encode */
		st = rcmoe_gpu_codec_zero((void *)k->send, k->count * k->esize, &k->lane->stream);
	return mark(k, st, &k->t_in);
}

/* Encode shard s of send into own at own_off[s] for every non-empty shard: up to
 * RCMOE_GPU_LSQ_MAX_SEGS shards per launch (rcmoe_gpu_lsq_encode_many), as each launch costs the
 * proxy thread more than the kernel takes on a 256 KiB call. */
static rcmoe_status_t encode_shards(struct coll_call *k, size_t total)
{
	struct rcmoe_coll_comm *c = k->comm;
	struct coll_gpu_lane *g = k->lane;
	struct rcmoe_gpu_lsq_seg segs[RCMOE_GPU_LSQ_MAX_SEGS];
	int nseg = 0;
	for (int s = 0; s <= c->nranks; s++) {
		size_t off, len = 0;
		if (s < c->nranks)
			rcmoe_coll__shard(k->count, c->nranks, c->settings.block, s, &off, &len);
		if (len > 0)
			segs[nseg++] = (struct rcmoe_gpu_lsq_seg){
				.src = k->send + off * k->esize,
				.n = len,
				.cfg = rcmoe_coll__lsq_cfg(k, 0, s, c->rank),
				.dst = (char *)k->own.p + k->own_off[s],
				.cap = total - k->own_off[s],
			};
		if (nseg == 0 || (nseg < RCMOE_GPU_LSQ_MAX_SEGS && s < c->nranks))
			continue;
		size_t need = rcmoe_gpu_codec_lsq_encode_many_work_bytes(segs, nseg);
		RCMOE_CHECK(work_for(k, need));
		RCMOE_CHECK(rcmoe_gpu_codec_lsq_encode_many(segs, nseg, g->work.p, g->work.cap,
							    &g->stream));
		nseg = 0;
	}
	return RCMOE_OK;
}

static rcmoe_status_t setup_lsq(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len, total, rbound;
	/* every shard's stream 16-byte aligned: the decoders read it in place */
	rcmoe_coll__lsq_layout(k, 16, &total, &rbound);
	RCMOE_CHECK(rcmoe_coll__grow(c, &k->own, total, RCMOE_BUF_PINNED));
	RCMOE_CHECK(rcmoe_coll__grow(c, &k->agout, rbound, RCMOE_BUF_PINNED));
	k->agout_len = 0;
	for (int s = 0; s < c->nranks; s++) {
		rcmoe_coll__shard(k->count, c->nranks, c->settings.block, s, &off, &len);
		k->own_len[s] = 0;
		if (s == c->rank)
			continue;
		struct rcmoe_lsq_cfg pcfg = rcmoe_coll__lsq_cfg(k, 1, s, s);
		rcmoe_coll__xfer_init(&k->xa_send[s], (char *)k->own.p + k->own_off[s], 0, NULL, 0,
				      len == 0);
		RCMOE_CHECK(recv_pinned(k, &k->xa_recv[s], rbound));
		rcmoe_coll__xfer_init(&k->xb_send[s], k->agout.p, 0, NULL, 0, 0);
		RCMOE_CHECK(recv_pinned(k, &k->xb_recv[s], len ? rcmoe_lsq_bound(len, &pcfg) : 0));
	}
	/* every shard's stream from one launch where they fit in one (encode_shards) */
	rcmoe_status_t st = encode_shards(k, total);
	if (st == RCMOE_OK && k->clear) /* "Leftovers" (ar_engine.c): after the encodes */
		st = rcmoe_gpu_codec_zero((void *)k->send, k->count * k->esize, &k->lane->stream);
	return mark(k, st, &k->t_in);
}

rcmoe_status_t rcmoe_coll_gpu_setup(struct coll_call *k)
{
	struct rcmoe_gpu_scope g;
	k->lane = &k->comm->gpu.lanes[k->seq % RCMOE_COLL_GPU_LANES];
	rcmoe_status_t st = rcmoe_gpu_enter(k->comm->gpu.dev, &g);
	if (st == RCMOE_OK) {
		switch (k->mode) {
		case RCMOE_AR_PTS: st = setup_pts(k); break;
		case RCMOE_AR_LSQ: st = setup_lsq(k); break;
		default: st = setup_lossless(k);
		}
	}
	rcmoe_gpu_leave(&g);
	return st;
}

/* ---- driving a call ---- */

static rcmoe_status_t progress_lossless(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	if (!k->in_taken) {
		if (!step_done(k, k->t_in))
			return RCMOE_OK;
		k->in_taken = 1;
		for (int p = 0; p < c->nranks; p++)
			k->xa_send[p].ready = 1;
	}
	RCMOE_CHECK(rcmoe_coll__progress_lossless(k));
	if (!k->t_out && rcmoe_coll__host_complete(k))
		RCMOE_CHECK(mark(
			k,
			rcmoe_gpu_copy_h2d(k->recv, k->hr.p, k->count * k->esize, &k->lane->stream),
			&k->t_out));
	return RCMOE_OK;
}

static rcmoe_status_t progress_pts(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	if (!k->in_taken && step_done(k, k->t_in)) {
		struct rcmoe_wire_header h;
		RCMOE_CHECK(own_stream(k, k->own.p, k->own.cap, k->count,
				       rcmoe_coll__op(k->seq, 0, 0), &h, &k->own_len[0]));
		k->in_taken = 1;
		for (int p = 0; p < n; p++) {
			k->xa_send[p].len = k->own_len[0];
			k->xa_send[p].ready = 1;
		}
	}
	if (k->in_taken && !k->reduce_used && rcmoe_coll__all_done(k->xa_recv, n, r)) {
		k->reduce_used = 1;
		rcmoe_coll__submit(k, &k->reduce, rcmoe_coll__job_pts_validate, 0);
	}
	if (k->reduce_used == 1 && rcmoe_cpu_job_done(&k->reduce)) {
		k->reduce_used = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->reduce, "validating the PTS streams"));
		struct coll_gpu_lane *g = k->lane;
		rcmoe_status_t st =
			work_for(k, rcmoe_gpu_codec_pts_accumulate_work_bytes(k->hdrs, n));
		if (st == RCMOE_OK)
			st = rcmoe_gpu_codec_pts_accumulate(k->srcs, k->hdrs, n, k->dtype, k->recv,
							    k->count, g->work.p, g->work.cap,
							    &g->stream);
		RCMOE_CHECK(mark(k, st, &k->t_own));
	}
	return RCMOE_OK;
}

/* LSQ owner, its streams validated: decode them, sum in rank order, encode the sum. */
static rcmoe_status_t lsq_owner_reduce(struct coll_call *k, size_t rlen)
{
	struct rcmoe_coll_comm *c = k->comm;
	struct coll_gpu_lane *g = k->lane;
	int n = c->nranks;
	size_t bytes = rlen * k->esize;
	RCMOE_CHECK(rcmoe_coll__grow(c, &g->dec, (size_t)(n + 1) * bytes, RCMOE_BUF_DEVICE));
	char *dec = g->dec.p, *sum = dec + (size_t)n * bytes;
	struct dec_batch b = { .k = k };
	rcmoe_status_t st = RCMOE_OK;
	for (int p = 0; p < n && st == RCMOE_OK; p++) {
		st = batch_add(&b, k->srcs[p], &k->hdrs[p], dec + (size_t)p * bytes, bytes);
		k->srcs[p] = dec + (size_t)p * bytes; /* the batch took the stream's address */
	}
	if (st == RCMOE_OK)
		st = batch_flush(&b);
	if (st == RCMOE_OK)
		st = rcmoe_gpu_codec_rank_sum(k->dtype, k->srcs, n, sum, rlen, &g->stream);
	if (st == RCMOE_OK) {
		struct rcmoe_codec_cfg cfg = { .codec = RCMOE_CODEC_LSQ };
		cfg.u.lsq = rcmoe_coll__lsq_cfg(k, 1, c->rank, c->rank);
		st = encode(k, &cfg, sum, rlen, k->agout.p, k->agout.cap);
	}
	return mark(k, st, &k->t_own);
}

static rcmoe_status_t progress_lsq_owner(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	size_t roff, rlen;
	rcmoe_coll__shard(k->count, n, c->settings.block, r, &roff, &rlen);
	if (k->in_taken && !k->reduce_used && rcmoe_coll__all_done(k->xa_recv, n, r)) {
		if (rlen > 0) {
			k->reduce_used = 1;
			rcmoe_coll__run_here(k, &k->reduce, rcmoe_coll__job_lsq_validate, 0);
		} else { /* an empty shard: empty all-gather messages, as on the host path */
			k->reduce_used = 2;
			k->own_done = 1;
			for (int p = 0; p < n; p++)
				k->xb_send[p].ready = 1;
		}
	}
	if (k->reduce_used == 1 && rcmoe_cpu_job_done(&k->reduce)) {
		k->reduce_used = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->reduce, "validating the LSQ streams"));
		RCMOE_CHECK(lsq_owner_reduce(k, rlen));
	}
	if (!k->t_own2 && step_done(k, k->t_own)) {
		/* The summed stream goes to every rank, and its decoded bytes are this rank's
		 * result too, as they are everyone else's. */
		struct rcmoe_wire_header h;
		RCMOE_CHECK(own_stream(k, k->agout.p, k->agout.cap, rlen,
				       rcmoe_coll__op(k->seq, 1, r), &h, &k->agout_len));
		for (int p = 0; p < n; p++) {
			k->xb_send[p].len = k->agout_len;
			k->xb_send[p].ready = 1;
		}
		RCMOE_CHECK(mark(
			k, decode(k, k->agout.p, &h, k->recv + roff * k->esize, rlen * k->esize),
			&k->t_own2));
	}
	if (step_done(k, k->t_own2))
		k->own_done = 1;
	return RCMOE_OK;
}

/* t_gather of a peer whose decode was enqueued in this pass, until the pass records its tick */
#define GATHER_PENDING UINT64_MAX

static rcmoe_status_t progress_lsq(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	if (!k->in_taken && step_done(k, k->t_in)) {
		for (int s = 0; s < n; s++) {
			size_t off, len;
			struct rcmoe_wire_header h;
			rcmoe_coll__shard(k->count, n, c->settings.block, s, &off, &len);
			if (len == 0)
				continue;
			char *p = (char *)k->own.p + k->own_off[s];
			RCMOE_CHECK(own_stream(k, p, k->own.cap - k->own_off[s], len,
					       rcmoe_coll__op(k->seq, 0, s), &h, &k->own_len[s]));
			if (s != r) {
				k->xa_send[s].len = k->own_len[s];
				k->xa_send[s].ready = 1;
			}
		}
		k->in_taken = 1;
	}
	RCMOE_CHECK(progress_lsq_owner(k));
	/* the all-gather streams that came since the last look, decoded together */
	struct dec_batch b = { .k = k };
	rcmoe_status_t st = RCMOE_OK;
	int pending = 0;
	for (int p = 0; p < n && st == RCMOE_OK; p++) {
		int j = n + p;
		if (p == r)
			continue;
		if (!k->job_used[j] && k->xb_recv[p].state == XFER_DONE) {
			k->job_used[j] = 1;
			rcmoe_coll__run_here(k, &k->jobs[j], rcmoe_coll__job_lsq_gather_validate,
					     p);
		}
		if (!rcmoe_coll__job_finished(k, j))
			continue;
		k->job_used[j] = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->jobs[j], "validating an LSQ all-gather"));
		size_t off, len;
		rcmoe_coll__shard(k->count, n, c->settings.block, p, &off, &len);
		if (len == 0)
			continue;
		st = batch_add(&b, rcmoe_coll__in_stream(&k->xb_recv[p]), &k->hdrs[n + p],
			       k->recv + off * k->esize, len * k->esize);
		k->t_gather[p] = GATHER_PENDING;
		pending = 1;
	}
	if (!pending)
		return st;
	if (st == RCMOE_OK)
		st = batch_flush(&b);
	uint64_t tick = 0;
	st = mark(k, st, &tick);
	for (int p = 0; p < n; p++)
		if (k->t_gather[p] == GATHER_PENDING)
			k->t_gather[p] = tick; /* 0 if the record failed: never done, st fails */
	return st;
}

rcmoe_status_t rcmoe_coll_gpu_progress(struct coll_call *k)
{
	struct rcmoe_gpu_scope g;
	rcmoe_status_t st = rcmoe_gpu_enter(k->comm->gpu.dev, &g);
	if (st == RCMOE_OK)
		st = poll(k);
	if (st == RCMOE_OK) {
		switch (k->mode) {
		case RCMOE_AR_PTS: st = progress_pts(k); break;
		case RCMOE_AR_LSQ: st = progress_lsq(k); break;
		default: st = progress_lossless(k);
		}
	}
	rcmoe_gpu_leave(&g);
	return st;
}

int rcmoe_coll_gpu_complete(const struct coll_call *k)
{
	const struct rcmoe_coll_comm *c = k->comm;
	switch (k->mode) {
	case RCMOE_AR_PTS: return step_done(k, k->t_own);
	case RCMOE_AR_LSQ:
		if (!k->own_done)
			return 0;
		for (int p = 0; p < c->nranks; p++) {
			size_t off, len;
			if (p == c->rank)
				continue;
			rcmoe_coll__shard(k->count, c->nranks, c->settings.block, p, &off, &len);
			if (k->job_used[c->nranks + p] != 2 ||
			    (len && !step_done(k, k->t_gather[p])))
				return 0;
		}
		return 1;
	default: return step_done(k, k->t_out);
	}
}

int rcmoe_coll_gpu_quiet(struct coll_call *k)
{
	struct rcmoe_gpu_scope g;
	int busy = 0;
	if (k->ev_seen == k->ev_rec)
		return 1;
	/* A poll that errs cannot tell: close's frees wait for the stream. */
	if (rcmoe_gpu_enter(k->comm->gpu.dev, &g) == RCMOE_OK && poll(k) == RCMOE_OK)
		busy = k->ev_seen != k->ev_rec;
	rcmoe_gpu_leave(&g);
	return !busy;
}
