/* SPDX-License-Identifier: Apache-2.0 */
/* rcmoe_gpu_encode: one entry point for any codec's GPU encoder (the plugin core's send path,
 * through its encode plan), as rcmoe_gpu_decode is for the receive path. */
#include "rcmoe/kernels.h"

extern "C" size_t rcmoe_gpu_encode_work_bytes(const struct rcmoe_codec_cfg *cfg, size_t n)
{
	if (!cfg)
		return 0;
	switch (cfg->codec) {
	case RCMOE_CODEC_LSQ: return rcmoe_gpu_lsq_work_bytes(n, &cfg->u.lsq);
	case RCMOE_CODEC_PTS: return rcmoe_gpu_pts_work_bytes(n, &cfg->u.pts);
	case RCMOE_CODEC_DEDUP: return rcmoe_gpu_dedup_work_bytes(n, cfg->u.dedup_block);
	default: return 0;
	}
}

extern "C" rcmoe_status_t rcmoe_gpu_encode(const struct rcmoe_codec_cfg *cfg, const void *d_src,
					   size_t n, void *d_dst, size_t cap, void *d_work,
					   size_t work_bytes, cudaStream_t stream)
{
	if (!cfg)
		return RCMOE_ERR_INVALID;
	switch (cfg->codec) {
	case RCMOE_CODEC_LSQ:
		return rcmoe_gpu_lsq_encode(d_src, n, &cfg->u.lsq, d_dst, cap, d_work, work_bytes,
					    stream);
	case RCMOE_CODEC_PTS:
		return rcmoe_gpu_pts_encode(d_src, n, &cfg->u.pts, d_dst, cap, d_work, work_bytes,
					    stream);
	case RCMOE_CODEC_DEDUP:
		return rcmoe_gpu_dedup_encode(d_src, n, cfg->u.dedup_block, d_dst, cap, d_work,
					      work_bytes, stream);
	default: return RCMOE_ERR_INVALID;
	}
}
