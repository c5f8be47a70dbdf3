/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup encoder on the GPU (rcmoe/wdedup_gpu.h): the bytes of rcmoe_wdedup_encode
 * (wdedup.c) with the sender's window in device memory.
 *
 * Why no sequential pass is needed. The matching rule (docs/stream-format.md) decides each block
 * from the committed window and the message alone: the window candidate of block i is the
 * dictionary's latest literal with its hash (a lookup), its message candidate the first full
 * block of the message with that hash (an atomicMin per hash), and the only order-dependent
 * quantity, the literal numbers, is an exclusive scan of the literal flags. So:
 *
 * 0. rcmoe_gpu_fill, twice: zeroes the message scalars, look-back states, ticket and the
 *    message's hash table keys; sets its first indexes to 0xff bytes ("none").
 * 1. wd_plan_kernel (1 x 32): whether the message starts an epoch (another operation or block
 *    size, an empty window, or numbers that would pass 2^32 - 1), its base and epoch.
 * 2. wd_hash_kernel (warp per full block, 256 threads): the dedup hash; a nonzero hash goes into
 *    the message table, whose slot keeps the smallest block index (atomicMin: schedule-free).
 *    A zero hash is the empty key on the CPU too: such a block is never matched.
 * 3. wd_window_kernel (warp per full block): the message candidate f, and the window match: the
 *    dictionary's literal e, if e + w >= base + i, its slot still holds e, and the warp finds
 *    its bytes in the ring equal to the block's.
 * 4. wd_decide_kernel (warp per block): window match; else message match (f < i, i - f <= w,
 *    f without a window match, bytes equal); else literal. A short last block is a literal.
 * 5. wd_scan_kernel (256 blocks per tile, decoupled look-back): literal ordinals, their count.
 * 6. wd_emit_kernel (warp per block): table entries, literal copies (into the stream, or into
 *    the scratch for LSQ), table padding.
 * 7. wd_count_kernel (1 x 32): the literal bytes and the first half of the result.
 *    [LSQ: the launcher returns; rcmoe_gpu_wdedup_finish_lsq LSQ-codes the gathered literals
 *    with rcmoe_gpu_lsq_encode once the host knows their number, then goes on at 8.]
 * 8. wd_finish_kernel (1 x 32): preamble, header, length, committed (length < bytes) and, when
 *    committed, the window's new epoch/numbering and whether its dictionary is cleared or
 *    rebuilt (the CPU rule: at most half full).
 * 9. wd_clear_kernel, wd_rebuild_kernel (grid-stride, 256 threads, return at once unless the
 *    finish kernel asked), wd_insert_kernel (warp per block): the window takes the message's
 *    literals that are within its last w, raw bytes into the ring and (nonzero) hashes into the
 *    dictionary with atomicMax on the number, so the latest literal wins whatever the order.
 *
 * The device dictionary need not match the CPU's slot for slot, only its answers: "the largest
 * inserted literal with this hash", compared against the window bounds. Rebuilding (or not) only
 * drops entries that the bound check refuses anyway, so the GPU rebuilds by the same rule without
 * having to follow the CPU's probe sequences.
 */
#include <string.h>

#include "wdedup_gpu.cuh"

#define WD_FROM_WINDOW UINT32_MAX /* srcblk: the block refers to its window match */

/* The window's scalars, at the start of the device allocation. */
struct wd_state {
	unsigned long long epoch, op, bb, w, count, inserted;
};

/* One message's scalars, at the start of the scratch (zeroed before each encode). */
struct wd_msg {
	unsigned long long fresh, count, epoch_out, nlit, lit_raw, committed, end;
	unsigned long long clear_slots, clear_dict, rebuild;
};

struct wd_args {
	const uint8_t *src;
	uint8_t *dst;
	uint64_t bytes, nblocks, nfull, tsize, ntiles, tb, w, op;
	uint32_t bb;
	int lsq;
	/* the window */
	struct wd_state *st;
	uint8_t *ring;
	uint64_t *slot_hash;
	unsigned long long *slot_num;
	uint32_t *slot_len;
	unsigned long long *dict_key, *dict_val; /* value: literal number + 1 */
	uint64_t slots, dict_size;
	/* the message */
	struct wd_msg *m;
	unsigned long long *keys, *states, *win;
	uint32_t *firstv, *first, *srcblk, *ord;
	uint64_t *hashes;
	unsigned int *ticket;
	uint8_t *lits; /* LSQ: the gathered literal blocks */
	struct rcmoe_gpu_wdedup_result *res;
	uint32_t hdr[RCMOE_HW_WORDS];
};

/* ---- the window on the device ---------------------------------------------------------------- */

struct wd_tx_layout {
	size_t state, ring, slot_hash, slot_num, slot_len, dict_key, dict_val, total;
};

static void wd_tx_layout(uint64_t window_bytes, uint64_t slots, uint64_t dict_size,
			 struct wd_tx_layout *l)
{
	l->state = 0;
	l->ring = 256;
	l->slot_hash = l->ring + rcmoe_align_up(window_bytes, 256);
	l->slot_num = l->slot_hash + rcmoe_align_up(8 * slots, 256);
	l->slot_len = l->slot_num + rcmoe_align_up(8 * slots, 256);
	l->dict_key = l->slot_len + rcmoe_align_up(4 * slots, 256);
	l->dict_val = l->dict_key + 8 * dict_size;
	l->total = l->dict_val + 8 * dict_size;
}

extern "C" rcmoe_status_t rcmoe_gpu_wdedup_tx_init(struct rcmoe_gpu_wdedup_tx *tx,
						   uint64_t window_bytes, uint32_t min_block,
						   cudaStream_t stream)
{
	struct rcmoe_wdedup_tx probe;
	struct wd_tx_layout l;
	if (!tx || rcmoe_wdedup_tx_init(&probe, window_bytes, min_block) != RCMOE_OK)
		return RCMOE_ERR_INVALID; /* the CPU window's size rules */
	memset(tx, 0, sizeof(*tx));
	tx->window_bytes = window_bytes;
	tx->min_block = min_block;
	tx->slots = window_bytes / min_block;
	tx->dict_size = 16;
	while (tx->dict_size < 4 * tx->slots)
		tx->dict_size *= 2;
	wd_tx_layout(window_bytes, tx->slots, tx->dict_size, &l);
	if (cudaMalloc((void **)&tx->d_mem, l.total) != cudaSuccess) {
		tx->d_mem = NULL;
		return RCMOE_ERR_NOMEM;
	}
	tx->mem_bytes = l.total;
	/* An empty window: epoch 0, no slot holds a literal, an empty dictionary. The ring's bytes
	 * are never read before a slot says they are a literal's. */
	if (rcmoe_gpu_fill(tx->d_mem, 0, l.ring, stream) != RCMOE_OK ||
	    rcmoe_gpu_fill(tx->d_mem + l.slot_hash, 0, l.total - l.slot_hash, stream) != RCMOE_OK) {
		rcmoe_gpu_wdedup_tx_free(tx);
		return RCMOE_ERR_CUDA;
	}
	return RCMOE_OK;
}

extern "C" void rcmoe_gpu_wdedup_tx_free(struct rcmoe_gpu_wdedup_tx *tx)
{
	if (!tx)
		return;
	if (tx->d_mem)
		cudaFree(tx->d_mem);
	tx->d_mem = NULL;
	tx->mem_bytes = 0;
}

/* ---- kernels --------------------------------------------------------------------------------- */

static __device__ uint64_t wd_dict_find(const struct wd_args &a, uint64_t h)
{
	uint64_t mask = a.dict_size - 1, s = h & mask;
	for (;;) {
		unsigned long long k = a.dict_key[s];
		if (k == 0)
			return WD_NONE;
		if (k == h)
			return a.dict_val[s] - 1;
		s = (s + 1) & mask;
	}
}

/* Never more than half full (the finish kernel rebuilds first), so a probe ends. */
static __device__ void wd_dict_put(const struct wd_args &a, uint64_t h, uint64_t e)
{
	uint64_t mask = a.dict_size - 1, s = h & mask;
	for (;;) {
		unsigned long long old = atomicCAS(&a.dict_key[s], 0ull, (unsigned long long)h);
		if (old == 0 || old == h) {
			atomicMax(&a.dict_val[s], (unsigned long long)(e + 1));
			atomicAdd(&a.st->inserted, 1ull);
			return;
		}
		s = (s + 1) & mask;
	}
}

__global__ void wd_plan_kernel(const struct wd_args a)
{
	if (threadIdx.x != 0)
		return;
	struct wd_state s = *a.st;
	bool fresh =
		s.epoch == 0 || a.op != s.op || a.bb != s.bb || s.count + a.nblocks > UINT32_MAX;
	a.m->fresh = fresh;
	a.m->count = fresh ? 0 : s.count;
	a.m->epoch_out = fresh ? s.epoch + 1 : s.epoch;
}

__global__ void __launch_bounds__(WD_NT) wd_hash_kernel(const struct wd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nfull)
		return;
	uint64_t h = dedup_warp_block_hash(a.src + i * a.bb, a.bb), s = h & (a.tsize - 1);
	if (lane != 0)
		return;
	a.hashes[i] = h;
	if (h == 0)
		return;
	for (;;) {
		unsigned long long old = atomicCAS(&a.keys[s], 0ull, (unsigned long long)h);
		if (old == 0 || old == h) {
			atomicMin(&a.firstv[s], (uint32_t)i);
			return;
		}
		s = (s + 1) & (a.tsize - 1);
	}
}

__global__ void __launch_bounds__(WD_NT) wd_window_kernel(const struct wd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nfull)
		return;
	/* every lane computes the same values, so the warp stays converged for the compare */
	uint64_t h = a.hashes[i], win = WD_NONE;
	uint32_t f = (uint32_t)i;
	if (h != 0) {
		uint64_t s = h & (a.tsize - 1);
		while (a.keys[s] != h)
			s = (s + 1) & (a.tsize - 1);
		f = a.firstv[s];
	}
	const uint64_t count = a.m->count;
	if (!a.m->fresh && h != 0) {
		uint64_t e = wd_dict_find(a, h);
		if (e != WD_NONE && e + a.w >= count + i) {
			uint64_t s = e % a.w;
			if (a.slot_num[s] == e + 1 && a.slot_len[s] == a.bb &&
			    dedup_warp_equal(a.ring + s * a.bb, a.src + i * a.bb, a.bb))
				win = e;
		}
	}
	if (lane == 0) {
		a.first[i] = f;
		a.win[i] = win;
	}
}

__global__ void __launch_bounds__(WD_NT) wd_decide_kernel(const struct wd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nblocks)
		return;
	uint32_t src = (uint32_t)i;
	if (i < a.nfull) {
		if (a.win[i] != WD_NONE) {
			src = WD_FROM_WINDOW;
		} else {
			uint32_t f = a.first[i];
			if (f < i && i - f <= a.w && a.win[f] == WD_NONE &&
			    dedup_warp_equal(a.src + (uint64_t)f * a.bb, a.src + i * a.bb, a.bb))
				src = f;
		}
	}
	if (lane == 0)
		a.srcblk[i] = src;
}

__global__ void __launch_bounds__(WD_NT) wd_scan_kernel(const struct wd_args a)
{
	__shared__ uint32_t s_tile, s_scan[33];
	__shared__ uint64_t s_prefix;
	if (threadIdx.x == 0)
		s_tile = atomicAdd(a.ticket, 1u);
	__syncthreads();
	const uint32_t tile = s_tile;
	const uint64_t i = (uint64_t)tile * WD_NT + threadIdx.x;
	uint32_t lit = i < a.nblocks && a.srcblk[i] == i;
	uint32_t total, ex = block_exclusive_scan(lit, &total, s_scan);
	if (threadIdx.x == 0)
		lb_store(&a.states[tile], (tile == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | total);
	if (threadIdx.x < 32) {
		uint64_t p = tile ? lb_exclusive_prefix(a.states, tile) : 0;
		if (threadIdx.x == 0) {
			s_prefix = p;
			if (tile)
				lb_store(&a.states[tile], RCMOE_LB_INC | (p + total));
			if (tile == a.ntiles - 1)
				a.m->nlit = p + total;
		}
	}
	__syncthreads();
	if (lit)
		a.ord[i] = (uint32_t)(s_prefix + ex);
}

__global__ void __launch_bounds__(WD_NT) wd_emit_kernel(const struct wd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	uint8_t *table = a.dst + RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES;
	uint8_t *lits = a.lsq ? a.lits : table + a.tb;
	if (blockIdx.x == 0 && threadIdx.x < 16 && a.nblocks * 4 + threadIdx.x < a.tb)
		table[a.nblocks * 4 + threadIdx.x] = 0;
	if (i >= a.nblocks)
		return;
	uint32_t s = a.srcblk[i];
	uint64_t ref = s == WD_FROM_WINDOW ? a.win[i] : a.m->count + a.ord[s];
	if (lane == 0)
		((uint32_t *)table)[i] = (uint32_t)ref;
	if (s == i) {
		uint64_t sz = min((uint64_t)a.bb, a.bytes - i * a.bb);
		dedup_warp_copy(lits + (uint64_t)a.ord[i] * a.bb, a.src + i * a.bb, sz);
	}
}

__global__ void wd_count_kernel(const struct wd_args a)
{
	if (threadIdx.x != 0)
		return;
	uint64_t nlit = a.m->nlit, tail = a.bytes % a.bb;
	/* a short last block is always a literal, and the last one */
	a.m->lit_raw = nlit * a.bb - (tail ? a.bb - tail : 0);
	a.res->len = 0;
	a.res->committed = 0;
	a.res->blocks = a.nblocks;
	a.res->duplicates = 0;
	a.res->saved_bytes = 0;
	a.res->nlit = nlit;
	a.res->lit_raw_bytes = a.m->lit_raw;
}

__global__ void wd_finish_kernel(const struct wd_args a)
{
	if (threadIdx.x != 0)
		return;
	struct wd_msg *m = a.m;
	uint8_t *payload = a.dst + RCMOE_WIRE_HEADER_BYTES;
	uint8_t *table = payload + RCMOE_WDEDUP_PREAMBLE_BYTES;
	uint64_t nlit = m->nlit, lit_bytes = m->lit_raw;
	if (a.lsq) { /* the inner LSQ stream's length, from the header its kernel wrote */
		const uint32_t *ih = (const uint32_t *)(table + a.tb);
		lit_bytes = RCMOE_WIRE_HEADER_BYTES +
			    (ih[RCMOE_HW_PAYLOAD] | (uint64_t)ih[RCMOE_HW_PAYLOAD + 1] << 32);
	}
	*(uint64_t *)payload = m->epoch_out;
	*(uint64_t *)(payload + 8) = m->count;
	*(uint32_t *)(payload + 16) = (uint32_t)nlit;
	*(uint32_t *)(payload + 20) = (uint32_t)a.w;
	*(uint64_t *)(payload + 24) = lit_bytes;
	uint64_t payload_len = RCMOE_WDEDUP_PREAMBLE_BYTES + a.tb + lit_bytes;
	write_header(a.dst, a.hdr, payload_len);
	uint64_t len = RCMOE_WIRE_HEADER_BYTES + payload_len;
	bool committed = len < a.bytes;
	a.res->len = len;
	a.res->committed = committed;
	a.res->duplicates = committed ? a.nblocks - nlit : 0;
	a.res->saved_bytes = committed ? (a.nblocks - nlit) * a.bb : 0;
	m->committed = committed;
	if (!committed)
		return; /* sent raw: the receiver will not record it, so neither does the window */
	struct wd_state *st = a.st;
	if (m->fresh) {
		st->epoch++;
		st->op = a.op;
		st->bb = a.bb;
		st->w = a.w;
		st->inserted = 0;
		m->clear_slots = 1;
		m->clear_dict = 1;
	}
	uint64_t adds = nlit < a.w ? nlit : a.w;
	if (st->inserted + adds > a.dict_size / 2) {
		m->rebuild = 1;
		m->clear_dict = 1;
		st->inserted = 0;
	}
	m->end = m->count + nlit;
	st->count = m->end;
}

__global__ void __launch_bounds__(WD_NT) wd_clear_kernel(const struct wd_args a)
{
	const bool slots = a.m->clear_slots, dict = a.m->clear_dict;
	if (!slots && !dict)
		return;
	const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     k < (slots ? a.slots : 0); k += stride)
		a.slot_num[k] = 0;
	for (uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	     k < (dict ? a.dict_size : 0); k += stride) {
		a.dict_key[k] = 0;
		a.dict_val[k] = 0;
	}
}

/* The dictionary again from the ring: the literals the window still holds. */
__global__ void __launch_bounds__(WD_NT) wd_rebuild_kernel(const struct wd_args a)
{
	if (!a.m->rebuild)
		return;
	const uint64_t count = a.m->count, lo = count > a.w ? count - a.w : 0;
	const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t e = lo + (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; e < count;
	     e += stride) {
		uint64_t s = e % a.w;
		if (a.slot_num[s] == e + 1 && a.slot_len[s] == a.bb && a.slot_hash[s] != 0)
			wd_dict_put(a, a.slot_hash[s], e);
	}
}

__global__ void __launch_bounds__(WD_NT) wd_insert_kernel(const struct wd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * WD_WARPS + (threadIdx.x >> 5);
	if (!a.m->committed || i >= a.nblocks || a.srcblk[i] != i)
		return;
	uint64_t e = a.m->count + a.ord[i];
	if (e + a.w < a.m->end)
		return; /* gone from the window by the message's end */
	uint64_t s = e % a.w, sz = min((uint64_t)a.bb, a.bytes - i * a.bb);
	dedup_warp_copy(a.ring + s * a.bb, a.src + i * a.bb, sz);
	if (lane != 0)
		return;
	a.slot_num[s] = e + 1;
	a.slot_len[s] = (uint32_t)sz;
	if (sz == a.bb) {
		a.slot_hash[s] = a.hashes[i];
		if (a.hashes[i] != 0)
			wd_dict_put(a, a.hashes[i], e);
	}
}

/* ---- launchers ------------------------------------------------------------------------------- */

struct wd_work {
	size_t msg, states, keys, zero_end, firstv, hashes, first, win, srcblk, ord, lits, lsq,
		lsq_bytes, total;
};

static void wd_work_layout(uint64_t bytes, const struct rcmoe_wdedup_cfg *cfg, uint64_t nblocks,
			   uint64_t tsize, uint64_t ntiles, struct wd_work *w)
{
	uint64_t nb1 = nblocks ? nblocks : 1;
	/* zeroed together: message scalars, look-back states and ticket, hash table keys */
	w->msg = 0;
	w->states = 256;
	w->keys = w->states + rcmoe_align_up(8 * ntiles + 8, 256);
	w->zero_end = w->keys + 8 * tsize;
	/* set to 0xff: the first block of each hash */
	w->firstv = rcmoe_align_up(w->zero_end, 256);
	w->hashes = w->firstv + rcmoe_align_up(4 * tsize, 256);
	w->first = w->hashes + rcmoe_align_up(8 * nb1, 256);
	w->win = w->first + rcmoe_align_up(4 * nb1, 256);
	w->srcblk = w->win + rcmoe_align_up(8 * nb1, 256);
	w->ord = w->srcblk + rcmoe_align_up(4 * nb1, 256);
	w->lits = w->ord + rcmoe_align_up(4 * nb1, 256);
	w->lsq = w->lits;
	w->lsq_bytes = 0;
	if (cfg->lsq.bits) {
		size_t esize = rcmoe_dtype_size(cfg->lsq.dtype);
		w->lsq = w->lits + rcmoe_align_up(bytes ? bytes : 1, 256);
		/* the literals are at most the whole message; the LSQ scratch grows with n */
		w->lsq_bytes = rcmoe_gpu_lsq_work_bytes(bytes / esize, &cfg->lsq);
	}
	w->total = w->lsq + rcmoe_align_up(w->lsq_bytes, 256);
}

/* Checks as rcmoe_wdedup_encode's, then the arguments of every kernel. */
static rcmoe_status_t wd_setup(const struct rcmoe_gpu_wdedup_tx *tx,
			       const struct rcmoe_wdedup_cfg *cfg, const void *d_src, size_t bytes,
			       void *d_dst, size_t cap, void *d_work, size_t work_bytes,
			       struct rcmoe_gpu_wdedup_result *d_result, struct wd_args *a,
			       struct wd_work *w)
{
	if (!tx || !tx->d_mem || !cfg || (!d_src && bytes) || !d_dst || !d_work || !d_result ||
	    ((uintptr_t)d_src % 4) || ((uintptr_t)d_dst % 16) || ((uintptr_t)d_work % 16))
		return RCMOE_ERR_INVALID;
	size_t bound = rcmoe_wdedup_bound(bytes, cfg);
	uint32_t bb = cfg->block_bytes;
	if (bound == 0 || bb < tx->min_block || bb > tx->window_bytes ||
	    (bytes + bb - 1) / bb > UINT32_MAX)
		return RCMOE_ERR_INVALID;
	if (cap < bound)
		return RCMOE_ERR_OVERFLOW;
	uint64_t nblocks = (bytes + bb - 1) / bb, tsize = 16, ntiles;
	while (tsize < 2 * (bytes / bb))
		tsize *= 2;
	ntiles = (nblocks + WD_NT - 1) / WD_NT;
	if (ntiles == 0)
		ntiles = 1;
	wd_work_layout(bytes, cfg, nblocks, tsize, ntiles, w);
	if (work_bytes < w->total || ntiles > 0x7fffffffu)
		return RCMOE_ERR_INVALID;

	struct wd_tx_layout l;
	wd_tx_layout(tx->window_bytes, tx->slots, tx->dict_size, &l);
	uint8_t *work = (uint8_t *)d_work;
	int lsq = cfg->lsq.bits != 0;
	struct rcmoe_wire_header h;
	memset(&h, 0, sizeof(h));
	h.magic = RCMOE_WIRE_MAGIC;
	h.version = RCMOE_WIRE_VERSION;
	h.codec = RCMOE_CODEC_WDEDUP;
	h.dtype = (uint8_t)(lsq ? cfg->lsq.dtype : 0);
	h.bits = (uint8_t)(lsq ? cfg->lsq.bits : 0);
	h.block = bb;
	h.count = bytes;
	h.op_id = cfg->op_id;
	rcmoe_wire_words(&h, a->hdr); /* payload_len: filled in on the GPU */
	a->src = (const uint8_t *)d_src;
	a->dst = (uint8_t *)d_dst;
	a->bytes = bytes;
	a->nblocks = nblocks;
	a->nfull = bytes / bb;
	a->tsize = tsize;
	a->ntiles = ntiles;
	a->tb = wd_table_bytes(nblocks);
	a->w = tx->window_bytes / bb;
	a->op = cfg->op;
	a->bb = bb;
	a->lsq = lsq;
	a->st = (struct wd_state *)(tx->d_mem + l.state);
	a->ring = tx->d_mem + l.ring;
	a->slot_hash = (uint64_t *)(tx->d_mem + l.slot_hash);
	a->slot_num = (unsigned long long *)(tx->d_mem + l.slot_num);
	a->slot_len = (uint32_t *)(tx->d_mem + l.slot_len);
	a->dict_key = (unsigned long long *)(tx->d_mem + l.dict_key);
	a->dict_val = (unsigned long long *)(tx->d_mem + l.dict_val);
	a->slots = tx->slots;
	a->dict_size = tx->dict_size;
	a->m = (struct wd_msg *)(work + w->msg);
	a->states = (unsigned long long *)(work + w->states);
	a->ticket = (unsigned int *)(work + w->states + 8 * ntiles);
	a->keys = (unsigned long long *)(work + w->keys);
	a->firstv = (uint32_t *)(work + w->firstv);
	a->hashes = (uint64_t *)(work + w->hashes);
	a->first = (uint32_t *)(work + w->first);
	a->win = (unsigned long long *)(work + w->win);
	a->srcblk = (uint32_t *)(work + w->srcblk);
	a->ord = (uint32_t *)(work + w->ord);
	a->lits = work + w->lits;
	a->res = d_result;
	return RCMOE_OK;
}

extern "C" size_t rcmoe_gpu_wdedup_work_bytes(size_t bytes, const struct rcmoe_wdedup_cfg *cfg)
{
	struct wd_work w;
	if (!cfg || rcmoe_wdedup_bound(bytes, cfg) == 0)
		return 0;
	uint32_t bb = cfg->block_bytes;
	uint64_t nblocks = (bytes + bb - 1) / bb, tsize = 16,
		 ntiles = (nblocks + WD_NT - 1) / WD_NT;
	while (tsize < 2 * (bytes / bb))
		tsize *= 2;
	wd_work_layout(bytes, cfg, nblocks, tsize, ntiles ? ntiles : 1, &w);
	return w.total;
}

/* Steps 8 and 9: the stream's head, and the window takes the message if it was committed. */
static rcmoe_status_t wd_finish(const struct wd_args *a, cudaStream_t stream)
{
	wd_finish_kernel<<<1, 32, 0, stream>>>(*a);
	uint64_t most = a->slots > a->dict_size ? a->slots : a->dict_size;
	/* grid-stride: enough CTAs to cover the tables, at most 512 */
	unsigned clear_grid = wd_grid(most, WD_NT), rebuild_grid = wd_grid(a->w, WD_NT);
	clear_grid = clear_grid > 512 ? 512 : clear_grid;
	rebuild_grid = rebuild_grid > 512 ? 512 : rebuild_grid;
	wd_clear_kernel<<<clear_grid, WD_NT, 0, stream>>>(*a);
	wd_rebuild_kernel<<<rebuild_grid, WD_NT, 0, stream>>>(*a);
	wd_insert_kernel<<<wd_grid(a->nblocks, WD_WARPS), WD_NT, 0, stream>>>(*a);
	return rcmoe_cuda_launch_status();
}

extern "C" rcmoe_status_t rcmoe_gpu_wdedup_encode(struct rcmoe_gpu_wdedup_tx *tx,
						  const struct rcmoe_wdedup_cfg *cfg,
						  const void *d_src, size_t bytes, void *d_dst,
						  size_t cap, void *d_work, size_t work_bytes,
						  struct rcmoe_gpu_wdedup_result *d_result,
						  cudaStream_t stream)
{
	struct wd_args a;
	struct wd_work w;
	rcmoe_status_t st =
		wd_setup(tx, cfg, d_src, bytes, d_dst, cap, d_work, work_bytes, d_result, &a, &w);
	if (st != RCMOE_OK)
		return st;
	/* Scratch set by kernels, never cudaMemsetAsync (fill.cu says why). */
	if (rcmoe_gpu_fill(d_work, 0, w.zero_end, stream) != RCMOE_OK ||
	    rcmoe_gpu_fill((uint8_t *)d_work + w.firstv, 0xff, 4 * a.tsize, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	wd_plan_kernel<<<1, 32, 0, stream>>>(a);
	wd_hash_kernel<<<wd_grid(a.nfull, WD_WARPS), WD_NT, 0, stream>>>(a);
	wd_window_kernel<<<wd_grid(a.nfull, WD_WARPS), WD_NT, 0, stream>>>(a);
	wd_decide_kernel<<<wd_grid(a.nblocks, WD_WARPS), WD_NT, 0, stream>>>(a);
	wd_scan_kernel<<<(unsigned)a.ntiles, WD_NT, 0, stream>>>(a);
	wd_emit_kernel<<<wd_grid(a.nblocks, WD_WARPS), WD_NT, 0, stream>>>(a);
	wd_count_kernel<<<1, 32, 0, stream>>>(a);
	if (rcmoe_cuda_launch_status() != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	if (a.lsq)
		return RCMOE_OK; /* rcmoe_gpu_wdedup_finish_lsq goes on */
	return wd_finish(&a, stream);
}

extern "C" rcmoe_status_t
rcmoe_gpu_wdedup_finish_lsq(struct rcmoe_gpu_wdedup_tx *tx, const struct rcmoe_wdedup_cfg *cfg,
			    const void *d_src, size_t bytes, uint64_t lit_raw_bytes, void *d_dst,
			    size_t cap, void *d_work, size_t work_bytes,
			    struct rcmoe_gpu_wdedup_result *d_result, cudaStream_t stream)
{
	struct wd_args a;
	struct wd_work w;
	/* d_src again: the window takes the literals' raw bytes from it */
	rcmoe_status_t st =
		wd_setup(tx, cfg, d_src, bytes, d_dst, cap, d_work, work_bytes, d_result, &a, &w);
	if (st != RCMOE_OK)
		return st;
	if (!a.lsq || lit_raw_bytes > bytes)
		return RCMOE_ERR_INVALID;
	size_t esize = rcmoe_dtype_size(cfg->lsq.dtype);
	size_t head = RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + a.tb;
	st = rcmoe_gpu_lsq_encode(a.lits, lit_raw_bytes / esize, &cfg->lsq, a.dst + head,
				  cap - head, (uint8_t *)d_work + w.lsq, w.lsq_bytes, stream);
	if (st != RCMOE_OK)
		return st;
	return wd_finish(&a, stream);
}
