/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe_gpu_rank_sum: the collective side's exact rank-order reduction on the GPU,
 * dst[i] = ((src[0][i] (+) src[1][i]) (+) src[2][i]) ..., each (+) rcmoe_ar_add (codec_math.h):
 * both widened to fp32 exactly, one fp32 addition whose NaN result is made canonical, rounded
 * once to the datatype. plugin/coll/sum.c applies the same function in the same order, so both
 * give the same bits, NaN included (one source: a copy, as there).
 *
 * Launch: grid-stride over the elements, up to 64 blocks of 256 threads (a few SMs: NCCL's
 * persistent kernels hold others); each thread keeps one element's chain of additions in a
 * register while the sources stream through once, coalesced. dst may be one of the sources:
 * every element is read from all sources before it is written, by the same thread.
 */
#include "gpu_common.cuh"
#include "codec_math.h"

#define SUM_THREADS    256
#define SUM_MAX_BLOCKS 64

struct rank_sum_args {
	const uint8_t *src[RCMOE_GPU_RANK_SUM_MAX_SRCS];
	uint8_t *dst;
	uint64_t n;
	int nsrc;
};

template <int DT>
__global__ void __launch_bounds__(SUM_THREADS) rank_sum_kernel(const struct rank_sum_args a)
{
	const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.n; i += stride) {
		uint32_t acc = ld_elem<DT>(a.src[0], i);
		for (int s = 1; s < a.nsrc; s++)
			acc = rcmoe_ar_add(DT, acc, ld_elem<DT>(a.src[s], i));
		st_elem<DT>(a.dst, i, acc);
	}
}

extern "C" rcmoe_status_t rcmoe_gpu_rank_sum(int dtype, const void *const *d_srcs, int nsrc,
					     void *d_dst, size_t n, cudaStream_t stream)
{
	struct rank_sum_args a;
	size_t esize = rcmoe_dtype_size(dtype);
	if (esize == 0 || nsrc < 1 || nsrc > RCMOE_GPU_RANK_SUM_MAX_SRCS || !d_srcs ||
	    (n && !d_dst) || ((uintptr_t)d_dst % esize))
		return RCMOE_ERR_INVALID;
	for (int s = 0; s < nsrc; s++) {
		if ((n && !d_srcs[s]) || ((uintptr_t)d_srcs[s] % esize))
			return RCMOE_ERR_INVALID;
		a.src[s] = (const uint8_t *)d_srcs[s];
	}
	if (n == 0)
		return RCMOE_OK;
	a.dst = (uint8_t *)d_dst;
	a.n = n;
	a.nsrc = nsrc;
	uint64_t blocks = (n + SUM_THREADS - 1) / SUM_THREADS;
	unsigned grid = (unsigned)(blocks < SUM_MAX_BLOCKS ? blocks : SUM_MAX_BLOCKS);
	if (dtype == RCMOE_DT_BF16)
		rank_sum_kernel<RCMOE_DT_BF16_><<<grid, SUM_THREADS, 0, stream>>>(a);
	else if (dtype == RCMOE_DT_FP16)
		rank_sum_kernel<RCMOE_DT_FP16_><<<grid, SUM_THREADS, 0, stream>>>(a);
	else
		rank_sum_kernel<RCMOE_DT_FP32_><<<grid, SUM_THREADS, 0, stream>>>(a);
	return rcmoe_cuda_launch_status();
}
