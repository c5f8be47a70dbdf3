/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA kernels behind a C interface. Every launcher takes the stream to run on and returns a
 * status; none synchronizes the device or the legacy default stream (they run on NCCL's proxy
 * thread, next to NCCL's persistent kernels). Each produces the same bytes as its CPU reference
 * in rcmoe/codec.h. Scratch memory ("work") is allocated by the caller outside the data path.
 */
#ifndef RCMOE_KERNELS_H
#define RCMOE_KERNELS_H

#include <stddef.h>
#include <cuda_runtime_api.h>
#include "rcmoe/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch bytes rcmoe_gpu_lsq_encode needs for n elements. */
size_t rcmoe_gpu_lsq_work_bytes(size_t n, const struct rcmoe_lsq_cfg *cfg);
/* Encode n elements at d_src into a complete stream at d_dst (cap >= rcmoe_lsq_bound). The
 * stream's length is RCMOE_WIRE_HEADER_BYTES + payload_len of the header it writes: copy the
 * header to the host to learn it. */
rcmoe_status_t rcmoe_gpu_lsq_encode(const void *d_src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				    void *d_dst, size_t cap, void *d_work, size_t work_bytes,
				    cudaStream_t stream);

/* Scratch bytes rcmoe_gpu_decode needs for a stream with this (validated) header. */
size_t rcmoe_gpu_decode_work_bytes(const struct rcmoe_wire_header *hdr);
/* Decode an LSQ or dedup stream at d_src, whose header was validated on the host with
 * rcmoe_codec_validate against dst_bytes, into d_dst. */
rcmoe_status_t rcmoe_gpu_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
				void *d_dst, size_t dst_bytes, void *d_work, size_t work_bytes,
				cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
