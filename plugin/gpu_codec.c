/* SPDX-License-Identifier: Apache-2.0 */
/* The codec kernels behind plain C types (gpu_codec.h), with and without CUDA in the build. */
#include "gpu_codec.h"

#ifdef RCMOE_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "rcmoe/kernels.h"

static cudaStream_t cuda_stream(const struct rcmoe_gpu_stream *s)
{
	return (cudaStream_t)s->handle;
}

size_t rcmoe_gpu_codec_encode_work_bytes(const struct rcmoe_codec_cfg *cfg, size_t n)
{
	return rcmoe_gpu_encode_work_bytes(cfg, n);
}

rcmoe_status_t rcmoe_gpu_codec_encode(const struct rcmoe_codec_cfg *cfg, const void *src, size_t n,
				      void *dst, size_t cap, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_encode(cfg, src, n, dst, cap, work, work_bytes, cuda_stream(s));
}

size_t rcmoe_gpu_codec_lsq_encode_many_work_bytes(const struct rcmoe_gpu_lsq_seg *segs, int nseg)
{
	return rcmoe_gpu_lsq_encode_many_work_bytes(segs, nseg);
}

rcmoe_status_t rcmoe_gpu_codec_lsq_encode_many(const struct rcmoe_gpu_lsq_seg *segs, int nseg,
					       void *work, size_t work_bytes,
					       struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_lsq_encode_many(segs, nseg, work, work_bytes, cuda_stream(s));
}

int rcmoe_gpu_codec_lsq_decode_many_fits(const struct rcmoe_wire_header *hdr)
{
	return rcmoe_gpu_lsq_decode_many_fits(hdr);
}

rcmoe_status_t rcmoe_gpu_codec_lsq_decode_many(const struct rcmoe_gpu_lsq_dec *d, int n,
					       struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_lsq_decode_many(d, n, cuda_stream(s));
}

size_t rcmoe_gpu_codec_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	return rcmoe_gpu_decode_work_bytes(hdr);
}

rcmoe_status_t rcmoe_gpu_codec_decode(const void *src, const struct rcmoe_wire_header *hdr,
				      void *dst, size_t dst_bytes, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_decode(src, hdr, dst, dst_bytes, work, work_bytes, cuda_stream(s));
}

size_t rcmoe_gpu_codec_pts_accumulate_work_bytes(const struct rcmoe_wire_header *hdrs, int n)
{
	return rcmoe_gpu_pts_accumulate_work_bytes(hdrs, n);
}

rcmoe_status_t rcmoe_gpu_codec_pts_accumulate(const void *const *srcs,
					      const struct rcmoe_wire_header *hdrs, int nsrc,
					      int dtype, void *dst, size_t n, void *work,
					      size_t work_bytes, struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_pts_accumulate(srcs, hdrs, nsrc, dtype, dst, n, work, work_bytes,
					cuda_stream(s));
}

rcmoe_status_t rcmoe_gpu_codec_rank_sum(int dtype, const void *const *srcs, int nsrc, void *dst,
					size_t n, struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_rank_sum(dtype, srcs, nsrc, dst, n, cuda_stream(s));
}

rcmoe_status_t rcmoe_gpu_codec_zero(void *d, size_t bytes, struct rcmoe_gpu_stream *s)
{
	return rcmoe_gpu_fill(d, 0, bytes, cuda_stream(s));
}

int rcmoe_gpu_codec_max_sources(void)
{
	return RCMOE_GPU_PTS_MAX_PAYLOADS < RCMOE_GPU_RANK_SUM_MAX_SRCS
		       ? RCMOE_GPU_PTS_MAX_PAYLOADS
		       : RCMOE_GPU_RANK_SUM_MAX_SRCS;
}

#else /* no CUDA in this build: GPU buffers are never claimed, nothing is launched */

size_t rcmoe_gpu_codec_encode_work_bytes(const struct rcmoe_codec_cfg *cfg, size_t n)
{
	return 0;
}

rcmoe_status_t rcmoe_gpu_codec_encode(const struct rcmoe_codec_cfg *cfg, const void *src, size_t n,
				      void *dst, size_t cap, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

size_t rcmoe_gpu_codec_lsq_encode_many_work_bytes(const struct rcmoe_gpu_lsq_seg *segs, int nseg)
{
	return 0;
}

rcmoe_status_t rcmoe_gpu_codec_lsq_encode_many(const struct rcmoe_gpu_lsq_seg *segs, int nseg,
					       void *work, size_t work_bytes,
					       struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

int rcmoe_gpu_codec_lsq_decode_many_fits(const struct rcmoe_wire_header *hdr)
{
	return 0;
}

rcmoe_status_t rcmoe_gpu_codec_lsq_decode_many(const struct rcmoe_gpu_lsq_dec *d, int n,
					       struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

size_t rcmoe_gpu_codec_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	return 0;
}

rcmoe_status_t rcmoe_gpu_codec_decode(const void *src, const struct rcmoe_wire_header *hdr,
				      void *dst, size_t dst_bytes, void *work, size_t work_bytes,
				      struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

size_t rcmoe_gpu_codec_pts_accumulate_work_bytes(const struct rcmoe_wire_header *hdrs, int n)
{
	return 0;
}

rcmoe_status_t rcmoe_gpu_codec_pts_accumulate(const void *const *srcs,
					      const struct rcmoe_wire_header *hdrs, int nsrc,
					      int dtype, void *dst, size_t n, void *work,
					      size_t work_bytes, struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

rcmoe_status_t rcmoe_gpu_codec_rank_sum(int dtype, const void *const *srcs, int nsrc, void *dst,
					size_t n, struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

rcmoe_status_t rcmoe_gpu_codec_zero(void *d, size_t bytes, struct rcmoe_gpu_stream *s)
{
	return RCMOE_ERR_UNSUPPORTED;
}

int rcmoe_gpu_codec_max_sources(void)
{
	return 0;
}

#endif
