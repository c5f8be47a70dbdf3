/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LSQ encoder, single pass: each tile loads its elements once into registers, reduces block
 * maxima, publishes its compacted size, computes the codes while its predecessors finish, learns
 * its output offset by look-back and writes scales, codes, raw blocks and its part of the kind
 * table. The last tile writes the header. Same bytes as rcmoe_lsq_encode (lsq.c).
 *
 * Launch configuration: see lsq_tile.cuh (256 threads per 8192-element tile, grid = tiles,
 * 2.3 KB of static shared memory). First rcmoe_gpu_fill (fill.cu: up to 32 blocks of 256
 * threads, grid-stride) zeroes the tile states and the ticket on the same stream.
 */
#include "lsq_tile.cuh"

struct lsq_enc_args {
	const uint8_t *src;
	uint8_t *dst;
	struct lsq_geom g;
	uint64_t key;
	unsigned long long *states;
	unsigned int *ticket;
	int vec; /* src is 16-byte aligned */
	uint32_t hdr[RCMOE_HW_WORDS];
};

/* Pack the codes of 8 consecutive elements: 64 (b=8), 32 (b=4) or 16 (b=2) bits. */
template <int BITS> static __device__ __forceinline__ void pack8(const uint32_t c[8], uint32_t w[2])
{
	w[0] = w[1] = 0;
	for (int k = 0; k < 8; k++) {
		if (BITS == 8)
			w[k / 4] |= c[k] << (8 * (k % 4));
		else
			w[0] |= c[k] << (BITS * k);
	}
}

template <int DT, int BITS>
__global__ void __launch_bounds__(LSQ_NT, DT == RCMOE_DT_FP32_ ? 3 : 4)
    lsq_encode_kernel(const struct lsq_enc_args a)
{
	__shared__ uint32_t s_tile;
	__shared__ uint8_t s_kind[256];
	__shared__ uint32_t s_off[256];
	__shared__ uint32_t s_scan[33];
	__shared__ uint64_t s_prefix;

	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const uint32_t esize = DT == RCMOE_DT_FP32_ ? 4u : 2u;
	const int L = (1 << (BITS - 1)) - 1;
	const uint32_t log2b = a.g.log2b, B = 1u << log2b, G = B >= 256 ? 32u : B / 8u;
	const uint64_t n = a.g.n;

	if (threadIdx.x == 0)
		s_tile = atomicAdd(a.ticket, 1u);
	s_kind[threadIdx.x] = 0;
	s_off[threadIdx.x] = 0;
	__syncthreads();
	const uint32_t tile = s_tile;
	const uint64_t te0 = (uint64_t)tile * LSQ_TILE;
	const bool vec = a.vec && te0 + LSQ_TILE <= n;

	/* load and per-lane maxima of |x| (as fp32 bits: an exact, order-free max) */
	uint32_t raw[LSQ_STEPS][8], amax[LSQ_STEPS];
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++)
		ld8_packed<DT>(a.src, te0 + lsq_off(warp, st, lane), n, vec, raw[st]);
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		uint32_t m = 0;
		if (DT == RCMOE_DT_FP32_) {
			for (int k = 0; k < 8; k++)
				m = max(m, raw[st][k] & 0x7fffffffu);
		} else {
			/* 16-bit magnitudes order like their fp32 values (NaN stays above Inf):
			 * take the max on the 16-bit patterns and widen once */
			for (int k = 0; k < 4; k++)
				m = max(m, max(raw[st][k] & 0x7fffu, (raw[st][k] >> 16) & 0x7fffu));
			m = rcmoe_fbits(rcmoe_to_f32(DT, m));
		}
		for (uint32_t o = 1; o < G; o <<= 1)
			m = max(m, __shfl_xor_sync(RCMOE_FULL_MASK, m, o));
		amax[st] = m;
	}
	if (B >= 512) {
		amax[0] = amax[1] = max(amax[0], amax[1]);
		amax[2] = amax[3] = max(amax[2], amax[3]);
	}
	if (B >= 1024)
		amax[0] = amax[1] = amax[2] = amax[3] = max(amax[0], amax[2]);

	/* kinds and sizes; the first lane of each block records them */
	int kind[LSQ_STEPS];
	float scale[LSQ_STEPS], inv[LSQ_STEPS];
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		uint32_t off = lsq_off(warp, st, lane), bt = off >> log2b;
		uint64_t b0 = te0 + ((uint64_t)bt << log2b);
		uint32_t m = b0 < n ? (uint32_t)min((uint64_t)B, n - b0) : 0u;
		scale[st] = inv[st] = 0.0f;
		kind[st] = rcmoe_lsq_block_kind(amax[st], m, BITS, esize, &scale[st], &inv[st]);
		if ((off & (B - 1)) == 0 && m > 0) {
			s_kind[bt] = (uint8_t)kind[st];
			s_off[bt] = rcmoe_lsq_block_bytes(kind[st], m, BITS, esize);
		}
	}
	__syncthreads();

	/* offsets of the blocks in the tile, and the tile's size, published at once */
	uint32_t total, mine = s_off[threadIdx.x];
	uint32_t ex = block_exclusive_scan(mine, &total, s_scan);
	s_off[threadIdx.x] = ex;
	if (threadIdx.x == 0)
		lb_store(&a.states[tile], (tile == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | total);

	/* this tile's bytes of the kind table (the last tile also writes the table's padding) */
	{
		uint64_t kb0 = (uint64_t)tile * (a.g.tb / 4);
		uint64_t nb = tile == a.g.ntiles - 1 ? a.g.kinds_bytes - min(kb0, a.g.kinds_bytes)
						     : a.g.tb / 4;
		uint32_t t = threadIdx.x;
		if (t < nb) {
			uint32_t v = 0;
			for (uint32_t k = 0; k < 4; k++)
				if (4 * t + k < a.g.tb)
					v |= (uint32_t)s_kind[4 * t + k] << (2 * k);
			a.dst[RCMOE_WIRE_HEADER_BYTES + kb0 + t] = (uint8_t)v;
		}
	}

	/* codes, while the predecessors publish */
	uint32_t code[LSQ_STEPS][2];
	/* two elements per draw (index element / 2); a tile's 4096 draw indexes never cross a
	 * multiple of 2^32, so the high half of the RNG key is computed once */
	const uint32_t hikey = rcmoe_rng_hikey(a.key, (uint32_t)((te0 >> 1) >> 32));
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		uint32_t c[8];
		uint64_t e = te0 + lsq_off(warp, st, lane);
		uint32_t plo = (uint32_t)(e >> 1); /* e is a multiple of 8 */
		code[st][0] = code[st][1] = 0;
		if (kind[st] != RCMOE_LSQ_QUANT)
			continue;
#pragma unroll
		for (int k = 0; k < 8; k += 2) {
			uint32_t r = rcmoe_rng_lo(hikey, plo + k / 2);
			c[k] = rcmoe_lsq_code(rcmoe_to_f32(DT, pk_get<DT>(raw[st], k)), inv[st],
					      r & 0x7fffu, L);
			c[k + 1] = rcmoe_lsq_code(rcmoe_to_f32(DT, pk_get<DT>(raw[st], k + 1)),
						  inv[st], (r >> 16) & 0x7fffu, L);
		}
		pack8<BITS>(c, code[st]);
		if (e + 8 > n) { /* the codes of elements past n are 0 */
			uint32_t valid = e < n ? (uint32_t)(n - e) : 0u, nb = valid * BITS;
			uint64_t keep = (1ull << nb) - 1,
				 w = (code[st][0] | (uint64_t)code[st][1] << 32) & keep;
			code[st][0] = (uint32_t)w;
			code[st][1] = (uint32_t)(w >> 32);
		}
	}

	if (warp == 0) {
		uint64_t p = tile ? lb_exclusive_prefix(a.states, tile) : 0;
		if (lane == 0) {
			s_prefix = p;
			if (tile)
				lb_store(&a.states[tile], RCMOE_LB_INC | (p + total));
			if (tile == a.g.ntiles - 1)
				write_header(a.dst, a.hdr, a.g.kinds_bytes + p + total);
		}
	}
	__syncthreads();

	/* 8-bit codes: lane i of a block's group of G lanes holds its words 2i and 2i+1. Stored
	 * as they are, each store instruction would cover every other word, and into mapped host
	 * memory (the plugin's staging) every word then crosses PCIe as a write of its own (a
	 * write carries contiguous bytes only): 25x slower than 4-bit in rcmoe-bench. So the
	 * lanes swap codes first: store one writes words 0..G-1 of the group, store two G..2G-1. */
	const uint32_t gi = lane & (G - 1);
	if (BITS == 8) {
#pragma unroll
		for (int st = 0; st < LSQ_STEPS; st++) {
			uint32_t a0 = __shfl_sync(RCMOE_FULL_MASK, code[st][0], gi >> 1, G);
			uint32_t a1 = __shfl_sync(RCMOE_FULL_MASK, code[st][1], gi >> 1, G);
			uint32_t b0 = __shfl_sync(RCMOE_FULL_MASK, code[st][0], (G + gi) >> 1, G);
			uint32_t b1 = __shfl_sync(RCMOE_FULL_MASK, code[st][1], (G + gi) >> 1, G);
			code[st][0] = gi & 1 ? a1 : a0;
			code[st][1] = gi & 1 ? b1 : b0;
		}
	}

	uint8_t *pl = a.dst + RCMOE_WIRE_HEADER_BYTES + a.g.kinds_bytes + s_prefix;
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		uint32_t off = lsq_off(warp, st, lane), bt = off >> log2b, j0 = off & (B - 1);
		uint64_t b0 = te0 + ((uint64_t)bt << log2b);
		if (b0 >= n)
			continue;
		uint32_t m = (uint32_t)min((uint64_t)B, n - b0);
		uint8_t *base = pl + s_off[bt];
		if (kind[st] == RCMOE_LSQ_QUANT) {
			uint32_t words = (m * BITS + 31) / 32, w0 = j0 * BITS / 32;
			uint32_t *cw = (uint32_t *)(base + 4);
			if (j0 == 0)
				*(uint32_t *)base = rcmoe_fbits(scale[st]);
			if (BITS == 8) { /* the group's words gi and G + gi (above) */
				uint32_t gw = w0 - 2 * gi;
				if (gw + gi < words)
					cw[gw + gi] = code[st][0];
				if (gw + G + gi < words)
					cw[gw + G + gi] = code[st][1];
			} else if (BITS == 4) {
				if (w0 < words)
					cw[w0] = code[st][0];
			} else if (w0 < words) {
				((uint16_t *)cw)[j0 / 8] = (uint16_t)code[st][0];
			}
		} else if (kind[st] == RCMOE_LSQ_RAW) {
			uint64_t e = te0 + off;
			for (int k = 0; k < 8; k++)
				if (e + k < n)
					st_elem<DT>(base, j0 + k, pk_get<DT>(raw[st], k));
		}
	}
}

template <int DT, int BITS> static void launch(const struct lsq_enc_args *a, cudaStream_t stream)
{
	lsq_encode_kernel<DT, BITS><<<a->g.ntiles, LSQ_NT, 0, stream>>>(*a);
}

template <int DT> static void launch_bits(const struct lsq_enc_args *a, int bits, cudaStream_t s)
{
	if (bits == 8)
		launch<DT, 8>(a, s);
	else if (bits == 4)
		launch<DT, 4>(a, s);
	else
		launch<DT, 2>(a, s);
}

extern "C" size_t rcmoe_gpu_lsq_work_bytes(size_t n, const struct rcmoe_lsq_cfg *cfg)
{
	struct lsq_geom g;
	if (rcmoe_lsq_check_cfg(cfg) != RCMOE_OK)
		return 0;
	lsq_geometry(n, cfg->block, &g);
	return lsq_work_bytes(&g);
}

extern "C" rcmoe_status_t rcmoe_gpu_lsq_encode(const void *d_src, size_t n,
					       const struct rcmoe_lsq_cfg *cfg, void *d_dst,
					       size_t cap, void *d_work, size_t work_bytes,
					       cudaStream_t stream)
{
	struct lsq_enc_args a;
	rcmoe_status_t st = rcmoe_lsq_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_gpu_encode_args(d_src, n, rcmoe_dtype_size(cfg->dtype), d_dst, d_work,
				   rcmoe_lsq_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;
	lsq_geometry(n, cfg->block, &a.g);
	if (work_bytes < lsq_work_bytes(&a.g))
		return RCMOE_ERR_INVALID;

	struct rcmoe_wire_header h = rcmoe_lsq_header(n, cfg, 0); /* length: filled in on the GPU */
	rcmoe_wire_words(&h, a.hdr);
	a.src = (const uint8_t *)d_src;
	a.dst = (uint8_t *)d_dst;
	a.key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank);
	a.states = (unsigned long long *)d_work;
	a.ticket = (unsigned int *)(a.states + a.g.ntiles);
	a.vec = ((uintptr_t)d_src % 16) == 0;
	if (lsq_clear_tile_states(d_work, &a.g, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	if (cfg->dtype == RCMOE_DT_BF16)
		launch_bits<RCMOE_DT_BF16_>(&a, cfg->bits, stream);
	else if (cfg->dtype == RCMOE_DT_FP16)
		launch_bits<RCMOE_DT_FP16_>(&a, cfg->bits, stream);
	else
		launch_bits<RCMOE_DT_FP32_>(&a, cfg->bits, stream);
	return rcmoe_cuda_launch_status();
}
