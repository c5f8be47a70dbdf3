/* SPDX-License-Identifier: Apache-2.0 */
/* Device helpers shared by the window-dedup encoder (wdedup_enc.cu) and decoder
 * (wdedup_dec.cu): the stream's layout and launch shapes (the warp-wide block steps are
 * dedup_warp.cuh's). */
#ifndef RCMOE_WDEDUP_GPU_CUH
#define RCMOE_WDEDUP_GPU_CUH

#include "dedup_warp.cuh"
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

#endif
