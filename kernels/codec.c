/* SPDX-License-Identifier: Apache-2.0 */
/* Codec-independent entry points: full validation and CPU decode of any stream, and the CPU
 * encoders behind one configuration type (struct rcmoe_codec_cfg). */
#include "codec_internal.h"

uint64_t rcmoe_wire_decoded_bytes(const struct rcmoe_wire_header *hdr)
{
	return hdr->codec == RCMOE_CODEC_DEDUP || hdr->codec == RCMOE_CODEC_WDEDUP
		       ? hdr->count
		       : hdr->count * rcmoe_dt_size(hdr->dtype);
}

const char *rcmoe_codec_name(int codec)
{
	switch (codec) {
	case RCMOE_CODEC_LSQ: return "LSQ";
	case RCMOE_CODEC_PTS: return "PTS";
	case RCMOE_CODEC_DEDUP: return "dedup";
	case RCMOE_CODEC_WDEDUP: return "window dedup";
	default: return "?";
	}
}

rcmoe_status_t rcmoe_codec_check_cfg(const struct rcmoe_codec_cfg *cfg)
{
	if (!cfg)
		return RCMOE_ERR_INVALID;
	switch (cfg->codec) {
	case RCMOE_CODEC_LSQ: return rcmoe_lsq_check_cfg(&cfg->u.lsq);
	case RCMOE_CODEC_PTS: return rcmoe_pts_check_cfg(&cfg->u.pts);
	case RCMOE_CODEC_DEDUP:
		return rcmoe_dedup_bound(0, cfg->u.dedup_block) ? RCMOE_OK : RCMOE_ERR_INVALID;
	default: return RCMOE_ERR_INVALID;
	}
}

size_t rcmoe_codec_bound(const struct rcmoe_codec_cfg *cfg, size_t n)
{
	if (!cfg)
		return 0;
	switch (cfg->codec) {
	case RCMOE_CODEC_LSQ: return rcmoe_lsq_bound(n, &cfg->u.lsq);
	case RCMOE_CODEC_PTS: return rcmoe_pts_bound(n, &cfg->u.pts);
	case RCMOE_CODEC_DEDUP: return rcmoe_dedup_bound(n, cfg->u.dedup_block);
	default: return 0;
	}
}

rcmoe_status_t rcmoe_codec_encode(const struct rcmoe_codec_cfg *cfg, const void *src, size_t n,
				  void *dst, size_t cap, size_t *len)
{
	if (!cfg)
		return RCMOE_ERR_INVALID;
	switch (cfg->codec) {
	case RCMOE_CODEC_LSQ: return rcmoe_lsq_encode(src, n, &cfg->u.lsq, dst, cap, len);
	case RCMOE_CODEC_PTS: return rcmoe_pts_encode(src, n, &cfg->u.pts, dst, cap, len);
	case RCMOE_CODEC_DEDUP:
		return rcmoe_dedup_encode(src, n, cfg->u.dedup_block, dst, cap, len, NULL);
	default: return RCMOE_ERR_INVALID;
	}
}

rcmoe_status_t rcmoe_codec_validate(const void *src, size_t len, size_t dst_bytes,
				    struct rcmoe_wire_header *hdr)
{
	struct rcmoe_wire_header h;
	rcmoe_status_t st;
	uint64_t out;

	if (!src)
		return RCMOE_ERR_INVALID;
	st = rcmoe_wire_parse(src, len, &h);
	if (st != RCMOE_OK)
		return st;
	/* count <= 2^48 (checked by the parser), so this cannot overflow */
	out = rcmoe_wire_decoded_bytes(&h);
	if (out > dst_bytes)
		return RCMOE_ERR_OVERFLOW;
	if (h.codec == RCMOE_CODEC_WDEDUP)
		return RCMOE_ERR_UNSUPPORTED; /* its references need the receiver's window */
	const uint8_t *payload = (const uint8_t *)src + RCMOE_WIRE_HEADER_BYTES;
	switch (h.codec) {
	case RCMOE_CODEC_LSQ: st = rcmoe_lsq_validate(payload, &h); break;
	case RCMOE_CODEC_PTS: st = rcmoe_pts_validate(payload, &h); break;
	default: st = rcmoe_dedup_validate(payload, &h); break;
	}
	if (st == RCMOE_OK && hdr)
		*hdr = h;
	return st;
}

rcmoe_status_t rcmoe_codec_decode(const void *src, size_t len, void *dst, size_t dst_bytes,
				  size_t *out_bytes)
{
	struct rcmoe_wire_header h;
	rcmoe_status_t st;

	if (!src || (!dst && dst_bytes) || !out_bytes)
		return RCMOE_ERR_INVALID;
	st = rcmoe_codec_validate(src, len, dst_bytes, &h);
	if (st != RCMOE_OK)
		return st;
	const uint8_t *payload = (const uint8_t *)src + RCMOE_WIRE_HEADER_BYTES;
	switch (h.codec) {
	case RCMOE_CODEC_LSQ:
		rcmoe_lsq_decode_valid(payload, &h, dst);
		*out_bytes = h.count * rcmoe_dt_size(h.dtype);
		return RCMOE_OK;
	case RCMOE_CODEC_PTS:
		st = rcmoe_pts_accumulate_valid(&src, &len, 1, h.dtype, dst, h.count);
		if (st == RCMOE_OK)
			*out_bytes = h.count * rcmoe_dt_size(h.dtype);
		return st;
	default:
		rcmoe_dedup_decode_valid(payload, &h, dst);
		*out_bytes = h.count;
		return RCMOE_OK;
	}
}
