/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The codecs, CPU side: LSQ (block-wise stochastic quantization, all-to-all), PTS (unbiased
 * probabilistic thresholding sparsification, all-reduce) and exact block dedup. Every encoded
 * stream starts with a self-describing 64-byte header (struct rcmoe_wire_header); decoders
 * validate all of it against the destination before writing anything, and never write outside it.
 *
 * The CUDA kernels (rcmoe/kernels.h) produce the same bytes as these references for the same
 * input and configuration: stochastic rounding draws from a counter-based hash of
 * (seed, op_id, rank, element index), see rcmoe_rng_u32, and all arithmetic follows one fixed
 * sequence of IEEE operations on both sides (kernels/codec_math.h).
 *
 * The byte layout of each codec is documented in docs/stream-format.md. None of these functions
 * allocates except rcmoe_pts_encode/rcmoe_pts_accumulate/rcmoe_dedup_encode (scratch the size of
 * a chunk, of the fp32 accumulator, of the hash table), none prints, none keeps state.
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
	RCMOE_CODEC_WDEDUP = 4, /* dedup against a window of earlier messages: rcmoe/wdedup.h */
};

#define RCMOE_WIRE_MAGIC        0x454d4352u /* "RCME" little-endian */
#define RCMOE_WIRE_VERSION      1
#define RCMOE_WIRE_HEADER_BYTES 64

/* Limits the header is checked against (docs/stream-format.md). */
#define RCMOE_LSQ_MIN_BLOCK     32 /* LSQ block: a power of two in [32, 1024] elements */
#define RCMOE_LSQ_MAX_BLOCK     1024
#define RCMOE_LSQ_DEFAULT_BLOCK 128
#define RCMOE_PTS_MIN_CHUNK     1024 /* PTS chunk: a power of two in [1024, 16384] elements */
#define RCMOE_PTS_MAX_CHUNK     16384
#define RCMOE_PTS_DEFAULT_CHUNK 16384
#define RCMOE_DEDUP_MIN_BLOCK   16 /* dedup block: a multiple of 4 in [16, 64 MiB] bytes */
#define RCMOE_DEDUP_MAX_BLOCK   (64u << 20)
#define RCMOE_CODEC_MAX_COUNT   (1ull << 48) /* elements (dedup: bytes) in one stream */

/* PTS header flag: the payload is the n raw elements (input had Inf/NaN, or no usable tau). */
#define RCMOE_PTS_DENSE 1u

/* The decoded form of the 64-byte little-endian header every stream starts with. */
struct rcmoe_wire_header {
	uint32_t magic;
	uint16_t version;
	uint8_t codec;  /* RCMOE_CODEC_* */
	uint8_t dtype;  /* RCMOE_DT_* (dedup: 0, bytes) */
	uint8_t bits;   /* LSQ: 8, 4 or 2; others 0 */
	uint8_t flags;  /* PTS: RCMOE_PTS_DENSE; others 0 */
	uint32_t block; /* LSQ: elements per block; PTS: elements per chunk; dedup: bytes */
	uint64_t count; /* elements (dedup: bytes) the stream decodes to */
	uint64_t seed;  /* RNG inputs, recorded for reproduction (dedup: 0) */
	uint64_t op_id;
	uint32_t rank;
	uint64_t payload_len; /* bytes after the header */
	uint32_t aux;         /* PTS: fp32 bits of tau; others 0 */
};

/* Parse and check the header alone: magic, version (RCMOE_ERR_UNSUPPORTED if another), check
 * word, codec, dtype, bits, flags, block, count, reserved fields, and that
 * RCMOE_WIRE_HEADER_BYTES + payload_len <= len (RCMOE_ERR_TRUNCATED otherwise, or when
 * len < RCMOE_WIRE_HEADER_BYTES). Bytes after the stream are allowed and ignored. */
rcmoe_status_t rcmoe_wire_parse(const void *src, size_t len, struct rcmoe_wire_header *hdr);
/* Write the 64 header bytes (computes the check word; reserved fields are zero). */
void rcmoe_wire_write(void *dst, const struct rcmoe_wire_header *hdr);

/* Size in bytes of one element of dtype, 0 if not a codec dtype. */
size_t rcmoe_dtype_size(int dtype);

/* Counter-based RNG shared with the kernels: a pure function of its four inputs. */
uint32_t rcmoe_rng_u32(uint64_t seed, uint64_t op_id, uint32_t rank, uint64_t index);

/* ---- LSQ ----
 * Blocks of `block` elements (the last may be shorter); per block with max |x| = a, levels
 * L = 2^(bits-1) - 1 and scale s = a / L: q = x/s rounded stochastically to one of its two
 * neighbouring integers (on a 2^-15 grid, 15 random bits from rcmoe_rng_u32(seed, op_id, rank,
 * element index / 2)), so E[q] = x/s; decodes to q * s (rounded once to the dtype).
 * |decode - x| <= s (fp32). Blocks holding NaN or Inf (or too close to the fp32 limits, or a
 * last block too short to gain) are sent raw and decode bit-exact; all-zero blocks cost 2 bits
 * and decode to +0. Exact definition: docs/stream-format.md. */
struct rcmoe_lsq_cfg {
	int dtype;      /* RCMOE_DT_* */
	int bits;       /* 8, 4, 2 */
	uint32_t block; /* elements per block: a power of two in [32, 1024] */
	uint64_t seed;
	uint64_t op_id;
	uint32_t rank;
};
/* RCMOE_ERR_INVALID for a bad dtype, bits or block. */
rcmoe_status_t rcmoe_lsq_check_cfg(const struct rcmoe_lsq_cfg *cfg);

/* Most streams one rcmoe_gpu_lsq_encode_many call (rcmoe/kernels.h) encodes. */
#define RCMOE_GPU_LSQ_MAX_SEGS 8
/* One stream of rcmoe_gpu_lsq_encode_many: n elements at device address src (n >= 1), encoded
 * with cfg into dst (cap bytes), as rcmoe_gpu_lsq_encode would. Plain types, so that callers
 * built without CUDA can fill it. */
struct rcmoe_gpu_lsq_seg {
	const void *src;
	size_t n;
	struct rcmoe_lsq_cfg cfg;
	void *dst;
	size_t cap;
};
/* One stream of rcmoe_gpu_lsq_decode_many: the validated stream at device address src, its
 * header, decoded into dst (dst_bytes). */
struct rcmoe_gpu_lsq_dec {
	const void *src;
	struct rcmoe_wire_header hdr;
	void *dst;
	size_t dst_bytes;
};
/* Largest stream rcmoe_lsq_encode (or the GPU encoder) can produce for n elements, header
 * included; 0 for a bad cfg. */
size_t rcmoe_lsq_bound(size_t n, const struct rcmoe_lsq_cfg *cfg);
/* Encode n elements. *len is the exact stream length (header + payload_len). cap must be
 * >= rcmoe_lsq_bound (else RCMOE_ERR_OVERFLOW, nothing written). */
rcmoe_status_t rcmoe_lsq_encode(const void *src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				void *dst, size_t cap, size_t *len);

/* ---- PTS ----
 * tau = ||g||_1 / (density * n) (fp64 L1 norm in a fixed summation order, rounded up to a value
 * of the dtype); element i is kept with probability min(1, |g_i|/tau): exactly when
 * |g_i| >= tau ("large"), else as sign(g_i) * tau ("small"). So E[decode] = g and the expected
 * number kept is <= density * n. Chunks of `chunk` elements each carry their small index set as a
 * bitmap or Elias-Fano code (the smaller), the signs, and the large elements' positions and
 * values. Input with NaN/Inf is sent dense (flag RCMOE_PTS_DENSE). */
struct rcmoe_pts_cfg {
	int dtype;
	double density; /* target fraction kept, (0, 1] */
	uint64_t seed;
	uint64_t op_id;
	uint32_t rank;
	uint32_t chunk; /* elements per chunk: a power of two in [1024, 16384]; 0: default */
};
rcmoe_status_t rcmoe_pts_check_cfg(const struct rcmoe_pts_cfg *cfg);
/* Largest stream for n elements (all elements large), header included; 0 for a bad cfg. */
size_t rcmoe_pts_bound(size_t n, const struct rcmoe_pts_cfg *cfg);
rcmoe_status_t rcmoe_pts_encode(const void *src, size_t n, const struct rcmoe_pts_cfg *cfg,
				void *dst, size_t cap, size_t *len);
/* Decode `npayloads` PTS streams of n elements of dtype each and sum them, in the given order,
 * into dst: dst[i] = ((0 + p0[i]) + p1[i]) + ..., in fp32 for every dtype, rounded once to dtype
 * at the end. dst is overwritten (not added to). Every rank that passes the same payloads in the
 * same order gets the same bits (including from the GPU accumulator). Each payload is validated
 * first (any status of rcmoe_codec_validate; RCMOE_ERR_INVALID for a count or dtype other than
 * n and dtype); dst is untouched on error. */
rcmoe_status_t rcmoe_pts_accumulate(const void *const *payloads, const size_t *lens, int npayloads,
				    int dtype, void *dst, size_t n);

/* ---- Dedup ----
 * The buffer is cut into blocks of block_bytes (the last may be shorter and is always sent).
 * A block byte-identical to an earlier one is sent as a reference to that block's copy: the
 * first block with the same 64-bit hash is the only candidate, and it is byte-compared, so there
 * are no false matches (a hash collision only costs a missed duplicate). */
struct rcmoe_dedup_stats {
	uint64_t blocks;
	uint64_t duplicates;
};
/* 0 when block_bytes is not a multiple of 4 in [16, 64 MiB]. */
size_t rcmoe_dedup_bound(size_t bytes, uint32_t block_bytes);
rcmoe_status_t rcmoe_dedup_encode(const void *src, size_t bytes, uint32_t block_bytes, void *dst,
				  size_t cap, size_t *len, struct rcmoe_dedup_stats *stats);
/* Blocks and duplicates of a dedup stream, from its (validated) header alone. */
void rcmoe_dedup_header_stats(const struct rcmoe_wire_header *hdr, struct rcmoe_dedup_stats *stats);

/* ---- any codec ---- */
/* Full structural validation of a stream against a destination of dst_bytes: the header, then
 * everything but the element values (LSQ: the kind table, every scale, and that the block sizes
 * add up to payload_len; dedup: the reference table; PTS: directory, index sets, signs padding,
 * large positions). Cost is O(blocks) for LSQ and dedup and O(payload bytes) for PTS, never
 * O(elements). After RCMOE_OK no decoder (CPU or GPU) can go out of bounds.
 * RCMOE_ERR_OVERFLOW: decodes to more than dst_bytes; _TRUNCATED: shorter than the header says;
 * _MALFORMED: anything inconsistent; _INVALID: NULL arguments. */
rcmoe_status_t rcmoe_codec_validate(const void *src, size_t len, size_t dst_bytes,
				    struct rcmoe_wire_header *hdr);
/* Decode an LSQ, dedup or (single) PTS stream into dst after validating it; *out_bytes is the
 * decoded size. dst is untouched on error. A window-dedup stream needs its receiver's window
 * (rcmoe_wdedup_validate / rcmoe_wdedup_decode): both calls refuse it with
 * RCMOE_ERR_UNSUPPORTED. */
rcmoe_status_t rcmoe_codec_decode(const void *src, size_t len, void *dst, size_t dst_bytes,
				  size_t *out_bytes);
/* Bytes a stream with this (parsed) header decodes to: count elements of dtype (dedup and window
 * dedup: count bytes). */
uint64_t rcmoe_wire_decoded_bytes(const struct rcmoe_wire_header *hdr);

/* ---- any codec, encode side ----
 * A codec and its configuration in one value, for callers that encode without knowing which
 * codec they run (the plugin's encode plan). `n` below counts elements of the configured dtype
 * (dedup: bytes). Adding a codec: its config in the union, a case in each rcmoe_codec_* switch
 * (kernels/codec.c) and in rcmoe_gpu_encode* (kernels/gpu_encode.cu). */
struct rcmoe_codec_cfg {
	int codec; /* RCMOE_CODEC_* */
	union {
		struct rcmoe_lsq_cfg lsq;
		struct rcmoe_pts_cfg pts;
		uint32_t dedup_block; /* bytes per dedup block */
	} u;
};
/* "LSQ", "PTS", "dedup"; "?" for an unknown codec. */
const char *rcmoe_codec_name(int codec);
/* RCMOE_ERR_INVALID for an unknown codec or a configuration its codec refuses. */
rcmoe_status_t rcmoe_codec_check_cfg(const struct rcmoe_codec_cfg *cfg);
/* Largest stream the codec's encoders (CPU or GPU) can produce for n elements, header included;
 * 0 for a bad cfg. */
size_t rcmoe_codec_bound(const struct rcmoe_codec_cfg *cfg, size_t n);
/* Encode n elements with cfg's codec (rcmoe_lsq_encode, rcmoe_pts_encode or rcmoe_dedup_encode,
 * same bytes). cap must be >= rcmoe_codec_bound. */
rcmoe_status_t rcmoe_codec_encode(const struct rcmoe_codec_cfg *cfg, const void *src, size_t n,
				  void *dst, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
