/* SPDX-License-Identifier: Apache-2.0 */
/* The rank-order sum (sum.h). */
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_math.h"
#include "sum.h"

/* Sources are walked in blocks so each element's chain of additions runs in registers while
 * the sources stream through the cache once. */
#define SUM_BLOCK 1024

static void sum_f32(const void *const *src, int nsrc, void *dst, size_t n)
{
	float acc[SUM_BLOCK];
	for (size_t b = 0; b < n; b += SUM_BLOCK) {
		size_t m = n - b < SUM_BLOCK ? n - b : SUM_BLOCK;
		memcpy(acc, (const float *)src[0] + b, m * sizeof(float));
		for (int s = 1; s < nsrc; s++) {
			const float *x = (const float *)src[s] + b;
			for (size_t i = 0; i < m; i++)
				acc[i] = rcmoe_fadd_acc(acc[i], x[i]);
		}
		memcpy((float *)dst + b, acc, m * sizeof(float));
	}
}

static void sum_16(int dtype, const void *const *src, int nsrc, void *dst, size_t n)
{
	uint16_t acc[SUM_BLOCK];
	for (size_t b = 0; b < n; b += SUM_BLOCK) {
		size_t m = n - b < SUM_BLOCK ? n - b : SUM_BLOCK;
		memcpy(acc, (const uint16_t *)src[0] + b, m * sizeof(uint16_t));
		for (int s = 1; s < nsrc; s++) {
			const uint16_t *x = (const uint16_t *)src[s] + b;
			for (size_t i = 0; i < m; i++)
				acc[i] = (uint16_t)rcmoe_ar_add(dtype, acc[i], x[i]);
		}
		memcpy((uint16_t *)dst + b, acc, m * sizeof(uint16_t));
	}
}

rcmoe_status_t rcmoe_coll_sum(int dtype, const void *const *src, int nsrc, void *dst, size_t n)
{
	if (nsrc < 1 || (n && !dst))
		return RCMOE_ERR_INVALID;
	switch (dtype) {
	case RCMOE_DT_FP32: sum_f32(src, nsrc, dst, n); break;
	case RCMOE_DT_FP16:
	case RCMOE_DT_BF16: sum_16(dtype, src, nsrc, dst, n); break;
	default: return RCMOE_ERR_INVALID;
	}
	return RCMOE_OK;
}
