/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tiling shared by the LSQ encode and decode kernels.
 *
 * Launch configuration: one CTA of 256 threads (8 warps) per tile of 8192 elements, i.e.
 * 8192 / B LSQ blocks (8 to 256). Warp w covers tile elements [1024 w, 1024 (w + 1)) in 4 steps
 * of 256; in each step lane l holds 8 consecutive elements (one 16-byte load for 16-bit types;
 * the 8-bit encoder gives a lane two halves of 4 instead, see lsq_encode.cu).
 * So a block of B <= 256 elements is B/8 consecutive lanes of one step, and a block of 512 or
 * 1024 is 2 or 4 whole steps of one warp: block reductions are shuffles within lane groups plus,
 * for large blocks, a max across steps. Tiles are taken in order from an atomic ticket and
 * chained by decoupled look-back (gpu_common.cuh), so each tile learns where its compacted bytes
 * go in a single pass over the input.
 */
#ifndef RCMOE_LSQ_TILE_CUH
#define RCMOE_LSQ_TILE_CUH

#include <type_traits>

#include "gpu_common.cuh"

#define LSQ_NT    256
#define LSQ_TILE  8192
#define LSQ_STEPS 4

/* Tile element offset of (warp, step, lane)'s first element. */
static __device__ __forceinline__ uint32_t lsq_off(int warp, int step, int lane)
{
	return (uint32_t)warp * 1024u + (uint32_t)step * 256u + (uint32_t)lane * 8u;
}

struct lsq_geom {
	uint64_t n, nblocks, kinds_bytes;
	uint32_t log2b, tb, ntiles;
};

static inline void lsq_geometry(uint64_t n, uint32_t block, struct lsq_geom *g)
{
	uint32_t log2b = 0;
	while ((1u << log2b) < block)
		log2b++;
	g->n = n;
	g->log2b = log2b;
	g->nblocks = (n + block - 1) / block;
	g->kinds_bytes = rcmoe_lsq_kinds_bytes(g->nblocks);
	g->tb = LSQ_TILE >> log2b;
	uint64_t nt = (g->nblocks + g->tb - 1) / g->tb;
	g->ntiles = (uint32_t)(nt ? nt : 1);
}

/* Several streams in one launch (rcmoe_gpu_lsq_encode_many, rcmoe_gpu_lsq_decode_many): stream s
 * has the CTAs [first_cta[s], first_cta[s + 1]) and its own kernel arguments, read in place from
 * the parameter space (a __grid_constant__ kernel parameter): each CTA uses one entry. */
template <class ARGS> struct lsq_many_args {
	int nseg;
	uint32_t first_cta[RCMOE_GPU_LSQ_MAX_SEGS + 1];
	ARGS seg[RCMOE_GPU_LSQ_MAX_SEGS];
};

/* The stream of this CTA. */
template <class ARGS>
static __device__ __forceinline__ int lsq_many_seg(const struct lsq_many_args<ARGS> &m)
{
	int s = 0;
	while (s + 1 < m.nseg && blockIdx.x >= m.first_cta[s + 1])
		s++;
	return s;
}

/* Call f(dt, bits) with the kernel instance's template arguments as std::integral_constant
 * values, for a stream of `dtype` (RCMOE_DT_BF16, _FP16, else FP32) and `bits` (8, 4, else 2):
 * the one place that maps run-time types and widths to the instances the launchers use. */
template <class F> static void lsq_dispatch(int dtype, int bits, F f)
{
	auto by_bits = [&](auto dt) {
		if (bits == 8)
			f(dt, std::integral_constant<int, 8>());
		else if (bits == 4)
			f(dt, std::integral_constant<int, 4>());
		else
			f(dt, std::integral_constant<int, 2>());
	};
	if (dtype == RCMOE_DT_BF16)
		by_bits(std::integral_constant<int, RCMOE_DT_BF16_>());
	else if (dtype == RCMOE_DT_FP16)
		by_bits(std::integral_constant<int, RCMOE_DT_FP16_>());
	else
		by_bits(std::integral_constant<int, RCMOE_DT_FP32_>());
}

/* Scratch: one look-back status per tile, then the ticket. */
/* Zero the look-back tile states and the ticket at the start of the scratch, with a kernel, not
 * cudaMemsetAsync: this runs on NCCL's proxy thread, where the driver's memset path could block
 * on the lock another thread's synchronous copy holds while it waits for NCCL (fill.cu). */
static inline rcmoe_status_t lsq_clear_tile_states(void *d_work, const struct lsq_geom *g,
						   cudaStream_t stream)
{
	return rcmoe_gpu_fill(d_work, 0, 8ull * g->ntiles + 8, stream);
}

static inline size_t lsq_work_bytes(const struct lsq_geom *g)
{
	return (size_t)rcmoe_align_up(8ull * g->ntiles + 8, 256);
}

#endif
