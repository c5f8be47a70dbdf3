/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Profiler side: keeps just enough of NCCL's event tree to tell the net side, from inside its
 * isend/irecv, which operation a transfer belongs to (see profiler.h and DESIGN.md section 2).
 *
 * Objects live in fixed rings per kind; a ring slot is reused only after the ring has wrapped,
 * which is far beyond the number of events NCCL keeps alive at once (at most 8 steps in flight
 * per connection). Every dereference of a parent checks that the pointer is a slot of this
 * context's ring of the expected kind, so a foreign or stale pointer reads as "unknown".
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "msginfo.h"
#include "profiler.h"

#define PROF_CTX_MAGIC 0x50524f46u

enum prof_kind { KIND_GROUP, KIND_OP, KIND_PROXYOP, KIND_STEP, KIND_COUNT };

/* Ring sizes per kind (powers of two). */
static const uint32_t ring_size[KIND_COUNT] = { 1024, 8192, 4096, 16384 };

struct prof_obj {
	enum prof_kind kind;
	struct rcmoe_msg_info info;
	_Atomic uint64_t send_peer_mask; /* groups: bit (peer % 64) per peer sent to */
	int32_t group_slot;              /* p2p: ring index of its group, -1 if none */
};

struct prof_ctx {
	uint32_t magic;
	uint64_t comm_id;
	int rank;
	int nranks;
	pid_t pid;
	struct prof_obj *ring[KIND_COUNT];
	_Atomic uint64_t next[KIND_COUNT];
};

static struct prof_obj *ring_alloc(struct prof_ctx *ctx, enum prof_kind kind)
{
	uint64_t i = atomic_fetch_add_explicit(&ctx->next[kind], 1, memory_order_relaxed);
	struct prof_obj *o = &ctx->ring[kind][i & (ring_size[kind] - 1)];
	o->kind = kind;
	rcmoe_msg_info_reset(&o->info);
	o->info.rank = ctx->rank;
	o->info.nranks = ctx->nranks;
	atomic_store_explicit(&o->send_peer_mask, 0, memory_order_relaxed);
	o->group_slot = -1;
	/* an operation's identity: its number in the ring's sequence, which never repeats */
	if (kind == KIND_OP)
		o->info.op_serial = i + 1;
	return o;
}

/* The object `p` if it is a slot of ctx's ring of `kind`, else NULL. */
static struct prof_obj *ring_lookup(struct prof_ctx *ctx, enum prof_kind kind, void *p)
{
	uintptr_t base = (uintptr_t)ctx->ring[kind];
	uintptr_t end = base + ring_size[kind] * sizeof(struct prof_obj);
	uintptr_t q = (uintptr_t)p;
	if (!p || q < base || q >= end || (q - base) % sizeof(struct prof_obj) != 0)
		return NULL;
	struct prof_obj *o = p;
	return o->kind == kind ? o : NULL;
}

rcmoe_status_t rcmoe_prof_init(void **context, uint64_t comm_id, int *mask, const char *name,
			       int nnodes, int nranks, int rank)
{
	struct prof_ctx *ctx = calloc(1, sizeof(*ctx));
	int k;
	if (!ctx)
		return RCMOE_ERR_NOMEM;
	for (k = 0; k < KIND_COUNT; k++) {
		ctx->ring[k] = calloc(ring_size[k], sizeof(struct prof_obj));
		if (!ctx->ring[k])
			goto free_rings;
	}
	ctx->magic = PROF_CTX_MAGIC;
	ctx->comm_id = comm_id;
	ctx->rank = rank;
	ctx->nranks = nranks;
	ctx->pid = getpid();
	/* Only add bits: another user of the mask (NCCL's own defaults) keeps its events. */
	if (mask)
		*mask |= RCMOE_PROF_MASK;
	*context = ctx;
	RCMOE_INFO(
		NCCL_INIT | NCCL_PROFILE,
		"profiler side on for comm %s (0x%lx), rank %d of %d, %d nodes: tracking datatypes",
		name ? name : "-", (unsigned long)comm_id, rank, nranks, nnodes);
	return RCMOE_OK;

free_rings:
	while (k-- > 0)
		free(ctx->ring[k]);
	free(ctx);
	return RCMOE_ERR_NOMEM;
}

static void start_group(struct prof_ctx *ctx, void **handle)
{
	*handle = ring_alloc(ctx, KIND_GROUP);
}

static void start_coll(struct prof_ctx *ctx, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	struct prof_obj *o = ring_alloc(ctx, KIND_OP);
	o->info.func = rcmoe_func_from_str(d->coll.func);
	o->info.dtype = rcmoe_dtype_from_str(d->coll.datatype);
	o->info.proto = rcmoe_proto_from_str(d->coll.proto);
	o->info.count = d->coll.count;
	o->info.peer = d->coll.root;
	*handle = o;
}

static void start_p2p(struct prof_ctx *ctx, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	struct prof_obj *o = ring_alloc(ctx, KIND_OP);
	o->info.func = rcmoe_func_from_str(d->p2p.func);
	o->info.dtype = rcmoe_dtype_from_str(d->p2p.datatype);
	o->info.count = d->p2p.count;
	o->info.peer = d->p2p.peer;
	/* Count the peers this rank sends to within the group: all-to-all sends to several. */
	struct prof_obj *g = ring_lookup(ctx, KIND_GROUP, d->p2p.parentGroup);
	if (!g)
		g = ring_lookup(ctx, KIND_GROUP, d->parentObj);
	if (g && o->info.func == ncclFuncSend && d->p2p.peer >= 0)
		atomic_fetch_or(&g->send_peer_mask, 1ull << (d->p2p.peer % 64));
	/* The group is complete only when the ProxyOp starts: count its peers then. */
	o->group_slot = g ? (int32_t)(g - ctx->ring[KIND_GROUP]) : -1;
	*handle = o;
}

/* A proxy op must agree with the p2p operation it names as its parent: same peer, and a Send
 * drives a send proxy op, a Recv a receive one. A parent that disagrees is not this op's (a
 * slot reused, or an event NCCL did not create for it): the op then stays unknown, so its
 * messages pass byte-exact. */
static int parent_agrees(const struct prof_obj *parent, const ncclProfilerEventDescr_v5_t *d)
{
	int func = parent->info.func;
	if (func != ncclFuncSend && func != ncclFuncRecv)
		return 1; /* collectives: the proxy op's peer is a ring neighbour, not the root */
	return d->proxyOp.peer == parent->info.peer &&
	       (d->proxyOp.isSend != 0) == (func == ncclFuncSend);
}

static void start_proxy_op(struct prof_ctx *ctx, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	struct prof_obj *o = ring_alloc(ctx, KIND_PROXYOP);
	/* Under PXN the parent lives in another process: leave the op unknown. */
	struct prof_obj *parent =
		d->proxyOp.pid == ctx->pid ? ring_lookup(ctx, KIND_OP, d->parentObj) : NULL;
	if (parent && !parent_agrees(parent, d)) {
		static atomic_int told;
		if (!atomic_exchange(&told, 1))
			RCMOE_INFO(NCCL_NET | NCCL_PROFILE,
				   "a proxy op (peer %d, %s) names a %s to peer %d as its parent: "
				   "its transfers pass byte-exact (reported once)",
				   d->proxyOp.peer, d->proxyOp.isSend ? "send" : "receive",
				   rcmoe_func_name(parent->info.func), parent->info.peer);
		parent = NULL;
	}
	if (parent) {
		o->info = parent->info;
		int32_t gi = parent->group_slot;
		if (gi >= 0) {
			uint64_t mask = atomic_load(&ctx->ring[KIND_GROUP][gi].send_peer_mask);
			o->info.group_send_peers = __builtin_popcountll(mask);
		}
		o->info.known = 1;
	}
	*handle = o;
}

static void start_step(struct prof_ctx *ctx, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	struct prof_obj *o = ring_alloc(ctx, KIND_STEP);
	struct prof_obj *op = ring_lookup(ctx, KIND_PROXYOP, d->parentObj);
	if (op)
		o->info = op->info;
	*handle = o;
}

/* The net side asks: which operation is this transfer part of? */
static void answer_net_plugin(struct prof_ctx *ctx, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	*handle = NULL; /* nothing to stop later */
	if (d->netPlugin.id != RCMOE_PROFILER_PLUGIN_ID || !d->netPlugin.data)
		return;
	struct rcmoe_msg_info *out = d->netPlugin.data;
	if (out->magic != RCMOE_MSGINFO_MAGIC)
		return;
	struct prof_obj *step = ring_lookup(ctx, KIND_STEP, d->parentObj);
	if (step && step->info.known)
		*out = step->info;
}

rcmoe_status_t rcmoe_prof_start(void *context, void **handle, ncclProfilerEventDescr_v5_t *d)
{
	struct prof_ctx *ctx = context;
	*handle = NULL;
	if (!ctx || ctx->magic != PROF_CTX_MAGIC || !d)
		return RCMOE_OK;
	switch (d->type) {
	case ncclProfileGroup: start_group(ctx, handle); break;
	case ncclProfileColl: start_coll(ctx, handle, d); break;
	case ncclProfileP2p: start_p2p(ctx, handle, d); break;
	case ncclProfileProxyOp: start_proxy_op(ctx, handle, d); break;
	case ncclProfileProxyStep: start_step(ctx, handle, d); break;
	case ncclProfileNetPlugin: answer_net_plugin(ctx, handle, d); break;
	default: break; /* events NCCL creates implicitly; we do not track them */
	}
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_prof_stop(void *handle)
{
	(void)handle; /* ring slots are recycled, never freed one by one */
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_prof_finalize(void *context)
{
	struct prof_ctx *ctx = context;
	if (!ctx)
		return RCMOE_OK;
	for (int k = 0; k < KIND_COUNT; k++)
		free(ctx->ring[k]);
	ctx->magic = 0;
	free(ctx);
	return RCMOE_OK;
}
