/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LSQ, plain reference encoder and decoder: one element at a time, straight from the definitions
 * in codec_math.h. Their bytes are the specification (the CUDA kernels are compared against
 * them); the fast CPU paths in lsq.c must reproduce them bit for bit, which the codec tests check
 * by running both over many configurations. Not used on the data path.
 */
#include <string.h>

#include "codec_internal.h"

/* Pack one block's codes (m elements starting at element e0) after its scale. */
static void encode_block_codes(const uint8_t *in, uint32_t esize, int dtype, uint64_t e0,
			       uint32_t m, int bits, int levels, float inv, uint64_t key,
			       uint8_t *out)
{
	uint32_t words = (m * (uint32_t)bits + 31) / 32;
	uint32_t acc = 0;
	uint32_t per_word = 32 / (uint32_t)bits, w = 0, j;
	for (j = 0; j < m; j++) {
		float x = rcmoe_to_f32(dtype, rcmoe_ld_elem(in, esize, e0 + j));
		uint32_t r = rcmoe_rng_at(key, (e0 + j) >> 1);
		uint32_t c = rcmoe_lsq_code(x, inv, rcmoe_lsq_rand(r, e0 + j), levels);
		acc |= c << ((j % per_word) * (uint32_t)bits);
		if (j % per_word == per_word - 1) {
			rcmoe_st32(out + 4 * w++, acc);
			acc = 0;
		}
	}
	if (w < words)
		rcmoe_st32(out + 4 * w, acc);
}

rcmoe_status_t rcmoe_lsq_encode_ref(const void *src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				    void *dst, size_t cap, size_t *len)
{
	rcmoe_status_t st = rcmoe_lsq_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_encode_args(src, n, dst, len, rcmoe_lsq_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;

	const uint8_t *in = src;
	uint8_t *payload = (uint8_t *)dst + RCMOE_WIRE_HEADER_BYTES;
	uint32_t esize = rcmoe_dt_size(cfg->dtype), B = cfg->block;
	int bits = cfg->bits, levels = rcmoe_lsq_levels(bits);
	uint64_t nblocks = (n + B - 1) / B, kb = rcmoe_lsq_kinds_bytes(nblocks);
	uint64_t key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank);
	uint64_t off = kb, b;

	memset(payload, 0, kb);
	for (b = 0; b < nblocks; b++) {
		uint64_t e0 = b * B;
		uint32_t m = (uint32_t)(n - e0 < B ? n - e0 : B), j, amax = 0;
		float s = 0, inv = 0;
		for (j = 0; j < m; j++) {
			float x = rcmoe_to_f32(cfg->dtype, rcmoe_ld_elem(in, esize, e0 + j));
			uint32_t a = rcmoe_fbits(x) & 0x7fffffffu;
			amax = a > amax ? a : amax;
		}
		int kind = rcmoe_lsq_block_kind(amax, m, bits, esize, &s, &inv);
		payload[b / 4] |= (uint8_t)(kind << (2 * (b % 4)));
		if (kind == RCMOE_LSQ_QUANT) {
			rcmoe_st32(payload + off, rcmoe_fbits(s));
			encode_block_codes(in, esize, cfg->dtype, e0, m, bits, levels, inv, key,
					   payload + off + 4);
		} else if (kind == RCMOE_LSQ_RAW) {
			memcpy(payload + off, in + e0 * esize, (size_t)m * esize);
		}
		off += rcmoe_lsq_block_bytes(kind, m, bits, esize);
	}

	struct rcmoe_wire_header h = rcmoe_lsq_header(n, cfg, off);
	rcmoe_wire_write(dst, &h);
	*len = RCMOE_WIRE_HEADER_BYTES + off;
	return RCMOE_OK;
}

void rcmoe_lsq_decode_valid_ref(const uint8_t *payload, const struct rcmoe_wire_header *hdr,
				void *dst)
{
	uint32_t esize = rcmoe_dt_size(hdr->dtype), B = hdr->block;
	int bits = hdr->bits, levels = rcmoe_lsq_levels(bits), dtype = hdr->dtype;
	uint64_t n = hdr->count, nblocks = (n + B - 1) / B;
	uint64_t off = rcmoe_lsq_kinds_bytes(nblocks), b;
	uint32_t mask = (1u << bits) - 1, per_word = 32 / (uint32_t)bits;
	uint8_t *out = dst;

	for (b = 0; b < nblocks; b++) {
		int kind = (payload[b / 4] >> (2 * (b % 4))) & 3;
		uint64_t e0 = b * B;
		uint32_t m = (uint32_t)(n - e0 < B ? n - e0 : B), j;
		if (kind == RCMOE_LSQ_QUANT) {
			float s = rcmoe_bitsf(rcmoe_ld32(payload + off));
			const uint8_t *codes = payload + off + 4;
			for (j = 0; j < m; j++) {
				uint32_t word = rcmoe_ld32(codes + 4 * (j / per_word));
				uint32_t c = (word >> ((j % per_word) * (uint32_t)bits)) & mask;
				float v = rcmoe_lsq_value(c, s, levels);
				rcmoe_st_elem(out, esize, e0 + j, rcmoe_from_f32(dtype, v));
			}
		} else if (kind == RCMOE_LSQ_RAW) {
			memcpy(out + e0 * esize, payload + off, (size_t)m * esize);
		} else {
			memset(out + e0 * esize, 0, (size_t)m * esize);
		}
		off += rcmoe_lsq_block_bytes(kind, m, bits, esize);
	}
}
