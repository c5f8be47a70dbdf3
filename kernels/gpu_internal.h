/* SPDX-License-Identifier: Apache-2.0 */
/* Per-codec GPU decoders behind rcmoe_gpu_decode (gpu_decode.cu). Headers already validated. */
#ifndef RCMOE_GPU_INTERNAL_H
#define RCMOE_GPU_INTERNAL_H

#include "rcmoe/kernels.h"

size_t rcmoe_gpu_lsq_decode_work_bytes(const struct rcmoe_wire_header *hdr);
rcmoe_status_t rcmoe_gpu_lsq_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
				    void *d_dst, void *d_work, size_t work_bytes,
				    cudaStream_t stream);
size_t rcmoe_gpu_dedup_decode_work_bytes(const struct rcmoe_wire_header *hdr);
rcmoe_status_t rcmoe_gpu_dedup_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
				      void *d_dst, cudaStream_t stream);

#endif
