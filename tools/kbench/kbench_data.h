/* SPDX-License-Identifier: Apache-2.0 */
/* rcmoe-kbench's device helpers: realistic inputs and error metrics, generated and measured on
 * the GPU so that GiB-sized runs cost no host time. */
#ifndef RCMOE_KBENCH_DATA_H
#define RCMOE_KBENCH_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum kb_data {
	KB_GAUSS, /* rows of 4096 N(0, s_row^2), s_row log-normal: activations / gradients */
	KB_HEAVY, /* the same rows with Student-t (3 dof) values: outliers in most blocks */
};

/* n elements of dtype (RCMOE_DT_*). */
cudaError_t kb_fill(void *d, size_t n, int dtype, enum kb_data kind, uint64_t seed, cudaStream_t s);
/* rows of row_bytes random bytes, a fraction dup_frac of them copies of earlier rows */
cudaError_t kb_fill_rows(void *d, size_t bytes, uint32_t row_bytes, double dup_frac, uint64_t seed,
			 cudaStream_t s);

struct kb_err {
	double rel_l2;  /* ||y - x||_2 / ||x||_2 */
	double max_abs; /* max |y - x| */
};
/* Error of y against x (n elements of dtype); d_tmp: 32 bytes of device scratch. Synchronizes
 * the stream. */
cudaError_t kb_error(const void *x, const void *y, size_t n, int dtype, void *d_tmp, cudaStream_t s,
		     struct kb_err *out);

#ifdef __cplusplus
}
#endif
#endif
