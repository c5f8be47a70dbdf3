/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device helpers shared by the codec kernels: error mapping, element loads, block-wide scans and
 * the decoupled look-back that lets a single pass compact variable-sized tiles in order.
 *
 * Look-back protocol (one 64-bit status word per tile, zeroed before the launch): a tile takes
 * its index from an atomic ticket (so every lower tile has started: no tile can wait on one that
 * is not resident), publishes its own size as AGGREGATE as soon as it knows it, then sums the
 * statuses of its predecessors from the nearest down, 128 at a time, until it meets an INCLUSIVE
 * one, and finally publishes its own INCLUSIVE prefix. Sums are integers, so the result does not
 * depend on timing.
 */
#ifndef RCMOE_GPU_COMMON_CUH
#define RCMOE_GPU_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>
/* the project's C headers without extern "C" guards of their own */
extern "C" {
#include "rcmoe/status.h"
#include "rcmoe/log.h"
}
#include "rcmoe/kernels.h"
#include "codec_internal.h"

#define RCMOE_FULL_MASK 0xffffffffu

#define RCMOE_LB_AGG  (1ull << 62)
#define RCMOE_LB_INC  (2ull << 62)
#define RCMOE_LB_MASK ((1ull << 62) - 1)

/* Launch status -> rcmoe status (launch errors only: no synchronization). */
static inline rcmoe_status_t rcmoe_cuda_launch_status(void)
{
	return cudaGetLastError() == cudaSuccess ? RCMOE_OK : RCMOE_ERR_CUDA;
}

/* Set `bytes` bytes at device address d to `value` with a kernel on `stream` (fill.cu). The
 * launchers clear their scratch with it, never with cudaMemsetAsync: they run on NCCL's proxy
 * thread, and the driver's memset path may block on the lock a synchronous copy on another thread
 * holds while it waits for NCCL (see fill.cu). RCMOE_ERR_CUDA if the launch failed. */
extern "C" rcmoe_status_t rcmoe_gpu_fill(void *d, uint8_t value, size_t bytes, cudaStream_t stream);

/* Ask L2 to fetch `bytes` (a multiple of 16) at p (16-byte aligned) from DRAM, without waiting
 * and without registers: one bulk-prefetch instruction on sm_90 and later, nothing before (the
 * loads then go to DRAM themselves). Data does not change, so neither do the bytes encoded. */
static __device__ __forceinline__ void l2_prefetch(const void *p, uint32_t bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
	(void)p, (void)bytes;
#endif
}

static __device__ __forceinline__ void lb_store(unsigned long long *p, unsigned long long v)
{
	*(volatile unsigned long long *)p = v;
}

static __device__ __forceinline__ unsigned long long lb_load(const unsigned long long *p)
{
	return *(const volatile unsigned long long *)p;
}

/* Called by one whole warp of tile `tile` after it published its AGGREGATE; returns the sum of
 * all earlier tiles' sizes in every lane. Each round reads the 128 nearest unread states, four
 * coalesced loads (load j, lane l: state base - 32 j - l), so a tile whose nearest INCLUSIVE
 * predecessor is far back (every resident tile in the same phase) waits for a quarter of the
 * L2 round trips one load per round would take. */
static __device__ uint64_t lb_exclusive_prefix(unsigned long long *states, uint32_t tile)
{
	const int lane = threadIdx.x & 31;
	uint64_t prefix = 0;
	int64_t base = (int64_t)tile - 1;
	while (base >= 0) {
		unsigned long long w[4];
		/* the four loads are issued together; only a state not yet published is polled */
#pragma unroll
		for (int j = 0; j < 4; j++) {
			int64_t idx = base - 32 * j - lane;
			w[j] = idx >= 0 ? lb_load(&states[idx])
					: RCMOE_LB_INC; /* before tile 0: 0 */
		}
#pragma unroll
		for (int j = 0; j < 4; j++) {
			int64_t idx = base - 32 * j - lane;
			while ((w[j] >> 62) == 0)
				w[j] = lb_load(&states[idx]);
		}
		/* sum up to and including the nearest INCLUSIVE state */
		uint64_t v = 0;
		bool found = false;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			if (found)
				break;
			unsigned inc = __ballot_sync(RCMOE_FULL_MASK, (w[j] >> 62) == 2);
			int stop = inc ? __ffs(inc) - 1 : 31;
			if (lane <= stop)
				v += w[j] & RCMOE_LB_MASK;
			found = inc != 0;
		}
		for (int o = 16; o > 0; o >>= 1)
			v += __shfl_xor_sync(RCMOE_FULL_MASK, v, o);
		prefix += v;
		if (found)
			break;
		base -= 128;
	}
	return prefix;
}

/* Exclusive scan of one u32 per thread over the whole block (blockDim.x a multiple of 32,
 * at most 1024). `warp_sums` holds 33 words of shared memory. Returns the exclusive prefix;
 * *total is the block sum. Contains __syncthreads: call from every thread. */
static __device__ uint32_t block_exclusive_scan(uint32_t v, uint32_t *total, uint32_t *warp_sums)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
	uint32_t incl = v;
	for (int o = 1; o < 32; o <<= 1) {
		uint32_t t = __shfl_up_sync(RCMOE_FULL_MASK, incl, o);
		if (lane >= o)
			incl += t;
	}
	if (lane == 31)
		warp_sums[warp] = incl;
	__syncthreads();
	if (warp == 0) {
		uint32_t s = lane < nwarps ? warp_sums[lane] : 0, si = s;
		for (int o = 1; o < 32; o <<= 1) {
			uint32_t t = __shfl_up_sync(RCMOE_FULL_MASK, si, o);
			if (lane >= o)
				si += t;
		}
		if (lane < nwarps)
			warp_sums[lane] = si - s;
		if (lane == 31)
			warp_sums[32] = si;
	}
	__syncthreads();
	uint32_t r = warp_sums[warp] + incl - v;
	*total = warp_sums[32];
	__syncthreads(); /* warp_sums may be reused */
	return r;
}

/* Element bits widened to fp32 where a NaN's payload does not matter (the result is still a
 * NaN): fp16 by the hardware conversion, without rcmoe_to_f32's path for NaN payloads. */
template <int DT> static __device__ __forceinline__ float widen_nan_any(uint32_t raw)
{
	if (DT == RCMOE_DT_FP16_)
		return __half2float(__ushort_as_half((uint16_t)raw));
	return rcmoe_to_f32(DT, raw);
}

/* Element i of a dtype array as raw bits. */
template <int DT> static __device__ __forceinline__ uint32_t ld_elem(const uint8_t *p, uint64_t i)
{
	if (DT == RCMOE_DT_FP32_)
		return *(const uint32_t *)(p + 4 * i);
	return *(const uint16_t *)(p + 2 * i);
}

template <int DT> static __device__ __forceinline__ void st_elem(uint8_t *p, uint64_t i, uint32_t v)
{
	if (DT == RCMOE_DT_FP32_)
		*(uint32_t *)(p + 4 * i) = v;
	else
		*(uint16_t *)(p + 2 * i) = (uint16_t)v;
}

template <int DT>
static __device__ __forceinline__ void st8(uint8_t *p, uint64_t i, uint64_t n, bool vec,
					   const uint32_t v[8])
{
	if (vec) {
		if (DT == RCMOE_DT_FP32_) {
			*(uint4 *)(p + 4 * i) = make_uint4(v[0], v[1], v[2], v[3]);
			*(uint4 *)(p + 4 * i + 16) = make_uint4(v[4], v[5], v[6], v[7]);
		} else {
			*(uint4 *)(p + 2 * i) = make_uint4(v[0] | v[1] << 16, v[2] | v[3] << 16,
							   v[4] | v[5] << 16, v[6] | v[7] << 16);
		}
		return;
	}
	for (int k = 0; k < 8; k++)
		if (i + k < n)
			st_elem<DT>(p, i + k, v[k]);
}

/* Write the 16 header words at dst with payload_len filled in, flags or-ed into the flags byte
 * and aux set (values only the device knows), and the check word computed. */
static __device__ void write_header(uint8_t *dst, const uint32_t *hdr, uint64_t payload_len,
				    uint32_t flags = 0, uint32_t aux = 0)
{
	uint32_t w[RCMOE_HW_WORDS];
	for (int i = 0; i < RCMOE_HW_WORDS; i++)
		w[i] = hdr[i];
	w[RCMOE_HW_BITS_FLAGS] |= flags << 8;
	w[RCMOE_HW_AUX] |= aux;
	w[RCMOE_HW_PAYLOAD] = (uint32_t)payload_len;
	w[RCMOE_HW_PAYLOAD + 1] = (uint32_t)(payload_len >> 32);
	w[RCMOE_HW_CHECK] = rcmoe_wire_check(w);
	for (int i = 0; i < RCMOE_HW_WORDS; i++)
		((uint32_t *)dst)[i] = w[i];
}

/* What every GPU encoder checks before enqueueing: element-aligned source, 16-byte aligned
 * stream and scratch, and room for its worst case (`bound` 0: configuration refused). */
static inline rcmoe_status_t rcmoe_gpu_encode_args(const void *d_src, size_t n, size_t esize,
						   const void *d_dst, const void *d_work,
						   size_t bound, size_t cap)
{
	if (bound == 0 || (!d_src && n) || !d_dst || !d_work || ((uintptr_t)d_src % esize) ||
	    ((uintptr_t)d_dst % 16) || ((uintptr_t)d_work % 16))
		return RCMOE_ERR_INVALID;
	return cap < bound ? RCMOE_ERR_OVERFLOW : RCMOE_OK;
}

static inline uint64_t rcmoe_align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

#endif
