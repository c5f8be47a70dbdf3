/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The arithmetic every codec shares between its CPU reference (C11) and its CUDA kernels: 16-bit
 * float conversions, the counter-based RNG, the per-element LSQ and PTS decisions, the layout
 * arithmetic of the wire format and the header check word. Everything here is a static inline
 * __host__ __device__ function, so both sides compile the same source and produce the same bits.
 *
 * Bit-exactness rules followed below:
 * - all codec arithmetic is fp32 (the PTS L1 norm: fp64), one IEEE operation at a time, through
 *   rcmoe_fmul/fadd/fdiv (explicit __f*_rn on the device; plain operators on the host, where the
 *   build passes -ffp-contract=off and x86-64 evaluates float in SSE registers);
 * - 16-bit <-> fp32 conversions are written out in integer arithmetic (round to nearest even);
 * - reductions are either exact and order-free (max of magnitudes as integers, popcounts, sums of
 *   integers) or done in a fixed order (the PTS L1 norm, see rcmoe_pts_l1_*).
 */
#ifndef RCMOE_CODEC_MATH_H
#define RCMOE_CODEC_MATH_H

#include <stdint.h>
#include <stddef.h>
#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif
#ifndef __CUDA_ARCH__
#include <math.h>
#include <string.h>
#endif

#ifdef __CUDACC__
#define RCMOE_HD static __host__ __device__ __forceinline__
#else
#define RCMOE_HD static inline
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rcmoe's wire format code assumes a little-endian host"
#endif

/* ---- bit casts and single IEEE operations ---- */

RCMOE_HD uint32_t rcmoe_fbits(float f)
{
#ifdef __CUDA_ARCH__
	return __float_as_uint(f);
#else
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
#endif
}

RCMOE_HD float rcmoe_bitsf(uint32_t u)
{
#ifdef __CUDA_ARCH__
	return __uint_as_float(u);
#else
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
#endif
}

RCMOE_HD float rcmoe_fmul(float a, float b)
{
#ifdef __CUDA_ARCH__
	return __fmul_rn(a, b);
#else
	return a * b;
#endif
}

RCMOE_HD float rcmoe_fadd(float a, float b)
{
#ifdef __CUDA_ARCH__
	return __fadd_rn(a, b);
#else
	return a + b;
#endif
}

/* Addition for the PTS accumulation, the one place a NaN can meet an addition: NaN results are
 * made canonical (0x7fffffff) on both sides, as the GPU produces that NaN while x86 propagates
 * an operand's payload. */
RCMOE_HD float rcmoe_fadd_acc(float a, float b)
{
	float r = rcmoe_fadd(a, b);
	return r == r ? r : rcmoe_bitsf(0x7fffffffu);
}

/* a * b + c rounded once (exact FMA on both sides: glibc's fmaf is correctly rounded). */
RCMOE_HD float rcmoe_ffma(float a, float b, float c)
{
#ifdef __CUDA_ARCH__
	return __fmaf_rn(a, b, c);
#else
	return fmaf(a, b, c);
#endif
}

RCMOE_HD float rcmoe_fdiv(float a, float b)
{
#ifdef __CUDA_ARCH__
	return __fdiv_rn(a, b);
#else
	return a / b;
#endif
}

RCMOE_HD double rcmoe_dadd(double a, double b)
{
#ifdef __CUDA_ARCH__
	return __dadd_rn(a, b);
#else
	return a + b;
#endif
}

RCMOE_HD float rcmoe_floorf(float a)
{
	return floorf(a); /* exact on both sides */
}

/* ---- 16-bit floats (round to nearest even; NaN stays NaN, quieted) ---- */

RCMOE_HD float rcmoe_bf16_to_f32(uint16_t h)
{
	return rcmoe_bitsf((uint32_t)h << 16);
}

RCMOE_HD uint16_t rcmoe_f32_to_bf16(float f)
{
	uint32_t x = rcmoe_fbits(f);
	/* one expression, no branch: the CPU loops that round many elements vectorise */
	return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? (x >> 16) | 0x40u /* NaN: quiet */
							  : (x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

RCMOE_HD float rcmoe_f16_to_f32(uint16_t h)
{
#ifdef __CUDA_ARCH__
	/* widening is exact, so the hardware conversion gives the same bits (except NaN payloads,
	 * left to the code below) */
	if ((h & 0x7c00u) != 0x7c00u || (h & 0x3ffu) == 0)
		return __half2float(__ushort_as_half(h));
#endif
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
	if (e == 0x1fu) {
		bits = sign | 0x7f800000u | (m << 13);
	} else if (e != 0) {
		bits = sign | ((e + 112u) << 23) | (m << 13);
	} else if (m == 0) {
		bits = sign;
	} else { /* subnormal: m * 2^-24, normalised */
		uint32_t ex = 113u;
		while (!(m & 0x400u)) {
			m <<= 1;
			ex--;
		}
		bits = sign | (ex << 23) | ((m & 0x3ffu) << 13);
	}
	return rcmoe_bitsf(bits);
}

RCMOE_HD uint16_t rcmoe_f32_to_f16(float f)
{
#ifdef __CUDA_ARCH__
	/* cvt.rn.f16.f32 is IEEE round-to-nearest-even (subnormals, overflow to inf) */
	if (f == f)
		return __half_as_ushort(__float2half_rn(f));
#endif
	uint32_t x = rcmoe_fbits(f);
	uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
	if (ax >= 0x47800000u) /* >= 65536 and inf */
		return (uint16_t)(sign | 0x7c00u);
	if (ax >= 0x38800000u) { /* fp16 normal range; 65520 and up round to inf here */
		uint32_t r = ax - 0x38000000u;
		r += 0xfffu + ((r >> 13) & 1u);
		return (uint16_t)(sign | (r >> 13));
	}
	if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
		return (uint16_t)sign;
	{ /* fp16 subnormal: round(value * 2^24) */
		uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126u - (ax >> 23); /* 14 .. 24 */
		uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1u);
		uint32_t half = 1u << (shift - 1u);
		if (rem > half || (rem == half && (r & 1u)))
			r++;
		return (uint16_t)(sign | r);
	}
}

/* dtype codes as in rcmoe/codec.h (NCCL numbering) */
#define RCMOE_DT_FP16_ 6
#define RCMOE_DT_FP32_ 7
#define RCMOE_DT_BF16_ 9

RCMOE_HD uint32_t rcmoe_dt_size(int dtype)
{
	return dtype == RCMOE_DT_FP32_                                ? 4u
	       : (dtype == RCMOE_DT_FP16_ || dtype == RCMOE_DT_BF16_) ? 2u
								      : 0u;
}

/* Element bits (the 16 low bits for 16-bit types) -> fp32, exactly. */
RCMOE_HD float rcmoe_to_f32(int dtype, uint32_t raw)
{
	if (dtype == RCMOE_DT_FP32_)
		return rcmoe_bitsf(raw);
	if (dtype == RCMOE_DT_BF16_)
		return rcmoe_bf16_to_f32((uint16_t)raw);
	return rcmoe_f16_to_f32((uint16_t)raw);
}

/* fp32 -> element bits, round to nearest even. */
RCMOE_HD uint32_t rcmoe_from_f32(int dtype, float f)
{
	if (dtype == RCMOE_DT_FP32_)
		return rcmoe_fbits(f);
	if (dtype == RCMOE_DT_BF16_)
		return rcmoe_f32_to_bf16(f);
	return rcmoe_f32_to_f16(f);
}

/* ---- collective all-reduce sum ----
 * One step of the collective side's exact reduction (plugin/coll/sum.c; a GPU kernel must call
 * this same function): acc + x in the datatype's arithmetic, the way NCCL's own reductions do
 * it: both widened to fp32 exactly, one fp32 addition (a NaN result made canonical, as in
 * rcmoe_fadd_acc), rounded once to the datatype (nearest even). Contributions are added in rank
 * order, so every rank and every run gets the same bits. */
RCMOE_HD uint32_t rcmoe_ar_add(int dtype, uint32_t acc, uint32_t x)
{
	return rcmoe_from_f32(dtype,
			      rcmoe_fadd_acc(rcmoe_to_f32(dtype, acc), rcmoe_to_f32(dtype, x)));
}

/* ---- counter-based RNG ----
 * key = splitmix64 chain over (seed, op_id, rank), computed once per operation. For index i:
 * hikey = lo32(key) ^ h32(hi32(i) ^ hi32(key)), constant over 2^32 consecutive indices (so a
 * kernel computes it once per tile), and r = h32(lo32(i) * 0x9e3779b1 ^ hikey), h32 a
 * murmur-style 32-bit finalizer. For one key, r is a bijection of lo32(i): no value repeats
 * within 2^32 consecutive indices. */
RCMOE_HD uint64_t rcmoe_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#define RCMOE_H32_M1 0x7feb352du
#define RCMOE_H32_M2 0x846ca68bu

RCMOE_HD uint32_t rcmoe_hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= RCMOE_H32_M1;
	x ^= x >> 15;
	x *= RCMOE_H32_M2;
	x ^= x >> 16;
	return x;
}

RCMOE_HD uint64_t rcmoe_rng_key(uint64_t seed, uint64_t op_id, uint32_t rank)
{
	uint64_t k = rcmoe_mix64(seed + 0x9e3779b97f4a7c15ull);
	k = rcmoe_mix64(k ^ op_id);
	return rcmoe_mix64(k ^ ((uint64_t)rank << 32) ^ 0x632be59bd9b4e019ull);
}

RCMOE_HD uint32_t rcmoe_rng_hikey(uint64_t key, uint32_t hi)
{
	return (uint32_t)key ^ rcmoe_hash32(hi ^ (uint32_t)(key >> 32));
}

#define RCMOE_RNG_GOLDEN 0x9e3779b1u /* the multiplier of lo32(i) */

RCMOE_HD uint32_t rcmoe_rng_lo(uint32_t hikey, uint32_t lo)
{
	return rcmoe_hash32((lo * RCMOE_RNG_GOLDEN) ^ hikey);
}

/* rcmoe_rng_lo(hikey, lo) from y = lo * RCMOE_RNG_GOLDEN and hfold = rcmoe_rng_fold(hikey):
 * the hash's first xor-shift distributes over the xor with the key, (y ^ k) ^ ((y ^ k) >> 16) =
 * y ^ (y >> 16) ^ (k ^ (k >> 16)), so a kernel pays one shift and one three-way xor per draw. */
RCMOE_HD uint32_t rcmoe_rng_fold(uint32_t hikey)
{
	return hikey ^ (hikey >> 16);
}

RCMOE_HD uint32_t rcmoe_rng_folded(uint32_t hfold, uint32_t y)
{
#ifdef __CUDA_ARCH__
	/* x >> k as __umulhi(x, 2^(32 - k)): IMAD.HI runs on the FMA pipe, which the selection
	 * loop leaves idler than the integer pipe its xors and shifts share */
	uint32_t x = (y ^ __umulhi(y, 1u << 16) ^ hfold) * RCMOE_H32_M1;
	x ^= __umulhi(x, 1u << 17);
#else
	uint32_t x = (y ^ (y >> 16) ^ hfold) * RCMOE_H32_M1;
	x ^= x >> 15;
#endif
	x *= RCMOE_H32_M2;
	return x ^ (x >> 16);
}

RCMOE_HD uint32_t rcmoe_rng_at(uint64_t key, uint64_t index)
{
	return rcmoe_rng_lo(rcmoe_rng_hikey(key, (uint32_t)(index >> 32)), (uint32_t)index);
}

/* u in [0, 1) with 23 random bits, exact in fp32: 1.m - 1 (no int-to-float conversion, which
 * runs at a quarter of the fp32 rate on the GPU). */
RCMOE_HD float rcmoe_rng_unit(uint32_t r)
{
	return rcmoe_fadd(rcmoe_bitsf(0x3f800000u | (r >> 9)), -1.0f);
}

/* ---- header ---- */

/* The 64-byte header as 16 little-endian 32-bit words (offsets in docs/stream-format.md). */
enum {
	RCMOE_HW_MAGIC = 0,
	RCMOE_HW_VERSION_CODEC_DTYPE = 1, /* u16 version | u8 codec << 16 | u8 dtype << 24 */
	RCMOE_HW_BITS_FLAGS = 2,          /* u8 bits | u8 flags << 8 | u16 reserved (0) */
	RCMOE_HW_BLOCK = 3,
	RCMOE_HW_COUNT = 4, /* u64 */
	RCMOE_HW_SEED = 6,  /* u64 */
	RCMOE_HW_OPID = 8,  /* u64 */
	RCMOE_HW_RANK = 10,
	RCMOE_HW_AUX = 11,
	RCMOE_HW_PAYLOAD = 12, /* u64 */
	RCMOE_HW_RESERVED = 14,
	RCMOE_HW_CHECK = 15,
	RCMOE_HW_WORDS = 16,
};

/* Check word over words 0..14: turns a corrupted header into a clean MALFORMED. */
RCMOE_HD uint32_t rcmoe_wire_check(const uint32_t *w)
{
	uint32_t h = 0x52434d45u;
	for (int i = 0; i < RCMOE_HW_CHECK; i++)
		h = rcmoe_hash32(h ^ w[i]) + (uint32_t)i;
	return h;
}

/* ---- LSQ ---- */

enum { RCMOE_LSQ_ZERO = 0, RCMOE_LSQ_QUANT = 1, RCMOE_LSQ_RAW = 2, RCMOE_LSQ_BAD = 3 };

RCMOE_HD int rcmoe_lsq_levels(int bits)
{
	return (1 << (bits - 1)) - 1;
}

/* Bytes of the kind table: 2 bits per block, padded to 4 bytes. */
RCMOE_HD uint64_t rcmoe_lsq_kinds_bytes(uint64_t nblocks)
{
	return (nblocks + 15) / 16 * 4;
}

/* Bytes a block of m elements takes in the payload. */
RCMOE_HD uint32_t rcmoe_lsq_block_bytes(int kind, uint32_t m, int bits, uint32_t esize)
{
	if (kind == RCMOE_LSQ_QUANT)
		return 4u + (m * (uint32_t)bits + 31u) / 32u * 4u;
	if (kind == RCMOE_LSQ_RAW)
		return m * esize;
	return 0;
}

/* The block's kind from max|x| (as fp32 bits, sign cleared) and its length m, with its scale
 * and inverse scale. Raw when not finite, when the scale would be subnormal or q*s could
 * overflow, or when the quantized form would not be smaller (short last blocks). */
RCMOE_HD int rcmoe_lsq_block_kind(uint32_t amax_bits, uint32_t m, int bits, uint32_t esize,
				  float *scale, float *inv)
{
	if (amax_bits >= 0x7f800000u)
		return RCMOE_LSQ_RAW;
	if (amax_bits == 0)
		return RCMOE_LSQ_ZERO;
	if (rcmoe_lsq_block_bytes(RCMOE_LSQ_QUANT, m, bits, esize) >= m * esize)
		return RCMOE_LSQ_RAW;
	float amax = rcmoe_bitsf(amax_bits);
	float l = (float)rcmoe_lsq_levels(bits);
	float s = rcmoe_fdiv(amax, l);
	if (!(s >= 0x1p-126f) || amax >= 0x1p127f)
		return RCMOE_LSQ_RAW;
	/* inv rounded to nearest may make amax * inv exceed L by an ulp; stepping it down until it
	 * does not keeps every |x * inv| <= L (fp32 multiplication is monotonic), so the codes need
	 * no clamp. One or two steps at most; both sides take the same ones. */
	float iv = rcmoe_fdiv(l, amax);
	while (rcmoe_fmul(amax, iv) > l)
		iv = rcmoe_bitsf(rcmoe_fbits(iv) - 1u);
	*scale = s;
	*inv = iv;
	return RCMOE_LSQ_QUANT;
}

/* Stochastic rounding works on a fixed-point grid of 2^-15 with 15 random bits: two elements
 * share one 32-bit draw, rcmoe_rng_at(key, i / 2), element i taking its low (even i) or high
 * (odd i) half. */
#define RCMOE_LSQ_FRAC 15

RCMOE_HD uint32_t rcmoe_lsq_rand(uint32_t r, uint64_t i)
{
	return ((i & 1) ? r >> 16 : r) & ((1u << RCMOE_LSQ_FRAC) - 1);
}

/* Code of one element, q + L with q = x/s rounded stochastically to a neighbouring integer:
 * y = x * inv lies in [-L, L] (rcmoe_lsq_block_kind chose inv so); t = y + (L + 256) lies in
 * [256, 512), where fp32 has 15 fraction bits, so t's bits minus those of 256.0 are
 * v = (y + L) * 2^15 rounded to the grid (one IEEE addition); code = (v + r15) >> 15, so
 * E[code] = v / 2^15 and |code - (y + L)| <= 1. Integer work only: no clamp, floor or
 * float-to-int conversion. */
#define RCMOE_LSQ_T0_BITS 0x43800000u /* 256.0f */
RCMOE_HD uint32_t rcmoe_lsq_code(float x, float inv, uint32_t r15, int levels)
{
	float l = (float)levels;
	uint32_t t = rcmoe_fbits(rcmoe_fadd(rcmoe_fmul(x, inv), l + 256.0f));
	return (t - RCMOE_LSQ_T0_BITS + r15) >> RCMOE_LSQ_FRAC;
}

RCMOE_HD float rcmoe_lsq_value(uint32_t code, float scale, int levels)
{
	return rcmoe_fmul((float)((int)code - levels), scale);
}

/* ---- PTS ---- */

enum { RCMOE_PTS_DROP = 0, RCMOE_PTS_SMALL = 1, RCMOE_PTS_LARGE = 2 };
#define RCMOE_PTS_FLAG_DENSE 1u
/* The L1 norm is summed in this fixed shape on both sides: chunks of 4096 elements; in each,
 * 256 lanes sum 16 elements each (lane t: elements t, t+256, ...) in fp64 in index order, then a
 * pairwise tree (stride 128, 64, ..., 1); chunk sums are combined the same way (lane t: chunks
 * t, t+256, ... in order, then the tree). */
#define RCMOE_PTS_L1_CHUNK 4096
#define RCMOE_PTS_L1_LANES 256

/* Element selection: large (|g| >= tau) kept exactly; small kept with probability |g|/tau
 * (u * tau < |g|) and then sent as sign(g) * tau; zeros never kept. */
RCMOE_HD int rcmoe_pts_select(float g, float tau, uint32_t r)
{
	float a = rcmoe_bitsf(rcmoe_fbits(g) & 0x7fffffffu);
	if (!(a > 0.0f))
		return RCMOE_PTS_DROP;
	if (a >= tau)
		return RCMOE_PTS_LARGE;
	return rcmoe_fmul(rcmoe_rng_unit(r), tau) < a ? RCMOE_PTS_SMALL : RCMOE_PTS_DROP;
}

/* Whether rcmoe_pts_select keeps g (small or large), as one comparison: u * tau < |g|. It
 * rejects zeros and NaN (u * tau >= 0) and keeps the small elements the reference keeps; it
 * also keeps every large one (|g| >= tau) when tau is normal, because u <= 1 - 2^-23 puts
 * fl(u * tau) below tau. For a subnormal tau that product can round up to tau, and
 * rcmoe_pts_kept_exact must be used (the GPU selection branches on tau once per stream). */
RCMOE_HD int rcmoe_pts_kept_normal_tau(float g, float tau, uint32_t r)
{
	float a = rcmoe_bitsf(rcmoe_fbits(g) & 0x7fffffffu);
	return rcmoe_fmul(rcmoe_rng_unit(r), tau) < a;
}

/* Whether rcmoe_pts_select calls g large (kept exactly): |g| >= tau, and never a zero (which
 * tau = 0, an all-zero input, would otherwise admit) or NaN. */
RCMOE_HD int rcmoe_pts_is_large(float g, float tau)
{
	float a = fabsf(g);
	return (a >= tau) & (a > 0.0f);
}

/* The same answer for any tau: large elements kept explicitly. */
RCMOE_HD int rcmoe_pts_kept_exact(float g, float tau, uint32_t r)
{
	return rcmoe_pts_kept_normal_tau(g, tau, r) | rcmoe_pts_is_large(g, tau);
}

/* rcmoe_pts_kept_normal_tau in two GPU instructions: with m = 1 + u (the draw's bits under
 * 1.0f's exponent), m * tau - tau equals u * tau exactly before rounding, so one FMA rounds to
 * the same fl(u * tau) with no separate subtraction; fabsf becomes an operand modifier of the
 * comparison. NaN compares false, as before. */
RCMOE_HD int rcmoe_pts_kept_fused(float g, float tau, float neg_tau, uint32_t r)
{
	float m = rcmoe_bitsf(0x3f800000u | (r >> 9));
	return rcmoe_ffma(m, tau, neg_tau) < fabsf(g);
}

/* rcmoe_pts_kept_exact with the fused comparison. */
RCMOE_HD int rcmoe_pts_kept_fused_exact(float g, float tau, float neg_tau, uint32_t r)
{
	return rcmoe_pts_kept_fused(g, tau, neg_tau, r) | rcmoe_pts_is_large(g, tau);
}

/* tau from the L1 norm: l1 / (rho * n) in fp64, rounded up to fp32 and then up to the next value
 * the dtype represents (so sign*tau decodes exactly and the expected density stays <= rho).
 * Returns 0 for a sparse stream (tau_bits set; 0 when every element is zero) or 1 when the input
 * must be sent dense (non-finite values, or tau not representable). */
RCMOE_HD int rcmoe_pts_tau(double l1, double rho, uint64_t n, int dtype, uint32_t *tau_bits)
{
	*tau_bits = 0;
	if (l1 == 0.0)
		return 0;
	if (!(l1 < 1.0e300)) /* inf or NaN */
		return 1;
#ifdef __CUDA_ARCH__
	double t = __ddiv_rn(l1, __dmul_rn(rho, (double)n));
	float tf = __double2float_rn(t);
#else
	double t = l1 / (rho * (double)n);
	float tf = (float)t;
#endif
	if (rcmoe_fbits(tf) - 1u >= 0x7f7fffffu) /* not in (0, inf) */
		return 1;
	if ((double)tf < t) /* round up: tau >= l1 / (rho n) */
		tf = rcmoe_bitsf(rcmoe_fbits(tf) + 1u);
	if (dtype == RCMOE_DT_BF16_) {
		uint16_t h = rcmoe_f32_to_bf16(tf);
		if (rcmoe_bf16_to_f32(h) < tf)
			h++;
		tf = rcmoe_bf16_to_f32(h);
	} else if (dtype == RCMOE_DT_FP16_) {
		uint16_t h = rcmoe_f32_to_f16(tf);
		if (rcmoe_f16_to_f32(h) < tf)
			h++;
		tf = rcmoe_f16_to_f32(h);
	}
	if (rcmoe_fbits(tf) - 1u >= 0x7f7fffffu) /* not in (0, inf) */
		return 1;
	*tau_bits = rcmoe_fbits(tf);
	return 0;
}

/* Layout of one PTS chunk body from its directory entry. All sizes in bytes are multiples of 4.
 * The small-element index set is a bitmap (one bit per element) or Elias-Fano (k low bits per
 * element, then a bucket bit vector of m + nbuckets bits), whichever takes fewer words; k and
 * the choice follow from (m, len) alone, so they are not sent. */
struct rcmoe_pts_chunk {
	uint32_t ef;         /* 1: Elias-Fano, 0: bitmap (or m == 0: no index words) */
	uint32_t k;          /* EF low bits */
	uint32_t low_words;  /* EF */
	uint32_t high_words; /* EF */
	uint32_t idx_words;  /* bitmap words, or low_words + high_words */
	uint32_t sign_words; /* one sign bit per small element */
	uint32_t pos_bytes;  /* u16 chunk-local position per large element, padded to 4 */
	uint32_t val_bytes;  /* element value per large element, padded to 4 */
	uint32_t bytes;      /* body total */
};

RCMOE_HD void rcmoe_pts_chunk_layout(uint32_t m, uint32_t nl, uint32_t len, uint32_t esize,
				     struct rcmoe_pts_chunk *c)
{
	uint32_t bitmap_words = (len + 31) / 32;
	c->ef = 0;
	c->k = 0;
	c->low_words = 0;
	c->high_words = 0;
	c->idx_words = 0;
	if (m > 0) {
		uint32_t k = 0;
		while (k < 15 && ((uint64_t)m << (k + 1)) <= len)
			k++;
		uint32_t nbuckets = ((len - 1) >> k) + 1;
		uint32_t low = (uint32_t)(((uint64_t)m * k + 31) / 32);
		uint32_t high = (m + nbuckets + 31) / 32;
		if (low + high < bitmap_words) {
			c->ef = 1;
			c->k = k;
			c->low_words = low;
			c->high_words = high;
			c->idx_words = low + high;
		} else {
			c->idx_words = bitmap_words;
		}
	}
	c->sign_words = (m + 31) / 32;
	c->pos_bytes = (2 * nl + 3) / 4 * 4;
	c->val_bytes = (esize * nl + 3) / 4 * 4;
	c->bytes = 4 * (c->idx_words + c->sign_words) + c->pos_bytes + c->val_bytes;
}

/* ---- dedup ---- */

/* 64-bit block hash: an order-free sum of mixed 8-byte words (so a warp can fold it in any
 * order), finalised with the length. Never 0 (0 marks an empty hash-table slot). Equal hashes are
 * always confirmed by a byte compare. */
RCMOE_HD uint64_t rcmoe_dedup_word_hash(uint64_t word, uint64_t i)
{
	return rcmoe_mix64(word ^ (i * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull));
}

RCMOE_HD uint64_t rcmoe_dedup_final_hash(uint64_t sum, uint64_t len)
{
	return rcmoe_mix64(sum ^ (len * 0xd6e8feb86659fd93ull)) | 1u;
}

#endif
