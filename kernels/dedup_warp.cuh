/* SPDX-License-Identifier: Apache-2.0 */
/* Warp-wide steps on one dedup block, shared by the in-buffer dedup (dedup.cu) and the window
 * dedup (wdedup_enc.cu, wdedup_dec.cu): the block's hash, the byte compare that makes a match
 * exact, and the copy. Each is called by a whole warp. */
#ifndef RCMOE_DEDUP_WARP_CUH
#define RCMOE_DEDUP_WARP_CUH

#include "gpu_common.cuh"

/* The i-th 8-byte word of a block of bb bytes (a multiple of 4: the last word may be half). */
static __device__ __forceinline__ uint64_t dedup_block_word(const uint8_t *p, uint32_t bb,
							    uint64_t i)
{
	uint64_t w = *(const uint32_t *)(p + 8 * i);
	if (8 * i + 4 < bb)
		w |= (uint64_t) * (const uint32_t *)(p + 8 * i + 4) << 32;
	return w;
}

/* The block's 64-bit hash, the same as the C reference's (codec_math.h's word hash, summed in
 * any order), in every lane. */
static __device__ uint64_t dedup_warp_block_hash(const uint8_t *p, uint32_t bb)
{
	const int lane = threadIdx.x & 31;
	uint64_t nw = (bb + 7) / 8, sum = 0;
	for (uint64_t w = lane; w < nw; w += 32)
		sum += rcmoe_dedup_word_hash(dedup_block_word(p, bb, w), w);
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(RCMOE_FULL_MASK, sum, o);
	return rcmoe_dedup_final_hash(sum, bb);
}

/* Whether two 4-byte aligned blocks of bb bytes (a multiple of 4) are equal, in every lane.
 * This is what makes the dedup exact: hashes only propose candidates. */
static __device__ bool dedup_warp_equal(const uint8_t *x, const uint8_t *y, uint32_t bb)
{
	const int lane = threadIdx.x & 31;
	const uint32_t *a = (const uint32_t *)x, *b = (const uint32_t *)y;
	bool diff = false;
	for (uint32_t w = lane; w < bb / 4 && !diff; w += 32)
		diff = a[w] != b[w];
	return !__any_sync(RCMOE_FULL_MASK, diff);
}

/* Copy sz bytes with the widest access both sides allow. */
static __device__ void dedup_warp_copy(uint8_t *d, const uint8_t *s, uint64_t sz)
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

#endif
