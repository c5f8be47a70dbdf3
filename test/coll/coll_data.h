/* SPDX-License-Identifier: Apache-2.0 */
/* Test data for the collective tests: every rank's contribution, generated the same in every
 * rank thread, and the references the results are checked against. */
#ifndef RCMOE_TEST_COLL_DATA_H
#define RCMOE_TEST_COLL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/nccl_abi.h"

struct contrib {
	int nranks;
	ncclDataType_t dt;
	size_t n;
	void *in[8]; /* [rank] n elements each */
};

size_t dt_size(ncclDataType_t dt);
const char *dt_name(ncclDataType_t dt);
/* Reproducible values of mixed sign and magnitude (powers of two from 2^-6 to 2^3 by runs of
 * 64 elements), rounded to dt. 0 on success. */
int contrib_make(struct contrib *c, int nranks, ncclDataType_t dt, size_t n, unsigned seed);
void contrib_free(struct contrib *c);
/* Set element i of rank's contribution to v (rounded to dt). */
void contrib_poison(struct contrib *c, int rank, size_t i, float v);
/* Element i of a dt buffer, widened to float. */
float elem_f32(ncclDataType_t dt, const void *buf, size_t i);
/* The rank-order reference of the lossless sum: each addition in fp32, rounded to dt after it.
 * Index of the first element of dst whose bits differ (NaN matches any NaN), or (size_t)-1. */
size_t ref_compare(const struct contrib *c, const void *dst, int exact);
/* The exact sum of element i over the ranks, in double. */
double exact_sum(const struct contrib *c, size_t i);
/* max |x| over the block [b*block, (b+1)*block) of rank's contribution. */
double block_maxabs(const struct contrib *c, int rank, size_t b, size_t block);

#endif
