/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Soak of the CPU data path (host buffers, the C codec) through the exported v11 net table over
 * 127.0.0.1, shaped like the MoE training job of issue 12: R ranks (2 or 4) in one process, a
 * full mesh of send/recv comms, and thousands of collectives driven as NCCL's proxy drives them.
 * Per MoE layer: an int64 split-size exchange (8 bytes a peer), an int64 expert-id exchange (2 to
 * 78 KiB a peer), the token all-to-all (fp32 or bf16, uneven rows that change every layer, some
 * pairs empty, some above 4 MiB) and its transposed return; every fourth layer an fp32 ring
 * all-reduce. Every message is attributed through the profiler chain as NCCL would (P2p
 * Send/Recv in one group per rank with a send to every peer including itself, or Coll
 * AllReduce), cut into NCCL-like steps (256 KiB chunks, 512 KiB from 4 MiB a peer and for the
 * ring) with at most 8 in flight per connection and direction, received into poisoned slots.
 * Each rank enqueues (creates its Group and P2p/Coll events) up to 12 collectives ahead of its
 * proxy, starts the next collective's proxy ops while its last sends are still on the wire, and
 * all connections progress together.
 *
 * Checked for every message: test() never fails and the receive reports the sent size; integer
 * and all-reduce payloads arrive byte-exact; token steps that the policy compresses (float Send,
 * at least RCMOE_MIN_BYTES) arrive within the LSQ bound of RCMOE_A2A_BITS and not bit-exact,
 * the others byte-exact; nothing is written to a receive slot past the message (nor to its
 * guard bytes); send buffers are never written; no WARN is logged.
 *
 * RCMOE_A2A_BITS is read once per process, so meson registers this binary once per bit width.
 * RCMOE_SOAK_COLLECTIVES sets the number of collectives (sanitizer builds run fewer), and
 * RCMOE_SOAK_FAULT=kind@n injects one fault from the test side at collective n or later, to
 * show that the checks fire: attr (expert ids attributed as fp32 sends), short (a token step
 * posted into a receive of half its size, issue 12's symptom), corrupt (a received element's
 * top byte changed), overrun (a byte written past a received message), misroute (a sender fills a
 * step with the reverse pair's bytes).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec_math.h"
#include "codec_test_util.h"
#include "net_pair.h"
#include "prof_chain.h"
#include "rcmoe/codec.h"
#include "test_log.h"

extern const ncclProfiler_v5_t ncclProfiler_v5;

enum {
	MAXR = 4,
	NSLOTS = 8,       /* NCCL_STEPS: steps in flight per connection and direction */
	SLOT = 512 << 10, /* one step buffer: the largest chunk */
	GUARD = 4096,     /* poisoned bytes after each slot, inside the registration */
	SLOT_STRIDE = SLOT + GUARD,
	ROW = 512,          /* elements per token row */
	ENQUEUE_AHEAD = 12, /* collectives a rank's host thread enqueues beyond its proxy's */
	WINDOW = 32,        /* collectives described at once */
	LAYERS_PER_AR = 4,  /* MoE layers between two all-reduces */
	DT_INT64 = 4,       /* ncclInt64 */
	STALL_S = 30,       /* no step completing for this long is a hang */
	CHUNK_SMALL = 256 << 10,
	CHUNK_BIG = 512 << 10,
	BIG_PEER_BYTES = 4 << 20, /* per-peer transfers from here use the big chunk */
	HOT_ONE_IN = 12,          /* token dispatches with one hot pair */
	IDS_MAX = 10000,          /* int64 expert ids per peer: 2 to 78 KiB */
	AR_ROWS = 64,             /* all-reduce rows of ROW elements per rank: up to this... */
	AR_BIG_ROWS = 520,        /* ...or, one in 10, up to this (steps of 512 KiB) */
};
#define POISON 0xa5

enum kind { K_SPLITS, K_IDS, K_TOKENS, K_ALLREDUCE };
static const char *const kind_name[] = { "split sizes", "expert ids", "tokens", "all-reduce" };

enum fault { F_NONE, F_ATTR, F_SHORT, F_CORRUPT, F_OVERRUN, F_MISROUTE };
static const char *const fault_name[] = {
	"none", "attr", "short", "corrupt", "overrun", "misroute"
};

/* One collective: which pairs move how many bytes, and the profiler events of each rank. */
struct coll {
	long n;
	enum kind kind;
	int dtype; /* RCMOE_DT_* or DT_INT64 */
	const char *dtype_name;
	size_t es;
	int nparts;                /* 1, or the ring's 2(R-1) rounds */
	size_t part[MAXR][MAXR];   /* bytes per part from src to dst (self: only attributed) */
	int active[MAXR][MAXR];    /* src -> dst moves bytes over the network */
	size_t chunk;              /* step size of the ring; a2a steps depend on the pair */
	size_t count;              /* all-reduce elements */
	int exact_recv;            /* receives posted with the message's size, not the slot's */
	void *task[MAXR][2][MAXR]; /* rank's P2p Recv/Send event per peer, or its Coll event */
	void *sop[MAXR][MAXR];     /* send proxy op of src -> dst, on src's profiler */
	void *rop[MAXR][MAXR];     /* receive proxy op of src -> dst, on dst's profiler */
	int send_open[MAXR];       /* transfers from this rank with steps still to post */
	int recv_open[MAXR];       /* transfers to this rank with steps still to receive */
	int left;                  /* transfer sides (send, receive) not complete */
};

/* A step handed to the plugin and not yet reported done. */
struct flight {
	void *req;
	struct coll *c;
	int step, nsteps;
	size_t off, size; /* its bytes within the transfer */
	size_t posted;    /* receive: the size it was posted with */
	uint64_t sum;     /* send: checksum of the slot when posted */
};

/* One direction of a connection, as NCCL's proxy runs it: steps posted in order into a ring of
 * NSLOTS slots, the oldest one tested until done. */
struct side {
	long coll; /* collective whose steps are posted next */
	int next;  /* its next step */
	uint64_t posted, done;
	struct fake_phandle ph; /* what the plugin's profiler callback resolves, during a post */
	struct flight f[NSLOTS];
};

struct conn {
	int src, dst;
	struct net_pair p;
	char *sbuf, *rbuf; /* NSLOTS slots of SLOT_STRIDE bytes, registered on each comm */
	void *smh, *rmh;
	struct side s, r;
};

struct soak {
	int R, bits;
	size_t min_bytes;
	uint32_t block;
	long ncoll;
	enum fault fault;
	long fault_at;
	int fault_done;
	void *pctx[MAXR];
	struct conn conn[MAXR][MAXR];
	struct coll colls[WINDOW];
	long generated;          /* collectives described */
	long retired;            /* collectives before this one are complete everywhere */
	long enqueued[MAXR];     /* collectives each rank's host thread has enqueued */
	long at[MAXR];           /* the collective each rank's proxy is in (-1 before the first) */
	size_t rows[MAXR][MAXR]; /* the last token dispatch, returned transposed */
	int tok_dtype;
	struct tu_rng rng;
	char *expect; /* one step's original bytes */
	double last_progress;
	/* what the run moved, for the summary line */
	unsigned long messages, empty, lossy, long_xfers; /* long: more steps than slots */
	double bytes;
};

static const char *dtype_str(int dtype)
{
	return dtype == RCMOE_DT_BF16   ? "ncclBfloat16"
	       : dtype == RCMOE_DT_FP32 ? "ncclFloat32"
					: "ncclInt64";
}

static size_t env_size(const char *name, size_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	size_t n = strtoull(v, &end, 10);
	if (*end == 'K' || *end == 'k')
		n <<= 10;
	else if (*end == 'M' || *end == 'm')
		n <<= 20;
	return n;
}

static unsigned rnd(struct soak *s, unsigned n)
{
	return (unsigned)(tu_u64(&s->rng) % n);
}

/* ---- transfers and their steps ---- */

/* NCCL's step size for a p2p transfer: smaller chunks for smaller transfers. */
static size_t xfer_chunk(const struct coll *c, int src, int dst)
{
	if (c->kind == K_ALLREDUCE)
		return c->chunk;
	return c->part[src][dst] < BIG_PEER_BYTES ? CHUNK_SMALL : CHUNK_BIG;
}

static int part_steps(const struct coll *c, int src, int dst)
{
	size_t p = c->part[src][dst], ch = xfer_chunk(c, src, dst);
	return p ? (int)((p + ch - 1) / ch) : 1; /* an empty transfer still sends one message */
}

static int xfer_steps(const struct coll *c, int src, int dst)
{
	return c->nparts * part_steps(c, src, dst);
}

/* Where step k lies in the transfer's bytes (the parts laid end to end). */
static void step_span(const struct coll *c, int src, int dst, int k, size_t *off, size_t *size)
{
	size_t p = c->part[src][dst], ch = xfer_chunk(c, src, dst);
	int ps = part_steps(c, src, dst), j = k % ps;
	size_t in = (size_t)j * ch;
	*off = (size_t)(k / ps) * p + in;
	*size = p - in < ch ? p - in : ch;
}

/* ---- payloads ---- */

static uint64_t xfer_seed(const struct coll *c, int src, int dst)
{
	return rcmoe_mix64(((uint64_t)c->n << 16) ^ ((uint64_t)src << 8) ^ (uint64_t)dst ^
			   0x50a4ull << 40);
}

/* Token rows: uniform values scaled per row over 12 binades, one row in 16 all zero (padding),
 * a function of the element's index so any step can be regenerated by its receiver. */
static void fill_floats(uint64_t seed, int dtype, size_t e0, size_t n, void *out)
{
	float scale = 0;
	for (size_t i = 0; i < n; i++) {
		size_t e = e0 + i;
		if (i == 0 || e % ROW == 0) {
			uint64_t rh = rcmoe_mix64(seed ^ ((e / ROW) * 0x9e3779b97f4a7c15ull));
			scale = (rh & 15) == 0 ? 0.0f : (float)(1u << ((rh >> 8) % 12)) * 0x1p-6f;
		}
		uint64_t h = rcmoe_mix64(seed + e * 0xd1342543de82ef95ull);
		float v = (float)(int32_t)(h >> 32) * 0x1p-31f * scale;
		if (dtype == RCMOE_DT_FP32) {
			memcpy((char *)out + i * 4, &v, 4);
		} else {
			uint16_t r16 = (uint16_t)rcmoe_from_f32(dtype, v);
			memcpy((char *)out + i * 2, &r16, 2);
		}
	}
}

/* Integers: every 8 bytes distinct, so a misplaced or stale byte cannot match. */
static void fill_ints(uint64_t seed, size_t off, size_t size, void *out)
{
	for (size_t i = 0; i < size; i += 8) {
		uint64_t w = rcmoe_mix64(seed ^ ((off + i) * 0x2545f4914f6cdd1dull));
		memcpy((char *)out + i, &w, 8);
	}
}

static void fill_step(const struct coll *c, uint64_t seed, size_t off, size_t size, void *out)
{
	if (c->dtype == DT_INT64)
		fill_ints(seed, off, size, out);
	else
		fill_floats(seed, c->dtype, off / c->es, size / c->es, out);
}

static uint64_t checksum(const void *buf, size_t n)
{
	uint64_t a = n, x = 0, w;
	for (size_t i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, (const char *)buf + i, 8);
		a += w;
		x += (w ^ i) * 0x9e3779b97f4a7c15ull;
	}
	return a ^ (x << 1);
}

static char *slot_at(char *region, uint64_t step)
{
	return region + (step % NSLOTS) * SLOT_STRIDE;
}

/* ---- failures name the message ---- */

static void fail_at(const struct coll *c, const struct conn *cn, const struct flight *f,
		    const char *dir, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cr_assert(0, "collective %ld (%s, %s), %s %d->%d, step %d of %d (%zu bytes at %zu): %s",
		  c->n, kind_name[c->kind], c->dtype_name, dir, cn->src, cn->dst, f->step,
		  f->nsteps, f->size, f->off, what);
}

/* ---- the profiler chain, as NCCL builds it ---- */

static void *prof_start(void *pctx, ncclProfilerEventDescr_v5_t *d)
{
	void *h = NULL;
	cr_assert_eq(ncclProfiler_v5.startEvent(pctx, &h, d), ncclSuccess);
	cr_assert_not_null(h, "profiler gave no handle for event type %lu", (unsigned long)d->type);
	return h;
}

static void *prof_p2p(void *pctx, void *grp, int rank, const char *func, const char *dtype,
		      size_t count, int peer)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileP2p, .parentObj = grp, .rank = rank };
	d.p2p.func = func;
	d.p2p.datatype = dtype;
	d.p2p.count = count;
	d.p2p.peer = peer;
	d.p2p.nChannels = 1;
	d.p2p.parentGroup = grp;
	return prof_start(pctx, &d);
}

static void *prof_proxy_op(void *pctx, void *parent, int rank, int peer, int is_send, int nsteps,
			   size_t chunk)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileProxyOp,
					  .parentObj = parent,
					  .rank = rank };
	d.proxyOp.pid = getpid();
	d.proxyOp.peer = peer;
	d.proxyOp.isSend = is_send;
	d.proxyOp.nSteps = nsteps;
	d.proxyOp.chunkSize = (int)chunk;
	return prof_start(pctx, &d);
}

static struct fake_phandle prof_step(void *pctx, void *proxy_op, int step)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileProxyStep, .parentObj = proxy_op };
	d.proxyStep.step = step;
	struct fake_phandle ph = { .prof_ctx = pctx, .step = prof_start(pctx, &d) };
	return ph;
}

/* all_to_all_single as NCCL's host thread enqueues it: one group holding a Send and a Recv for
 * every peer, itself included (as PyTorch issues it; the self pair never reaches the network). */
static void enqueue_alltoall(struct soak *s, struct coll *c, int r, void *grp)
{
	void *pctx = s->pctx[r];
	const char *send_dtype = c->dtype_name;
	size_t send_es = c->es;
	if (s->fault == F_ATTR && c->kind == K_IDS && c->n >= s->fault_at) {
		send_dtype = "ncclFloat32"; /* the fault: integers announced as floats */
		send_es = 4;
	}
	for (int p = 0; p < s->R; p++)
		c->task[r][1][p] =
			prof_p2p(pctx, grp, r, "Send", send_dtype, c->part[r][p] / send_es, p);
	for (int p = 0; p < s->R; p++)
		c->task[r][0][p] =
			prof_p2p(pctx, grp, r, "Recv", c->dtype_name, c->part[p][r] / c->es, p);
}

/* Ring all-reduce: one Coll event. */
static void enqueue_ring(struct soak *s, struct coll *c, int r, void *grp)
{
	ncclProfilerEventDescr_v5_t d = { .type = ncclProfileColl, .parentObj = grp, .rank = r };
	d.coll.seqNumber = (uint64_t)c->n;
	d.coll.func = "AllReduce";
	d.coll.count = c->count;
	d.coll.datatype = c->dtype_name;
	d.coll.nChannels = 1;
	d.coll.algo = "RING";
	d.coll.proto = "Simple";
	d.coll.parentGroup = grp;
	void *op = prof_start(s->pctx[r], &d);
	for (int p = 0; p < s->R; p++)
		c->task[r][0][p] = c->task[r][1][p] = op;
}

/* The proxy picks the operation up: a proxy op per connection of rank r that it moves bytes on,
 * child of the task event enqueued for that peer and direction. */
static void start_proxy_ops(struct soak *s, struct coll *c, int r)
{
	for (int p = 0; p < s->R; p++) {
		if (c->active[r][p])
			c->sop[r][p] = prof_proxy_op(s->pctx[r], c->task[r][1][p], r, p, 1,
						     xfer_steps(c, r, p), xfer_chunk(c, r, p));
		if (c->active[p][r])
			c->rop[p][r] = prof_proxy_op(s->pctx[r], c->task[r][0][p], r, p, 0,
						     xfer_steps(c, p, r), xfer_chunk(c, p, r));
	}
}

/* ---- the schedule ---- */

/* Rows from src to dst of a token dispatch: uneven, some pairs empty, most under 40 rows, some
 * to 128 (the steps the policy compresses start at 64 KiB). */
static size_t token_rows(struct soak *s)
{
	unsigned r = rnd(s, 100);
	if (r < 10)
		return 0;
	if (r < 35)
		return 32 + rnd(s, 97);
	return 1 + rnd(s, 40);
}

/* One dispatch in HOT_ONE_IN has a hot expert: one pair above the 4 MiB that switches NCCL to
 * the big chunk, more than NSLOTS steps. */
static void token_hot_pair(struct soak *s, size_t row_bytes)
{
	if (rnd(s, HOT_ONE_IN) != 0)
		return;
	int src = (int)rnd(s, (unsigned)s->R), dst = (src + 1 + (int)rnd(s, s->R - 1u)) % s->R;
	s->rows[src][dst] = (BIG_PEER_BYTES + rnd(s, 1u << 20)) / row_bytes + 1;
}

/* A layer's all-to-alls: split sizes, expert ids, the token dispatch and its return (the
 * dispatch's rows transposed). */
static void describe_alltoall(struct soak *s, struct coll *c, int layer_pos)
{
	static const enum kind kinds[] = { K_SPLITS, K_IDS, K_TOKENS, K_TOKENS };
	c->kind = kinds[layer_pos];
	c->nparts = 1;
	if (layer_pos == 2)
		s->tok_dtype = rnd(s, 3) == 0 ? RCMOE_DT_BF16 : RCMOE_DT_FP32;
	c->dtype = c->kind == K_TOKENS ? s->tok_dtype : DT_INT64;
	c->es = c->dtype == DT_INT64 ? 8 : rcmoe_dtype_size(c->dtype);
	if (layer_pos == 2) {
		for (int src = 0; src < s->R; src++)
			for (int dst = 0; dst < s->R; dst++)
				s->rows[src][dst] = token_rows(s);
		token_hot_pair(s, ROW * c->es);
	}
	for (int src = 0; src < s->R; src++)
		for (int dst = 0; dst < s->R; dst++) {
			size_t bytes = 8;
			if (c->kind == K_IDS)
				bytes = (256 + rnd(s, IDS_MAX - 255)) * 8;
			else if (layer_pos == 2)
				bytes = s->rows[src][dst] * ROW * c->es;
			else if (layer_pos == 3)
				bytes = s->rows[dst][src] * ROW * c->es;
			c->part[src][dst] = bytes;
			c->active[src][dst] = src != dst;
		}
}

static void describe_ring(struct soak *s, struct coll *c)
{
	c->kind = K_ALLREDUCE;
	c->dtype = RCMOE_DT_FP32;
	c->es = 4;
	c->nparts = 2 * (s->R - 1);
	c->chunk = CHUNK_BIG;
	size_t rows = rnd(s, 10) == 0 ? AR_BIG_ROWS / 2 + rnd(s, AR_BIG_ROWS / 2)
				      : 8 + rnd(s, AR_ROWS - 7);
	c->count = rows * ROW * (size_t)s->R;
	for (int r = 0; r < s->R; r++) {
		int next = (r + 1) % s->R;
		c->part[r][next] = c->count / (size_t)s->R * 4;
		c->active[r][next] = 1;
	}
}

/* Describe the next collective of the job's sequence: per layer splits, ids, tokens out and
 * back; an all-reduce after every LAYERS_PER_AR layers. */
static void describe_next(struct soak *s)
{
	long n = s->generated++;
	struct coll *c = &s->colls[n % WINDOW];
	memset(c, 0, sizeof(*c));
	c->n = n;
	int pos = (int)(n % (4 * LAYERS_PER_AR + 1));
	if (pos == 4 * LAYERS_PER_AR)
		describe_ring(s, c);
	else
		describe_alltoall(s, c, pos % 4);
	c->dtype_name = dtype_str(c->dtype);
	c->exact_recv = rnd(s, 4) == 0;
	for (int src = 0; src < s->R; src++)
		for (int dst = 0; dst < s->R; dst++)
			if (c->active[src][dst]) {
				c->send_open[src]++;
				c->recv_open[dst]++;
				c->left += 2;
			}
}

/* Rank r's host thread enqueues collectives up to ENQUEUE_AHEAD beyond the one its proxy is in
 * (PyTorch runs ahead of the GPU): their Group and P2p or Coll events exist long before their
 * proxy ops, and many collectives' events are alive at once, as in NCCL. */
static int try_enqueue(struct soak *s, int r)
{
	long n = s->enqueued[r];
	if (n >= s->ncoll || n > s->at[r] + ENQUEUE_AHEAD || n >= s->retired + WINDOW)
		return 0;
	while (s->generated <= n)
		describe_next(s);
	struct coll *c = &s->colls[n % WINDOW];
	ncclProfilerEventDescr_v5_t g = { .type = ncclProfileGroup, .rank = r };
	void *grp = prof_start(s->pctx[r], &g);
	if (c->kind == K_ALLREDUCE)
		enqueue_ring(s, c, r, grp);
	else
		enqueue_alltoall(s, c, r, grp);
	s->enqueued[r]++;
	return 1;
}

/* Rank r enters its next collective once it has posted every send and received every message
 * of the current one (NCCL's kernel for the next operation runs after this one's, whose sends
 * may still be on the wire). */
static int try_start(struct soak *s, int r)
{
	long n = s->at[r] + 1;
	if (n >= s->enqueued[r])
		return 0;
	if (s->at[r] >= s->retired) {
		const struct coll *cur = &s->colls[s->at[r] % WINDOW];
		if (cur->send_open[r] || cur->recv_open[r])
			return 0;
	}
	start_proxy_ops(s, &s->colls[n % WINDOW], r);
	s->at[r] = n;
	return 1;
}

static void retire(struct soak *s)
{
	while (s->retired < s->generated && s->colls[s->retired % WINDOW].left == 0)
		s->retired++;
}

/* The collective this side posts steps of next, or NULL while `rank` has not entered it. */
static struct coll *side_coll(struct soak *s, struct side *sd, int rank, int src, int dst)
{
	for (; sd->coll <= s->at[rank]; sd->coll++, sd->next = 0) {
		if (sd->coll < s->retired)
			continue;
		struct coll *c = &s->colls[sd->coll % WINDOW];
		if (c->active[src][dst] && sd->next < xfer_steps(c, src, dst))
			return c;
	}
	return NULL;
}

/* ---- the sending side ---- */

static int post_sends(struct soak *s, struct conn *cn)
{
	struct side *sd = &cn->s;
	struct coll *c;
	int any = 0;
	while (sd->posted - sd->done < NSLOTS &&
	       (c = side_coll(s, sd, cn->src, cn->src, cn->dst))) {
		struct flight *f = &sd->f[sd->posted % NSLOTS];
		char *buf = slot_at(cn->sbuf, sd->posted);
		*f = (struct flight){ .c = c,
				      .step = sd->next,
				      .nsteps = xfer_steps(c, cn->src, cn->dst) };
		step_span(c, cn->src, cn->dst, sd->next, &f->off, &f->size);
		f->posted = f->size;
		uint64_t seed = xfer_seed(c, cn->src, cn->dst);
		/* The fault: this step carries the reverse pair's bytes. */
		if (s->fault == F_MISROUTE && c->n >= s->fault_at && f->size && !s->fault_done++)
			seed = xfer_seed(c, cn->dst, cn->src);
		fill_step(c, seed, f->off, f->size, buf);
		f->sum = checksum(buf, f->size);
		sd->ph = prof_step(s->pctx[cn->src], c->sop[cn->src][cn->dst], sd->next);
		ncclResult_t rc = net_isend(cn->p.send, buf, f->size, cn->smh, &sd->ph, &f->req);
		if (rc != ncclSuccess)
			fail_at(c, cn, f, "isend", "isend returned %d", rc);
		if (!f->req)
			break; /* every request slot taken: NCCL posts again on its next pass */
		sd->posted++;
		if (++sd->next == f->nsteps)
			c->send_open[cn->src]--;
		any = 1;
	}
	return any;
}

static int test_sends(struct soak *s, struct conn *cn)
{
	struct side *sd = &cn->s;
	int any = 0;
	while (sd->done < sd->posted) {
		struct flight *f = &sd->f[sd->done % NSLOTS];
		int done = 0, size = -1;
		ncclResult_t rc = net_test(f->req, &done, &size);
		if (rc != ncclSuccess)
			fail_at(f->c, cn, f, "send", "test returned %d", rc);
		if (!done)
			break;
		if ((size_t)size != f->size)
			fail_at(f->c, cn, f, "send", "test reported %d bytes sent", size);
		if (checksum(slot_at(cn->sbuf, sd->done), f->size) != f->sum)
			fail_at(f->c, cn, f, "send", "the send buffer was written to");
		sd->done++;
		if (f->step == f->nsteps - 1)
			f->c->left--;
		any = 1;
	}
	return any;
}

/* ---- the receiving side ---- */

static int post_recvs(struct soak *s, struct conn *cn)
{
	struct side *sd = &cn->r;
	struct coll *c;
	int any = 0;
	while (sd->posted - sd->done < NSLOTS &&
	       (c = side_coll(s, sd, cn->dst, cn->src, cn->dst))) {
		struct flight *f = &sd->f[sd->posted % NSLOTS];
		*f = (struct flight){ .c = c,
				      .step = sd->next,
				      .nsteps = xfer_steps(c, cn->src, cn->dst) };
		step_span(c, cn->src, cn->dst, sd->next, &f->off, &f->size);
		/* NCCL posts the whole step buffer; sometimes post exactly the message instead. */
		f->posted = c->exact_recv ? f->size : xfer_chunk(c, cn->src, cn->dst);
		/* The fault: a receive half the size of its (compressible) message. */
		if (s->fault == F_SHORT && c->n >= s->fault_at && c->kind == K_TOKENS &&
		    f->size >= 2 * s->min_bytes && !s->fault_done++)
			f->posted = f->size / 2;
		sd->ph = prof_step(s->pctx[cn->dst], c->rop[cn->src][cn->dst], sd->next);
		ncclResult_t rc = net_irecv(cn->p.recv, slot_at(cn->rbuf, sd->posted), f->posted,
					    cn->rmh, &sd->ph, &f->req);
		if (rc != ncclSuccess)
			fail_at(c, cn, f, "irecv", "irecv returned %d", rc);
		if (!f->req)
			break;
		sd->posted++;
		sd->next++;
		any = 1;
	}
	return any;
}

/* Offset of the first byte of [from, to) of buf that is not the poison, or `to`. */
static size_t first_unpoisoned(const char *buf, size_t from, size_t to)
{
	static char poison[SLOT_STRIDE];
	if (!poison[0])
		memset(poison, POISON, sizeof(poison));
	if (from >= to || memcmp(buf + from, poison, to - from) == 0)
		return to;
	while ((unsigned char)buf[from] == POISON)
		from++;
	return from;
}

/* Does the step that arrived in buf hold what was sent? */
static void check_payload(struct soak *s, struct conn *cn, struct flight *f, char *buf)
{
	const struct coll *c = f->c;
	fill_step(c, xfer_seed(c, cn->src, cn->dst), f->off, f->size, s->expect);
	int lossy = s->bits && c->kind == K_TOKENS && f->size && f->size >= s->min_bytes;
	if (lossy) {
		size_t n = f->size / c->es;
		size_t bad = tu_lsq_out_of_bound(s->expect, buf, n, c->dtype, s->bits, s->block);
		if (bad)
			fail_at(c, cn, f, "recv",
				"%zu of %zu elements outside the %d-bit LSQ bound", bad, n,
				s->bits);
		/* (A message too short for a stream may go raw, with RCMOE_MIN_BYTES set low.) */
		if (f->size >= 4096 && memcmp(s->expect, buf, f->size) == 0)
			fail_at(c, cn, f, "recv", "arrived bit-exact: it was not compressed");
		s->lossy++;
		return;
	}
	if (memcmp(s->expect, buf, f->size) == 0)
		return;
	size_t i = 0;
	while (s->expect[i] == buf[i])
		i++;
	fail_at(c, cn, f, "recv", "byte %zu is 0x%02x, sent 0x%02x (must be byte-exact)", i,
		(unsigned char)buf[i], (unsigned char)s->expect[i]);
}

static void check_recv(struct soak *s, struct conn *cn, struct flight *f, int size)
{
	char *buf = slot_at(cn->rbuf, cn->r.done);
	const struct coll *c = f->c;
	/* The faults: one byte changed on the way (an element's top byte: beyond any LSQ bound),
	 * or one written past the message. */
	if (s->fault == F_CORRUPT && c->n >= s->fault_at && f->size && !s->fault_done++) {
		char *top = buf + (f->size / 2 | (c->es - 1));
		*top = *top == 0x7f ? 0x7e : 0x7f;
	}
	if (s->fault == F_OVERRUN && c->n >= s->fault_at && !s->fault_done++)
		buf[f->size] = 0;
	if ((size_t)size != f->size)
		fail_at(f->c, cn, f, "recv", "test reported %d bytes received", size);
	check_payload(s, cn, f, buf);
	size_t w = first_unpoisoned(buf, f->size, SLOT_STRIDE);
	const char *zone = w >= SLOT ? "guard" : w >= f->posted ? "past the receive" : "unused";
	if (w != SLOT_STRIDE)
		fail_at(f->c, cn, f, "recv", "byte %zu of the slot written past the message (%s)",
			w, zone);
	memset(buf, POISON, f->size); /* the slot is poisoned whenever it is free */
}

static int test_recvs(struct soak *s, struct conn *cn)
{
	struct side *sd = &cn->r;
	int any = 0;
	while (sd->done < sd->posted) {
		struct flight *f = &sd->f[sd->done % NSLOTS];
		int done = 0, size = -1;
		ncclResult_t rc = net_test(f->req, &done, &size);
		if (rc != ncclSuccess)
			fail_at(f->c, cn, f, "recv", "test returned %d (posted %zu bytes)", rc,
				f->posted);
		if (!done)
			break;
		check_recv(s, cn, f, size);
		s->messages++;
		s->empty += f->size == 0;
		s->bytes += (double)f->size;
		sd->done++;
		if (f->step == f->nsteps - 1) {
			s->long_xfers += f->nsteps > NSLOTS;
			f->c->recv_open[cn->dst]--;
			f->c->left--;
		}
		any = 1;
	}
	return any;
}

/* ---- setup and the run ---- */

static void conn_open(struct conn *cn, int src, int dst)
{
	memset(cn, 0, sizeof(*cn));
	cn->src = src;
	cn->dst = dst;
	net_pair_open(&cn->p, fake_nccl_callback);
	cn->sbuf = malloc((size_t)NSLOTS * SLOT_STRIDE);
	cn->rbuf = malloc((size_t)NSLOTS * SLOT_STRIDE);
	cr_assert(cn->sbuf && cn->rbuf);
	memset(cn->sbuf, 0, (size_t)NSLOTS * SLOT_STRIDE);
	memset(cn->rbuf, POISON, (size_t)NSLOTS * SLOT_STRIDE);
	cr_assert_eq(net_reg(cn->p.send, cn->sbuf, (size_t)NSLOTS * SLOT_STRIDE, NCCL_PTR_HOST,
			     &cn->smh),
		     ncclSuccess);
	cr_assert_eq(net_reg(cn->p.recv, cn->rbuf, (size_t)NSLOTS * SLOT_STRIDE, NCCL_PTR_HOST,
			     &cn->rmh),
		     ncclSuccess);
}

static void conn_close(struct conn *cn)
{
	cr_expect_eq(net_dereg(cn->p.send, cn->smh), ncclSuccess);
	cr_expect_eq(net_dereg(cn->p.recv, cn->rmh), ncclSuccess);
	net_pair_close(&cn->p);
	free(cn->sbuf);
	free(cn->rbuf);
}

static void read_fault(struct soak *s)
{
	const char *v = getenv("RCMOE_SOAK_FAULT");
	if (!v || !*v)
		return;
	for (int k = F_ATTR; k <= F_MISROUTE; k++) {
		size_t len = strlen(fault_name[k]);
		if (strncmp(v, fault_name[k], len) == 0 && (v[len] == '@' || !v[len])) {
			s->fault = (enum fault)k;
			s->fault_at = v[len] ? atol(v + len + 1) : 0;
			return;
		}
	}
	cr_assert(0, "RCMOE_SOAK_FAULT=%s: not attr|short|corrupt|overrun|misroute[@n]", v);
}

static void soak_init(struct soak *s, int R)
{
	memset(s, 0, sizeof(*s));
	s->R = R;
	s->bits = (int)env_size("RCMOE_A2A_BITS", 0);
	s->min_bytes = env_size("RCMOE_MIN_BYTES", 65536);
	s->block = (uint32_t)env_size("RCMOE_LSQ_BLOCK", 128);
	s->ncoll = (long)env_size("RCMOE_SOAK_COLLECTIVES", 3000);
	s->rng.s = 0x50a6ull * 1000003u + (uint64_t)R;
	read_fault(s);
	s->expect = malloc(SLOT);
	cr_assert_not_null(s->expect);
	for (int r = 0; r < R; r++) {
		s->pctx[r] = prof_chain_init(R, r);
		s->at[r] = -1;
	}
	net_version = 11;
	for (int src = 0; src < R; src++)
		for (int dst = 0; dst < R; dst++)
			if (src != dst)
				conn_open(&s->conn[src][dst], src, dst);
}

static void soak_fini(struct soak *s)
{
	for (int src = 0; src < s->R; src++)
		for (int dst = 0; dst < s->R; dst++)
			if (src != dst)
				conn_close(&s->conn[src][dst]);
	for (int r = 0; r < s->R; r++)
		ncclProfiler_v5.finalize(s->pctx[r]);
	free(s->expect);
}

/* Which side waits on what, for a hang's message. */
static void fail_stalled(struct soak *s)
{
	char msg[1024];
	int len = snprintf(msg, sizeof(msg), "no step completed for %d s; retired %ld; ranks at",
			   STALL_S, s->retired);
	for (int r = 0; r < s->R; r++)
		len += snprintf(msg + len, sizeof(msg) - (size_t)len, " %ld", s->at[r]);
	for (int src = 0; src < s->R; src++)
		for (int dst = 0; dst < s->R && len < (int)sizeof(msg) - 80; dst++) {
			struct conn *cn = &s->conn[src][dst];
			if (src == dst ||
			    (cn->s.done == cn->s.posted && cn->r.done == cn->r.posted))
				continue;
			len += snprintf(msg + len, sizeof(msg) - (size_t)len,
					"; %d->%d sends %lu/%lu recvs %lu/%lu", src, dst,
					(unsigned long)cn->s.done, (unsigned long)cn->s.posted,
					(unsigned long)cn->r.done, (unsigned long)cn->r.posted);
		}
	cr_assert(0, "%s", msg);
}

/* NCCL's proxy loop: every connection, both directions, round-robin; never one request alone. */
static void soak_run(struct soak *s)
{
	s->last_progress = now_s();
	while (s->retired < s->ncoll) {
		int any = 0;
		for (int r = 0; r < s->R; r++) {
			while (try_enqueue(s, r))
				any = 1;
			while (try_start(s, r))
				any = 1;
		}
		for (int src = 0; src < s->R; src++)
			for (int dst = 0; dst < s->R; dst++) {
				if (src == dst)
					continue;
				struct conn *cn = &s->conn[src][dst];
				any |= post_recvs(s, cn);
				any |= post_sends(s, cn);
				any |= test_sends(s, cn);
				any |= test_recvs(s, cn);
			}
		retire(s);
		if (any)
			s->last_progress = now_s();
		else if (now_s() - s->last_progress > STALL_S)
			fail_stalled(s);
	}
}

static void soak(int R)
{
	struct soak *s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	soak_init(s, R);
	int warns = test_log_warn_count();
	double t0 = now_s();
	soak_run(s);
	double dt = now_s() - t0;
	cr_expect_eq(test_log_warn_count(), warns, "the plugin logged a WARN during the soak");
	if (s->bits)
		cr_expect_gt(s->lossy, 0, "no step was compressed at %d bits", s->bits);
	else
		cr_expect_eq(s->lossy, 0);
	if (s->fault != F_NONE)
		cr_expect(0, "RCMOE_SOAK_FAULT=%s@%ld was injected %s, but nothing failed",
			  fault_name[s->fault], s->fault_at,
			  s->fault_done ? "" : "(never: no message qualified)");
	fprintf(stderr,
		"soak: %d ranks, %d bits: %ld collectives, %lu messages (%lu empty, %lu "
		"compressed), %lu transfers of more than %d steps, %.0f MiB in %.1f s\n",
		R, s->bits, s->ncoll, s->messages, s->empty, s->lossy, s->long_xfers, NSLOTS,
		s->bytes / (1 << 20), dt);
	soak_fini(s);
	free(s);
}

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(soak, .init = setup, .timeout = 300);

Test(soak, two_ranks)
{
	soak(2);
}

Test(soak, four_ranks)
{
	soak(4);
}
