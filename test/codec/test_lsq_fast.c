/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fast CPU LSQ paths (rcmoe_lsq_encode, and the LSQ decode behind rcmoe_codec_decode) against
 * the element-at-a-time reference in lsq_ref.c, whose bytes are the specification (the GPU
 * kernels reproduce them): every dtype, bit width and block size, lengths around block and chunk
 * edges, data that produces every block kind and every value class, misaligned buffers. Encoded
 * streams and decoded outputs must match byte for byte, and nothing may be written past them.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "codec_internal.h"
#include "codec_test_util.h"
#include "test_log.h"

TestSuite(lsq_fast, .init = test_log_init);

static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 };
static const int bitss[] = { 8, 4, 2 };
static const uint32_t blocks[] = { 32, 64, 128, 256, 512, 1024 };

#define NDT     3
#define NBITS   3
#define NBLOCKS (sizeof(blocks) / sizeof(blocks[0]))
#define SLACK   64 /* poisoned bytes checked after every output */

/* Block kinds seen per dtype, to show the data reaches every path. */
static size_t kinds_seen[NDT][4];

static int dt_index(int dtype)
{
	return dtype == RCMOE_DT_BF16 ? 0 : dtype == RCMOE_DT_FP16 ? 1 : 2;
}

static void count_kinds(const uint8_t *stream, size_t n, uint32_t B, int dtype)
{
	const uint8_t *p = stream + RCMOE_WIRE_HEADER_BYTES;
	for (size_t b = 0; b < (n + B - 1) / B; b++)
		kinds_seen[dt_index(dtype)][(p[b / 4] >> (2 * (b % 4))) & 3]++;
}

static void put_raw(int dtype, uint8_t *buf, size_t i, uint32_t raw)
{
	if (dtype == RCMOE_DT_FP32) {
		memcpy(buf + 4 * i, &raw, 4);
	} else {
		uint16_t h = (uint16_t)raw;
		memcpy(buf + 2 * i, &h, 2);
	}
}

/* Runs of random length, each of one class, so that blocks mix them or are made of one: scaled
 * Gaussians over the whole exponent range (clamps, subnormal and overflowing scales, fp16
 * subnormal inputs), raw random bit patterns (NaN, Inf, anything), zeros of both signs, one value
 * repeated, powers of two, and Gaussians with one NaN or Inf planted. */
static void fill_mixed(int dtype, uint8_t *buf, size_t n, struct tu_rng *r)
{
	size_t i = 0;
	while (i < n) {
		size_t len = 1 + (size_t)(tu_u64(r) % 300), end = i + len < n ? i + len : n;
		int cls = (int)(tu_u64(r) % 8);
		double scale = ldexp(1.0, (int)(tu_u64(r) % 300) - 160);
		float rep = (float)(tu_gauss(r) * scale);
		for (size_t j = i; j < end; j++) {
			uint32_t raw;
			switch (cls) {
			case 0:
			case 1: raw = rcmoe_from_f32(dtype, (float)(tu_gauss(r) * scale)); break;
			case 2: raw = (uint32_t)tu_u64(r); break;
			case 3: raw = (tu_u64(r) & 1) ? rcmoe_from_f32(dtype, -0.0f) : 0u; break;
			case 4: raw = rcmoe_from_f32(dtype, rep); break;
			case 5:
				raw = rcmoe_from_f32(dtype, ldexpf((tu_u64(r) & 1) ? -1.0f : 1.0f,
								   (int)(tu_u64(r) % 40) - 20));
				break;
			case 6: /* tiny: subnormal in the dtype, or a subnormal scale */
				raw = rcmoe_from_f32(dtype, (float)(tu_gauss(r) * 1e-39));
				if (dtype == RCMOE_DT_FP16)
					raw = (uint32_t)(tu_u64(r) & 0x83ffu);
				break;
			default:
				raw = rcmoe_from_f32(dtype, (float)tu_gauss(r));
				if (tu_u64(r) % 97 == 0)
					raw = rcmoe_from_f32(dtype,
							     (tu_u64(r) & 1) ? NAN : -INFINITY);
				break;
			}
			put_raw(dtype, buf, j, raw);
		}
		i = end;
	}
}

static void fill(int dtype, uint8_t *buf, size_t n, int kind, struct tu_rng *r)
{
	if (kind < 4)
		tu_fill(dtype, buf, n, (enum tu_data)kind, r);
	else
		fill_mixed(dtype, buf, n, r);
}

/* Decodes (validated) stream with both decoders into poisoned, misaligned buffers and compares
 * them, the poison after the output included. */
static void check_decode(const uint8_t *stream, size_t len, size_t n, int dtype, size_t align)
{
	size_t esize = rcmoe_dtype_size(dtype), bytes = n * esize, got = 0;
	uint8_t *a = malloc(bytes + SLACK + 8), *b = malloc(bytes + SLACK + 8);
	uint8_t *pa = a + align, *pb = b + align;
	struct rcmoe_wire_header h;
	memset(a, 0xc3, bytes + SLACK + 8);
	memset(b, 0xc3, bytes + SLACK + 8);
	cr_assert_eq(rcmoe_codec_validate(stream, len, bytes, &h), RCMOE_OK);
	rcmoe_lsq_decode_valid_ref(stream + RCMOE_WIRE_HEADER_BYTES, &h, pb);
	cr_assert_eq(rcmoe_codec_decode(stream, len, pa, bytes, &got), RCMOE_OK);
	cr_assert_eq(got, bytes);
	for (size_t i = 0; i < bytes + SLACK + 8; i++)
		if (a[i] != b[i])
			cr_assert_fail("decode differs: dtype %d bits %u block %u n %zu: byte %zd "
				       "(element %zd) fast %02x ref %02x",
				       dtype, h.bits, h.block, n, (ssize_t)i - (ssize_t)align,
				       ((ssize_t)i - (ssize_t)align) / (ssize_t)esize, a[i], b[i]);
	free(a);
	free(b);
}

/* Overwrites every quantized block's scale with a random positive normal float and its codes with
 * random bytes: still a valid stream (codes are not checked, 2^bits - 1 included), and one whose
 * values reach overflow, fp16/bf16 subnormals and underflow. */
static void scramble_quant_blocks(uint8_t *stream, size_t len, size_t bytes, struct tu_rng *r)
{
	struct rcmoe_wire_header h;
	uint8_t *p = stream + RCMOE_WIRE_HEADER_BYTES;
	cr_assert_eq(rcmoe_codec_validate(stream, len, bytes, &h), RCMOE_OK);
	uint32_t esize = (uint32_t)rcmoe_dtype_size(h.dtype);
	uint64_t nb = (h.count + h.block - 1) / h.block, off = rcmoe_lsq_kinds_bytes(nb);
	for (uint64_t b = 0; b < nb; b++) {
		int kind = (p[b / 4] >> (2 * (b % 4))) & 3;
		uint32_t m = (uint32_t)(h.count - b * h.block < h.block ? h.count - b * h.block
									: h.block);
		uint32_t sz = rcmoe_lsq_block_bytes(kind, m, h.bits, esize);
		if (kind == RCMOE_LSQ_QUANT) {
			uint32_t s =
				0x00800000u + (uint32_t)(tu_u64(r) % (0x7f800000u - 0x00800000u));
			if (tu_u64(r) & 1) /* mostly ordinary scales */
				s = rcmoe_fbits(ldexpf(1.0f + (float)tu_uniform(r),
						       (int)(tu_u64(r) % 60) - 40));
			memcpy(p + off, &s, 4);
			for (uint32_t k = 4; k < sz; k++)
				p[off + k] = (uint8_t)tu_u64(r);
		}
		off += sz;
	}
}

/* Encodes with both encoders (misaligned input, poisoned output) and compares the bytes, then
 * the decoders on that stream and on a scrambled copy. */
static void check_one(const uint8_t *src, size_t n, const struct rcmoe_lsq_cfg *cfg, size_t align,
		      struct tu_rng *r)
{
	size_t esize = rcmoe_dtype_size(cfg->dtype), cap = rcmoe_lsq_bound(n, cfg), la = 0, lb = 0;
	uint8_t *in = malloc(n * esize + 8), *a = malloc(cap + SLACK), *b = malloc(cap + SLACK);
	cr_assert(cap >= RCMOE_WIRE_HEADER_BYTES);
	if (n)
		memcpy(in + align, src, n * esize);
	memset(a, 0x5a, cap + SLACK);
	memset(b, 0x5a, cap + SLACK);
	cr_assert_eq(rcmoe_lsq_encode(in + align, n, cfg, a, cap, &la), RCMOE_OK);
	cr_assert_eq(rcmoe_lsq_encode_ref(in + align, n, cfg, b, cap, &lb), RCMOE_OK);
	cr_assert_eq(la, lb, "length: dtype %d bits %d block %u n %zu", cfg->dtype, cfg->bits,
		     cfg->block, n);
	for (size_t i = 0; i < cap + SLACK; i++)
		if (a[i] != b[i])
			cr_assert_fail("encode differs: dtype %d bits %d block %u n %zu align %zu: "
				       "byte %zu of %zu: fast %02x ref %02x",
				       cfg->dtype, cfg->bits, cfg->block, n, align, i, la, a[i],
				       b[i]);
	count_kinds(a, n, cfg->block, cfg->dtype);
	check_decode(a, la, n, cfg->dtype, (align + 1) % 4);
	scramble_quant_blocks(a, la, n * esize, r);
	check_decode(a, la, n, cfg->dtype, align);
	free(in);
	free(a);
	free(b);
}

/* Sizes around the edges of a block of B elements and of the 32-element chunks the fast path
 * works in, plus random ones. */
static size_t pick_size(uint32_t B, int k, struct tu_rng *r)
{
	switch (k) {
	case 0: return 0;
	case 1: return 1;
	case 2: return 2;
	case 3: return B - 1;
	case 4: return B;
	case 5: return B + 1;
	case 6: return 3 * (size_t)B + 31;
	case 7: return 5 * (size_t)B + 33;
	case 8: return 1 + (size_t)(tu_u64(r) % 5000);
	default: return (size_t)(tu_u64(r) % 100000) | 1; /* odd */
	}
}

/* The CPU LSQ loops exist twice on x86-64 (baseline and AVX2, picked at run time): both must
 * produce the reference's bytes. */
static void match_reference(void);

Test(lsq_fast, portable_build_matches_reference)
{
	cr_assert(rcmoe_cpu_set_isa(RCMOE_CPU_ISA_PORTABLE));
	match_reference();
}

Test(lsq_fast, avx2_build_matches_reference)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX2))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX2: the portable build "
			     "is the one that runs here");
	match_reference();
}

Test(lsq_fast, avx512_build_matches_reference)
{
	if (!rcmoe_cpu_set_isa(RCMOE_CPU_ISA_AVX512))
		cr_skip_test("this CPU (or a non-x86-64 build) has no AVX-512 (F, BW, VL, DQ): "
			     "a narrower build is the one that runs here");
	match_reference();
}

static void match_reference(void)
{
	struct tu_rng r = { 2024 };
	size_t maxn = 6 * RCMOE_LSQ_MAX_BLOCK + 100000;
	uint8_t *src = malloc(maxn * 4);
	size_t cases = 0, elems = 0;
	for (int d = 0; d < NDT; d++)
		for (int bi = 0; bi < NBITS; bi++)
			for (size_t k = 0; k < NBLOCKS; k++)
				for (int s = 0; s < 16; s++) {
					uint32_t B = blocks[k];
					size_t n = pick_size(B, s, &r);
					/* big random sizes only for some block sizes: runtime */
					if (s >= 9 && (k + (size_t)bi + (size_t)s) % 3 != 0)
						continue;
					struct rcmoe_lsq_cfg cfg = {
						.dtype = dtypes[d],
						.bits = bitss[bi],
						.block = B,
						.seed = tu_u64(&r),
						.op_id = tu_u64(&r),
						.rank = (uint32_t)tu_u64(&r),
					};
					fill(cfg.dtype, src, n, (int)(tu_u64(&r) % 6), &r);
					check_one(src, n, &cfg, (size_t)(tu_u64(&r) % 4), &r);
					cases++;
					elems += n;
				}
	cr_log_info("%zu configurations, %zu elements", cases, elems);
	for (int d = 0; d < NDT; d++) {
		cr_log_info("dtype %d: %zu zero, %zu quantized, %zu raw blocks", dtypes[d],
			    kinds_seen[d][0], kinds_seen[d][1], kinds_seen[d][2]);
		for (int k = 0; k < 3; k++)
			cr_assert(kinds_seen[d][k] > 10, "dtype %d: too few blocks of kind %d",
				  dtypes[d], k);
	}
	free(src);
}

/* The fast encoder's fp16 widening is exact for every finite fp16 (Inf and NaN make a block raw,
 * so it never sees them): an error of one unit would rarely change a code. */
Test(lsq_fast, fp16_widening_exhaustive)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00u) == 0x7c00u)
			continue;
		uint32_t fast = rcmoe_fbits(rcmoe_lsq_f16_widen((uint16_t)h));
		uint32_t ref = rcmoe_fbits(rcmoe_f16_to_f32((uint16_t)h));
		cr_assert_eq(fast, ref, "fp16 %04x: fast %08x ref %08x", h, fast, ref);
	}
}

/* Every fp16 bit pattern through both encoders and decoders. */
Test(lsq_fast, every_fp16_value)
{
	/* in order (blocks of like values: every subnormal and normal is widened in some
	 * quantized block) and shuffled (mixed blocks) */
	const size_t n = 65536;
	uint16_t *v = malloc(n * 2);
	struct tu_rng r = { 77 };
	for (size_t i = 0; i < n; i++)
		v[i] = (uint16_t)i;
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			for (size_t i = n - 1; i > 0; i--) {
				size_t j = (size_t)(tu_u64(&r) % (i + 1));
				uint16_t t = v[i];
				v[i] = v[j];
				v[j] = t;
			}
		for (int bi = 0; bi < NBITS; bi++) {
			struct rcmoe_lsq_cfg cfg = { .dtype = RCMOE_DT_FP16,
						     .bits = bitss[bi],
						     .block = pass ? 128 : 32,
						     .seed = 5,
						     .op_id = (uint64_t)bi,
						     .rank = 1 };
			check_one((const uint8_t *)v, n, &cfg, 1, &r);
		}
	}
	free(v);
}
