/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collective side's exact reduction: dst = ((src[0] + src[1]) + src[2]) + ..., element by
 * element in the order given (rank order), each addition rcmoe_ar_add (kernels/codec_math.h):
 * in fp32, rounded to the datatype after each addition, NaN canonical. With one source, a copy.
 * A GPU kernel that calls rcmoe_ar_add in the same order gives the same bits.
 */
#ifndef RCMOE_COLL_SUM_H
#define RCMOE_COLL_SUM_H

#include <stddef.h>

#include "rcmoe/status.h"

/* n elements of dtype (fp32, fp16, bf16: RCMOE_DT_*) from each of nsrc sources into dst. dst may
 * be one of the sources (each element is read from every source before it is written).
 * RCMOE_ERR_INVALID for another dtype or no source. */
rcmoe_status_t rcmoe_coll_sum(int dtype, const void *const *src, int nsrc, void *dst, size_t n);

#endif
