/* SPDX-License-Identifier: Apache-2.0 */
/* Device helpers shared by the window-dedup encoder (wdedup_enc.cu) and decoder
 * (wdedup_dec.cu): warp-wide copies and compares of one block, and the stream's layout. */
#ifndef RCMOE_WDEDUP_GPU_CUH
#define RCMOE_WDEDUP_GPU_CUH

#include "gpu_common.cuh"
#include "rcmoe/wdedup_gpu.h"

#define WD_NT    256
#define WD_WARPS (WD_NT / 32)

/* Literal number meaning "none" (numbers stay below 2^32: an epoch restarts before that). */
#define WD_NONE (~0ull)

static inline uint64_t wd_table_bytes(uint64_t nblocks)
{
	return (nblocks * 4 + 15) / 16 * 16;
}

static inline unsigned wd_grid(uint64_t items, uint64_t per_cta)
{
	uint64_t g = (items + per_cta - 1) / per_cta;
	return (unsigned)(g ? g : 1);
}

/* Copy sz bytes with the widest access both sides allow. One whole warp. */
static __device__ void wd_warp_copy(uint8_t *d, const uint8_t *s, uint64_t sz)
{
	const int lane = threadIdx.x & 31;
	if ((((uintptr_t)d | (uintptr_t)s | sz) & 15) == 0) {
		for (uint64_t i = lane * 16ull; i < sz; i += 512)
			*(uint4 *)(d + i) = *(const uint4 *)(s + i);
	} else if ((((uintptr_t)d | (uintptr_t)s | sz) & 3) == 0) {
		for (uint64_t i = lane * 4ull; i < sz; i += 128)
			*(uint32_t *)(d + i) = *(const uint32_t *)(s + i);
	} else {
		for (uint64_t i = lane; i < sz; i += 32)
			d[i] = s[i];
	}
}

/* Whether two 4-byte aligned blocks of bb bytes (a multiple of 4) are equal, in every lane of
 * the warp. This is what makes the dedup exact: hashes only propose candidates. */
static __device__ bool wd_warp_equal(const uint8_t *x, const uint8_t *y, uint32_t bb)
{
	const int lane = threadIdx.x & 31;
	const uint32_t *a = (const uint32_t *)x, *b = (const uint32_t *)y;
	bool diff = false;
	for (uint32_t w = lane; w < bb / 4 && !diff; w += 32)
		diff = a[w] != b[w];
	return !__any_sync(RCMOE_FULL_MASK, diff);
}

#endif
