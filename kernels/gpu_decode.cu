/* SPDX-License-Identifier: Apache-2.0 */
/* rcmoe_gpu_decode: one entry point for any validated stream (the plugin core's receive path). */
#include "gpu_common.cuh"
#include "gpu_internal.h"

extern "C" size_t rcmoe_gpu_decode_work_bytes(const struct rcmoe_wire_header *hdr)
{
	if (!hdr)
		return 0;
	switch (hdr->codec) {
	case RCMOE_CODEC_LSQ: return rcmoe_gpu_lsq_decode_work_bytes(hdr);
	case RCMOE_CODEC_PTS: return rcmoe_gpu_pts_accumulate_work_bytes(hdr, 1);
	default: return rcmoe_gpu_dedup_decode_work_bytes(hdr);
	}
}

extern "C" rcmoe_status_t rcmoe_gpu_decode(const void *d_src, const struct rcmoe_wire_header *hdr,
					   void *d_dst, size_t dst_bytes, void *d_work,
					   size_t work_bytes, cudaStream_t stream)
{
	if (!d_src || !hdr || ((uintptr_t)d_src % 16) || ((uintptr_t)d_work % 16))
		return RCMOE_ERR_INVALID;
	uint64_t out = hdr->codec == RCMOE_CODEC_DEDUP ? hdr->count
						       : hdr->count * rcmoe_dtype_size(hdr->dtype);
	if (out > dst_bytes)
		return RCMOE_ERR_OVERFLOW;
	if (out && !d_dst)
		return RCMOE_ERR_INVALID;
	switch (hdr->codec) {
	case RCMOE_CODEC_LSQ:
		if (((uintptr_t)d_dst % rcmoe_dtype_size(hdr->dtype)) || !d_work)
			return RCMOE_ERR_INVALID;
		return rcmoe_gpu_lsq_decode(d_src, hdr, d_dst, d_work, work_bytes, stream);
	case RCMOE_CODEC_PTS:
		return rcmoe_gpu_pts_accumulate(&d_src, hdr, 1, hdr->dtype, d_dst, hdr->count,
						d_work, work_bytes, stream);
	case RCMOE_CODEC_DEDUP: return rcmoe_gpu_dedup_decode(d_src, hdr, d_dst, stream);
	default: return RCMOE_ERR_INVALID;
	}
}
