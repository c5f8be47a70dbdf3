/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA kernels behind a C interface. Every launcher takes the stream to run on and returns a
 * status; none synchronizes the device or the legacy default stream (they run on NCCL's proxy
 * thread, next to NCCL's persistent kernels): each only enqueues a fill kernel for its scratch
 * and its codec kernels, never a cudaMemset or cudaMemcpy (those take a driver lock that another
 * thread's synchronous copy can hold while it waits for NCCL). Each produces the same bytes as its
 * CPU reference in rcmoe/codec.h.
 *
 * Scratch memory ("work") is allocated by the caller outside the data path, sized by the
 * matching *_work_bytes function; it needs no initialisation and may be reused by the next call
 * on the same stream. Device pointers to streams (d_dst of encoders, d_src of decoders) and work
 * must be 16-byte aligned (cudaMalloc gives 256); element buffers may have any alignment of
 * their element type (aligned ones take the vector path). Misuse returns RCMOE_ERR_INVALID
 * before anything is enqueued; RCMOE_ERR_CUDA means a launch failed.
 */
#ifndef RCMOE_KERNELS_H
#define RCMOE_KERNELS_H

#include <stddef.h>
#include <cuda_runtime_api.h>
#include "rcmoe/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- LSQ ---- */

/* Scratch bytes rcmoe_gpu_lsq_encode needs for n elements (tile states: 8 bytes per 8192
 * elements). */
size_t rcmoe_gpu_lsq_work_bytes(size_t n, const struct rcmoe_lsq_cfg *cfg);
/* Encode n elements at d_src into a complete stream at d_dst (cap >= rcmoe_lsq_bound), one
 * kernel pass. The stream's length is RCMOE_WIRE_HEADER_BYTES + payload_len of the header it
 * writes: copy the header to the host (after the stream's work is done) to learn it. */
rcmoe_status_t rcmoe_gpu_lsq_encode(const void *d_src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				    void *d_dst, size_t cap, void *d_work, size_t work_bytes,
				    cudaStream_t stream);

/* Scratch bytes for these streams (0: invalid). */
size_t rcmoe_gpu_lsq_encode_many_work_bytes(const struct rcmoe_gpu_lsq_seg *segs, int nseg);
/* Encode 1..RCMOE_GPU_LSQ_MAX_SEGS streams of one dtype and bit width in one launch: each
 * stream's bytes are those rcmoe_gpu_lsq_encode (and rcmoe_lsq_encode) give it. */
rcmoe_status_t rcmoe_gpu_lsq_encode_many(const struct rcmoe_gpu_lsq_seg *segs, int nseg,
					 void *d_work, size_t work_bytes, cudaStream_t stream);

/* 1 when a stream with this (validated) header may go to rcmoe_gpu_lsq_decode_many: LSQ, not
 * empty, at most 256 tiles of 8192 elements (the decoder's direct path, no scratch). */
int rcmoe_gpu_lsq_decode_many_fits(const struct rcmoe_wire_header *hdr);
/* Decode 1..RCMOE_GPU_LSQ_MAX_SEGS validated streams of one dtype and bit width, each fitting,
 * in one launch, each as rcmoe_gpu_decode would (no scratch needed). */
rcmoe_status_t rcmoe_gpu_lsq_decode_many(const struct rcmoe_gpu_lsq_dec *d, int n,
					 cudaStream_t stream);

/* ---- PTS ---- */

/* Scratch bytes rcmoe_gpu_pts_encode needs for n elements. */
size_t rcmoe_gpu_pts_work_bytes(size_t n, const struct rcmoe_pts_cfg *cfg);
/* Encode like rcmoe_pts_encode: an L1-norm pass (fixed-order fp64 partial sums; its last block
 * computes tau), then one selection pass writing the stream (cap >= rcmoe_pts_bound). Length
 * from the header, as for LSQ. */
rcmoe_status_t rcmoe_gpu_pts_encode(const void *d_src, size_t n, const struct rcmoe_pts_cfg *cfg,
				    void *d_dst, size_t cap, void *d_work, size_t work_bytes,
				    cudaStream_t stream);

/* Most payloads one rcmoe_gpu_pts_accumulate call takes. */
#define RCMOE_GPU_PTS_MAX_PAYLOADS 128

/* Scratch bytes for accumulating npayloads streams with these (validated) headers. */
size_t rcmoe_gpu_pts_accumulate_work_bytes(const struct rcmoe_wire_header *hdrs, int npayloads);
/* dst = sum of the payloads in the given order, fp32 accumulation, rounded once to dtype: the
 * same bits as rcmoe_pts_accumulate. d_payloads is a host array of device pointers to streams;
 * hdrs their headers, each validated on the host with rcmoe_codec_validate against n elements
 * of dtype (every payload must have count n and that dtype, and all sparse payloads one chunk
 * size: RCMOE_ERR_INVALID otherwise). */
rcmoe_status_t rcmoe_gpu_pts_accumulate(const void *const *d_payloads,
					const struct rcmoe_wire_header *hdrs, int npayloads,
					int dtype, void *d_dst, size_t n, void *d_work,
					size_t work_bytes, cudaStream_t stream);

/* ---- dedup ---- */

/* Scratch bytes rcmoe_gpu_dedup_encode needs. */
size_t rcmoe_gpu_dedup_work_bytes(size_t bytes, uint32_t block_bytes);
/* Encode like rcmoe_dedup_encode (same matching rule, same bytes): hash and insert, match with
 * a byte compare, then compact the literals. d_src must be 4-byte aligned. Duplicates from the
 * header with rcmoe_dedup_header_stats. */
rcmoe_status_t rcmoe_gpu_dedup_encode(const void *d_src, size_t bytes, uint32_t block_bytes,
				      void *d_dst, size_t cap, void *d_work, size_t work_bytes,
				      cudaStream_t stream);

/* ---- staging ---- */

/* Copy n bytes between device memory and pinned host memory mapped into the device (either
 * direction) with a kernel on `stream`: unlike cudaMemcpyAsync it cannot block on the driver's
 * memcpy lock, which another thread's synchronous copy may hold while it waits for NCCL. */
rcmoe_status_t rcmoe_gpu_stage_copy(void *dst, const void *src, size_t n, cudaStream_t stream);

/* Set `bytes` bytes at device address d to `value` with a kernel on `stream` (fill.cu; never
 * cudaMemsetAsync, see there). Any pointer and length. */
rcmoe_status_t rcmoe_gpu_fill(void *d, uint8_t value, size_t bytes, cudaStream_t stream);

/* ---- collective sum ---- */

/* Most sources one rcmoe_gpu_rank_sum call takes. */
#define RCMOE_GPU_RANK_SUM_MAX_SRCS 128

/* d_dst[i] = ((src[0][i] (+) src[1][i]) (+) src[2][i]) ... for n elements of dtype (fp32, fp16,
 * bf16), (+) = rcmoe_ar_add (codec_math.h): the same bits as rcmoe_coll_sum (plugin/coll/sum.c),
 * NaN included; one source is a copy. d_srcs is a host array of nsrc device (or mapped host)
 * pointers, element-aligned; d_dst may be one of them (rank_sum.cu). */
rcmoe_status_t rcmoe_gpu_rank_sum(int dtype, const void *const *d_srcs, int nsrc, void *d_dst,
				  size_t n, cudaStream_t stream);

/* ---- encode, any codec ---- */

/* Scratch bytes rcmoe_gpu_encode needs for n elements with cfg (0 for a bad cfg). */
size_t rcmoe_gpu_encode_work_bytes(const struct rcmoe_codec_cfg *cfg, size_t n);
/* Encode with cfg's codec: rcmoe_gpu_lsq_encode, rcmoe_gpu_pts_encode or rcmoe_gpu_dedup_encode
 * (n: elements; dedup: bytes), same bytes and requirements (cap >= rcmoe_codec_bound). */
rcmoe_status_t rcmoe_gpu_encode(const struct rcmoe_codec_cfg *cfg, const void *d_src, size_t n,
				void *d_dst, size_t cap, void *d_work, size_t work_bytes,
				cudaStream_t stream);

/* ---- decode, any codec ---- */

/* Scratch bytes rcmoe_gpu_decode needs for a stream with this (validated) header. */
size_t rcmoe_gpu_decode_work_bytes(const struct rcmoe_wire_header *hdr);
/* Decode an LSQ, dedup or (single) PTS stream at d_src, whose header was validated on the host
 * with rcmoe_codec_validate against dst_bytes (the whole stream in host memory), into d_dst.
 * The kernels trust that validation: they only guard against what it rules out cheaply. */
rcmoe_status_t rcmoe_gpu_decode(const void *d_src, const struct rcmoe_wire_header *hdr, void *d_dst,
				size_t dst_bytes, void *d_work, size_t work_bytes,
				cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
