/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LSQ decoder, single pass: each tile reads its part of the kind table, publishes the size of
 * its blocks, learns where they start by look-back, then every lane decodes its 8 elements and
 * stores them (16-byte stores for 16-bit types). Same bits as rcmoe_codec_decode (lsq.c).
 * The stream was validated on the host (rcmoe_codec_validate), so the kind table and sizes are
 * consistent; the kernel still never reads a code word past its block.
 *
 * Launch configuration: see lsq_tile.cuh (256 threads per 8192-element tile, grid = tiles).
 *
 * Where a tile's bytes start. The sizes of blocks depend only on their kinds, which the stream
 * lists up front, so a tile can count the kinds of every block before it instead of waiting for
 * its predecessors (direct prefix); that reads tile x (blocks per tile) / 4 bytes of the kind
 * table per tile, which grows with the square of the tile count. Up to LSQ_DEC_DIRECT_TILES
 * tiles (2 Mi elements: every NCCL step and collNet call) it is what the decoder does, in one
 * launch with no scratch to clear: on NCCL's proxy thread each launch costs microseconds of CPU
 * time, and a stream of small messages is bound by launches, not by bytes. Longer streams use
 * the decoupled look-back (gpu_common.cuh), after rcmoe_gpu_fill (fill.cu) zeroes the tile
 * states and the ticket on the same stream. Both give the same prefix: the integer sum of the
 * sizes of the blocks before the tile. rcmoe_gpu_lsq_decode_many decodes up to
 * RCMOE_GPU_LSQ_MAX_SEGS such short streams in one launch (an all-reduce owner's N streams).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "lsq_tile.cuh"

struct lsq_dec_args {
	const uint8_t *src; /* stream */
	uint8_t *dst;
	struct lsq_geom g;
	unsigned long long *states;
	unsigned int *ticket;
	int vec;    /* dst is 16-byte aligned */
	int direct; /* count kinds for the prefix (no look-back, no scratch) */
};

#define LSQ_DEC_DIRECT_TILES 256u

/* Bytes of all the blocks before tile `tile` (each full: only the last block of a stream is
 * short), from their kinds: QUANT is 01, RAW 10 in the 2-bit fields; ZERO (and BAD, which
 * validation rules out and the decoder treats as ZERO) count nothing. Every thread of the
 * block calls it; it returns the sum in every thread. */
template <int DT, int BITS>
static __device__ uint64_t lsq_direct_prefix(const uint8_t *kinds, const struct lsq_geom *g,
					     uint32_t tile, uint32_t *s_cnt)
{
	const uint32_t esize = DT == RCMOE_DT_FP32_ ? 4u : 2u, B = 1u << g->log2b;
	const uint32_t nbytes = tile * (g->tb / 4u) + (tile * (g->tb % 4u)) / 4u;
	const uint32_t rem = (tile * g->tb) % 4u; /* blocks in a last, partly counted byte */
	uint32_t q = 0, r = 0;
	if (threadIdx.x < 2)
		s_cnt[threadIdx.x] = 0;
	__syncthreads();
	for (uint32_t i = threadIdx.x; i < nbytes; i += blockDim.x) {
		uint32_t x = kinds[i], lo = x & 0x55u, hi = (x >> 1) & 0x55u;
		q += __popc(lo & ~hi);
		r += __popc(hi & ~lo);
	}
	if (threadIdx.x == 0 && rem) {
		uint32_t x = kinds[nbytes] & ((1u << (2 * rem)) - 1u), lo = x & 0x55u,
			 hi = (x >> 1) & 0x55u;
		q += __popc(lo & ~hi);
		r += __popc(hi & ~lo);
	}
	for (int o = 16; o > 0; o >>= 1) {
		q += __shfl_xor_sync(RCMOE_FULL_MASK, q, o);
		r += __shfl_xor_sync(RCMOE_FULL_MASK, r, o);
	}
	if ((threadIdx.x & 31) == 0) {
		atomicAdd(&s_cnt[0], q);
		atomicAdd(&s_cnt[1], r);
	}
	__syncthreads();
	return (uint64_t)s_cnt[0] * rcmoe_lsq_block_bytes(RCMOE_LSQ_QUANT, B, BITS, esize) +
	       (uint64_t)s_cnt[1] * rcmoe_lsq_block_bytes(RCMOE_LSQ_RAW, B, BITS, esize);
}

/* Two decoded values (finite: a quantized block has no NaN) as a word of two 16-bit elements,
 * rounded to nearest even in one instruction: the same bits as rcmoe_from_f32. fp32: unused. */
template <int DT> static __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
	if (DT == RCMOE_DT_BF16_) {
		__nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
		return *(uint32_t *)&h;
	}
	if (DT == RCMOE_DT_FP16_) {
		__half2 h = __floats2half2_rn(lo, hi);
		return *(uint32_t *)&h;
	}
	return 0;
}

/* Decoded values: (code - L) * s as rcmoe_lsq_value computes it, with code - L formed exactly
 * as (2^23 + code) - (2^23 + L) in fp32 (2^23 + code has code in its mantissa): one addition
 * instead of an integer-to-float conversion, a quarter-rate instruction. */
/* One tile of one stream; cta: the CTA's index among those of its stream (its tile, when
 * direct). */
template <int DT, int BITS>
static __device__ __forceinline__ void lsq_decode_tile(const struct lsq_dec_args &a, uint32_t cta)
{
	__shared__ uint32_t s_tile;
	__shared__ uint8_t s_kind[256];
	__shared__ uint32_t s_off[256];
	__shared__ uint32_t s_scan[33];
	__shared__ uint64_t s_prefix;
	__shared__ uint32_t s_cnt[2];

	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const uint32_t esize = DT == RCMOE_DT_FP32_ ? 4u : 2u;
	const int L = (1 << (BITS - 1)) - 1;
	const uint32_t log2b = a.g.log2b, B = 1u << log2b;
	const uint64_t n = a.g.n;
	const uint8_t *kinds = a.src + RCMOE_WIRE_HEADER_BYTES;

	if (threadIdx.x == 0)
		s_tile = a.direct ? cta : atomicAdd(a.ticket, 1u);
	__syncthreads();
	const uint32_t tile = s_tile;
	const uint64_t te0 = (uint64_t)tile * LSQ_TILE;

	uint32_t size = 0;
	{
		uint64_t blk = (uint64_t)tile * a.g.tb + threadIdx.x;
		int kind = RCMOE_LSQ_ZERO;
		if (threadIdx.x < a.g.tb && blk < a.g.nblocks) {
			kind = (kinds[blk / 4] >> (2 * (blk % 4))) & 3;
			if (kind == RCMOE_LSQ_BAD)
				kind = RCMOE_LSQ_ZERO; /* ruled out by validation */
			uint64_t b0 = blk << log2b;
			uint32_t m = (uint32_t)min((uint64_t)B, n - b0);
			size = rcmoe_lsq_block_bytes(kind, m, BITS, esize);
		}
		s_kind[threadIdx.x] = (uint8_t)kind;
	}
	uint32_t total, ex = block_exclusive_scan(size, &total, s_scan);
	s_off[threadIdx.x] = ex;
	if (a.direct) {
		uint64_t p = lsq_direct_prefix<DT, BITS>(kinds, &a.g, tile, s_cnt);
		if (threadIdx.x == 0)
			s_prefix = p;
	} else {
		if (threadIdx.x == 0)
			lb_store(&a.states[tile],
				 (tile == 0 ? RCMOE_LB_INC : RCMOE_LB_AGG) | total);
		if (warp == 0) {
			uint64_t p = tile ? lb_exclusive_prefix(a.states, tile) : 0;
			if (lane == 0) {
				s_prefix = p;
				if (tile)
					lb_store(&a.states[tile], RCMOE_LB_INC | (p + total));
			}
		}
	}
	__syncthreads();

	const uint8_t *pl = kinds + a.g.kinds_bytes + s_prefix;
	const bool full = te0 + LSQ_TILE <= n, vec = a.vec && full;
#pragma unroll
	for (int st = 0; st < LSQ_STEPS; st++) {
		uint32_t off = lsq_off(warp, st, lane), bt = off >> log2b, j0 = off & (B - 1);
		uint64_t e = te0 + off, b0 = te0 + ((uint64_t)bt << log2b);
		if (b0 >= n)
			continue;
		uint32_t m = (uint32_t)min((uint64_t)B, n - b0), v[8];
		const uint8_t *base = pl + s_off[bt];
		int kind = s_kind[bt];
		if (kind == RCMOE_LSQ_QUANT) {
			float s = rcmoe_bitsf(*(const uint32_t *)base);
			const uint32_t *cw = (const uint32_t *)(base + 4);
			uint32_t words = (m * BITS + 31) / 32, w0 = j0 * BITS / 32, c[2] = { 0, 0 };
			if (BITS == 8) {
				c[0] = full || w0 < words ? cw[w0] : 0;
				c[1] = full || w0 + 1 < words ? cw[w0 + 1] : 0;
			} else if (BITS == 4) {
				c[0] = full || w0 < words ? cw[w0] : 0;
			} else {
				c[0] = full || w0 < words ? ((const uint16_t *)cw)[j0 / 8] : 0;
			}
			float f[8];
			for (int k = 0; k < 8; k++) {
				/* 2^23 + code (8-bit codes: a byte moved under 0x4b by one PRMT) */
				uint32_t t = BITS == 8 ? __byte_perm(c[k / 4], 0x4b000000u,
								     0x7440u | (k % 4))
						       : 0x4b000000u | ((c[0] >> (BITS * k)) &
									((1u << BITS) - 1));
				f[k] = rcmoe_fmul(rcmoe_fadd(rcmoe_bitsf(t), -(0x1p23f + (float)L)),
						  s);
			}
			if (vec) { /* vec implies a full tile */
				if (DT == RCMOE_DT_FP32_) {
					*(uint4 *)(a.dst + 4 * e) =
						make_uint4(rcmoe_fbits(f[0]), rcmoe_fbits(f[1]),
							   rcmoe_fbits(f[2]), rcmoe_fbits(f[3]));
					*(uint4 *)(a.dst + 4 * e + 16) =
						make_uint4(rcmoe_fbits(f[4]), rcmoe_fbits(f[5]),
							   rcmoe_fbits(f[6]), rcmoe_fbits(f[7]));
				} else {
					*(uint4 *)(a.dst + 2 * e) = make_uint4(
						pack2<DT>(f[0], f[1]), pack2<DT>(f[2], f[3]),
						pack2<DT>(f[4], f[5]), pack2<DT>(f[6], f[7]));
				}
			} else {
				for (int k = 0; k < 8; k++)
					v[k] = rcmoe_from_f32(DT, f[k]);
				st8<DT>(a.dst, e, n, false, v);
			}
		} else if (kind == RCMOE_LSQ_RAW) {
			for (int k = 0; k < 8; k++)
				if (e + k < n)
					st_elem<DT>(a.dst, e + k, ld_elem<DT>(base, j0 + k));
		} else {
			for (int k = 0; k < 8; k++)
				v[k] = 0;
			st8<DT>(a.dst, e, n, vec, v);
		}
	}
}

template <int DT, int BITS>
__global__ void __launch_bounds__(LSQ_NT) lsq_decode_kernel(const struct lsq_dec_args a)
{
	lsq_decode_tile<DT, BITS>(a, blockIdx.x);
}

/* Several direct streams in one launch (lsq_tile.cuh). */
typedef struct lsq_many_args<struct lsq_dec_args> lsq_dec_many_args;

template <int DT, int BITS>
__global__ void __launch_bounds__(LSQ_NT)
	lsq_decode_many_kernel(const __grid_constant__ lsq_dec_many_args m)
{
	const int s = lsq_many_seg(m);
	lsq_decode_tile<DT, BITS>(m.seg[s], blockIdx.x - m.first_cta[s]);
}

extern "C" int rcmoe_gpu_lsq_decode_many_fits(const struct rcmoe_wire_header *hdr)
{
	struct lsq_geom g;
	if (!hdr || hdr->codec != RCMOE_CODEC_LSQ || hdr->count == 0)
		return 0;
	lsq_geometry(hdr->count, hdr->block, &g);
	return g.ntiles <= LSQ_DEC_DIRECT_TILES;
}

extern "C" rcmoe_status_t rcmoe_gpu_lsq_decode_many(const struct rcmoe_gpu_lsq_dec *d, int n,
						    cudaStream_t stream)
{
	lsq_dec_many_args m;
	uint64_t tiles = 0;
	if (!d || n < 1 || n > RCMOE_GPU_LSQ_MAX_SEGS)
		return RCMOE_ERR_INVALID;
	m.nseg = n;
	for (int s = 0; s < n; s++) {
		const struct rcmoe_wire_header *h = &d[s].hdr;
		uint32_t es = rcmoe_dtype_size(h->dtype);
		if (!rcmoe_gpu_lsq_decode_many_fits(h) || h->dtype != d[0].hdr.dtype ||
		    h->bits != d[0].hdr.bits || !d[s].src || ((uintptr_t)d[s].src % 16) ||
		    !d[s].dst || ((uintptr_t)d[s].dst % es))
			return RCMOE_ERR_INVALID;
		if (h->count * es > d[s].dst_bytes)
			return RCMOE_ERR_OVERFLOW;
		struct lsq_dec_args *a = &m.seg[s];
		lsq_geometry(h->count, h->block, &a->g);
		a->src = (const uint8_t *)d[s].src;
		a->dst = (uint8_t *)d[s].dst;
		a->states = NULL; /* direct: no look-back */
		a->ticket = NULL;
		a->vec = ((uintptr_t)d[s].dst % 16) == 0;
		a->direct = 1;
		m.first_cta[s] = (uint32_t)tiles;
		tiles += a->g.ntiles;
	}
	m.first_cta[n] = (uint32_t)tiles;
	lsq_dispatch(d[0].hdr.dtype, d[0].hdr.bits, [&](auto dt, auto bits) {
		lsq_decode_many_kernel<dt.value, bits.value>
			<<<m.first_cta[n], LSQ_NT, 0, stream>>>(m);
	});
	return rcmoe_cuda_launch_status();
}

size_t rcmoe_gpu_lsq_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	struct lsq_geom g;
	lsq_geometry(hdr->count, hdr->block, &g);
	return lsq_work_bytes(&g);
}

rcmoe_status_t rcmoe_gpu_lsq_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
				    void *d_dst, void *d_work, size_t work_bytes,
				    cudaStream_t stream)
{
	struct lsq_dec_args a;
	lsq_geometry(hdr->count, hdr->block, &a.g);
	if (work_bytes < lsq_work_bytes(&a.g))
		return RCMOE_ERR_INVALID;
	a.src = (const uint8_t *)d_src;
	a.dst = (uint8_t *)d_dst;
	a.states = (unsigned long long *)d_work;
	a.ticket = (unsigned int *)(a.states + a.g.ntiles);
	a.vec = ((uintptr_t)d_dst % 16) == 0;
	a.direct = a.g.ntiles <= LSQ_DEC_DIRECT_TILES;
	if (!a.direct && lsq_clear_tile_states(d_work, &a.g, stream) != RCMOE_OK)
		return RCMOE_ERR_CUDA;
	lsq_dispatch(hdr->dtype, hdr->bits, [&](auto dt, auto bits) {
		lsq_decode_kernel<dt.value, bits.value><<<a.g.ntiles, LSQ_NT, 0, stream>>>(a);
	});
	return rcmoe_cuda_launch_status();
}
