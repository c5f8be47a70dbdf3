/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The codecs, CPU side: LSQ (block-wise stochastic quantization, all-to-all), PTS (unbiased
 * probabilistic thresholding sparsification, all-reduce) and exact block dedup. Every encoded
 * stream starts with a self-describing header (struct rcmoe_wire_header); decoders validate all
 * of it against the destination before writing anything, and never write outside it.
 *
 * The CUDA kernels (rcmoe/kernels.h) produce the same bytes as these references for the same
 * input and configuration: stochastic rounding draws from a counter-based hash of
 * (seed, op_id, rank, element index), see rcmoe_rng_u32.
 *
 * The byte layout of each codec is documented in docs/wire-format.md.
 */
#ifndef RCMOE_CODEC_H
#define RCMOE_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "rcmoe/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Datatypes use NCCL's numbering (ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9). */
enum {
	RCMOE_DT_FP16 = 6,
	RCMOE_DT_FP32 = 7,
	RCMOE_DT_BF16 = 9,
};

enum {
	RCMOE_CODEC_LSQ = 1,
	RCMOE_CODEC_PTS = 2,
	RCMOE_CODEC_DEDUP = 3,
};

#define RCMOE_WIRE_MAGIC   0x454d4352u /* "RCME" little-endian */
#define RCMOE_WIRE_VERSION 1
#define RCMOE_WIRE_HEADER_BYTES 64

/* The decoded form of the 64-byte little-endian header every stream starts with. */
struct rcmoe_wire_header {
	uint32_t magic;
	uint16_t version;
	uint8_t codec;	    /* RCMOE_CODEC_* */
	uint8_t dtype;	    /* RCMOE_DT_* (dedup: 0, bytes) */
	uint8_t bits;	    /* LSQ: 8, 4 or 2 */
	uint8_t flags;	    /* codec specific */
	uint32_t block;	    /* LSQ: elements per block; dedup: bytes per block */
	uint64_t count;	    /* elements (dedup: bytes) the stream decodes to */
	uint64_t seed;
	uint64_t op_id;
	uint32_t rank;
	uint64_t payload_len; /* bytes after the header */
	uint32_t aux;	      /* codec specific (PTS: float bits of tau) */
};

/* Parse and check the header: magic, version, codec, dtype, bits, block, and that
 * RCMOE_WIRE_HEADER_BYTES + payload_len <= len. */
rcmoe_status_t rcmoe_wire_parse(const void *src, size_t len, struct rcmoe_wire_header *hdr);
void rcmoe_wire_write(void *dst, const struct rcmoe_wire_header *hdr);

/* Size in bytes of one element of dtype, 0 if not a codec dtype. */
size_t rcmoe_dtype_size(int dtype);

/* Counter-based RNG shared with the kernels. */
uint32_t rcmoe_rng_u32(uint64_t seed, uint64_t op_id, uint32_t rank, uint64_t index);

/* ---- LSQ ---- */
struct rcmoe_lsq_cfg {
	int dtype;	/* RCMOE_DT_* */
	int bits;	/* 8, 4, 2 */
	uint32_t block; /* elements per block, 32..1024 */
	uint64_t seed;
	uint64_t op_id;
	uint32_t rank;
};
rcmoe_status_t rcmoe_lsq_check_cfg(const struct rcmoe_lsq_cfg *cfg);
/* Largest stream rcmoe_lsq_encode can produce for n elements (header included). */
size_t rcmoe_lsq_bound(size_t n, const struct rcmoe_lsq_cfg *cfg);
rcmoe_status_t rcmoe_lsq_encode(const void *src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				void *dst, size_t cap, size_t *len);

/* ---- PTS ---- */
struct rcmoe_pts_cfg {
	int dtype;
	double density; /* target fraction kept, (0, 1] */
	uint64_t seed;
	uint64_t op_id;
	uint32_t rank;
};
size_t rcmoe_pts_bound(size_t n, const struct rcmoe_pts_cfg *cfg);
rcmoe_status_t rcmoe_pts_encode(const void *src, size_t n, const struct rcmoe_pts_cfg *cfg,
				void *dst, size_t cap, size_t *len);
/* Decode `npayloads` PTS streams of n elements each and add them, in the given order, into
 * dst (n elements of dtype); 16-bit types accumulate in fp32 and are rounded once at the end. */
rcmoe_status_t rcmoe_pts_accumulate(const void *const *payloads, const size_t *lens,
				    int npayloads, int dtype, void *dst, size_t n);

/* ---- Dedup ---- */
struct rcmoe_dedup_stats {
	uint64_t blocks;
	uint64_t duplicates;
};
size_t rcmoe_dedup_bound(size_t bytes, uint32_t block_bytes);
rcmoe_status_t rcmoe_dedup_encode(const void *src, size_t bytes, uint32_t block_bytes, void *dst,
				  size_t cap, size_t *len, struct rcmoe_dedup_stats *stats);

/* ---- any codec ---- */
/* Full structural validation of a stream against a destination of dst_bytes (everything but
 * the values themselves); after RCMOE_OK a decoder cannot go out of bounds. */
rcmoe_status_t rcmoe_codec_validate(const void *src, size_t len, size_t dst_bytes,
				    struct rcmoe_wire_header *hdr);
/* Decode LSQ or dedup streams (PTS: rcmoe_pts_accumulate) into dst; *out_bytes is the decoded
 * size. */
rcmoe_status_t rcmoe_codec_decode(const void *src, size_t len, void *dst, size_t dst_bytes,
				  size_t *out_bytes);

#ifdef __cplusplus
}
#endif
#endif
