/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LSQ on the CPU: encode, validate, decode. What the plugin runs on NCCL's proxy thread for host
 * buffers, so it is written for speed: one loop per stage of a block, specialised per dtype and
 * bits, so that the compiler vectorises them. Its output is defined by the element-at-a-time
 * reference in lsq_ref.c (whose bytes the GPU kernels lsq_encode.cu and lsq_decode.cu reproduce):
 * every value-level step below either calls codec_math.h or repeats its fp32 operations in the
 * same order, and the codec tests compare both byte for byte.
 * Payload: kind table (2 bits per block, padded to 4 bytes), then per block in order:
 * quantized: fp32 scale + codes (b bits per element, LSB first, padded to 4 bytes);
 * raw: the elements as given; zero: nothing.
 */
#include <string.h>

#include "codec_internal.h"

rcmoe_status_t rcmoe_lsq_check_cfg(const struct rcmoe_lsq_cfg *cfg)
{
	if (!cfg || rcmoe_dt_size(cfg->dtype) == 0)
		return RCMOE_ERR_INVALID;
	if (cfg->bits != 2 && cfg->bits != 4 && cfg->bits != 8)
		return RCMOE_ERR_INVALID;
	if (cfg->block < RCMOE_LSQ_MIN_BLOCK || cfg->block > RCMOE_LSQ_MAX_BLOCK ||
	    (cfg->block & (cfg->block - 1)) != 0)
		return RCMOE_ERR_INVALID;
	return RCMOE_OK;
}

size_t rcmoe_lsq_bound(size_t n, const struct rcmoe_lsq_cfg *cfg)
{
	if (rcmoe_lsq_check_cfg(cfg) != RCMOE_OK || n > RCMOE_CODEC_MAX_COUNT)
		return 0;
	uint64_t nblocks = (n + cfg->block - 1) / cfg->block;
	/* a block is quantized only when that is smaller than raw: all-raw is the worst case */
	return RCMOE_WIRE_HEADER_BYTES + rcmoe_lsq_kinds_bytes(nblocks) +
	       (uint64_t)n * rcmoe_dt_size(cfg->dtype);
}

/* ---- fast path ----
 * A quantized block goes through small loops, each with its dtype and bit width fixed at compile
 * time (LSQ_INLINE bodies instantiated per (dtype, bits) below): encode: max |x|, the block's
 * random draws, the codes (one byte each), packing; decode: unpacking, values. The loops run
 * over whole chunks of LSQ_CHUNK elements through restrict pointers: gcc -O2 (its "very cheap"
 * vectorizer cost model) vectorises only loops that need neither a scalar epilogue nor alias
 * checks. Every full block is a whole number of chunks (blocks are powers of two >= 32); a short
 * last block is staged through zero-padded scratch. The scratch arrays stay in L1. Elements are
 * loaded and stored with fixed-size memcpy, so any alignment is fine. */

#if defined(__GNUC__) || defined(__clang__)
#define LSQ_INLINE static inline __attribute__((always_inline))
#else
#define LSQ_INLINE static inline
#endif

/* Every (dtype, bits) instance below is built three times on x86-64: for the baseline (SSE2),
 * for AVX2 and for AVX-512, the widest the CPU has taken at run time. The hash draws multiply
 * 32-bit lanes, which SSE2 lacks (pmulld is SSE4.1), and AVX2 doubles the lanes: about 2x for
 * encode, 1.5x for decode on one core; AVX-512 adds 15-40% more on the CI machine's EPYC. The
 * bytes cannot differ: the integer operations are exact and the fp32 ones are the same single
 * roundings (the build contracts nothing into FMA: -ffp-contract=off); the codec tests compare
 * every build with the reference. */
#define LSQ_AVX2         RCMOE_CPU_AVX2
#define LSQ_IF_AVX2(...) RCMOE_CPU_IF_AVX2(__VA_ARGS__)

/* The (dtype, bits) instances of the encoder and the decoder, in lsq_instance()'s order. */
#define LSQ_INSTANCES(X)                                                                           \
	X(bf16_8, RCMOE_DT_BF16_, 8)                                                               \
	X(bf16_4, RCMOE_DT_BF16_, 4)                                                               \
	X(bf16_2, RCMOE_DT_BF16_, 2)                                                               \
	X(fp16_8, RCMOE_DT_FP16_, 8)                                                               \
	X(fp16_4, RCMOE_DT_FP16_, 4)                                                               \
	X(fp16_2, RCMOE_DT_FP16_, 2)                                                               \
	X(fp32_8, RCMOE_DT_FP32_, 8)                                                               \
	X(fp32_4, RCMOE_DT_FP32_, 4)                                                               \
	X(fp32_2, RCMOE_DT_FP32_, 2)
#define LSQ_NINSTANCES 9

/* Index of a (dtype, bits) pair that rcmoe_lsq_check_cfg (or the stream's validation) admitted. */
static int lsq_instance(int dtype, int bits)
{
	int d = dtype == RCMOE_DT_BF16 ? 0 : dtype == RCMOE_DT_FP16 ? 1 : 2;
	return 3 * d + (bits == 8 ? 0 : bits == 4 ? 1 : 2);
}

#define LSQ_MAXB  RCMOE_LSQ_MAX_BLOCK
#define LSQ_CHUNK RCMOE_LSQ_MIN_BLOCK

_Static_assert(RCMOE_LSQ_MIN_BLOCK == 32 && LSQ_MAXB % LSQ_CHUNK == 0, "chunking of blocks");

LSQ_INLINE uint16_t lsq_ld16(const uint8_t *p, uint32_t j)
{
	uint16_t v;
	memcpy(&v, p + 2 * (size_t)j, 2);
	return v;
}

LSQ_INLINE uint32_t lsq_ld32(const uint8_t *p, uint32_t j)
{
	uint32_t v;
	memcpy(&v, p + 4 * (size_t)j, 4);
	return v;
}

/* |x| of element j as an integer that orders like the widened fp32 magnitude: fp32 bits with
 * the sign cleared, or the 15 magnitude bits of a 16-bit type. Widening is strictly increasing
 * in those (bf16: a shift; fp16: exponent then mantissa, Inf and NaN above every finite value),
 * so the maximum can be widened afterwards. */
LSQ_INLINE int32_t lsq_mag(const uint8_t *in, uint32_t j, int dtype)
{
	if (dtype == RCMOE_DT_FP32_)
		return (int32_t)(lsq_ld32(in, j) & 0x7fffffffu);
	return (int32_t)(lsq_ld16(in, j) & 0x7fffu);
}

/* max |x| over m elements as fp32 bits with the sign cleared, as the reference computes it. The
 * magnitudes fit in 31 bits, so a signed max (what SSE2 has) orders them. */
LSQ_INLINE uint32_t lsq_amax(const uint8_t *restrict in, uint32_t m, int dtype)
{
	int32_t a = 0;
	uint32_t c0, j;
	for (c0 = 0; c0 + LSQ_CHUNK <= m; c0 += LSQ_CHUNK) {
		const uint8_t *restrict p = in + (size_t)c0 * (dtype == RCMOE_DT_FP32_ ? 4 : 2);
		for (j = 0; j < LSQ_CHUNK; j++) {
			int32_t v = lsq_mag(p, j, dtype);
			a = v > a ? v : a;
		}
	}
	for (j = c0; j < m; j++) {
		int32_t v = lsq_mag(in, j, dtype);
		a = v > a ? v : a;
	}
	if (dtype == RCMOE_DT_FP32_)
		return (uint32_t)a;
	if (dtype == RCMOE_DT_BF16_)
		return (uint32_t)a << 16;
	return rcmoe_fbits(rcmoe_f16_to_f32((uint16_t)a));
}

/* Element j widened to fp32, exactly as rcmoe_to_f32, for quantized blocks (which hold no Inf or
 * NaN). fp16 without branches or loops: a normal's fields move into place and its exponent is
 * rebiased; a subnormal m * 2^-24 is (float)m (an exact conversion, whatever the rounding or
 * denormal modes) with 24 taken off its exponent, which leaves it normal. */
LSQ_INLINE float lsq_widen(const uint8_t *in, uint32_t j, int dtype)
{
	if (dtype == RCMOE_DT_FP32_)
		return rcmoe_bitsf(lsq_ld32(in, j));
	uint32_t h = lsq_ld16(in, j);
	if (dtype == RCMOE_DT_BF16_)
		return rcmoe_bitsf(h << 16);
	uint32_t a = h & 0x7fffu;
	uint32_t normal = (a << 13) + ((uint32_t)(127 - 15) << 23);
	uint32_t sub = rcmoe_fbits((float)(int32_t)a) - (24u << 23);
	/* masks rather than ?: so that gcc keeps the loop free of branches and vectorises it */
	uint32_t is_normal = 0u - (uint32_t)(a >= 0x400u);
	uint32_t is_sub = 0u - (uint32_t)(a - 1u < 0x3ffu); /* 1 <= a < 0x400 */
	uint32_t mag = (normal & is_normal) | (sub & is_sub);
	return rcmoe_bitsf(mag | ((h & 0x8000u) << 16));
}

float rcmoe_lsq_f16_widen(uint16_t h)
{
	uint8_t b[2];
	memcpy(b, &h, 2);
	return lsq_widen(b, 0, RCMOE_DT_FP16_);
}

/* The 15-bit random offsets of a block's elements, r16[j] = rcmoe_lsq_rand(r((e0 + j) / 2),
 * e0 + j) for j < mpad (a whole number of chunks): one draw per pair. hi32 of the pair index is
 * the same for the whole block (e0 = b B with B a power of two <= 1024: the block's pair indices
 * lie in [b B/2, (b+1) B/2), which no multiple of 2^32 splits), so hikey is computed once. */
LSQ_INLINE void lsq_draws(uint64_t key, uint64_t e0, uint32_t mpad, uint16_t *restrict r16)
{
	uint64_t p0 = e0 >> 1;
	uint32_t hikey = rcmoe_rng_hikey(key, (uint32_t)(p0 >> 32)), lo0 = (uint32_t)p0, c0, k;
	const uint32_t mask = (1u << RCMOE_LSQ_FRAC) - 1;
	for (c0 = 0; c0 < mpad; c0 += LSQ_CHUNK) {
		uint16_t *restrict r = r16 + c0;
		uint32_t lo = lo0 + c0 / 2;
		for (k = 0; k < LSQ_CHUNK / 2; k++) {
			uint32_t x = rcmoe_rng_lo(hikey, lo + k);
			r[2 * k] = (uint16_t)(x & mask);
			r[2 * k + 1] = (uint16_t)((x >> 16) & mask);
		}
	}
}

/* Codes of mpad elements of a quantized block: rcmoe_lsq_code per element, its operations
 * spelled out so that the loop vectorises. */
LSQ_INLINE void lsq_codes(const uint8_t *restrict in, uint32_t mpad, int dtype, float inv,
			  int levels, const uint16_t *restrict r16, uint8_t *restrict codes)
{
	const float lb = rcmoe_fadd((float)levels, 256.0f);
	uint32_t c0, j;
	for (c0 = 0; c0 < mpad; c0 += LSQ_CHUNK) {
		const uint8_t *restrict p = in + (size_t)c0 * (dtype == RCMOE_DT_FP32_ ? 4 : 2);
		const uint16_t *restrict r = r16 + c0;
		uint8_t *restrict c = codes + c0;
		for (j = 0; j < LSQ_CHUNK; j++) {
			float y = rcmoe_fmul(lsq_widen(p, j, dtype), inv);
			uint32_t t = rcmoe_fbits(rcmoe_fadd(y, lb));
			c[j] = (uint8_t)((t - RCMOE_LSQ_T0_BITS + r[j]) >> RCMOE_LSQ_FRAC);
		}
	}
}

/* Codes (one per byte, zero past the block) of mpad elements (whole chunks) into 32-bit
 * little-endian words, element j at bits bits * (j mod (32 / bits)) of word j / (32 / bits):
 * bytewise, byte k holds elements k * (8 / bits) upwards from its low bits. Each output byte is
 * gathered from a 16- or 32-bit load of its codes with shifts of those widths (SSE2 has no byte
 * shifts): 4 bits: w = c0 | c1 << 8, w | w >> 4 has c0 | c1 << 4 in its low byte; 2 bits:
 * w | w >> 6 has c0 | c1 << 2 at bit 0 and c2 | c3 << 2 at bit 16, which the second step joins. */
LSQ_INLINE void lsq_pack(const uint8_t *restrict codes, uint32_t mpad, int bits,
			 uint8_t *restrict out)
{
	uint32_t c0, k;
	if (bits == 8) {
		memcpy(out, codes, mpad);
		return;
	}
	for (c0 = 0; c0 < mpad; c0 += LSQ_CHUNK) {
		const uint8_t *restrict c = codes + c0;
		uint8_t *restrict o = out + c0 * (uint32_t)bits / 8;
		if (bits == 4) {
			for (k = 0; k < LSQ_CHUNK / 2; k++) {
				uint16_t w;
				memcpy(&w, c + 2 * k, 2);
				o[k] = (uint8_t)(w | w >> 4);
			}
		} else {
			for (k = 0; k < LSQ_CHUNK / 4; k++) {
				uint32_t w;
				memcpy(&w, c + 4 * k, 4);
				w = (w | w >> 6) & 0x000f000fu;
				o[k] = (uint8_t)(w | w >> 12);
			}
		}
	}
}

struct lsq_enc {
	const uint8_t *in;
	uint8_t *payload;
	uint64_t n, key;
	uint32_t B;
};

/* All blocks of one (dtype, bits); returns the payload length. */
LSQ_INLINE uint64_t lsq_encode_blocks(const struct lsq_enc *e, int dtype, int bits)
{
	const uint32_t esize = dtype == RCMOE_DT_FP32_ ? 4u : 2u, B = e->B;
	const int levels = rcmoe_lsq_levels(bits);
	uint64_t nblocks = (e->n + B - 1) / B, off = rcmoe_lsq_kinds_bytes(nblocks), b;
	uint16_t r16[LSQ_MAXB];
	uint8_t codes[LSQ_MAXB], cstage[LSQ_MAXB];
	uint32_t stage[LSQ_MAXB]; /* a short last block, zero-padded to whole chunks */

	memset(e->payload, 0, off);
	for (b = 0; b < nblocks; b++) {
		uint64_t e0 = b * B;
		uint32_t m = (uint32_t)(e->n - e0 < B ? e->n - e0 : B);
		const uint8_t *in = e->in + e0 * esize;
		uint8_t *out = e->payload + off;
		float s = 0, inv = 0;
		int kind = rcmoe_lsq_block_kind(lsq_amax(in, m, dtype), m, bits, esize, &s, &inv);
		e->payload[b / 4] |= (uint8_t)(kind << (2 * (b % 4)));
		if (kind == RCMOE_LSQ_QUANT) {
			uint32_t nbytes = (m * (uint32_t)bits + 31) / 32 * 4;
			uint32_t mpad = (m + LSQ_CHUNK - 1) / LSQ_CHUNK * LSQ_CHUNK;
			if (mpad != m) {
				memcpy(stage, in, (size_t)m * esize);
				memset((uint8_t *)stage + (size_t)m * esize, 0,
				       (size_t)(mpad - m) * esize);
				in = (const uint8_t *)stage;
			}
			rcmoe_st32(out, rcmoe_fbits(s));
			lsq_draws(e->key, e0, mpad, r16);
			lsq_codes(in, mpad, dtype, inv, levels, r16, codes);
			/* fields past the block (padding of the last word) are 0 */
			if (mpad > m)
				memset(codes + m, 0, mpad - m);
			if (mpad == m) {
				lsq_pack(codes, mpad, bits, out + 4);
			} else { /* whole chunks would end past the block's words */
				lsq_pack(codes, mpad, bits, cstage);
				memcpy(out + 4, cstage, nbytes);
			}
		} else if (kind == RCMOE_LSQ_RAW) {
			memcpy(out, in, (size_t)m * esize);
		}
		off += rcmoe_lsq_block_bytes(kind, m, bits, esize);
	}
	return off;
}

#define LSQ_ENC_FN(sfx, dtype, bits)                                                               \
	static uint64_t lsq_enc_##sfx(const struct lsq_enc *e)                                     \
	{                                                                                          \
		return lsq_encode_blocks(e, dtype, bits);                                          \
	}                                                                                          \
	LSQ_IF_AVX2(                                                                               \
		LSQ_AVX2 static uint64_t lsq_enc_##sfx##_avx2(const struct lsq_enc *e) {           \
			return lsq_encode_blocks(e, dtype, bits);                                  \
		} RCMOE_CPU_AVX512 static uint64_t                                                 \
			lsq_enc_##sfx##_avx512(const struct lsq_enc *e) {                          \
				return lsq_encode_blocks(e, dtype, bits);                          \
			})
#define LSQ_ENC_PTR(sfx, dtype, bits)        lsq_enc_##sfx,
#define LSQ_ENC_PTR_AVX2(sfx, dtype, bits)   lsq_enc_##sfx##_avx2,
#define LSQ_ENC_PTR_AVX512(sfx, dtype, bits) lsq_enc_##sfx##_avx512,
LSQ_INSTANCES(LSQ_ENC_FN)
/* [isa][instance]; the x86 rows are empty (never chosen) elsewhere */
static uint64_t (*const lsq_enc_fns[RCMOE_CPU_NISA][LSQ_NINSTANCES])(const struct lsq_enc *) = {
	{ LSQ_INSTANCES(LSQ_ENC_PTR) },
	LSQ_IF_AVX2({ LSQ_INSTANCES(LSQ_ENC_PTR_AVX2) }),
	LSQ_IF_AVX2({ LSQ_INSTANCES(LSQ_ENC_PTR_AVX512) }),
};

struct rcmoe_wire_header rcmoe_lsq_header(size_t n, const struct rcmoe_lsq_cfg *cfg,
					  uint64_t payload_len)
{
	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_LSQ,
		.dtype = (uint8_t)cfg->dtype,
		.bits = (uint8_t)cfg->bits,
		.block = cfg->block,
		.count = n,
		.seed = cfg->seed,
		.op_id = cfg->op_id,
		.rank = cfg->rank,
		.payload_len = payload_len,
	};
	return h;
}

rcmoe_status_t rcmoe_lsq_encode(const void *src, size_t n, const struct rcmoe_lsq_cfg *cfg,
				void *dst, size_t cap, size_t *len)
{
	rcmoe_status_t st = rcmoe_lsq_check_cfg(cfg);
	if (st != RCMOE_OK)
		return st;
	st = rcmoe_encode_args(src, n, dst, len, rcmoe_lsq_bound(n, cfg), cap);
	if (st != RCMOE_OK)
		return st;

	struct lsq_enc e = {
		.in = src,
		.payload = (uint8_t *)dst + RCMOE_WIRE_HEADER_BYTES,
		.n = n,
		.key = rcmoe_rng_key(cfg->seed, cfg->op_id, cfg->rank),
		.B = cfg->block,
	};
	uint64_t off = lsq_enc_fns[rcmoe_cpu_isa()][lsq_instance(cfg->dtype, cfg->bits)](&e);

	struct rcmoe_wire_header h = rcmoe_lsq_header(n, cfg, off);
	rcmoe_wire_write(dst, &h);
	*len = RCMOE_WIRE_HEADER_BYTES + off;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_lsq_validate(const uint8_t *payload, const struct rcmoe_wire_header *hdr)
{
	uint32_t esize = rcmoe_dt_size(hdr->dtype), B = hdr->block;
	uint64_t n = hdr->count, nblocks = (n + B - 1) / B, kb = rcmoe_lsq_kinds_bytes(nblocks);
	uint64_t off = kb, b;

	if (hdr->payload_len < kb)
		return RCMOE_ERR_MALFORMED;
	/* table padding (kinds past the last block) must be zero */
	for (b = nblocks; b < kb * 4; b++)
		if ((payload[b / 4] >> (2 * (b % 4))) & 3)
			return RCMOE_ERR_MALFORMED;
	for (b = 0; b < nblocks; b++) {
		int kind = (payload[b / 4] >> (2 * (b % 4))) & 3;
		uint32_t m = (uint32_t)(n - b * B < B ? n - b * B : B);
		if (kind == RCMOE_LSQ_BAD)
			return RCMOE_ERR_MALFORMED;
		uint32_t sz = rcmoe_lsq_block_bytes(kind, m, hdr->bits, esize);
		if (sz > hdr->payload_len - off)
			return RCMOE_ERR_MALFORMED;
		if (kind == RCMOE_LSQ_QUANT) {
			/* a positive normal finite scale, as the encoder makes */
			uint32_t s = rcmoe_ld32(payload + off);
			if (s < 0x00800000u || s >= 0x7f800000u)
				return RCMOE_ERR_MALFORMED;
		}
		off += sz;
	}
	return off == hdr->payload_len ? RCMOE_OK : RCMOE_ERR_MALFORMED;
}

/* Codes of mpad elements (whole chunks), one per byte: code j is at bits bits * (j mod (32 /
 * bits)) of word j / (32 / bits), i.e. of byte j / (8 / bits) in little-endian order. The
 * inverse of lsq_pack's shifts, in 16- and 32-bit lanes: 4 bits: (b | b << 4) & 0x0f0f puts
 * c0 in the low byte and c1 in the high one; 2 bits: the high nibble moves to bit 16, then each
 * nibble's high pair to the next byte. */
LSQ_INLINE void lsq_unpack(const uint8_t *restrict w, uint32_t mpad, int bits,
			   uint8_t *restrict codes)
{
	uint32_t c0, k;
	for (c0 = 0; c0 < mpad; c0 += LSQ_CHUNK) {
		const uint8_t *restrict p = w + c0 * (uint32_t)bits / 8;
		uint8_t *restrict c = codes + c0;
		if (bits == 4) {
			for (k = 0; k < LSQ_CHUNK / 2; k++) {
				uint16_t x = (uint16_t)((p[k] | p[k] << 4) & 0x0f0f);
				memcpy(c + 2 * k, &x, 2);
			}
		} else {
			for (k = 0; k < LSQ_CHUNK / 4; k++) {
				uint32_t x = p[k];
				x = (x | x << 12) & 0x000f000fu;
				x = (x | x << 6) & 0x03030303u;
				memcpy(c + 4 * k, &x, 4);
			}
		}
	}
}

/* rcmoe_f32_to_bf16 with its NaN test as a select rather than a branch, so that the loop
 * vectorises (a quantized block never produces NaN, but the test costs little). */
LSQ_INLINE uint16_t lsq_bf16(float f)
{
	uint32_t x = rcmoe_fbits(f);
	uint32_t nan = (x >> 16) | 0x40u, rne = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
	return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? nan : rne);
}

/* Values of mpad codes (whole chunks) into out: rcmoe_lsq_value, then narrowed like
 * rcmoe_from_f32. fp16 narrowing branches on the exponent, so fp16 goes through a table of the
 * 2^bits possible outputs when the block is long enough to pay for it (the entries are those
 * functions' results). */
LSQ_INLINE void lsq_values(const uint8_t *restrict codes, uint32_t mpad, int dtype, int levels,
			   float s, uint8_t *restrict out)
{
	uint32_t c0, j;
	if (dtype == RCMOE_DT_FP16_) {
		if ((uint32_t)(2 * levels + 2) <= mpad) {
			uint16_t tab[256];
			for (j = 0; j < (uint32_t)(2 * levels + 2); j++)
				tab[j] = rcmoe_f32_to_f16(rcmoe_lsq_value(j, s, levels));
			for (j = 0; j < mpad; j++)
				memcpy(out + 2 * (size_t)j, &tab[codes[j]], 2);
		} else {
			for (j = 0; j < mpad; j++) {
				uint16_t v = rcmoe_f32_to_f16(rcmoe_lsq_value(codes[j], s, levels));
				memcpy(out + 2 * (size_t)j, &v, 2);
			}
		}
		return;
	}
	for (c0 = 0; c0 < mpad; c0 += LSQ_CHUNK) {
		const uint8_t *restrict c = codes + c0;
		if (dtype == RCMOE_DT_FP32_) {
			uint8_t *restrict o = out + 4 * (size_t)c0;
			for (j = 0; j < LSQ_CHUNK; j++) {
				uint32_t v = rcmoe_fbits(rcmoe_lsq_value(c[j], s, levels));
				memcpy(o + 4 * j, &v, 4);
			}
		} else {
			uint8_t *restrict o = out + 2 * (size_t)c0;
			for (j = 0; j < LSQ_CHUNK; j++) {
				uint16_t v = lsq_bf16(rcmoe_lsq_value(c[j], s, levels));
				memcpy(o + 2 * j, &v, 2);
			}
		}
	}
}

struct lsq_dec {
	const uint8_t *payload;
	uint8_t *out;
	uint64_t n;
	uint32_t B;
};

LSQ_INLINE void lsq_decode_blocks(const struct lsq_dec *d, int dtype, int bits)
{
	const uint32_t esize = dtype == RCMOE_DT_FP32_ ? 4u : 2u, B = d->B;
	const int levels = rcmoe_lsq_levels(bits);
	const uint8_t *payload = d->payload;
	uint64_t nblocks = (d->n + B - 1) / B, off = rcmoe_lsq_kinds_bytes(nblocks), b;
	uint8_t codes[LSQ_MAXB], cstage[LSQ_MAXB];
	uint32_t stage[LSQ_MAXB]; /* a short last block's values, whole chunks */

	for (b = 0; b < nblocks; b++) {
		int kind = (payload[b / 4] >> (2 * (b % 4))) & 3;
		uint64_t e0 = b * B;
		uint32_t m = (uint32_t)(d->n - e0 < B ? d->n - e0 : B);
		uint8_t *out = d->out + e0 * esize;
		if (kind == RCMOE_LSQ_QUANT) {
			float s = rcmoe_bitsf(rcmoe_ld32(payload + off));
			const uint8_t *c = payload + off + 4;
			uint32_t mpad = (m + LSQ_CHUNK - 1) / LSQ_CHUNK * LSQ_CHUNK;
			if (mpad != m) {
				/* the block's words end inside the last chunk: stage them */
				uint32_t nbytes = (m * (uint32_t)bits + 31) / 32 * 4;
				memcpy(cstage, c, nbytes);
				memset(cstage + nbytes, 0, mpad * (uint32_t)bits / 8 - nbytes);
				c = cstage;
			}
			if (bits != 8) {
				lsq_unpack(c, mpad, bits, codes);
				c = codes;
			}
			lsq_values(c, mpad, dtype, levels, s, mpad != m ? (uint8_t *)stage : out);
			if (mpad != m)
				memcpy(out, stage, (size_t)m * esize);
		} else if (kind == RCMOE_LSQ_RAW) {
			memcpy(out, payload + off, (size_t)m * esize);
		} else {
			memset(out, 0, (size_t)m * esize);
		}
		off += rcmoe_lsq_block_bytes(kind, m, bits, esize);
	}
}

#define LSQ_DEC_FN(sfx, dtype, bits)                                                               \
	static void lsq_dec_##sfx(const struct lsq_dec *d)                                         \
	{                                                                                          \
		lsq_decode_blocks(d, dtype, bits);                                                 \
	}                                                                                          \
	LSQ_IF_AVX2(                                                                               \
		LSQ_AVX2 static void lsq_dec_##sfx##_avx2(const struct lsq_dec *d) {               \
			lsq_decode_blocks(d, dtype, bits);                                         \
		} RCMOE_CPU_AVX512 static void lsq_dec_##sfx##_avx512(const struct lsq_dec *d) {   \
			lsq_decode_blocks(d, dtype, bits);                                         \
		})
#define LSQ_DEC_PTR(sfx, dtype, bits)        lsq_dec_##sfx,
#define LSQ_DEC_PTR_AVX2(sfx, dtype, bits)   lsq_dec_##sfx##_avx2,
#define LSQ_DEC_PTR_AVX512(sfx, dtype, bits) lsq_dec_##sfx##_avx512,
LSQ_INSTANCES(LSQ_DEC_FN)
static void (*const lsq_dec_fns[RCMOE_CPU_NISA][LSQ_NINSTANCES])(const struct lsq_dec *) = {
	{ LSQ_INSTANCES(LSQ_DEC_PTR) },
	LSQ_IF_AVX2({ LSQ_INSTANCES(LSQ_DEC_PTR_AVX2) }),
	LSQ_IF_AVX2({ LSQ_INSTANCES(LSQ_DEC_PTR_AVX512) }),
};

/* hdr has passed rcmoe_lsq_validate: dtype and bits are among those below, and every block's
 * bytes lie inside the payload. */
void rcmoe_lsq_decode_valid(const uint8_t *payload, const struct rcmoe_wire_header *hdr, void *dst)
{
	struct lsq_dec d = { .payload = payload, .out = dst, .n = hdr->count, .B = hdr->block };
	lsq_dec_fns[rcmoe_cpu_isa()][lsq_instance(hdr->dtype, hdr->bits)](&d);
}
