/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The all-reduce engine: iallreduce sets a call up, test drives every call of the comm. Nothing
 * here blocks: transfers are the transport's non-blocking requests, the work (encode, decode,
 * validate, sum) runs on the CPU codec workers, and both are polled.
 *
 * Messages of one call, on each directed connection (peer p, set A or B), at most one each:
 *   lossless  A: this rank's part of shard p (raw)     B: the summed shard of the sender (raw)
 *   PTS       A: this rank's whole PTS stream           B: none
 *   LSQ       A: this rank's shard p, LSQ-encoded      B: the sender's summed shard, LSQ-encoded
 * Shard s (owned by rank s) is the s-th of nranks near-equal runs of the elements, cut at
 * multiples of 16 elements (lossless) or of the LSQ block. Each connection's transfers are
 * posted in call order on both sides (coll_post), and each message's flags carry its call
 * number and set, checked on arrival, so calls in flight cannot mix. Every compressed stream is
 * validated (its header: codec, datatype, element count, operation id, rank; then all of it)
 * before anything is decoded; a bad one fails the call, naming the peer.
 *
 * In-place calls (send == recv): a lossless all-gather message of shard p lands where this
 * rank's contribution to shard p was sent from, so its receive is posted only once that send is
 * done; the LSQ and PTS modes read the send buffer only in encode jobs that finish before their
 * streams leave, and write the receive buffer only after every stream they need arrived.
 *
 * Leftovers. With CollNetChain NCCL hands each call whole chunk slots of its staging buffer
 * (2.28.9 coll_net.cc, calcRegionOffset), so a call's count can cover bytes that earlier
 * collectives left in a slot (any datatype, NaN, NCCL's initial fill). The lossless sum does not
 * care, but they would count in PTS's tau and in the scale of LSQ's block at the end of the real
 * data: more error on the real elements. So a lossy call whose send buffer lies in NCCL's staging
 * (the comm's first registration, comm.c) zeroes each piece it encoded, inside the encode job
 * (GPU: a fill kernel behind the encoder on the plugin's stream), before the call completes: the
 * next call over that slot finds zeros where NCCL did not write. NCCL writes a slot before each
 * call that uses it and reads only the receive side back, so nothing it reads changes; a user's
 * buffer (any later registration) is never touched.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "codec_internal.h"
#include "coll.h"
#include "core.h"
#include "ar_internal.h"
#include "sum.h"

/* The operation id of a stream: call, phase (0 reduce-scatter / PTS, 1 all-gather), shard. Also
 * part of the RNG's input, so every stream draws its own random numbers. */
uint64_t rcmoe_coll__op(uint64_t seq, int phase, int shard)
{
	return seq << 24 | (uint64_t)phase << 23 | (uint64_t)shard;
}

/* What names a message: the low 24 bits of its call's number, and its set. Over sockets it goes
 * as the message's flags, checked by place. A transport that needs receives posted ahead (IB)
 * carries no flags but its own (RCMOE_MSG_ENCODED): there it goes as the tag instead, which the
 * transport matches against the receive's before writing anything (a mismatch fails the
 * connection), and the flags are 0. */
static uint32_t msg_flags(uint64_t seq, int set)
{
	return (uint32_t)(seq & 0xffffffu) | (uint32_t)set << 24 | 0x40000000u;
}

static uint32_t msg_wire_flags(const struct rcmoe_coll_comm *c, uint64_t seq, int set)
{
	return c->posted_dest ? 0 : msg_flags(seq, set);
}

static int msg_tag(const struct rcmoe_coll_comm *c, uint64_t seq, int set)
{
	return c->posted_dest ? (int)msg_flags(seq, set) : 0; /* below 2^31 */
}

void rcmoe_coll__shard(size_t n, int nranks, size_t unit, int s, size_t *off, size_t *len)
{
	size_t units = (n + unit - 1) / unit;
	size_t b = units / nranks * s + units % nranks * s / nranks;
	size_t e = units / nranks * (s + 1) + units % nranks * (s + 1) / nranks;
	b = b * unit < n ? b * unit : n;
	e = e * unit < n ? e * unit : n;
	*off = b;
	*len = e - b;
}

/* ---- per-call arrays ---- */

rcmoe_status_t rcmoe_coll_calls_alloc(struct rcmoe_coll_comm *c)
{
	size_t n = (size_t)c->nranks;
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
		struct coll_call *k = &c->calls[i];
		k->comm = c;
		k->xa_send = calloc(4 * n, sizeof(*k->xa_send));
		k->jobs = calloc(2 * n, sizeof(*k->jobs));
		k->job_used = calloc(2 * n, sizeof(*k->job_used));
		k->own_off = calloc(n, sizeof(*k->own_off));
		k->own_len = calloc(n, sizeof(*k->own_len));
		k->srcs = calloc(n, sizeof(*k->srcs));
		k->lens = calloc(n, sizeof(*k->lens));
		k->hdrs = calloc(2 * n, sizeof(*k->hdrs));
		k->t_gather = calloc(n, sizeof(*k->t_gather));
		if (!k->xa_send || !k->jobs || !k->job_used || !k->own_off || !k->own_len ||
		    !k->srcs || !k->lens || !k->hdrs || !k->t_gather) {
			rcmoe_coll_calls_free(c);
			return RCMOE_ERR_NOMEM;
		}
		k->xa_recv = k->xa_send + n;
		k->xb_send = k->xa_send + 2 * n;
		k->xb_recv = k->xa_send + 3 * n;
		for (size_t x = 0; x < 4 * n; x++) {
			struct coll_xfer *t = &k->xa_send[x];
			t->call = k;
			t->peer = (int)(x % n);
			t->set = x < 2 * n ? RCMOE_COLL_SET_A : RCMOE_COLL_SET_B;
			t->is_send = x < n || (x >= 2 * n && x < 3 * n);
		}
	}
	return RCMOE_OK;
}

void rcmoe_coll_calls_free(struct rcmoe_coll_comm *c)
{
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
		struct coll_call *k = &c->calls[i];
		/* GPU buffers were released by rcmoe_coll_gpu_close: host ones are left */
		if (k->xa_send)
			for (int x = 0; x < 4 * c->nranks; x++)
				rcmoe_coll__buf_free_host(&k->xa_send[x].in);
		free(k->xa_send);
		free(k->jobs);
		free(k->job_used);
		free(k->own_off);
		free(k->own_len);
		free(k->srcs);
		free(k->lens);
		free(k->hdrs);
		free(k->t_gather);
		rcmoe_coll__buf_free_host(&k->work);
		rcmoe_coll__buf_free_host(&k->own);
		rcmoe_coll__buf_free_host(&k->agout);
		rcmoe_coll__buf_free_host(&k->hs);
		rcmoe_coll__buf_free_host(&k->hr);
		memset(k, 0, sizeof(*k));
	}
}

/* ---- failing ---- */

static rcmoe_status_t comm_fail(struct rcmoe_coll_comm *c, rcmoe_status_t st, const char *why)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (c->failed)
		return c->failed;
	c->failed = st;
	for (int p = 0; p < c->nranks; p++)
		for (int s = 0; s < RCMOE_COLL_NSETS; s++) {
			if (c->peers[p].tsend[s])
				t->abort_send(c->peers[p].tsend[s], st, why);
			if (c->peers[p].trecv[s])
				t->abort_recv(c->peers[p].trecv[s], st, why);
		}
	return st;
}

/* ---- jobs (on the CPU codec workers) ---- */

/* Is this stream the one the call expects from `rank`: codec, datatype, count, operation, and
 * whole (rcmoe_codec_validate)? count 0 expects an empty message. */
rcmoe_status_t rcmoe_coll__check_stream(const struct coll_call *k, const void *src, size_t len,
					int codec, size_t count, uint64_t op, int rank,
					struct rcmoe_wire_header *hdr)
{
	struct rcmoe_wire_header h;
	memset(hdr, 0, sizeof(*hdr));
	if (count == 0)
		return len == 0 ? RCMOE_OK : RCMOE_ERR_MALFORMED;
	rcmoe_status_t st = rcmoe_codec_validate(src, len, count * k->esize, &h);
	if (st != RCMOE_OK)
		return st;
	if (h.codec != codec || h.dtype != k->dtype || h.count != count || h.op_id != op ||
	    h.rank != (uint32_t)rank ||
	    (codec == RCMOE_CODEC_LSQ && h.bits != k->comm->settings.bits))
		return RCMOE_ERR_MALFORMED;
	*hdr = h;
	return RCMOE_OK;
}

/* Lossless: the owner's shard, summed in rank order (this rank's part from its send buffer). */
static rcmoe_status_t job_sum_raw(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len;
	rcmoe_coll__shard(k->count, c->nranks, LOSSLESS_UNIT, c->rank, &off, &len);
	for (int p = 0; p < c->nranks; p++)
		k->srcs[p] = p == c->rank ? k->hsend + off * k->esize
					  : (const char *)k->work.p + (size_t)p * len * k->esize;
	return rcmoe_coll_sum(k->dtype, k->srcs, c->nranks, k->hrecv + off * k->esize, len);
}

const void *rcmoe_coll__in_stream(struct coll_xfer *x)
{
	return x->dest ? x->dest : x->in.p;
}

rcmoe_status_t rcmoe_coll__job_pts_validate(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	for (int p = 0; p < c->nranks; p++) {
		k->srcs[p] = p == c->rank ? k->own.p : rcmoe_coll__in_stream(&k->xa_recv[p]);
		k->lens[p] = p == c->rank ? k->own_len[0] : k->xa_recv[p].len;
		rcmoe_status_t st = rcmoe_coll__check_stream(
			k, k->srcs[p], k->lens[p], RCMOE_CODEC_PTS, k->count,
			rcmoe_coll__op(k->seq, 0, 0), p, &k->hdrs[p]);
		if (st != RCMOE_OK) {
			k->bad_peer = p;
			return st;
		}
	}
	return RCMOE_OK;
}

/* PTS: validate every rank's stream, then decode and accumulate them in rank order (without
 * validating them a second time). */
static rcmoe_status_t job_pts_reduce(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	RCMOE_CHECK(rcmoe_coll__job_pts_validate(job));
	return rcmoe_pts_accumulate_valid(k->srcs, k->lens, k->comm->nranks, k->dtype, k->hrecv,
					  k->count);
}

struct rcmoe_lsq_cfg rcmoe_coll__lsq_cfg(const struct coll_call *k, int phase, int shard, int rank)
{
	const struct rcmoe_ar_settings *s = &k->comm->settings;
	return (struct rcmoe_lsq_cfg){ .dtype = k->dtype,
				       .bits = s->bits,
				       .block = s->block,
				       .seed = s->seed,
				       .op_id = rcmoe_coll__op(k->seq, phase, shard),
				       .rank = (uint32_t)rank };
}

struct rcmoe_codec_cfg rcmoe_coll__pts_cfg(const struct coll_call *k)
{
	const struct rcmoe_coll_comm *c = k->comm;
	struct rcmoe_codec_cfg cfg = { .codec = RCMOE_CODEC_PTS };
	cfg.u.pts = (struct rcmoe_pts_cfg){ .dtype = k->dtype,
					    .density = c->settings.density,
					    .seed = c->settings.seed,
					    .op_id = rcmoe_coll__op(k->seq, 0, 0),
					    .rank = (uint32_t)c->rank };
	return cfg;
}

/* LSQ, the owner: validate and decode every rank's stream of its shard (its own too), sum them
 * in rank order, encode the sum for the all-gather, and keep the decoded bytes of that stream
 * as its own result, as every other rank will. */
rcmoe_status_t rcmoe_coll__job_lsq_validate(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len;
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, c->rank, &off, &len);
	for (int p = 0; p < c->nranks && len > 0; p++) {
		k->srcs[p] = p == c->rank ? (const char *)k->own.p + k->own_off[p]
					  : rcmoe_coll__in_stream(&k->xa_recv[p]);
		k->lens[p] = p == c->rank ? k->own_len[p] : k->xa_recv[p].len;
		rcmoe_status_t st = rcmoe_coll__check_stream(
			k, k->srcs[p], k->lens[p], RCMOE_CODEC_LSQ, len,
			rcmoe_coll__op(k->seq, 0, c->rank), p, &k->hdrs[p]);
		if (st != RCMOE_OK) {
			k->bad_peer = p;
			return st;
		}
	}
	return RCMOE_OK;
}

static rcmoe_status_t job_lsq_reduce(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len, out;
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, c->rank, &off, &len);
	size_t bytes = len * k->esize;
	if (len == 0)
		return RCMOE_OK;
	RCMOE_CHECK(rcmoe_coll__job_lsq_validate(job));
	char *dec = k->work.p;
	for (int p = 0; p < c->nranks; p++) {
		RCMOE_CHECK(rcmoe_codec_decode(k->srcs[p], k->lens[p], dec + (size_t)p * bytes,
					       bytes, &out));
		k->srcs[p] = dec + (size_t)p * bytes;
	}
	char *sum = dec + (size_t)c->nranks * bytes;
	RCMOE_CHECK(rcmoe_coll_sum(k->dtype, k->srcs, c->nranks, sum, len));
	struct rcmoe_lsq_cfg cfg = rcmoe_coll__lsq_cfg(k, 1, c->rank, c->rank);
	RCMOE_CHECK(rcmoe_lsq_encode(sum, len, &cfg, k->agout.p, k->agout.cap, &k->agout_len));
	return rcmoe_codec_decode(k->agout.p, k->agout_len, k->hrecv + off * k->esize, bytes, &out);
}

rcmoe_status_t rcmoe_coll__job_lsq_gather_validate(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	int p = job->index;
	size_t off, len;
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, p, &off, &len);
	struct coll_xfer *x = &k->xb_recv[p];
	rcmoe_status_t st =
		rcmoe_coll__check_stream(k, rcmoe_coll__in_stream(x), x->len, RCMOE_CODEC_LSQ, len,
					 rcmoe_coll__op(k->seq, 1, p), p, &k->hdrs[c->nranks + p]);
	if (st != RCMOE_OK)
		k->bad_peer = p;
	return st;
}

/* LSQ, every rank: shard p's summed stream from its owner p, validated, into the result. */
static rcmoe_status_t job_lsq_gather(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	struct rcmoe_coll_comm *c = k->comm;
	int p = job->index;
	size_t off, len, out;
	RCMOE_CHECK(rcmoe_coll__job_lsq_gather_validate(job));
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, p, &off, &len);
	if (len == 0)
		return RCMOE_OK;
	struct coll_xfer *x = &k->xb_recv[p];
	return rcmoe_codec_decode(rcmoe_coll__in_stream(x), x->len, k->hrecv + off * k->esize,
				  len * k->esize, &out);
}

/* Encode one piece of the send buffer (PTS: all of it; LSQ: one shard) with job->cfg; from NCCL's
 * staging (k->clear), zero the piece once its stream is written ("Leftovers" above). */
static rcmoe_status_t job_encode(struct rcmoe_cpu_job *job)
{
	struct coll_call *k = job->arg;
	rcmoe_status_t st = rcmoe_codec_encode(&job->cfg, job->in, job->in_len, job->out,
					       job->out_cap, &job->out_len);
	if (st == RCMOE_OK && k->clear)
		memset((void *)job->in, 0, job->in_len * k->esize);
	return st;
}

static void job_prepare(struct coll_call *k, struct rcmoe_cpu_job *job,
			rcmoe_status_t (*fn)(struct rcmoe_cpu_job *), int index)
{
	job->kind = RCMOE_JOB_CALL;
	job->call = fn;
	job->arg = k;
	job->index = index;
}

void rcmoe_coll__submit(struct coll_call *k, struct rcmoe_cpu_job *job,
			rcmoe_status_t (*fn)(struct rcmoe_cpu_job *), int index)
{
	job_prepare(k, job, fn, index);
	rcmoe_cpu_job_submit(job);
}

void rcmoe_coll__run_here(struct coll_call *k, struct rcmoe_cpu_job *job,
			  rcmoe_status_t (*fn)(struct rcmoe_cpu_job *), int index)
{
	job_prepare(k, job, fn, index);
	rcmoe_cpu_job_run_here(job);
}

/* A job finished: its time counts, its error fails the call with a WARN naming what. */
rcmoe_status_t rcmoe_coll__take_job(struct coll_call *k, struct rcmoe_cpu_job *job,
				    const char *what)
{
	k->codec_ns += job->ns;
	if (job->status == RCMOE_OK)
		return RCMOE_OK;
	if (k->bad_peer >= 0)
		RCMOE_WARN("collNet rank %d: all-reduce call %llu (%zu x %s, %s): the stream from "
			   "rank %d was refused: %s; nothing was written",
			   k->comm->rank, (unsigned long long)k->seq, k->count,
			   rcmoe_dtype_name(k->dtype), rcmoe_ar_mode_name(k->mode), k->bad_peer,
			   rcmoe_status_str(job->status));
	else
		RCMOE_WARN("collNet rank %d: all-reduce call %llu (%zu x %s, %s): %s failed: %s",
			   k->comm->rank, (unsigned long long)k->seq, k->count,
			   rcmoe_dtype_name(k->dtype), rcmoe_ar_mode_name(k->mode), what,
			   rcmoe_status_str(job->status));
	return job->status;
}

/* ---- setting a call up ---- */

/* Grow a host buffer of the slot. With posted_dest its registration goes first when the buffer
 * is about to be replaced (rcmoe_coll__grow frees malloc'd memory at once, and a registration
 * must go before its memory: transport.h, dereg_mr); it is made again on first use. */
static rcmoe_status_t grow_host(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g, size_t need)
{
	if (c->posted_dest && (need > g->cap || !g->p || g->kind == RCMOE_BUF_DEVICE))
		rcmoe_coll_buf_unreg(c, g);
	return rcmoe_coll__grow(c, g, need, RCMOE_BUF_HOST);
}

void rcmoe_coll__xfer_init(struct coll_xfer *x, const void *sbuf, size_t len, void *dest,
			   size_t max_len, int ready)
{
	x->state = XFER_WAIT;
	x->ready = ready;
	x->sbuf = sbuf;
	x->len = len;
	x->dest = dest;
	x->max_len = max_len;
	x->treq = NULL;
	x->pinned = 0;
	x->mr = NULL;
}

rcmoe_status_t rcmoe_coll__setup_lossless(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	size_t roff, rlen, off, len;
	rcmoe_coll__shard(k->count, c->nranks, LOSSLESS_UNIT, c->rank, &roff, &rlen);
	size_t rbytes = rlen * k->esize;
	RCMOE_CHECK(grow_host(c, &k->work, (size_t)c->nranks * rbytes));
	for (int p = 0; p < c->nranks; p++) {
		if (p == c->rank)
			continue;
		rcmoe_coll__shard(k->count, c->nranks, LOSSLESS_UNIT, p, &off, &len);
		rcmoe_coll__xfer_init(&k->xa_send[p], k->hsend + off * k->esize, len * k->esize,
				      NULL, 0, 1);
		rcmoe_coll__xfer_init(&k->xa_recv[p], NULL, 0,
				      (char *)k->work.p + (size_t)p * rbytes, rbytes, 1);
		rcmoe_coll__xfer_init(&k->xb_send[p], k->hrecv + roff * k->esize, rbytes, NULL, 0,
				      0);
		/* Posted once this rank's contribution to shard p has left (in-place calls). */
		rcmoe_coll__xfer_init(&k->xb_recv[p], NULL, 0, k->hrecv + off * k->esize,
				      len * k->esize, 0);
	}
	return RCMOE_OK;
}

static rcmoe_status_t setup_pts(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	struct rcmoe_codec_cfg cfg = rcmoe_coll__pts_cfg(k);
	size_t bound = rcmoe_codec_bound(&cfg, k->count);
	if (bound == 0)
		return RCMOE_ERR_INVALID;
	RCMOE_CHECK(grow_host(c, &k->own, bound));
	for (int p = 0; p < c->nranks; p++)
		if (p != c->rank) {
			rcmoe_coll__xfer_init(&k->xa_send[p], k->own.p, 0, NULL, 0, 0);
			rcmoe_coll__xfer_init(&k->xa_recv[p], NULL, 0, NULL, bound, 1);
		}
	struct rcmoe_cpu_job *job = &k->jobs[c->rank];
	job->in = k->hsend;
	job->in_len = k->count;
	job->out = k->own.p;
	job->out_cap = k->own.cap;
	job->cfg = cfg;
	k->job_used[c->rank] = 1;
	rcmoe_coll__submit(k, job, job_encode, c->rank);
	return RCMOE_OK;
}

void rcmoe_coll__lsq_layout(struct coll_call *k, size_t align, size_t *total, size_t *rbound)
{
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len;
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, c->rank, &off, &len);
	struct rcmoe_lsq_cfg rcfg = rcmoe_coll__lsq_cfg(k, 0, c->rank, c->rank);
	*rbound = len ? rcmoe_lsq_bound(len, &rcfg) : 0;
	*total = 0;
	for (int s = 0; s < c->nranks; s++) {
		rcmoe_coll__shard(k->count, c->nranks, c->settings.block, s, &off, &len);
		struct rcmoe_lsq_cfg cfg = rcmoe_coll__lsq_cfg(k, 0, s, c->rank);
		k->own_off[s] = *total;
		*total += len ? (rcmoe_lsq_bound(len, &cfg) + align - 1) / align * align : 0;
	}
}

static rcmoe_status_t setup_lsq(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	size_t off, len, total, roff, rlen, rbound;
	rcmoe_coll__shard(k->count, c->nranks, c->settings.block, c->rank, &roff, &rlen);
	rcmoe_coll__lsq_layout(k, 1, &total, &rbound);
	RCMOE_CHECK(grow_host(c, &k->own, total));
	RCMOE_CHECK(grow_host(c, &k->work, (size_t)(c->nranks + 1) * rlen * k->esize));
	RCMOE_CHECK(grow_host(c, &k->agout, rbound));
	k->agout_len = 0;
	for (int s = 0; s < c->nranks; s++) {
		rcmoe_coll__shard(k->count, c->nranks, c->settings.block, s, &off, &len);
		k->own_len[s] = 0;
		if (s != c->rank) {
			struct rcmoe_lsq_cfg pcfg = rcmoe_coll__lsq_cfg(k, 1, s, s);
			rcmoe_coll__xfer_init(&k->xa_send[s], (char *)k->own.p + k->own_off[s], 0,
					      NULL, 0, len == 0);
			rcmoe_coll__xfer_init(&k->xa_recv[s], NULL, 0, NULL, rbound, 1);
			rcmoe_coll__xfer_init(&k->xb_send[s], k->agout.p, 0, NULL, 0, 0);
			rcmoe_coll__xfer_init(&k->xb_recv[s], NULL, 0, NULL,
					      len ? rcmoe_lsq_bound(len, &pcfg) : 0, 1);
		}
		if (len == 0)
			continue;
		struct rcmoe_cpu_job *job = &k->jobs[s];
		job->in = k->hsend + off * k->esize;
		job->in_len = len;
		job->out = (char *)k->own.p + k->own_off[s];
		job->out_cap = total - k->own_off[s];
		job->cfg = (struct rcmoe_codec_cfg){ .codec = RCMOE_CODEC_LSQ };
		job->cfg.u.lsq = rcmoe_coll__lsq_cfg(k, 0, s, c->rank);
		k->job_used[s] = 1;
		rcmoe_coll__submit(k, job, job_encode, s);
	}
	return RCMOE_OK;
}

/* ---- driving a call ---- */

int rcmoe_coll__all_done(const struct coll_xfer *x, int n, int skip)
{
	for (int p = 0; p < n; p++)
		if (p != skip && x[p].state != XFER_NONE && x[p].state != XFER_DONE)
			return 0;
	return 1;
}

/* A submitted job finished: 1 (and its results are taken once), else 0. */
int rcmoe_coll__job_finished(struct coll_call *k, int j)
{
	return k->job_used[j] == 1 && rcmoe_cpu_job_done(&k->jobs[j]);
}

rcmoe_status_t rcmoe_coll__progress_lossless(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	for (int p = 0; p < n; p++)
		if (p != r && k->xa_send[p].state == XFER_DONE)
			k->xb_recv[p].ready = 1;
	if (!k->reduce_used && rcmoe_coll__all_done(k->xa_recv, n, r)) {
		k->reduce_used = 1;
		rcmoe_coll__submit(k, &k->reduce, job_sum_raw, 0);
	}
	if (k->reduce_used == 1 && rcmoe_cpu_job_done(&k->reduce)) {
		k->reduce_used = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->reduce, "the sum"));
		for (int p = 0; p < n; p++)
			k->xb_send[p].ready = 1;
	}
	return RCMOE_OK;
}

static rcmoe_status_t progress_pts(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	if (rcmoe_coll__job_finished(k, r)) {
		k->job_used[r] = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->jobs[r], "the PTS encode"));
		k->own_len[0] = k->jobs[r].out_len;
		for (int p = 0; p < n; p++) {
			k->xa_send[p].len = k->own_len[0];
			k->xa_send[p].ready = 1;
		}
	}
	if (k->job_used[r] == 2 && !k->reduce_used && rcmoe_coll__all_done(k->xa_recv, n, r)) {
		k->reduce_used = 1;
		rcmoe_coll__submit(k, &k->reduce, job_pts_reduce, 0);
	}
	if (k->reduce_used == 1 && rcmoe_cpu_job_done(&k->reduce)) {
		k->reduce_used = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->reduce, "the PTS accumulation"));
	}
	return RCMOE_OK;
}

static rcmoe_status_t progress_lsq(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int n = c->nranks, r = c->rank;
	for (int s = 0; s < n; s++) {
		if (!rcmoe_coll__job_finished(k, s))
			continue;
		k->job_used[s] = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->jobs[s], "an LSQ encode"));
		k->own_len[s] = k->jobs[s].out_len;
		if (s != r) {
			k->xa_send[s].len = k->own_len[s];
			k->xa_send[s].ready = 1;
		}
	}
	int own_ready = k->job_used[r] != 1;
	if (own_ready && !k->reduce_used && rcmoe_coll__all_done(k->xa_recv, n, r)) {
		k->reduce_used = 1;
		rcmoe_coll__submit(k, &k->reduce, job_lsq_reduce, 0);
	}
	if (k->reduce_used == 1 && rcmoe_cpu_job_done(&k->reduce)) {
		k->reduce_used = 2;
		RCMOE_CHECK(rcmoe_coll__take_job(k, &k->reduce, "the LSQ reduction"));
		for (int p = 0; p < n; p++) {
			k->xb_send[p].len = k->agout_len;
			k->xb_send[p].ready = 1;
		}
	}
	for (int p = 0; p < n; p++) {
		int j = n + p;
		if (p == r)
			continue;
		if (!k->job_used[j] && k->xb_recv[p].state == XFER_DONE) {
			k->job_used[j] = 1;
			rcmoe_coll__submit(k, &k->jobs[j], job_lsq_gather, p);
		}
		if (rcmoe_coll__job_finished(k, j)) {
			k->job_used[j] = 2;
			RCMOE_CHECK(
				rcmoe_coll__take_job(k, &k->jobs[j], "an LSQ all-gather decode"));
		}
	}
	return RCMOE_OK;
}

int rcmoe_coll__host_complete(const struct coll_call *k)
{
	int n = k->comm->nranks;
	for (int x = 0; x < 4 * n; x++)
		if (k->xa_send[x].state != XFER_NONE && k->xa_send[x].state != XFER_DONE)
			return 0;
	for (int j = 0; j < 2 * n; j++)
		if (k->job_used[j] == 1)
			return 0;
	return k->reduce_used != 1;
}

static rcmoe_status_t progress_call(struct coll_call *k)
{
	if (k->gpu) {
		RCMOE_CHECK(rcmoe_coll_gpu_progress(k));
	} else {
		switch (k->mode) {
		case RCMOE_AR_PTS: RCMOE_CHECK(progress_pts(k)); break;
		case RCMOE_AR_LSQ: RCMOE_CHECK(progress_lsq(k)); break;
		default: RCMOE_CHECK(rcmoe_coll__progress_lossless(k));
		}
	}
	if (rcmoe_coll__host_complete(k) && (!k->gpu || rcmoe_coll_gpu_complete(k)))
		k->state = CALL_DONE;
	return RCMOE_OK;
}

/* ---- transfers ---- */

/* Is this the message receive x waits for: its call and set, and no longer than it may be (a
 * fixed destination: exactly its length)? A WARN naming the peer when not. */
static rcmoe_status_t check_arrival(struct coll_xfer *x, size_t wire_len, uint32_t flags)
{
	struct coll_call *k = x->call;
	uint32_t want = msg_wire_flags(k->comm, k->seq, x->set);
	if (flags != want || wire_len > x->max_len || (x->dest && wire_len != x->max_len)) {
		RCMOE_WARN(
			"collNet rank %d: all-reduce call %llu (%s): rank %d sent %zu bytes with "
			"flags 0x%x where %s%zu bytes with flags 0x%x were due: refused",
			k->comm->rank, (unsigned long long)k->seq, rcmoe_ar_mode_name(k->mode),
			x->peer, wire_len, flags, x->dest ? "" : "at most ", x->max_len, want);
		return RCMOE_ERR_MALFORMED;
	}
	return RCMOE_OK;
}

static rcmoe_status_t place(void *arg, size_t wire_len, uint32_t flags, void **dest,
			    struct rcmoe_tmr **mr)
{
	struct coll_xfer *x = arg;
	struct coll_call *k = x->call;
	if (k->comm->posted_dest) {
		/* Asked at irecv, before anything arrived: the buffer post_recv_ready sized to the
		 * largest message and registered. What came is checked once it is done
		 * (check_arrival from test_xfers); a longer message the transport refuses. */
		if (flags != RCMOE_PLACE_ANY || wire_len != x->max_len) {
			RCMOE_WARN("collNet rank %d: all-reduce call %llu: the %s transport asked "
				   "where %zu bytes with flags 0x%x go, for a receive of at most "
				   "%zu bytes posted ahead",
				   k->comm->rank, (unsigned long long)k->seq,
				   rcmoe_core_transport()->name, wire_len, flags, x->max_len);
			return RCMOE_ERR_INTERNAL;
		}
		*dest = x->dest ? x->dest : x->in.p;
		*mr = x->mr;
		return RCMOE_OK;
	}
	RCMOE_CHECK(check_arrival(x, wire_len, flags));
	x->len = wire_len;
	/* A GPU call's streams land in pinned memory its kernels read, sized at setup (no CUDA
	 * call here: this runs inside the transport's test). */
	if (x->pinned && x->in.cap < wire_len)
		return RCMOE_ERR_INTERNAL;
	if (!x->dest && wire_len > 0 && !x->pinned)
		RCMOE_CHECK(rcmoe_coll__grow(k->comm, &x->in, wire_len, RCMOE_BUF_HOST));
	*dest = x->dest ? x->dest : x->in.p;
	*mr = NULL; /* the socket transport needs no registration */
	return RCMOE_OK;
}

static struct coll_call *call_by_seq(struct rcmoe_coll_comm *c, uint64_t seq)
{
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++)
		if (c->calls[i].state != CALL_FREE && c->calls[i].seq == seq)
			return &c->calls[i];
	return NULL;
}

static struct coll_xfer *xfer_of(struct coll_call *k, int peer, int set, int is_send)
{
	if (set == RCMOE_COLL_SET_A)
		return is_send ? &k->xa_send[peer] : &k->xa_recv[peer];
	return is_send ? &k->xb_send[peer] : &k->xb_recv[peer];
}

/* posted_dest: the registration of the [p, p + len) a transfer of call k uses: in a slot
 * buffer (registered now if new or grown since) or in a region NCCL registered (regMr). None
 * for an empty transfer, which moves no memory. A WARN and an error where it is in neither. */
static rcmoe_status_t xfer_reg(struct coll_call *k, struct coll_xfer *x, const void *p, size_t len,
			       struct rcmoe_tmr **out)
{
	struct rcmoe_coll_comm *c = k->comm;
	struct rcmoe_growbuf *bufs[] = { &x->in, &k->work, &k->own, &k->agout, &k->hs, &k->hr };
	const struct rcmoe_coll_mr *regions[] = { k->smr, k->rmr };
	const char *b = p;
	*out = NULL;
	if (len == 0)
		return RCMOE_OK;
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		const char *g = bufs[i]->p;
		if (g && bufs[i]->kind != RCMOE_BUF_DEVICE && b >= g && len <= bufs[i]->cap &&
		    (size_t)(b - g) <= bufs[i]->cap - len)
			return rcmoe_coll_buf_reg(c, bufs[i], out);
	}
	for (size_t i = 0; i < 2; i++) {
		const struct rcmoe_coll_mr *m = regions[i];
		if (m && m->tmr && b >= m->base && len <= m->size &&
		    (size_t)(b - m->base) <= m->size - len) {
			*out = m->tmr;
			return RCMOE_OK;
		}
	}
	RCMOE_WARN("collNet rank %d: all-reduce call %llu (%s): %s rank %d uses %zu bytes at %p, "
		   "which no registration covers: the %s transport needs NCCL's buffers "
		   "registered (regMr) as host memory",
		   c->rank, (unsigned long long)k->seq, rcmoe_ar_mode_name(k->mode),
		   x->is_send ? "a send to" : "a receive from", x->peer, len, p,
		   rcmoe_core_transport()->name);
	return RCMOE_ERR_INVALID;
}

/* posted_dest: before a receive is posted, its destination must hold the largest message it
 * may get (a growable one is grown to max_len now, not at arrival), registered. */
static rcmoe_status_t post_recv_ready(struct coll_call *k, struct coll_xfer *x)
{
	void *dest = x->dest;
	if (!dest && x->max_len > 0) {
		if (!x->pinned) {
			RCMOE_CHECK(grow_host(k->comm, &x->in, x->max_len));
		} else if (x->in.cap < x->max_len) {
			/* Sized at setup (ar_gpu.c, recv_pinned): no CUDA call belongs here. */
			RCMOE_WARN("collNet rank %d: all-reduce call %llu: a pinned receive of %zu "
				   "bytes was sized %zu at setup",
				   k->comm->rank, (unsigned long long)k->seq, x->max_len,
				   x->in.cap);
			return RCMOE_ERR_INTERNAL;
		}
		dest = x->in.p;
	}
	return xfer_reg(k, x, dest, x->max_len, &x->mr);
}

/* Post the transfers of one connection, strictly in call order. */
static rcmoe_status_t post_conn(struct rcmoe_coll_comm *c, int peer, int set, int is_send)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	struct coll_peer *cp = &c->peers[peer];
	uint64_t *next = is_send ? &cp->next_send[set] : &cp->next_recv[set];
	while (*next < c->next_seq) {
		struct coll_call *k = call_by_seq(c, *next);
		/* Gone: it completed, so whatever it had on this connection was posted, which
		 * moved `next` past it; it had nothing here (a PTS call on set B). */
		struct coll_xfer *x = k ? xfer_of(k, peer, set, is_send) : NULL;
		if (!x || x->state == XFER_NONE) {
			(*next)++;
			continue;
		}
		if (x->state != XFER_WAIT)
			return RCMOE_ERR_INTERNAL;
		if (!x->ready)
			return RCMOE_OK;
		if (is_send) {
			struct rcmoe_tmr *mr = NULL;
			if (c->posted_dest)
				RCMOE_CHECK(xfer_reg(k, x, x->sbuf, x->len, &mr));
			RCMOE_CHECK(t->isend(cp->tsend[set], x->sbuf, x->len, mr,
					     msg_tag(c, k->seq, set),
					     msg_wire_flags(c, k->seq, set), &x->treq));
		} else {
			if (c->posted_dest)
				RCMOE_CHECK(post_recv_ready(k, x));
			RCMOE_CHECK(t->irecv(cp->trecv[set], x->max_len, msg_tag(c, k->seq, set),
					     place, x, &x->treq));
		}
		if (!x->treq)
			return RCMOE_OK; /* the transport is full: on a later test */
		x->state = XFER_POSTED;
		(*next)++;
	}
	return RCMOE_OK;
}

static rcmoe_status_t test_xfers(struct coll_call *k)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	for (int i = 0; i < 4 * k->comm->nranks; i++) {
		struct coll_xfer *x = &k->xa_send[i];
		if (x->state != XFER_POSTED)
			continue;
		int done = 0;
		size_t len = 0;
		uint32_t flags = 0;
		rcmoe_status_t st = t->test(x->treq, &done, &len, &flags);
		if (st != RCMOE_OK) {
			x->treq = NULL; /* released by the transport with its error */
			x->state = XFER_DONE;
			RCMOE_WARN(
				"collNet rank %d: all-reduce call %llu (%s): %s rank %d failed: %s",
				k->comm->rank, (unsigned long long)k->seq,
				rcmoe_ar_mode_name(k->mode),
				x->is_send ? "sending to" : "receiving from", x->peer,
				rcmoe_status_str(st));
			return st;
		}
		if (!done)
			continue;
		x->treq = NULL;
		x->state = XFER_DONE;
		if (x->is_send) {
			k->wire_sent += x->len;
		} else if (k->comm->posted_dest) {
			/* Placed before it was known (place): check what came now, before any
			 * job reads it. */
			RCMOE_CHECK(check_arrival(x, len, flags));
			x->len = len;
		}
	}
	return RCMOE_OK;
}

/* The profile's marks a call reached since the last look (profile.h). */
static void observe(struct coll_call *k)
{
	int n = k->comm->nranks, r = k->comm->rank;
	uint64_t now = 0;
	if (!k->marks[COLL_MARK_SENDABLE]) {
		int ready = 1;
		for (int p = 0; p < n && ready; p++)
			if (p != r && k->xa_send[p].state != XFER_NONE && !k->xa_send[p].ready)
				ready = 0;
		if (ready)
			k->marks[COLL_MARK_SENDABLE] = now = rcmoe_coll_profile_now();
	}
	if (!k->marks[COLL_MARK_RECEIVED] && rcmoe_coll__all_done(k->xa_recv, n, r))
		k->marks[COLL_MARK_RECEIVED] = now ? now : (now = rcmoe_coll_profile_now());
	if (!k->marks[COLL_MARK_DONE] && k->state == CALL_DONE)
		k->marks[COLL_MARK_DONE] = now ? now : rcmoe_coll_profile_now();
}

/* One pass over the whole comm: finished transfers and jobs, then what they made ready. */
static rcmoe_status_t comm_progress(struct rcmoe_coll_comm *c)
{
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
		struct coll_call *k = &c->calls[i];
		if (k->state != CALL_RUNNING)
			continue;
		RCMOE_CHECK(test_xfers(k));
		RCMOE_CHECK(progress_call(k));
		observe(k);
	}
	for (int p = 0; p < c->nranks; p++) {
		if (p == c->rank)
			continue;
		for (int s = 0; s < RCMOE_COLL_NSETS; s++) {
			RCMOE_CHECK(post_conn(c, p, s, 0));
			RCMOE_CHECK(post_conn(c, p, s, 1));
		}
	}
	return RCMOE_OK;
}

/* ---- the entry points ---- */

static struct coll_call *call_alloc(struct rcmoe_coll_comm *c)
{
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++)
		if (c->calls[i].state == CALL_FREE)
			return &c->calls[i];
	return NULL;
}

static void call_reset(struct coll_call *k)
{
	int n = k->comm->nranks;
	for (int x = 0; x < 4 * n; x++) {
		k->xa_send[x].state = XFER_NONE;
		k->xa_send[x].treq = NULL;
	}
	memset(k->job_used, 0, 2 * (size_t)n * sizeof(*k->job_used));
	k->reduce_used = 0;
	k->in_taken = 0;
	k->own_done = 0;
	k->t_in = k->t_own = k->t_own2 = k->t_out = 0;
	memset(k->t_gather, 0, (size_t)n * sizeof(*k->t_gather));
	k->bad_peer = -1;
	memset(k->marks, 0, sizeof(k->marks));
	k->codec_ns = 0;
	k->wire_sent = 0;
}

/* [p, p + bytes) lies within mr. */
static int in_range(const struct rcmoe_coll_mr *mr, const void *p, size_t bytes)
{
	const char *b = p;
	return b >= mr->base && bytes <= mr->size && (size_t)(b - mr->base) <= mr->size - bytes;
}

static int in_cuda(const struct rcmoe_coll_mr *mr)
{
	return mr && mr->type == NCCL_PTR_CUDA;
}

static void note_post(struct coll_call *k)
{
	struct rcmoe_coll_comm *c = k->comm;
	int running = -1; /* not counting k */
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++)
		running += c->calls[i].state == CALL_RUNNING;
	uint64_t now = rcmoe_coll_profile_now();
	k->marks[COLL_MARK_POST] = now;
	rcmoe_coll_profile_post(&c->ctx->prof[k->mode], running,
				c->last_post_ns ? now - c->last_post_ns : 0);
	c->last_post_ns = now;
}

rcmoe_status_t rcmoe_coll_iallreduce(struct rcmoe_coll_comm *c, void *send, void *recv,
				     size_t count, int dtype, int op, struct rcmoe_coll_mr *smr,
				     struct rcmoe_coll_mr *rmr, struct coll_call **out)
{
	rcmoe_status_t st;
	int supported = 0;
	*out = NULL;
	if (c->failed)
		return c->failed;
	rcmoe_coll_reduce_support(dtype, op, &supported);
	size_t esize = rcmoe_dtype_size(dtype);
	if (!supported) {
		RCMOE_WARN("collNet iallreduce: op %d on datatype %d, which reduceSupport declined",
			   op, dtype);
		return RCMOE_ERR_INVALID;
	}
	if (count > (size_t)RCMOE_MAX_P2P_BYTES / esize || (count && (!send || !recv))) {
		RCMOE_WARN("collNet iallreduce: %zu elements at %p -> %p", count, send, recv);
		return RCMOE_ERR_INVALID;
	}
	/* Device buffers: both of them, on a comm connected with the plugin's CUDA context. */
	int gpu = in_cuda(smr) || in_cuda(rmr);
	if (gpu && (c->gpu.dev < 0 || !in_cuda(smr) || !in_cuda(rmr))) {
		RCMOE_WARN("collNet iallreduce: NCCL handed %s send and %s receive buffers%s",
			   in_cuda(smr) ? "GPU" : "host", in_cuda(rmr) ? "GPU" : "host",
			   c->gpu.dev < 0 ? " to a comm without GPU buffers claimed" : "");
		return RCMOE_ERR_UNSUPPORTED;
	}
	struct coll_call *k = call_alloc(c);
	if (!k)
		return RCMOE_OK; /* all slots busy: NCCL retries */
	call_reset(k);
	k->seq = c->next_seq;
	k->dtype = dtype;
	k->count = count;
	k->esize = esize;
	k->send = send;
	k->recv = recv;
	k->smr = smr;
	k->rmr = rmr;
	k->hsend = send;
	k->hrecv = recv;
	k->gpu = gpu && count > 0; /* nothing to move for an empty call */
	k->mode = rcmoe_ar_choose(&c->settings, dtype, count);
	k->clear = k->mode != RCMOE_AR_LOSSLESS && smr && smr->staging &&
		   in_range(smr, send, count * esize);
	/* A GPU call regrows the slot's buffers as pinned memory, freeing malloc'd ones at once
	 * (ar_gpu.c): their registrations must go first. The slot's last call is done. */
	if (k->gpu && c->posted_dest)
		rcmoe_coll_call_unreg(c, k, 1);
	if (k->gpu)
		st = rcmoe_coll_gpu_setup(k);
	else if (k->mode == RCMOE_AR_PTS)
		st = setup_pts(k);
	else if (k->mode == RCMOE_AR_LSQ)
		st = setup_lsq(k);
	else
		st = rcmoe_coll__setup_lossless(k);
	if (st != RCMOE_OK) {
		RCMOE_WARN("collNet rank %d: cannot set up all-reduce call %llu (%zu x %s, %s): %s",
			   c->rank, (unsigned long long)k->seq, count, rcmoe_dtype_name(dtype),
			   rcmoe_ar_mode_name(k->mode), rcmoe_status_str(st));
		/* Jobs it submitted may run: the slot stays until they are quiet (close). */
		k->state = CALL_RUNNING;
		c->next_seq++;
		return comm_fail(c, st, "an all-reduce call could not be set up");
	}
	k->state = CALL_RUNNING;
	c->next_seq++;
	note_post(k);
	st = comm_progress(c);
	if (st != RCMOE_OK)
		return comm_fail(c, st,
				 "the plugin failed this all-reduce (see the warning before)");
	*out = k;
	return RCMOE_OK;
}

/* Has everything that may touch the call's buffers stopped? Asked only of a failed comm, whose
 * transport comms were told to stop. Never blocks. */
static int call_quiet(struct coll_call *k)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	int n = k->comm->nranks;
	for (int x = 0; x < 4 * n; x++) {
		struct coll_xfer *f = &k->xa_send[x];
		if (f->state != XFER_POSTED || !f->treq)
			continue;
		int done = 0;
		size_t len;
		uint32_t flags;
		if (t->test(f->treq, &done, &len, &flags) == RCMOE_OK && !done)
			return 0;
		f->treq = NULL;
		f->state = XFER_DONE;
	}
	for (int j = 0; j < 2 * n; j++)
		if (k->job_used[j] && rcmoe_cpu_job_busy(&k->jobs[j]))
			return 0;
	if (k->reduce_used && rcmoe_cpu_job_busy(&k->reduce))
		return 0;
	return !k->gpu || rcmoe_coll_gpu_quiet(k);
}

/* Lossless-equivalent bytes this rank sends for the call: what the ratio compares against. */
static size_t logical_bytes(const struct coll_call *k)
{
	const struct rcmoe_coll_comm *c = k->comm;
	size_t off, len, rlen, total = 0;
	rcmoe_coll__shard(k->count, c->nranks, LOSSLESS_UNIT, c->rank, &off, &rlen);
	for (int p = 0; p < c->nranks; p++) {
		if (p == c->rank)
			continue;
		rcmoe_coll__shard(k->count, c->nranks, LOSSLESS_UNIT, p, &off, &len);
		total += (len + rlen) * k->esize;
	}
	return total;
}

static void account(struct coll_call *k)
{
	struct rcmoe_msg_info info;
	rcmoe_msg_info_reset(&info);
	info.known = 1;
	info.func = ncclFuncAllReduce;
	info.dtype = k->dtype;
	info.count = k->count;
	struct rcmoe_coll_ctx *ctx = k->comm->ctx;
	rcmoe_stats_add(&ctx->stats[k->mode], RCMOE_DIR_SEND, &info, logical_bytes(k), k->wire_sent,
			k->codec_ns);
	const struct rcmoe_params *p = rcmoe_core_params();
	if (p->stats_interval > 0 && p->stats_file[0]) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - ctx->last_dump.tv_sec >= p->stats_interval) {
			ctx->last_dump = now;
			rcmoe_coll_stats_dump(ctx, "periodic");
		}
	}
}

rcmoe_status_t rcmoe_coll_test(struct coll_call *k, int *done, size_t *size)
{
	struct rcmoe_coll_comm *c = k->comm;
	*done = 0;
	if (size)
		*size = 0;
	if (!c->failed) {
		rcmoe_status_t st = comm_progress(c);
		if (st != RCMOE_OK)
			comm_fail(c, st,
				  "the plugin failed this all-reduce (see the warning before)");
	}
	if (!c->failed) {
		if (k->state != CALL_DONE)
			return RCMOE_OK;
		*done = 1;
		if (size)
			*size = k->count * k->esize;
		account(k);
		k->marks[COLL_MARK_REPORTED] = rcmoe_coll_profile_now();
		rcmoe_coll_profile_add(&c->ctx->prof[k->mode], k->marks, k->count * k->esize);
		k->state = CALL_FREE;
		return RCMOE_OK;
	}
	/* Failed: the error is reported (and the slot freed) once nothing touches the buffers
	 * (the transport, the codec workers, the GPU). */
	if (!call_quiet(k))
		return RCMOE_OK;
	k->state = CALL_FREE;
	return c->failed;
}

static int in_mr(const struct rcmoe_coll_mr *mr, const char *p)
{
	return p >= mr->base && p < mr->base + mr->size;
}

void rcmoe_coll_quiesce(struct rcmoe_coll_comm *c, const struct rcmoe_coll_mr *mr)
{
	int busy = 0;
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
		const struct coll_call *k = &c->calls[i];
		busy += k->state == CALL_RUNNING &&
			(!mr || in_mr(mr, k->send) || in_mr(mr, k->recv));
	}
	if (!busy)
		return;
	RCMOE_INFO(NCCL_NET,
		   "collNet rank %d: closing with %d all-reduce call(s) in flight: "
		   "stopping the connections and waiting for them",
		   c->rank, busy);
	comm_fail(c, RCMOE_ERR_INVALID, "collNet comm closed with calls in flight");
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++) {
		struct coll_call *k = &c->calls[i];
		if (k->state == CALL_FREE)
			continue;
		while (!call_quiet(k))
			sched_yield();
		k->state = CALL_FREE;
	}
}
