/* SPDX-License-Identifier: Apache-2.0 */
/* The rank-order sum (sum.h). */
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_internal.h"
#include "sum.h"

/* Sources are walked in blocks so each element's chain of additions runs in registers while
 * the sources stream through the cache once. A whole block is added by a function of its own
 * per datatype (restrict pointers and a fixed trip count, so gcc -O2 vectorises fp32 and bf16),
 * built for the baseline and for AVX2 like the codecs' loops (kernels/cpu_isa.c); a last,
 * shorter block takes the scalar loop. Either way each element gets the same rcmoe_ar_add. */
#define SUM_BLOCK 1024

static inline __attribute__((always_inline)) void add_block(int dtype, void *restrict accv,
							    const void *restrict xv)
{
	if (dtype == RCMOE_DT_FP32) {
		float *acc = accv;
		const float *x = xv;
		for (size_t i = 0; i < SUM_BLOCK; i++)
			acc[i] = rcmoe_fadd_acc(acc[i], x[i]);
		return;
	}
	uint16_t *acc = accv;
	const uint16_t *x = xv;
	for (size_t i = 0; i < SUM_BLOCK; i++)
		acc[i] = (uint16_t)rcmoe_ar_add(dtype, acc[i], x[i]);
}

RCMOE_CPU_DTYPE_FNS(add_blocks, add_block, (void *restrict acc, const void *restrict x), (acc, x))

static void add_tail(int dtype, uint8_t *acc, const uint8_t *x, size_t m)
{
	uint32_t esize = rcmoe_dt_size(dtype);
	for (size_t i = 0; i < m; i++)
		rcmoe_st_elem(acc, esize, i,
			      rcmoe_ar_add(dtype, rcmoe_ld_elem(acc, esize, i),
					   rcmoe_ld_elem(x, esize, i)));
}

rcmoe_status_t rcmoe_coll_sum(int dtype, const void *const *src, int nsrc, void *dst, size_t n)
{
	if (nsrc < 1 || (n && !dst))
		return RCMOE_ERR_INVALID;
	if (dtype != RCMOE_DT_FP32 && dtype != RCMOE_DT_BF16 && dtype != RCMOE_DT_FP16)
		return RCMOE_ERR_INVALID;
	size_t esize = rcmoe_dt_size(dtype);
	rcmoe_cpu_fn_t(add_blocks) add = add_blocks[rcmoe_cpu_isa()][rcmoe_cpu_dtype_index(dtype)];
	float acc_f32[SUM_BLOCK];
	uint16_t acc_16[SUM_BLOCK];
	void *acc = dtype == RCMOE_DT_FP32 ? (void *)acc_f32 : (void *)acc_16;
	for (size_t b = 0; b < n; b += SUM_BLOCK) {
		size_t m = n - b < SUM_BLOCK ? n - b : SUM_BLOCK;
		memcpy(acc, (const uint8_t *)src[0] + b * esize, m * esize);
		for (int s = 1; s < nsrc; s++) {
			const uint8_t *x = (const uint8_t *)src[s] + b * esize;
			if (m == SUM_BLOCK)
				add(acc, x);
			else
				add_tail(dtype, (uint8_t *)acc, x, m);
		}
		memcpy((uint8_t *)dst + b * esize, acc, m * esize);
	}
	return RCMOE_OK;
}
