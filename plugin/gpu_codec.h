/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The codec kernels as the core calls them: plain C types and the plugin's own streams
 * (struct rcmoe_gpu_stream, gpu.h) instead of rcmoe/kernels.h, which needs CUDA's headers. With
 * gpu.h this is all the CUDA the core sees; no core file includes a CUDA header or tests for a
 * CUDA build.
 *
 * Without CUDA in the build the launchers return RCMOE_ERR_UNSUPPORTED and enqueue nothing, and
 * the scratch sizes are 0: GPU buffers are never claimed then (rcmoe_gpu_available is 0), so
 * the core never gets this far. Launchers run inside rcmoe_gpu_enter/rcmoe_gpu_leave, like every
 * other GPU call of the plugin.
 */
#ifndef RCMOE_GPU_CODEC_H
#define RCMOE_GPU_CODEC_H

#include <stddef.h>

#include "rcmoe/codec.h"
#include "rcmoe/status.h"
#include "gpu.h"

/* A GPU encoder as an encode plan holds it (policy.h): rcmoe_gpu_codec_encode's shape. */
typedef rcmoe_status_t (*rcmoe_gpu_encode_fn)(const struct rcmoe_codec_cfg *cfg, const void *src,
					      size_t n, void *dst, size_t cap, void *work,
					      size_t work_bytes, struct rcmoe_gpu_stream *s);

/* Scratch bytes cfg's GPU encoder needs for n elements (0 without CUDA, or for a bad cfg). */
size_t rcmoe_gpu_codec_encode_work_bytes(const struct rcmoe_codec_cfg *cfg, size_t n);
/* Encode n elements (dedup: bytes) at device address src with cfg's codec into a complete
 * stream at dst (mapped host memory, cap >= rcmoe_codec_bound), on stream s; the stream's length
 * is in the header it writes, once the stream's work is done. The GPU entry point of the encode
 * plans (policy.h). */
rcmoe_status_t rcmoe_gpu_codec_encode(const struct rcmoe_codec_cfg *cfg, const void *src, size_t n,
				      void *dst, size_t cap, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s);

/* Several LSQ streams of one dtype and bit width in one launch (rcmoe_gpu_lsq_encode_many):
 * the scratch it needs (0 without CUDA, or invalid), and the encode on stream s. */
size_t rcmoe_gpu_codec_lsq_encode_many_work_bytes(const struct rcmoe_gpu_lsq_seg *segs, int nseg);
rcmoe_status_t rcmoe_gpu_codec_lsq_encode_many(const struct rcmoe_gpu_lsq_seg *segs, int nseg,
					       void *work, size_t work_bytes,
					       struct rcmoe_gpu_stream *s);

/* Several short LSQ streams decoded in one launch (rcmoe_gpu_lsq_decode_many): whether a
 * stream may go (0 without CUDA), and the decode on stream s. */
int rcmoe_gpu_codec_lsq_decode_many_fits(const struct rcmoe_wire_header *hdr);
rcmoe_status_t rcmoe_gpu_codec_lsq_decode_many(const struct rcmoe_gpu_lsq_dec *d, int n,
					       struct rcmoe_gpu_stream *s);

/* Scratch bytes the GPU decoder needs for a stream with this validated header (0 without
 * CUDA). */
size_t rcmoe_gpu_codec_decode_work_bytes(const struct rcmoe_wire_header *hdr);
/* Decode the stream at src (mapped host memory), validated on the host with
 * rcmoe_codec_validate against dst_bytes, into device memory at dst, on stream s. */
rcmoe_status_t rcmoe_gpu_codec_decode(const void *src, const struct rcmoe_wire_header *hdr,
				      void *dst, size_t dst_bytes, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s);

/* The collective side's GPU steps (plugin/coll/ar_gpu.c), same rules: on stream s, inside
 * rcmoe_gpu_enter/leave, RCMOE_ERR_UNSUPPORTED without CUDA. */

/* Scratch bytes rcmoe_gpu_codec_pts_accumulate needs for these (validated) headers. */
size_t rcmoe_gpu_codec_pts_accumulate_work_bytes(const struct rcmoe_wire_header *hdrs, int n);
/* dst (device) = the PTS streams at srcs (mapped host memory, 16-byte aligned, validated into
 * hdrs) decoded and summed in the given order: the bits of rcmoe_pts_accumulate. */
rcmoe_status_t rcmoe_gpu_codec_pts_accumulate(const void *const *srcs,
					      const struct rcmoe_wire_header *hdrs, int nsrc,
					      int dtype, void *dst, size_t n, void *work,
					      size_t work_bytes, struct rcmoe_gpu_stream *s);
/* dst = the rank-order sum of nsrc device arrays: the bits of rcmoe_coll_sum (coll/sum.h). */
rcmoe_status_t rcmoe_gpu_codec_rank_sum(int dtype, const void *const *srcs, int nsrc, void *dst,
					size_t n, struct rcmoe_gpu_stream *s);
/* Zero `bytes` device bytes at d (a kernel, never cudaMemsetAsync: kernels/fill.cu). */
rcmoe_status_t rcmoe_gpu_codec_zero(void *d, size_t bytes, struct rcmoe_gpu_stream *s);
/* Most sources (ranks) the two steps above take; 0 without CUDA. */
int rcmoe_gpu_codec_max_sources(void);

#endif
