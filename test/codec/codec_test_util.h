/* SPDX-License-Identifier: Apache-2.0 */
/* Test data for the codec suites (CPU and GPU): a seeded generator, realistic rows (Gaussian,
 * heavy-tailed) and the special values the codecs must survive. */
#ifndef RCMOE_CODEC_TEST_UTIL_H
#define RCMOE_CODEC_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct tu_rng {
	uint64_t s;
};

uint64_t tu_u64(struct tu_rng *r);
double tu_uniform(struct tu_rng *r); /* [0, 1) */
double tu_gauss(struct tu_rng *r);

enum tu_data {
	TU_GAUSS,    /* N(0, 1) rows with a per-row scale */
	TU_HEAVY,    /* Student-t (3 dof) rows: many outliers */
	TU_SPECIALS, /* Gaussian with zero blocks, NaN, +-Inf, subnormals and huge values planted */
	TU_CONSTANT, /* one value repeated */
};

/* n elements of dtype (RCMOE_DT_*) into buf. */
void tu_fill(int dtype, void *buf, size_t n, enum tu_data kind, struct tu_rng *r);

double tu_get(int dtype, const void *buf, size_t i);
void tu_set(int dtype, void *buf, size_t i, double v); /* rounds to nearest even */
/* Half a unit in the last place of dtype at v (0 for fp32: checked in fp32 already). */
double tu_half_ulp(int dtype, double v);

/* Elements of got outside the LSQ bound of orig, per block of `block`: |y - x| <= scale plus a
 * half ulp of the 16-bit result, scale = block amax / levels. */
size_t tu_lsq_out_of_bound(const void *orig, const void *got, size_t n, int dtype, int bits,
			   uint32_t block);

#endif
