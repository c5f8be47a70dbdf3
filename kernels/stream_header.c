/* SPDX-License-Identifier: Apache-2.0 */
/* The 64-byte stream header: write, parse and check (layout in docs/stream-format.md). */
#include <string.h>

#include "codec_internal.h"

size_t rcmoe_dtype_size(int dtype)
{
	return rcmoe_dt_size(dtype);
}

uint32_t rcmoe_rng_u32(uint64_t seed, uint64_t op_id, uint32_t rank, uint64_t index)
{
	return rcmoe_rng_at(rcmoe_rng_key(seed, op_id, rank), index);
}

void rcmoe_wire_words(const struct rcmoe_wire_header *hdr, uint32_t w[RCMOE_HW_WORDS])
{
	memset(w, 0, RCMOE_HW_WORDS * sizeof(uint32_t));
	w[RCMOE_HW_MAGIC] = hdr->magic;
	w[RCMOE_HW_VERSION_CODEC_DTYPE] =
		hdr->version | (uint32_t)hdr->codec << 16 | (uint32_t)hdr->dtype << 24;
	w[RCMOE_HW_BITS_FLAGS] = hdr->bits | (uint32_t)hdr->flags << 8;
	w[RCMOE_HW_BLOCK] = hdr->block;
	w[RCMOE_HW_COUNT] = (uint32_t)hdr->count;
	w[RCMOE_HW_COUNT + 1] = (uint32_t)(hdr->count >> 32);
	w[RCMOE_HW_SEED] = (uint32_t)hdr->seed;
	w[RCMOE_HW_SEED + 1] = (uint32_t)(hdr->seed >> 32);
	w[RCMOE_HW_OPID] = (uint32_t)hdr->op_id;
	w[RCMOE_HW_OPID + 1] = (uint32_t)(hdr->op_id >> 32);
	w[RCMOE_HW_RANK] = hdr->rank;
	w[RCMOE_HW_AUX] = hdr->aux;
	w[RCMOE_HW_PAYLOAD] = (uint32_t)hdr->payload_len;
	w[RCMOE_HW_PAYLOAD + 1] = (uint32_t)(hdr->payload_len >> 32);
	w[RCMOE_HW_CHECK] = rcmoe_wire_check(w);
}

void rcmoe_wire_write(void *dst, const struct rcmoe_wire_header *hdr)
{
	uint32_t w[RCMOE_HW_WORDS];
	rcmoe_wire_words(hdr, w);
	memcpy(dst, w, RCMOE_WIRE_HEADER_BYTES);
}

static int is_pow2_in(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

static int dtype_ok(int dtype)
{
	return dtype == RCMOE_DT_FP16 || dtype == RCMOE_DT_FP32 || dtype == RCMOE_DT_BF16;
}

/* Codec-specific header fields. */
static rcmoe_status_t check_fields(const struct rcmoe_wire_header *h)
{
	switch (h->codec) {
	case RCMOE_CODEC_LSQ:
		if (!dtype_ok(h->dtype) || (h->bits != 2 && h->bits != 4 && h->bits != 8) ||
		    h->flags != 0 || h->aux != 0 ||
		    !is_pow2_in(h->block, RCMOE_LSQ_MIN_BLOCK, RCMOE_LSQ_MAX_BLOCK))
			return RCMOE_ERR_MALFORMED;
		return RCMOE_OK;
	case RCMOE_CODEC_PTS:
		if (!dtype_ok(h->dtype) || h->bits != 0 || (h->flags & ~RCMOE_PTS_DENSE) != 0 ||
		    !is_pow2_in(h->block, RCMOE_PTS_MIN_CHUNK, RCMOE_PTS_MAX_CHUNK))
			return RCMOE_ERR_MALFORMED;
		/* tau: +0 (nothing kept) or a positive finite float; dense streams carry none */
		if ((h->flags & RCMOE_PTS_DENSE) ? h->aux != 0 : h->aux >= 0x7f800000u)
			return RCMOE_ERR_MALFORMED;
		return RCMOE_OK;
	case RCMOE_CODEC_DEDUP:
		if (h->dtype != 0 || h->bits != 0 || h->flags != 0 || h->aux != 0 ||
		    h->block < RCMOE_DEDUP_MIN_BLOCK || h->block > RCMOE_DEDUP_MAX_BLOCK ||
		    h->block % 4 != 0 || h->seed != 0 || h->op_id != 0 || h->rank != 0)
			return RCMOE_ERR_MALFORMED;
		return RCMOE_OK;
	case RCMOE_CODEC_WDEDUP:
		/* lossless (dtype and bits 0), or LSQ-composed: one LSQ block per dedup block */
		if (h->block < RCMOE_DEDUP_MIN_BLOCK || h->block > RCMOE_DEDUP_MAX_BLOCK ||
		    h->block % 4 != 0 || h->flags != 0 || h->aux != 0 || h->seed != 0 ||
		    h->rank != 0)
			return RCMOE_ERR_MALFORMED;
		if (h->dtype == 0 && h->bits == 0)
			return RCMOE_OK;
		if (!dtype_ok(h->dtype) || (h->bits != 2 && h->bits != 4 && h->bits != 8) ||
		    h->block % rcmoe_dt_size(h->dtype) != 0 || h->count % rcmoe_dt_size(h->dtype) ||
		    !is_pow2_in(h->block / rcmoe_dt_size(h->dtype), RCMOE_LSQ_MIN_BLOCK,
				RCMOE_LSQ_MAX_BLOCK))
			return RCMOE_ERR_MALFORMED;
		return RCMOE_OK;
	default: return RCMOE_ERR_MALFORMED;
	}
}

rcmoe_status_t rcmoe_wire_parse(const void *src, size_t len, struct rcmoe_wire_header *hdr)
{
	uint32_t w[RCMOE_HW_WORDS];
	struct rcmoe_wire_header h;
	rcmoe_status_t st;

	if (!src || !hdr)
		return RCMOE_ERR_INVALID;
	if (len < RCMOE_WIRE_HEADER_BYTES)
		return RCMOE_ERR_TRUNCATED;
	memcpy(w, src, RCMOE_WIRE_HEADER_BYTES);
	if (w[RCMOE_HW_MAGIC] != RCMOE_WIRE_MAGIC)
		return RCMOE_ERR_MALFORMED;
	if (rcmoe_wire_check(w) != w[RCMOE_HW_CHECK])
		return RCMOE_ERR_MALFORMED;
	h.magic = w[RCMOE_HW_MAGIC];
	h.version = (uint16_t)w[RCMOE_HW_VERSION_CODEC_DTYPE];
	h.codec = (uint8_t)(w[RCMOE_HW_VERSION_CODEC_DTYPE] >> 16);
	h.dtype = (uint8_t)(w[RCMOE_HW_VERSION_CODEC_DTYPE] >> 24);
	h.bits = (uint8_t)w[RCMOE_HW_BITS_FLAGS];
	h.flags = (uint8_t)(w[RCMOE_HW_BITS_FLAGS] >> 8);
	h.block = w[RCMOE_HW_BLOCK];
	h.count = w[RCMOE_HW_COUNT] | (uint64_t)w[RCMOE_HW_COUNT + 1] << 32;
	h.seed = w[RCMOE_HW_SEED] | (uint64_t)w[RCMOE_HW_SEED + 1] << 32;
	h.op_id = w[RCMOE_HW_OPID] | (uint64_t)w[RCMOE_HW_OPID + 1] << 32;
	h.rank = w[RCMOE_HW_RANK];
	h.aux = w[RCMOE_HW_AUX];
	h.payload_len = w[RCMOE_HW_PAYLOAD] | (uint64_t)w[RCMOE_HW_PAYLOAD + 1] << 32;
	if (h.version != RCMOE_WIRE_VERSION)
		return RCMOE_ERR_UNSUPPORTED;
	if ((w[RCMOE_HW_BITS_FLAGS] >> 16) != 0 || w[RCMOE_HW_RESERVED] != 0)
		return RCMOE_ERR_MALFORMED;
	st = check_fields(&h);
	if (st != RCMOE_OK)
		return st;
	if (h.count > RCMOE_CODEC_MAX_COUNT)
		return RCMOE_ERR_MALFORMED;
	if (h.payload_len > (uint64_t)(len - RCMOE_WIRE_HEADER_BYTES))
		return RCMOE_ERR_TRUNCATED;
	*hdr = h;
	return RCMOE_OK;
}
