/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exact block dedup on the GPU: the same matching rule and bytes as rcmoe_dedup_encode
 * (dedup.c). Launch configuration (all kernels 256 threads = 8 warps, one warp per block where a
 * block is handled at all):
 * 0. rcmoe_gpu_fill (fill.cu: up to 32 blocks of 256 threads, grid-stride), twice on the same
 *    stream: zeroes keys, tile states, ticket and literal count, and sets the first indexes
 *    to 0xff bytes (UINT32_MAX, "no block yet").
 * 1. dedup_hash_kernel: grid = full blocks / 8. Each warp folds its block's 8-byte words into
 *    the order-free hash sum, then inserts the hash into an open-addressing table (atomicCAS on
 *    the key) and lowers the slot's first index (atomicMin): after the kernel each distinct hash
 *    maps to the smallest block index that has it, whatever the schedule was.
 * 2. dedup_match_kernel: grid = blocks / 8. A block whose hash's first index is earlier is
 *    byte-compared with it by the warp; equal means duplicate.
 * 3. dedup_scan_kernel: grid = blocks / 256 tiles, thread per block: literal ordinals by
 *    decoupled look-back; the last tile stores the literal count.
 * 4. dedup_emit_kernel: grid = blocks / 8 (at least 1). Writes each block's table entry
 *    (its own ordinal, or its source's), copies literals to their place, zeroes the table
 *    padding and writes the header.
 * Decode: dedup_decode_kernel, grid = blocks / 8, warp per block copies from its literal.
 */
#include "dedup_warp.cuh"
#include "gpu_internal.h"

#define DD_NT    256
#define DD_WARPS (DD_NT / 32)

struct dd_args {
	const uint8_t *src;
	uint8_t *dst;
	uint64_t bytes, nblocks, nfull, tsize, ntiles, table_bytes;
	uint32_t bb;
	uint64_t *hashes;
	uint32_t *first; /* table values */
	unsigned long long *keys;
	uint32_t *srcblk;
	uint32_t *ord;
	unsigned long long *states;
	unsigned int *ticket;
	unsigned long long *nlit;
	uint32_t hdr[RCMOE_HW_WORDS];
};

__global__ void __launch_bounds__(DD_NT) dedup_hash_kernel(const struct dd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * DD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nfull)
		return;
	uint64_t h = dedup_warp_block_hash(a.src + i * a.bb, a.bb), s = h & (a.tsize - 1);
	if (lane != 0)
		return;
	a.hashes[i] = h;
	for (;;) {
		unsigned long long old = atomicCAS(&a.keys[s], 0ull, (unsigned long long)h);
		if (old == 0 || old == h) {
			atomicMin(&a.first[s], (uint32_t)i);
			return;
		}
		s = (s + 1) & (a.tsize - 1);
	}
}

__global__ void __launch_bounds__(DD_NT) dedup_match_kernel(const struct dd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * DD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nblocks)
		return;
	uint32_t src = (uint32_t)i;
	if (i < a.nfull) {
		uint64_t h = a.hashes[i], s = h & (a.tsize - 1);
		while (a.keys[s] != h)
			s = (s + 1) & (a.tsize - 1);
		uint32_t j = a.first[s];
		if (j < i && dedup_warp_equal(a.src + i * a.bb, a.src + (uint64_t)j * a.bb, a.bb))
			src = j;
	}
	if (lane == 0)
		a.srcblk[i] = src;
}

__global__ void __launch_bounds__(DD_NT) dedup_scan_kernel(const struct dd_args a)
{
	__shared__ uint32_t s_tile, s_scan[33];
	if (threadIdx.x == 0)
		s_tile = atomicAdd(a.ticket, 1u);
	__syncthreads();
	const uint32_t tile = s_tile;
	const uint64_t i = (uint64_t)tile * DD_NT + threadIdx.x;
	uint32_t lit = i < a.nblocks && a.srcblk[i] == i;
	uint32_t total, ex = block_exclusive_scan(lit, &total, s_scan);
	if (threadIdx.x == 0)
		lb_store(&a.states[tile], (tile == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | total);
	__shared__ uint64_t s_prefix;
	if (threadIdx.x < 32) {
		uint64_t p = tile ? lb_exclusive_prefix(a.states, tile) : 0;
		if (threadIdx.x == 0) {
			s_prefix = p;
			if (tile)
				lb_store(&a.states[tile], RCMOE_LB_INC | (p + total));
			if (tile == a.ntiles - 1)
				*a.nlit = p + total;
		}
	}
	__syncthreads();
	if (lit)
		a.ord[i] = (uint32_t)(s_prefix + ex);
}

__global__ void __launch_bounds__(DD_NT) dedup_emit_kernel(const struct dd_args a)
{
	const int lane = threadIdx.x & 31;
	const uint64_t i = (uint64_t)blockIdx.x * DD_WARPS + (threadIdx.x >> 5);
	uint8_t *payload = a.dst + RCMOE_WIRE_HEADER_BYTES;
	if (blockIdx.x == 0 && threadIdx.x < 16) {
		/* table padding, then the header from the literal count */
		if (a.nblocks * 4 + threadIdx.x < a.table_bytes)
			payload[a.nblocks * 4 + threadIdx.x] = 0;
		if (threadIdx.x == 0) {
			uint64_t nlit = *a.nlit, tail = a.bytes % a.bb;
			uint64_t lit = nlit * a.bb - (tail ? a.bb - tail : 0);
			write_header(a.dst, a.hdr, a.table_bytes + lit);
		}
	}
	if (i >= a.nblocks)
		return;
	uint32_t s = a.srcblk[i], o = a.ord[s];
	if (lane == 0)
		((uint32_t *)payload)[i] = o;
	if (s == i) {
		uint64_t sz = min((uint64_t)a.bb, a.bytes - i * a.bb);
		dedup_warp_copy(payload + a.table_bytes + (uint64_t)o * a.bb, a.src + i * a.bb, sz);
	}
}

struct dd_work {
	uint64_t nblocks, nfull, tsize, ntiles;
	size_t keys, states, ticket, nlit, zero_end, first, hashes, srcblk, ord, total;
};

static void dd_layout(uint64_t bytes, uint32_t bb, struct dd_work *w)
{
	w->nblocks = (bytes + bb - 1) / bb;
	w->nfull = bytes / bb;
	w->tsize = 16;
	while (w->tsize < 2 * w->nfull)
		w->tsize *= 2;
	w->ntiles = (w->nblocks + DD_NT - 1) / DD_NT;
	if (w->ntiles == 0)
		w->ntiles = 1;
	/* zeroed together: keys, tile states, ticket, literal count */
	w->keys = 0;
	w->states = w->keys + rcmoe_align_up(8 * w->tsize, 256);
	w->ticket = w->states + rcmoe_align_up(8 * w->ntiles, 256);
	w->nlit = w->ticket + 8;
	w->zero_end = w->nlit + 8;
	/* set to 0xff: first indexes */
	w->first = rcmoe_align_up(w->zero_end, 256);
	w->hashes = w->first + rcmoe_align_up(4 * w->tsize, 256);
	w->srcblk = w->hashes + rcmoe_align_up(8 * (w->nfull ? w->nfull : 1), 256);
	w->ord = w->srcblk + rcmoe_align_up(4 * (w->nblocks ? w->nblocks : 1), 256);
	w->total = w->ord + rcmoe_align_up(4 * (w->nblocks ? w->nblocks : 1), 256);
}

extern "C" size_t rcmoe_gpu_dedup_work_bytes(size_t bytes, uint32_t block_bytes)
{
	struct dd_work w;
	if (rcmoe_dedup_bound(bytes, block_bytes) == 0)
		return 0;
	dd_layout(bytes, block_bytes, &w);
	return w.total;
}

static unsigned grid_for(uint64_t items, uint64_t per_cta)
{
	uint64_t g = (items + per_cta - 1) / per_cta;
	return (unsigned)(g ? g : 1);
}

extern "C" rcmoe_status_t rcmoe_gpu_dedup_encode(const void *d_src, size_t bytes,
						 uint32_t block_bytes, void *d_dst, size_t cap,
						 void *d_work, size_t work_bytes,
						 cudaStream_t stream)
{
	struct dd_work w;
	struct dd_args a;
	size_t bound = rcmoe_dedup_bound(bytes, block_bytes);
	if (bound == 0 || (!d_src && bytes) || !d_dst || !d_work || ((uintptr_t)d_src % 4) ||
	    ((uintptr_t)d_dst % 16) || ((uintptr_t)d_work % 16))
		return RCMOE_ERR_INVALID;
	if (cap < bound)
		return RCMOE_ERR_OVERFLOW;
	dd_layout(bytes, block_bytes, &w);
	if (work_bytes < w.total || w.nblocks > UINT32_MAX || w.ntiles > 0x7fffffffu)
		return RCMOE_ERR_INVALID;
	uint8_t *work = (uint8_t *)d_work;
	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_DEDUP,
		.dtype = 0,
		.bits = 0,
		.flags = 0,
		.block = block_bytes,
		.count = bytes,
		.seed = 0,
		.op_id = 0,
		.rank = 0,
		.payload_len = 0,
		.aux = 0,
	};
	rcmoe_wire_words(&h, a.hdr);
	a.src = (const uint8_t *)d_src;
	a.dst = (uint8_t *)d_dst;
	a.bytes = bytes;
	a.nblocks = w.nblocks;
	a.nfull = w.nfull;
	a.tsize = w.tsize;
	a.ntiles = w.ntiles;
	a.table_bytes = (w.nblocks * 4 + 15) / 16 * 16;
	a.bb = block_bytes;
	a.keys = (unsigned long long *)(work + w.keys);
	a.states = (unsigned long long *)(work + w.states);
	a.ticket = (unsigned int *)(work + w.ticket);
	a.nlit = (unsigned long long *)(work + w.nlit);
	a.first = (uint32_t *)(work + w.first);
	a.hashes = (uint64_t *)(work + w.hashes);
	a.srcblk = (uint32_t *)(work + w.srcblk);
	a.ord = (uint32_t *)(work + w.ord);
	/* Scratch set by kernels, not cudaMemsetAsync: this may run on NCCL's proxy thread, where
	 * the driver's memset path could block on the lock another thread's synchronous copy holds
	 * while it waits for NCCL (fill.cu). Same bytes as before: zeros, then 0xff. */
	if (rcmoe_gpu_fill(work, 0, w.zero_end, stream) != RCMOE_OK ||
	    rcmoe_gpu_fill(work + w.first, 0xff, 4 * w.tsize, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	dedup_hash_kernel<<<grid_for(w.nfull, DD_WARPS), DD_NT, 0, stream>>>(a);
	dedup_match_kernel<<<grid_for(w.nblocks, DD_WARPS), DD_NT, 0, stream>>>(a);
	dedup_scan_kernel<<<(unsigned)w.ntiles, DD_NT, 0, stream>>>(a);
	dedup_emit_kernel<<<grid_for(w.nblocks, DD_WARPS), DD_NT, 0, stream>>>(a);
	return rcmoe_cuda_launch_status();
}

struct dd_dec_args {
	const uint8_t *src;
	uint8_t *dst;
	uint64_t bytes, nblocks, table_bytes;
	uint32_t bb;
};

__global__ void __launch_bounds__(DD_NT) dedup_decode_kernel(const struct dd_dec_args a)
{
	const uint64_t i = (uint64_t)blockIdx.x * DD_WARPS + (threadIdx.x >> 5);
	if (i >= a.nblocks)
		return;
	const uint8_t *payload = a.src + RCMOE_WIRE_HEADER_BYTES;
	uint32_t o = ((const uint32_t *)payload)[i];
	uint64_t sz = min((uint64_t)a.bb, a.bytes - i * a.bb);
	dedup_warp_copy(a.dst + i * a.bb, payload + a.table_bytes + (uint64_t)o * a.bb, sz);
}

size_t rcmoe_gpu_dedup_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	(void)hdr;
	return 0;
}

rcmoe_status_t rcmoe_gpu_dedup_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
				      void *d_dst, cudaStream_t stream)
{
	struct dd_dec_args a;
	a.src = (const uint8_t *)d_src;
	a.dst = (uint8_t *)d_dst;
	a.bytes = hdr->count;
	a.bb = hdr->block;
	a.nblocks = (hdr->count + hdr->block - 1) / hdr->block;
	a.table_bytes = (a.nblocks * 4 + 15) / 16 * 16;
	if (a.nblocks == 0)
		return RCMOE_OK;
	dedup_decode_kernel<<<grid_for(a.nblocks, DD_WARPS), DD_NT, 0, stream>>>(a);
	return rcmoe_cuda_launch_status();
}
