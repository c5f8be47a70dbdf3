/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exact block dedup, CPU reference: encode, validate, decode. The GPU encoder (dedup.cu) applies
 * the same matching rule, so both produce the same bytes:
 *   a full block's only candidate is the first full block with the same 64-bit hash; the block
 *   is a duplicate iff that candidate comes earlier and the bytes are equal.
 * Payload: a table of one u32 per block (the literal ordinal that holds its bytes: a block whose
 * ordinal is the next unused one is itself a literal), padded to 16 bytes, then the literal
 * blocks in order (the last block, if shorter, is always a literal and the last one).
 */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"

static uint64_t nblocks_of(uint64_t bytes, uint32_t bb)
{
	return (bytes + bb - 1) / bb;
}

static uint64_t table_bytes(uint64_t nblocks)
{
	return (nblocks * 4 + 15) / 16 * 16;
}

static int block_ok(uint32_t bb)
{
	return bb >= RCMOE_DEDUP_MIN_BLOCK && bb <= RCMOE_DEDUP_MAX_BLOCK && bb % 4 == 0;
}

size_t rcmoe_dedup_bound(size_t bytes, uint32_t block_bytes)
{
	if (!block_ok(block_bytes) || bytes > RCMOE_CODEC_MAX_COUNT)
		return 0;
	return RCMOE_WIRE_HEADER_BYTES + table_bytes(nblocks_of(bytes, block_bytes)) + bytes;
}

static uint64_t block_hash(const uint8_t *p, uint32_t bb)
{
	uint64_t sum = 0, i, nw = (bb + 7) / 8;
	for (i = 0; i < nw; i++) {
		uint64_t w = rcmoe_ld32(p + 8 * i);
		if (8 * i + 4 < bb)
			w |= (uint64_t)rcmoe_ld32(p + 8 * i + 4) << 32;
		sum += rcmoe_dedup_word_hash(w, i);
	}
	return rcmoe_dedup_final_hash(sum, bb);
}

rcmoe_status_t rcmoe_dedup_encode(const void *src, size_t bytes, uint32_t block_bytes, void *dst,
				  size_t cap, size_t *len, struct rcmoe_dedup_stats *stats)
{
	if ((!src && bytes) || !dst || !len)
		return RCMOE_ERR_INVALID;
	size_t bound = rcmoe_dedup_bound(bytes, block_bytes);
	if (bound == 0 || nblocks_of(bytes, block_bytes) > UINT32_MAX)
		return RCMOE_ERR_INVALID;
	if (cap < bound)
		return RCMOE_ERR_OVERFLOW;

	const uint8_t *in = src;
	uint8_t *payload = (uint8_t *)dst + RCMOE_WIRE_HEADER_BYTES;
	uint32_t bb = block_bytes;
	uint64_t nb = nblocks_of(bytes, bb), nfull = bytes / bb, tsize = 16, i, nlit = 0;
	while (tsize < 2 * nfull)
		tsize *= 2;
	uint64_t *keys = calloc(tsize, sizeof(uint64_t));
	uint32_t *first = malloc(tsize * sizeof(uint32_t));
	uint32_t *ord = malloc((nfull ? nfull : 1) * sizeof(uint32_t));
	if (!keys || !first || !ord) {
		free(keys);
		free(first);
		free(ord);
		return RCMOE_ERR_NOMEM;
	}
	uint64_t tb = table_bytes(nb), off = tb;
	memset(payload, 0, tb);
	for (i = 0; i < nb; i++) {
		const uint8_t *blk = in + i * bb;
		uint32_t o = (uint32_t)nlit;
		int dup = 0;
		if (i < nfull) {
			uint64_t h = block_hash(blk, bb), s = h & (tsize - 1);
			while (keys[s] != 0 && keys[s] != h)
				s = (s + 1) & (tsize - 1);
			if (keys[s] == 0) {
				keys[s] = h;
				first[s] = (uint32_t)i;
			} else if (memcmp(in + (uint64_t)first[s] * bb, blk, bb) == 0) {
				dup = 1;
				o = ord[first[s]];
			}
			ord[i] = o;
		}
		rcmoe_st32(payload + 4 * i, o);
		if (!dup) {
			uint32_t sz = (uint32_t)(bytes - i * bb < bb ? bytes - i * bb : bb);
			memcpy(payload + off, blk, sz);
			off += sz;
			nlit++;
		}
	}
	free(keys);
	free(first);
	free(ord);

	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_DEDUP,
		.block = bb,
		.count = bytes,
		.payload_len = off,
	};
	rcmoe_wire_write(dst, &h);
	*len = RCMOE_WIRE_HEADER_BYTES + off;
	if (stats) {
		stats->blocks = nb;
		stats->duplicates = nb - nlit;
	}
	return RCMOE_OK;
}

void rcmoe_dedup_header_stats(const struct rcmoe_wire_header *hdr, struct rcmoe_dedup_stats *stats)
{
	uint64_t nb = nblocks_of(hdr->count, hdr->block), tb = table_bytes(nb);
	uint64_t lit = hdr->payload_len > tb ? hdr->payload_len - tb : 0;
	uint64_t nlit = (lit + hdr->block - 1) / hdr->block;
	stats->blocks = nb;
	stats->duplicates = nb > nlit ? nb - nlit : 0;
}

rcmoe_status_t rcmoe_dedup_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr)
{
	uint32_t bb = hdr->block;
	uint64_t bytes = hdr->count, nb = nblocks_of(bytes, bb), tb = table_bytes(nb), i, nlit = 0;
	uint64_t tail = bytes % bb;

	if (hdr->payload_len < tb)
		return RCMOE_ERR_MALFORMED;
	for (i = 0; i < nb; i++) {
		uint32_t o = rcmoe_ld32(payload + 4 * i);
		if (o > nlit)
			return RCMOE_ERR_MALFORMED;
		if (o == nlit)
			nlit++;
		else if (i == nb - 1 && tail)
			return RCMOE_ERR_MALFORMED; /* a short last block is always a literal */
	}
	for (i = nb * 4; i < tb; i++)
		if (payload[i])
			return RCMOE_ERR_MALFORMED;
	uint64_t lit = nlit * bb - (tail ? bb - tail : 0);
	return hdr->payload_len - tb == lit ? RCMOE_OK : RCMOE_ERR_MALFORMED;
}

void rcmoe_dedup_decode_valid(const uint8_t *payload, const struct rcmoe_wire_header *hdr,
			      void *dst)
{
	uint32_t bb = hdr->block;
	uint64_t bytes = hdr->count, nb = nblocks_of(bytes, bb), i;
	const uint8_t *lit = payload + table_bytes(nb);
	uint8_t *out = dst;
	for (i = 0; i < nb; i++) {
		uint32_t o = rcmoe_ld32(payload + 4 * i);
		uint64_t sz = bytes - i * bb < bb ? bytes - i * bb : bb;
		memcpy(out + i * bb, lit + (uint64_t)o * bb, sz);
	}
}
